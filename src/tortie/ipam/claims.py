"""Claiming a block for a host and giving it back: the block-affinity protocol.

Input: an `IpamStore`, a host, a block CIDR. Output: an outcome; the datastore is changed only through
create-only writes and compare-and-swap, so concurrent claimers and crashes are safe.

Claim (write order, each step atomic):

    1. create affinity  /calico/ipam/v2/host/<host>/ipvN/block/<cidr>  {"state": "pending", "claimTime"}
       -- exists already: another process of this host is claiming it: wait for that claim to settle
          (confirmed: the block is the host's, use it; otherwise move on to another block)
    2. if a block cap applies: list the host's affinities ordered by create revision; if ours is not
       among the first N, delete it and give up (claimers racing past the cap: the later ones yield;
       a rank never grows, since later affinities sort after it)
    3. create block  {"affinity": "host:<host>", all ordinals free}   -- the arbiter: only one create wins;
       a loser that finds the block affine to another host deletes its pending affinity and moves on
    4. update affinity -> {"state": "confirmed"} (CAS)

Ownership of a pending affinity: while it is young (claimTime less than `STALE_PENDING_S` ago) only the
process that created it writes it; others leave it alone (but count it against the cap). An older
pending affinity was abandoned by a crash after step 1 or 3: `complete_pending` then finishes the claim
(cap permitting) or deletes it. Pending affinities never own addresses, so nothing leaks meanwhile;
`ipam check` reports them.

Release (audit of empty blocks whose host is gone): one transaction deleting the block and the affinity,
each conditioned on the revision at which the block was seen empty (a concurrent borrower makes it fail:
the block is kept). Affinities in Calico's `pendingDeletion` state (written by Calico) are honoured: the
allocator never uses them.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time

from tortie.common.errors import AlreadyExists, Conflict, NotFound
from tortie.common.ipfamily import IPNetwork, family_of
from tortie.ipam.store import MAX_RETRIES, IpamStore, Versioned, backoff
from tortie.model.ipam_block import Block, host_affinity
from tortie.model.ipam_records import Affinity, AffinityState

log = logging.getLogger(__name__)

# A pending affinity older than this was abandoned (a claim takes a few round trips). Wall clock, so
# hosts' clocks must agree to within this much.
STALE_PENDING_S = 120.0


# How long a claimer waits for a sibling process's in-flight claim of the same block.
SIBLING_WAIT_S = 2.0


class ClaimOutcome(enum.Enum):
    CLAIMED = "claimed"  # the block exists, is affine to the host, the affinity is confirmed
    LOST = "lost"  # another host owns the block, or another claim for it is in flight
    OVER_LIMIT = "over-limit"  # the host already has its cap of blocks
    SKIPPED = "skipped"  # a young pending affinity: someone else's claim in flight, left alone


def is_stale(aff: Affinity, now: float | None = None) -> bool:
    """True for a pending affinity abandoned by a crash (or written without claimTime, e.g. by Calico)."""
    if aff.state is not AffinityState.PENDING:
        return False
    if aff.claim_time is None:
        return True
    return (time.time() if now is None else now) - aff.claim_time > STALE_PENDING_S


def claim_block(store: IpamStore, host: str, cidr: IPNetwork, max_blocks: int | None) -> ClaimOutcome:
    """Claim the (normally non-existent) block `cidr` for `host`, following the module's write order."""
    try:
        aff = store.create_affinity(Affinity(host, cidr, AffinityState.PENDING, claim_time=time.time()))
    except AlreadyExists:
        return _await_sibling(store, host, cidr)
    if max_blocks and _over_limit(store, host, cidr, max_blocks):
        _drop(store, aff)
        return ClaimOutcome.OVER_LIMIT
    return _create_and_confirm(store, aff)


def _await_sibling(store: IpamStore, host: str, cidr: IPNetwork) -> ClaimOutcome:
    """Another process of this host holds the affinity: wait (briefly) for its claim to settle. Confirmed
    -> the block is the host's: CLAIMED; gone, abandoned or still pending at the deadline -> LOST."""
    deadline = time.monotonic() + SIBLING_WAIT_S
    attempt = 0
    while True:
        cur = store.get_affinity(host, cidr)
        if cur is None or cur.value.state is AffinityState.PENDING_DELETION or is_stale(cur.value):
            return ClaimOutcome.LOST
        if cur.value.state is AffinityState.CONFIRMED:
            return ClaimOutcome.CLAIMED
        if time.monotonic() > deadline:
            return ClaimOutcome.LOST
        backoff(attempt)
        attempt += 1


