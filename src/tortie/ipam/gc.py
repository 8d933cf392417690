"""IPAM garbage collection, the decision (PURE): what one GC pass may release, and why.

Input: a `GcView` — one read of IPAM, Nodes and WorkloadEndpoints (`IpamSnapshot` plus the endpoints'
interface, ownership and age), and, on the node the pass runs for, that host's kernel (`KernelView`:
its interfaces and the host routes of workload addresses). Output: a `GcPlan` of `Candidate`s, each
with its reason: `due` (old enough: act), `waiting` (still inside the grace period) and `kept`
(looked like garbage but is in use). Nothing here reads a clock or the datastore; `gc_run` does.

What is garbage (Calico's kube-controllers IPAM GC, adapted to a node that can see its kernel):

    allocation   held under a handle, not cooling, used by no WorkloadEndpoint and no Node tunnel field,
                 and either its node (attribute `node`, else the block's host) has no Node any more, or
                 it is this node's, the kernel routes the address to no interface and it is not a tunnel
                 address (the node's tunnel keeper owns those). Another live node's allocations are
                 that node's business: only its own pass can compare them with its kernel.
    endpoint     a WorkloadEndpoint on this node written by tortie's CNI plugin (it records its
                 container) whose host interface is not in the kernel.
    block        an empty block affine to a host without Node, or such a host's affinity whose block is
                 gone (`claims.release_empty_block`).
    cool-down    a block holding addresses whose ipCooldownSeconds have passed (rewritten to free them).

Grace: an allocation or endpoint is `due` only once it has been garbage for `grace` seconds. Its age is
the allocation's `timestamp` attribute (written by tortie's CNI plugin, as Calico's) or the endpoint's
creationTimestamp when known, else how long this collector has seen it as garbage (`first_seen`,
kept by a periodic collector between passes; a one-shot run has none: such a candidate waits unless
grace is 0). Blocks of deleted hosts and cool-down expiry need no grace (nothing uses them).

Every `due` candidate is re-validated against a fresh read just before it is acted on, and released
with compare-and-swap guards (the allocation's handle and sequence number, the endpoint's revision):
see `gc_run`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tortie.common.errors import InvalidRecord
from tortie.common.ipfamily import IPAddress, IPNetwork, sort_key
from tortie.ipam.audit import WINDOWS_RESERVED_HANDLE
from tortie.ipam.snapshot import IpamSnapshot
from tortie.model.ipam_records import parse_timestamp

# Calico's allocation attribute holding when an address was assigned (RFC 3339).
TIMESTAMP_ATTRIBUTE = "timestamp"
TUNNEL_TYPE_SUFFIX = "TunnelAddress"  # attribute `type` of tunnel addresses (vxlanTunnelAddress, ...)


class Kind(enum.Enum):
    ALLOCATION = "allocation"
    ENDPOINT = "endpoint"
    BLOCK = "block"
    COOLDOWN = "cooldown"


@dataclass(frozen=True)
class KernelView:
    """What the host's kernel says is in use: interface names, and per workload address the interface
    its host route (/32, /128) leads to."""

    interfaces: frozenset[str] = frozenset()
    routed: Mapping[IPAddress, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointRecord:
    """A stored WorkloadEndpoint, as much as GC needs of it."""

    key: str
    revision: int
    namespace: str
    name: str
    node: str | None
    interface: str | None
    container_id: str | None  # set when tortie's CNI plugin wrote it (it records its container)
    created: float | None  # creationTimestamp, epoch seconds


@dataclass(frozen=True)
class GcView:
    snapshot: IpamSnapshot
    endpoints: tuple[EndpointRecord, ...] = ()
    node: str | None = None  # the node whose kernel `kernel` is; None: only cluster-wide work
    kernel: KernelView | None = None


@dataclass(frozen=True)
class Candidate:
    kind: Kind
    subject: str  # an address, an endpoint "<ns>/<name>", a block "<host>/<cidr>" or a block CIDR
    reason: str
    identity: tuple[object, ...]  # what `first_seen` is keyed by: the same garbage seen again
    age: float | None = None  # seconds it has been garbage (None: unknown)
    block: IPNetwork | None = None
    ordinal: int | None = None
    handle: str | None = None
    sequence: int | None = None  # the allocation's sequence number (ABA guard)
    host: str | None = None  # ALLOCATION: the node holding it; BLOCK: the deleted host
    endpoint: EndpointRecord | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind.value, "subject": self.subject, "reason": self.reason}
        if self.handle is not None:
            out["handle"] = self.handle
        if self.age is not None:
            out["ageSeconds"] = round(self.age, 1)
        return out


@dataclass(frozen=True)
class GcPlan:
    due: tuple[Candidate, ...] = ()
    waiting: tuple[Candidate, ...] = ()
    kept: tuple[Candidate, ...] = ()

    def of_host(self, host: str) -> GcPlan:
        """Only the candidates of `host` (its allocations, its blocks)."""

        def mine(part: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
            return tuple(c for c in part if c.host == host)

        return GcPlan(mine(self.due), mine(self.waiting), mine(self.kept))


def plan(view: GcView, now: float, grace: float, first_seen: Mapping[tuple[object, ...], float]) -> GcPlan:
    """Sort every piece of garbage in `view` into due / waiting / kept (see the module docstring)."""
    due: list[Candidate] = []
    waiting: list[Candidate] = []
    kept: list[Candidate] = []
    for cand, in_use in (*_allocations(view, now), *_endpoints(view, now)):
        if in_use:
            kept.append(cand)
            continue
        age = cand.age
        seen = first_seen.get(cand.identity)
        if seen is not None:
            age = max(age or 0.0, now - seen)
        cand = dataclasses.replace(cand, age=age)
        (due if grace <= 0 or (age is not None and age >= grace) else waiting).append(cand)
    due += _blocks(view.snapshot, now)
    order = {Kind.ENDPOINT: 0, Kind.ALLOCATION: 1, Kind.BLOCK: 2, Kind.COOLDOWN: 3}

    def key(c: Candidate) -> tuple[int, str]:
        return order[c.kind], c.subject

    return GcPlan(tuple(sorted(due, key=key)), tuple(sorted(waiting, key=key)), tuple(sorted(kept, key=key)))


def _allocations(view: GcView, now: float) -> Iterable[tuple[Candidate, bool]]:
    snap = view.snapshot
    for cidr, block in sorted(snap.blocks.items(), key=lambda kv: sort_key(kv[0])):
        if block.problems():
            continue  # `ipam check` reports it; its table cannot be trusted
        for ordinal, idx in enumerate(block.allocations):
            if idx is None:
                continue
            attr = block.attributes[idx]
            if attr.released_at is not None or attr.handle_id in (None, WINDOWS_RESERVED_HANDLE):
                continue
            ip = block.address(ordinal)
            if snap.users.get(ip):
                continue  # a WorkloadEndpoint or a Node tunnel field names it
            owner = attr.secondary.get("node") or block.host
            sequence = block.sequence_number_for_allocation.get(str(ordinal))
            base = Candidate(
                Kind.ALLOCATION,
                str(ip),
                "",
                (Kind.ALLOCATION, str(ip), attr.handle_id, sequence),
                _age(attr.secondary.get(TIMESTAMP_ATTRIBUTE), now),
                cidr,
                ordinal,
                attr.handle_id,
                sequence,
                owner,
            )
            if owner is None:
                continue
            if owner not in snap.nodes:
                yield _with_reason(base, f"node {owner} no longer exists and nothing uses the address"), False
                continue
            if owner != view.node or view.kernel is None:
                continue
            if attr.secondary.get("type", "").endswith(TUNNEL_TYPE_SUFFIX):
                continue  # the node's tunnel address keeper owns it
            iface = view.kernel.routed.get(ip)
            if iface is not None:
                reason = f"no WorkloadEndpoint uses it, but the kernel routes it to {iface}: in use"
                yield _with_reason(base, reason), True
                continue
            yield _with_reason(base, "no WorkloadEndpoint uses it and the kernel routes it nowhere"), False


def _endpoints(view: GcView, now: float) -> Iterable[tuple[Candidate, bool]]:
    if view.kernel is None or view.node is None:
        return
    for ep in view.endpoints:
        if ep.node != view.node or ep.container_id is None or not ep.interface:
            continue
        if ep.interface in view.kernel.interfaces:
            continue
        yield Candidate(
            Kind.ENDPOINT,
            f"{ep.namespace}/{ep.name}",
            f"its interface {ep.interface} is gone from the kernel (container {ep.container_id})",
            (Kind.ENDPOINT, ep.key, ep.revision),
            None if ep.created is None else max(0.0, now - ep.created),
            endpoint=ep,
        ), False


def _blocks(snap: IpamSnapshot, now: float) -> list[Candidate]:
    out: list[Candidate] = []
    for cidr, block in snap.blocks.items():
        if block.problems():
            continue
        host = block.host
        if host is not None and host not in snap.nodes and block.is_empty:
            out.append(
                Candidate(Kind.BLOCK, f"{host}/{cidr}", f"empty block of host {host}, which has no Node",
                          (Kind.BLOCK, str(cidr)), block=cidr, host=host)
            )
        elif block.expire_cooldown(now, snap.config.ip_cooldown_seconds) is not block:
            out.append(
                Candidate(Kind.COOLDOWN, str(cidr), "addresses whose ipCooldownSeconds have passed",
                          (Kind.COOLDOWN, str(cidr)), block=cidr)
            )
    present = set(snap.blocks)
    for aff in snap.affinities:
        if aff.host not in snap.nodes and aff.cidr not in present:
            out.append(
                Candidate(Kind.BLOCK, f"{aff.host}/{aff.cidr}", f"affinity of host {aff.host}, which has "
                          "no Node, to a block that does not exist", (Kind.BLOCK, aff.host, str(aff.cidr)),
                          block=aff.cidr, host=aff.host)
            )
    return out


def _with_reason(c: Candidate, reason: str) -> Candidate:
    return dataclasses.replace(c, reason=reason)


def _age(stamp: str | None, now: float) -> float | None:
    if stamp is None:
        return None
    try:
        return max(0.0, now - parse_timestamp(stamp, "timestamp"))
    except InvalidRecord:
        return None
