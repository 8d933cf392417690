"""IPAM audit: find leaks and inconsistencies (`check`, pure) and release empty orphan blocks.

Input: an `IpamSnapshot` (one consistent read). Output: a list of `Finding`s, empty when all is well.
What is checked (each finding names its subject and says what to do):

    invalid-record          an IPAM object that does not decode
    block-inconsistent      a block whose allocation table breaks its invariants
    leaked-address          allocated, but no WorkloadEndpoint or node tunnel uses it
    unallocated-address     a WorkloadEndpoint uses an address of an IPPool that IPAM has not allocated
    address-shared          several WorkloadEndpoints use the same address
    attribute-mismatch      the allocation's namespace/pod/node attributes disagree with the endpoint using it
    orphan-block            a block affine to a host that has no Node any more
    stale-affinity          an affinity left pending / pendingDeletion, or whose block is missing or
                            affine to another host
    block-without-affinity  a block affine to a host that has no affinity record for it
    handle-mismatch         a handle record's per-block counts differ from the allocations in the blocks
    missing-handle          allocations under a handle that has no handle record

`release_orphan_blocks(ds)` is the "audit releases" action: it releases blocks that are empty and affine
to hosts without a Node (and drops affinities of such hosts whose block no longer exists).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import tortie.ipam.claims as claims
from tortie.common.ipfamily import IPAddress, IPNetwork, address_in, sort_key
from tortie.datastore.api import Datastore
from tortie.ipam.snapshot import IpamSnapshot, take_snapshot
from tortie.ipam.store import IpamStore
from tortie.model.ipam_records import AffinityState

log = logging.getLogger(__name__)

# Calico's Windows IPAM reserves a few addresses per block under this handle; they are never "leaked".
WINDOWS_RESERVED_HANDLE = "windows-reserved-ipam-handle"


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "message": self.message}


def check(snap: IpamSnapshot) -> list[Finding]:
    """Every problem found in `snap`, sorted by kind then subject."""
    out: list[Finding] = []
    out += [
        Finding("invalid-record", key, f"malformed IPAM object: {why}")
        for key, why in snap.bad_records.items()
    ]
    out += _check_blocks(snap)
    out += _check_addresses(snap)
    out += _check_affinities(snap)
    out += _check_handles(snap)
    return sorted(out, key=lambda f: (f.kind, f.subject, f.message))


def _check_blocks(snap: IpamSnapshot) -> list[Finding]:
    out: list[Finding] = []
    for cidr, block in snap.blocks.items():
        problems = block.problems()
        if problems:
            out.append(Finding("block-inconsistent", str(cidr), "; ".join(problems)))
        host = block.host
        if host is not None and host not in snap.nodes:
            if block.is_empty:
                msg = (
                    f"block is affine to host {host}, which has no Node; it is empty: release it with "
                    "`tortie ipam release --orphan-blocks`"
                )
            else:
                msg = (
                    f"block is affine to host {host}, which has no Node, and still holds {block.in_use} "
                    "allocation(s) (and any address cooling down after its release); "
                    "`tortie ipam gc` releases them"
                )
            out.append(Finding("orphan-block", str(cidr), msg))
    return out


def _allocations(snap: IpamSnapshot) -> dict[IPAddress, tuple[IPNetwork, str | None, dict[str, str]]]:
    out: dict[IPAddress, tuple[IPNetwork, str | None, dict[str, str]]] = {}
    for cidr, block in snap.blocks.items():
        if block.problems():
            continue  # reported as inconsistent; its table cannot be trusted
        for ordinal, idx in enumerate(block.allocations):
            if idx is not None and block.attributes[idx].released_at is None:  # cooling: nobody's
                attr = block.attributes[idx]
                out[block.address(ordinal)] = (cidr, attr.handle_id, dict(attr.secondary))
    return out


def _check_addresses(snap: IpamSnapshot) -> list[Finding]:
    out: list[Finding] = []
    allocs = _allocations(snap)
    for ip, (cidr, handle, attrs) in allocs.items():
        users = snap.users.get(ip, ())
        if not users:
            if handle != WINDOWS_RESERVED_HANDLE:
                out.append(
                    Finding(
                        "leaked-address",
                        str(ip),
                        f"allocated in block {cidr} to handle {handle!r} {_fmt(attrs)} but no "
                        "WorkloadEndpoint or tunnel uses it; release it with "
                        f"`tortie ipam release --ip {ip}`",
                    )
                )
            continue
        for user in users:
            for attr_key, actual in (("namespace", user.namespace), ("pod", user.pod), ("node", user.node)):
                want = attrs.get(attr_key)
                if want is not None and actual is not None and want != actual:
                    out.append(
                        Finding(
                            "attribute-mismatch",
                            str(ip),
                            f"allocation attribute {attr_key}={want!r} but {user.describe()} has {attr_key}="
                            f"{actual!r} (handle {handle!r})",
                        )
                    )
    for ip, users in snap.users.items():
        weps = [u for u in users if u.kind == "WorkloadEndpoint"]
        if len(weps) > 1:
            names = ", ".join(u.name for u in weps)
            out.append(Finding("address-shared", str(ip), f"used by several WorkloadEndpoints: {names}"))
        if ip not in allocs and any(address_in(ip, p.cidr) for p in snap.pools):
            who = ", ".join(u.describe() for u in users)
            out.append(
                Finding(
                    "unallocated-address",
                    str(ip),
                    f"used by {who} but not allocated in IPAM: a later allocation could hand it out again",
                )
            )
    return out


def _check_affinities(snap: IpamSnapshot) -> list[Finding]:
    out: list[Finding] = []
    seen: set[tuple[str, IPNetwork]] = set()
    for aff in snap.affinities:
        seen.add((aff.host, aff.cidr))
        subject = f"{aff.host}/{aff.cidr}"
        block = snap.blocks.get(aff.cidr)
        if aff.host not in snap.nodes and block is None:
            out.append(Finding("orphan-block", subject, f"affinity of host {aff.host}, which has no Node"))
        else:
            stale = (f"affinity is {aff.state.value}: a claim or release was interrupted"
                     if aff.state is not AffinityState.CONFIRMED
                     else "confirmed affinity but the block does not exist" if block is None
                     else f"confirmed affinity but the block is affine to {block.affinity!r}"
                     if block.host != aff.host else None)
            if stale is not None:
                out.append(Finding("stale-affinity", subject, stale))
    for cidr, block in snap.blocks.items():
        if block.host is not None and (block.host, cidr) not in seen:
            why = f"block is affine to host {block.host} but that host has no affinity record"
            out.append(Finding("block-without-affinity", str(cidr), why))
    return out


def _check_handles(snap: IpamSnapshot) -> list[Finding]:
    out: list[Finding] = []
    actual: dict[str, dict[str, int]] = {}
    for cidr, block in snap.blocks.items():
        if block.problems():
            continue
        for handle, n in block.handle_counts().items():
            if handle is not None:
                actual.setdefault(handle, {})[str(cidr)] = n
    for handle, counts in actual.items():
        if handle not in snap.handles:
            total = sum(counts.values())
            out.append(
                Finding(
                    "missing-handle",
                    handle,
                    f"{total} allocation(s) in {sorted(counts)} but no handle record: "
                    "release_by_handle cannot find them",
                )
            )
    for handle, rec in snap.handles.items():
        want = {k: v for k, v in rec.blocks.items() if v}
        have = actual.get(handle, {})
        if want != have:
            out.append(
                Finding("handle-mismatch", handle, f"handle record counts {want} but the blocks hold {have}")
            )
    return out


def _fmt(attrs: dict[str, str]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + ")" if attrs else "(no attributes)"


def release_orphan_blocks(ds: Datastore) -> list[IPNetwork]:
    """Release empty blocks affine to hosts without a Node, and drop such hosts' affinities whose block is
    gone. Each release is one CAS transaction (see `claims.release_empty_block`). Returns the CIDRs freed."""
    snap = take_snapshot(ds)
    store = IpamStore(ds)
    released: list[IPNetwork] = []
    for cidr, block in sorted(snap.blocks.items(), key=lambda kv: sort_key(kv[0])):
        host = block.host
        orphan = host is not None and host not in snap.nodes and block.is_empty and not block.problems()
        if orphan and host is not None and claims.release_empty_block(store, host, cidr):
            released.append(cidr)
    for aff in snap.affinities:
        if (
            aff.host not in snap.nodes
            and aff.cidr not in snap.blocks
            and store.delete_affinity(aff.host, aff.cidr)
        ):
            log.info("dropped affinity of missing host host=%s block=%s", aff.host, aff.cidr)
    return released