def complete_pending(store: IpamStore, aff: Versioned[Affinity], max_blocks: int | None) -> ClaimOutcome:
    """Finish, or abandon, a pending affinity found among the host's affinities. Young ones belong to a
    claim in flight and are left alone (SKIPPED)."""
    if not is_stale(aff.value):
        return ClaimOutcome.SKIPPED
    host, cidr = aff.value.host, aff.value.cidr
    if max_blocks and _over_limit(store, host, cidr, max_blocks):
        _drop(store, aff)
        return ClaimOutcome.OVER_LIMIT
    log.warning("completing abandoned block claim host=%s block=%s", host, cidr)
    return _create_and_confirm(store, aff)


def _over_limit(store: IpamStore, host: str, cidr: IPNetwork, max_blocks: int) -> bool:
    live = [
        a
        for a in store.host_affinities(host, family_of(cidr))
        if a.value.state is not AffinityState.PENDING_DELETION
    ]
    live.sort(key=lambda a: (a.create_revision, str(a.value.cidr)))
    rank = next((i for i, a in enumerate(live) if a.value.cidr == cidr), len(live))
    return rank >= max_blocks


def _drop(store: IpamStore, aff: Versioned[Affinity]) -> None:
    """Delete our pending affinity (CAS); if it changed meanwhile someone else completed it: keep it."""
    with contextlib.suppress(Conflict, NotFound):
        store.delete_affinity(aff.value.host, aff.value.cidr, aff.revision)


def _create_and_confirm(store: IpamStore, aff: Versioned[Affinity]) -> ClaimOutcome:
    host, cidr = aff.value.host, aff.value.cidr
    try:
        store.create_block(Block.new(cidr, host_affinity(host)))
    except AlreadyExists:
        current = store.get_block(cidr)
        if current is None or current.value.host != host:
            # Another host won the block (or it vanished under us): drop our claim, try elsewhere.
            _drop(store, aff)
            log.debug("block claim lost host=%s block=%s", host, cidr)
            return ClaimOutcome.LOST
    for attempt in range(MAX_RETRIES):
        try:
            store.set_affinity_state(aff, AffinityState.CONFIRMED)
            log.info("claimed IPAM block host=%s block=%s", host, cidr)
            return ClaimOutcome.CLAIMED
        except (Conflict, NotFound):
            fresh = store.get_affinity(host, cidr)
            if fresh is None:
                # Deleted meanwhile (an abandoned claim dropped by another process of this host), but
                # the block is ours: put the affinity back, confirmed, so the block is not orphaned.
                with contextlib.suppress(AlreadyExists):
                    store.create_affinity(
                        Affinity(host, cidr, AffinityState.CONFIRMED, claim_time=time.time())
                    )
                continue
            if fresh.value.state is AffinityState.CONFIRMED:
                return ClaimOutcome.CLAIMED
            if fresh.value.state is AffinityState.PENDING_DELETION:
                return ClaimOutcome.LOST
            aff = fresh
            backoff(attempt)
    return ClaimOutcome.LOST


def ensure_block(store: IpamStore, aff: Versioned[Affinity]) -> bool:
    """A confirmed affinity whose block is missing: recreate the empty block (Calico does the same).
    Returns True when the block exists and is affine to the host afterwards."""
    host, cidr = aff.value.host, aff.value.cidr
    try:
        store.create_block(Block.new(cidr, host_affinity(host)))
        log.warning("recreated missing IPAM block host=%s block=%s", host, cidr)
        return True
    except AlreadyExists:
        current = store.get_block(cidr)
        return current is not None and current.value.host == host


def release_empty_block(store: IpamStore, host: str, cidr: IPNetwork) -> bool:
    """Release the block affine to `host` if (and only if) it holds no allocation, deleting the block and
    the host's affinity in one transaction conditioned on the revisions just read (a concurrent borrower
    or claimer makes it fail harmlessly). True if released."""
    aff = store.get_affinity(host, cidr)
    blk = store.get_block(cidr)
    if blk is not None and (blk.value.host != host or not blk.value.is_empty):
        return False
    ops = []
    if blk is not None:
        ops.append(store.block_delete_op(cidr, blk.revision))
    if aff is not None:
        ops.append(store.affinity_delete_op(host, cidr, aff.revision))
    try:
        store.commit(ops)
    except (Conflict, NotFound):
        return False
    log.info("released IPAM block host=%s block=%s", host, cidr)
    return True
