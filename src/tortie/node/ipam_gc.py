"""IPAM garbage collection on a node: read, decide (`tortie.ipam.gc.plan`), re-validate, release.

    IpamCollector(ds, node, kernel_reader, grace).run_once(dry_run)   one pass (`tortie ipam gc`)
    IpamGcLoop(collector, interval).start() / stop()                 the periodic pass (`tortie node run`)

A pass reads `/calico/ipam/v2/`, the Nodes and the WorkloadEndpoints (three prefix reads), then this
host's kernel (`read_kernel`: interface names and the host routes of workload interfaces), and plans.
When something is due it acts in three phases, each on a FRESH read (the re-validation, as Calico's GC
re-checks a leak just before releasing it):

    1. endpoints whose interface is gone   delete, compare-and-swap on the revision judged
    2. allocations                          released per block under the host's CNI IPAM lock
                                            (`ipam_lock_file`), guarded by handle + sequence number
                                            (`BlockWriter.release_guarded`); the cool-down applies
    3. blocks of deleted hosts, cool-downs  `claims.release_empty_block` / affinity delete / rewrite

so an endpoint deleted in phase 1 frees its addresses in phase 2 of the same pass. Every write is a
compare-and-swap: several hosts (or a host and an operator's `tortie ipam gc`) may collect at once on
sqlite or etcd; the loser of a race skips that item ("changed meanwhile"). Nothing is written with
`dry_run`.

The periodic loop waits a jittered `interval` (+-20 %) between passes, stretched to one pass per
`PER_NODE_SPACING_S` x the number of Nodes so that the whole cluster reads at most a few passes per
second (docs/operations.md). It keeps `first_seen` between passes: garbage without a recorded age
waits one grace period from the pass that first saw it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tortie.cni.endpoint import CONTAINER_ANNOTATION
from tortie.cni.ipam_core import host_lock
from tortie.common.errors import Conflict, InvalidRecord, NotFound, TortieError
from tortie.common.ipfamily import IPNetwork
from tortie.datastore.api import Datastore
from tortie.ipam import keys
from tortie.ipam.allocator import Ipam
from tortie.ipam.claims import release_empty_block
from tortie.ipam.gc import Candidate, EndpointRecord, GcPlan, GcView, KernelView, Kind, plan
from tortie.ipam.snapshot import snapshot_from_kvs
from tortie.model.ipam_records import parse_timestamp

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 300.0
DEFAULT_GRACE_S = 900.0  # Calico's leakGracePeriod (15 min)
PER_NODE_SPACING_S = 0.5


def read_kernel(workload_prefixes: Sequence[str]) -> KernelView:
    """This network namespace's interfaces, and the host routes (/32, /128, no gateway) that lead to a
    workload interface (one whose name starts with one of `workload_prefixes`)."""
    import socket

    from tortie.kernel.rtnl import Rtnl

    with Rtnl() as rtnl:
        links = {link.ifindex: link.name for link in rtnl.links()}
        routed = {}
        for af in (socket.AF_INET, socket.AF_INET6):
            for route in rtnl.routes(af):
                name = links.get(route.oif or -1)
                host_route = route.dst.prefixlen == route.dst.max_prefixlen and route.gateway is None
                if host_route and name is not None and name.startswith(tuple(workload_prefixes)):
                    routed[route.dst.network_address] = name
    return KernelView(frozenset(links.values()), routed)


def read_view(ds: Datastore, node: str | None, kernel: Callable[[], KernelView] | None) -> GcView:
    """IPAM first, then Nodes and endpoints, then the kernel: whatever starts using an address after the
    IPAM read is seen by a later read (or is younger than the grace period)."""
    ipam_kvs, revision = ds.list(keys.IPAM_ROOT)
    node_kvs, _ = ds.list(keys.NODE_PREFIX)
    wep_kvs, _ = ds.list(keys.WEP_PREFIX)
    endpoints = []
    for kv in wep_kvs:
        namespace, _, name = kv.key[len(keys.WEP_PREFIX) :].partition("/")
        meta: Mapping[str, Any] = kv.value.get("metadata") or {}
        spec: Mapping[str, Any] = kv.value.get("spec") or {}
        container = (meta.get("annotations") or {}).get(CONTAINER_ANNOTATION)
        created = None
        with contextlib.suppress(InvalidRecord):
            stamp = meta.get("creationTimestamp")
            created = None if stamp is None else parse_timestamp(stamp, "creationTimestamp")
        endpoints.append(
            EndpointRecord(
                kv.key, kv.mod_revision, namespace, name, spec.get("node"), spec.get("interfaceName"),
                container if isinstance(container, str) else None, created,
            )
        )
    snap = snapshot_from_kvs([*ipam_kvs, *node_kvs, *wep_kvs], revision)
    return GcView(snap, tuple(endpoints), node, None if kernel is None or node is None else kernel())


@dataclass
class GcReport:
    plan: GcPlan
    dry_run: bool
    done: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[Candidate, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "released": [c.as_dict() for c in (self.plan.due if self.dry_run else self.done)],
            "skipped": [{**c.as_dict(), "why": why} for c, why in self.skipped],
            "waiting": [c.as_dict() for c in self.plan.waiting],
            "inUse": [c.as_dict() for c in self.plan.kept],
        }


@dataclass(eq=False)
class IpamCollector:
    """One node's collector (`node` None: only the cluster-wide part: deleted hosts, cool-downs)."""

    ds: Datastore
    node: str | None
    kernel: Callable[[], KernelView] | None
    grace: float = DEFAULT_GRACE_S
    lock_file: str = ""
    clock: Callable[[], float] = time.time
    # `tortie node delete`: only this host's garbage, as if its Node and endpoints were gone already
    deleting: str | None = None
    first_seen: dict[tuple[object, ...], float] = field(default_factory=dict, init=False)
    nodes_seen: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.ipam = Ipam(self.ds)

    def _plan(self) -> tuple[GcView, GcPlan]:
        view = read_view(self.ds, self.node, self.kernel)
        now = self.clock()
        self.nodes_seen = len(view.snapshot.nodes)
        if self.deleting is None:
            return view, plan(view, now, self.grace, self.first_seen)
        view = without_host(view, self.deleting)
        return view, plan(view, now, self.grace, self.first_seen).of_host(self.deleting)

    def run_once(self, dry_run: bool = False) -> GcReport:
        view, first = self._plan()
        now = self.clock()
        garbage = {c.identity for c in (*first.due, *first.waiting)}
        self.first_seen = {i: self.first_seen.get(i, now) for i in garbage}
        report = GcReport(first, dry_run)
        if dry_run or not first.due:
            return report
        for c in first.due:
            if c.kind is Kind.ENDPOINT:
                self._delete_endpoint(c, report)
        fresh = first
        if any(c.kind in (Kind.ENDPOINT, Kind.ALLOCATION) for c in first.due):
            _, fresh = self._plan()
            self._release_allocations([c for c in fresh.due if c.kind is Kind.ALLOCATION], view, report)
            _, fresh = self._plan()
        for c in fresh.due:
            if c.kind in (Kind.BLOCK, Kind.COOLDOWN):
                self._release_block(c, view, report)
        return report

    def _delete_endpoint(self, c: Candidate, report: GcReport) -> None:
        ep = c.endpoint
        assert ep is not None
        try:
            self.ds.delete(ep.key, expected_revision=ep.revision)
        except (Conflict, NotFound):
            report.skipped.append((c, "changed meanwhile"))
            return
        log.info("IPAM GC deleted endpoint wep=%s reason=%s", c.subject, c.reason)
        report.done.append(c)

    def _release_allocations(self, due: list[Candidate], view: GcView, report: GcReport) -> None:
        by_block: dict[IPNetwork, dict[int, Candidate]] = {}
        for c in due:
            if c.block is not None and c.ordinal is not None and c.handle is not None:
                by_block.setdefault(c.block, {})[c.ordinal] = c
        cooldown = view.snapshot.config.ip_cooldown_seconds
        with host_lock(self.lock_file):
            for cidr, wanted in by_block.items():
                expected = {o: (str(c.handle), c.sequence) for o, c in wanted.items()}
                freed = set(self.ipam.writer.release_guarded(cidr, expected, cooldown))
                for o, c in wanted.items():
                    if o in freed:
                        log.info("IPAM GC released ip=%s handle=%s reason=%s", c.subject, c.handle, c.reason)
                        report.done.append(c)
                    else:
                        report.skipped.append((c, "changed meanwhile"))

    def _release_block(self, c: Candidate, view: GcView, report: GcReport) -> None:
        assert c.block is not None
        if c.kind is Kind.COOLDOWN:
            ok = self.ipam.writer.expire_cooldown(c.block, view.snapshot.config.ip_cooldown_seconds)
        elif c.block in view.snapshot.blocks and c.host is not None:
            ok = release_empty_block(self.ipam.store, c.host, c.block)
        else:
            ok = c.host is not None and self.ipam.store.delete_affinity(c.host, c.block)
        if ok:
            log.info("IPAM GC %s block=%s reason=%s", c.kind.value, c.subject, c.reason)
            report.done.append(c)
        else:
            report.skipped.append((c, "changed meanwhile"))


