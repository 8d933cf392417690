"""One change of one block = one datastore transaction: the block (compare-and-swap on the revision
read) together with the counts of the handles it touches.

    block   /calico/ipam/v2/assignment/ipvN/block/<cidr>   CAS on the revision read (deleted instead
                                                            when it ends up empty and without affinity)
    handle  /calico/ipam/v2/handle/<h>                      create / CAS-update / CAS-delete (count per block)

so a handle's counts always equal its allocations, and a crash leaves all of a change or none of it: no
address is ever held without a handle record that can release it. With a cool-down (IPAMConfiguration
`ipCooldownSeconds` > 0) a release leaves the address cooling in the block (`Block.release`); every
change of a block also returns the addresses whose cool-down has passed to the free list, so they
become assignable with the next write of their block (or the next GC). `BlockWriter` re-reads and retries a
change up to `max_retries` times with a short random back-off when a condition fails, then raises
`IpamContention`. Which block to change is the caller's decision (`auto_assign`, `allocator`).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence

from tortie.common.errors import AlreadyExists, Conflict, NotFound
from tortie.common.ipfamily import IPNetwork
from tortie.datastore.api import TxnOp
from tortie.ipam.block import reserved_ordinals
from tortie.ipam.errors import IpamContention
from tortie.ipam.store import IpamStore, Versioned, backoff
from tortie.model.ipam_block import Block, ReleaseResult
from tortie.model.ipam_records import Handle


class Commit(enum.Enum):
    DONE = "done"
    CONFLICT = "conflict"  # a CAS condition failed: re-read and retry
    HANDLE_EXISTS = "handle-exists"  # we assumed a new handle but it exists: read it and retry


class BlockWriter:
    """Assigns and releases ordinals of one block at a time, each change one transaction."""

    def __init__(self, store: IpamStore, max_retries: int) -> None:
        self.store = store
        self.max_retries = max_retries

    def assign(
        self,
        cidr: IPNetwork,
        count: int,
        handle: str,
        secondary: Mapping[str, str],
        reservations: list[IPNetwork],
        require_host: str | None,
        cooldown_s: float = 0.0,
    ) -> tuple[int, ...] | None:
        """Take up to `count` free ordinals of one block (addresses released more than `cooldown_s` ago
        are free again). Returns the ordinals taken; () when the block is full or no longer affine to
        `require_host`; None when it does not exist."""
        excluded = reserved_ordinals(cidr, reservations)
        # Optimistic: most handles are new (one per workload), so first try creating the handle record
        # without reading it; AlreadyExists tells us to read it and retry.
        handles: dict[str, Versioned[Handle] | None] = {handle: None}
        for attempt in range(self.max_retries):
            cur = self.store.get_block(cidr)
            if cur is None or cur.value.deleted:
                return None
            if require_host is not None and cur.value.host != require_host:
                return ()
            new, taken = cur.value.expire_cooldown(time.time(), cooldown_s).assign(
                count, handle, secondary, excluded
            )
            if not taken:
                return ()
            outcome = self.commit(cur.revision, new, {handle: len(taken)}, handles)
            if outcome is Commit.DONE:
                return taken
            handles[handle] = self.store.get_handle(handle)
            if outcome is Commit.CONFLICT:
                backoff(attempt)
        raise IpamContention(f"could not allocate in block {cidr}: {self.max_retries} conflicting updates")

    def commit(
        self,
        revision: int,
        block: Block,
        handle_deltas: Mapping[str | None, int],
        known_handles: Mapping[str, Versioned[Handle] | None] | None = None,
    ) -> Commit:
        """Write `block` (CAS on `revision`; deleted instead when it is empty and has no affinity) together
        with the handle count changes, in one transaction; nothing is written unless it is DONE. Handle
        records are read unless given in `known_handles` (None there = assumed absent)."""
        ops: list[TxnOp | None] = []
        if block.is_empty and block.affinity is None:
            ops.append(self.store.block_delete_op(block.cidr, revision))
        else:
            ops.append(self.store.block_op(block, revision))
        for h, delta in handle_deltas.items():
            if h is not None and delta:
                current = (
                    known_handles[h] if known_handles and h in known_handles else self.store.get_handle(h)
                )
                ops.append(self.store.handle_op(h, current, block.cidr, delta))
        try:
            self.store.commit(ops)
        except AlreadyExists:
            return Commit.HANDLE_EXISTS
        except (Conflict, NotFound):
            return Commit.CONFLICT
        return Commit.DONE

    def release(
        self,
        cidr: IPNetwork,
        ordinals: Sequence[int] | None,
        only_handle: str | None,
        cooldown_s: float = 0.0,
    ) -> ReleaseResult | None:
        """Free ordinals of one block (all of `only_handle`'s when `ordinals` is None; with both, only those
        of the ordinals `only_handle` holds). None if the block does not exist. The block and the handle
        counts change in one transaction. An emptied block without affinity is deleted; affine blocks stay
        with their host. With `cooldown_s` > 0 the freed addresses cool down first (see the module)."""
        for attempt in range(self.max_retries):
            cur = self.store.get_block(cidr)
            if cur is None:
                return None
            now = time.time()
            block = cur.value.expire_cooldown(now, cooldown_s)
            wanted: Sequence[int]
            if ordinals is None:
                assert only_handle is not None
                wanted = block.ordinals_of_handle(only_handle)
            elif only_handle is not None:
                wanted = [
                    o
                    for o in ordinals
                    if (a := block.attribute_of(o)) is not None and a.handle_id == only_handle
                ]
            else:
                wanted = ordinals
            res = block.release(wanted, now if cooldown_s > 0 else None)
            if ordinals is not None and only_handle is not None:
                skipped = tuple(o for o in ordinals if o not in wanted)
                res = ReleaseResult(res.block, res.not_allocated + skipped, res.freed)
            if res.freed_count == 0:
                if block is not cur.value:  # nothing of ours, but cooled-down addresses to free
                    self.commit(cur.revision, block, {})
                return res
            deltas = {h: -len(v) for h, v in res.freed.items()}
            if self.commit(cur.revision, res.block, deltas) is Commit.DONE:
                return res
            backoff(attempt)
        raise IpamContention(
            f"could not release addresses in block {cidr}: {self.max_retries} conflicting updates"
        )

    def release_guarded(
        self, cidr: IPNetwork, expected: Mapping[int, tuple[str, int | None]], cooldown_s: float
    ) -> tuple[int, ...]:
        """Release each ordinal of `expected` only if it is still held by the same allocation: the same
        handle and the same sequence number (Calico's ABA guard; an address released and handed out
        again since it was judged has a new one). Returns the ordinals released."""
        for attempt in range(self.max_retries):
            cur = self.store.get_block(cidr)
            if cur is None:
                return ()
            now = time.time()
            block = cur.value.expire_cooldown(now, cooldown_s)
            wanted = []
            for o, (handle, sequence) in expected.items():
                attr = block.attribute_of(o) if 0 <= o < block.size else None
                same = block.sequence_number_for_allocation.get(str(o)) == sequence
                if attr is not None and attr.released_at is None and attr.handle_id == handle and same:
                    wanted.append(o)
            res = block.release(wanted, now if cooldown_s > 0 else None)
            if res.freed_count == 0:
                return ()
            deltas = {h: -len(v) for h, v in res.freed.items()}
            if self.commit(cur.revision, res.block, deltas) is Commit.DONE:
                return tuple(o for v in res.freed.values() for o in v)
            backoff(attempt)
        raise IpamContention(
            f"could not release addresses in block {cidr}: {self.max_retries} conflicting updates"
        )

    def expire_cooldown(self, cidr: IPNetwork, cooldown_s: float) -> bool:
        """Write the block with the addresses whose cool-down has passed freed (deleted when that leaves
        it empty without affinity). False when there was nothing to free or the block changed meanwhile
        (whoever changed it freed them too)."""
        cur = self.store.get_block(cidr)
        if cur is None:
            return False
        block = cur.value.expire_cooldown(time.time(), cooldown_s)
        return block is not cur.value and self.commit(cur.revision, block, {}) is Commit.DONE

    def rollback(self, handle: str, got: list[tuple[IPNetwork, int]]) -> None:
        by_block: dict[IPNetwork, list[int]] = {}
        for cidr, o in got:
            by_block.setdefault(cidr, []).append(o)
        for cidr, ordinals in by_block.items():
            self.release(cidr, ordinals, only_handle=handle)
        got.clear()