def without_host(view: GcView, host: str) -> GcView:
    """`view` as it will be once `host`'s Node and its endpoints are deleted."""
    snap = view.snapshot
    users = {}
    for ip, found in snap.users.items():
        left = tuple(u for u in found if u.node != host)
        if left:
            users[ip] = left
    snap = dataclasses.replace(snap, nodes=snap.nodes - {host}, users=users)
    endpoints = tuple(e for e in view.endpoints if e.node != host)
    return dataclasses.replace(view, snapshot=snap, endpoints=endpoints)


class IpamGcLoop:
    """Runs `collector.run_once()` on its own thread every `interval` seconds (see the module)."""

    def __init__(self, collector: IpamCollector, interval: float = DEFAULT_INTERVAL_S) -> None:
        self.collector = collector
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ipam-gc", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def period(self) -> float:
        base = max(self.interval, self.collector.nodes_seen * PER_NODE_SPACING_S)
        return base * random.uniform(0.8, 1.2)

    def _loop(self) -> None:
        while not self._stop.wait(self.period()):
            try:
                report = self.collector.run_once()
            except TortieError as exc:
                log.warning("IPAM GC pass failed (retried next period) error=%s", exc)
                continue
            if report.done or report.plan.waiting:
                log.info(
                    "IPAM GC pass node=%s done=%d skipped=%d waiting=%d",
                    self.collector.node, len(report.done), len(report.skipped), len(report.plan.waiting),
                )


def foreign_kernel(ds: Datastore, node: str) -> str | None:
    """Why this host's kernel is not `node`'s (None when it may be): a Node with a registered BGP address
    must have one of them on a local interface. A collector comparing another host's allocations with
    this kernel would take them all for garbage."""
    from tortie.kernel.rtnl import Rtnl

    kv = ds.get(keys.node_key(node))
    bgp: Mapping[str, Any] = ((kv.value.get("spec") or {}).get("bgp") or {}) if kv is not None else {}
    want = [str(bgp[k]).split("/")[0] for k in ("ipv4Address", "ipv6Address") if bgp.get(k)]
    if not want:
        return None
    with Rtnl() as rtnl:
        local = {str(a.address.ip) for a in rtnl.addrs()}
    if any(a in local for a in want):
        return None
    return f"none of node {node}'s addresses ({', '.join(want)}) is on this host"
