"""IPAM garbage collection: what is garbage (`tortie.ipam.gc.plan`, pure) and one collector pass
(`tortie.node.ipam_gc.IpamCollector`) against the in-memory datastore, with the kernel given as a value.

The same passes run against sqlite and etcd, in several processes at once, in
tests/integration/test_ipam_gc_datastores.py; against a real kernel in tests/integration/test_ipam_gc_kill.py.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest

from tortie.datastore.memory import MemoryDatastore
from tortie.ipam import Ipam, keys
from tortie.ipam.audit import check
from tortie.ipam.gc import KernelView, Kind, plan
from tortie.ipam.snapshot import take_snapshot
from tortie.model.ipam_records import format_timestamp
from tortie.model.kinds import kind_info
from tortie.node.ipam_gc import IpamCollector, IpamGcLoop, read_view

NOW = 1_700_000_000.0
HOUR = 3600.0


def put(ds: MemoryDatastore, kind: str, name: str, spec: dict[str, Any], namespace: str | None = None,
        **meta: Any) -> None:
    metadata: dict[str, Any] = {"name": name, **meta}
    if namespace is not None:
        metadata["namespace"] = namespace
    ds.put(kind_info(kind).key(name, namespace),
           {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": metadata, "spec": spec})


@pytest.fixture
def ds() -> MemoryDatastore:
    store = MemoryDatastore()
    put(store, "IPPool", "p", {"cidr": "10.0.0.0/24", "blockSize": 28})
    put(store, "Node", "n1", {})
    put(store, "Node", "n2", {})
    return store


def alloc(ds: MemoryDatastore, handle: str, node: str, age: float | None = HOUR, **attrs: str) -> str:
    if age is not None:
        attrs["timestamp"] = format_timestamp(NOW - age)
    return str(Ipam(ds).auto_assign(1, 0, handle, node, {"namespace": "default", **attrs}).v4[0].ip)


def wep(ds: MemoryDatastore, name: str, node: str, ip: str, iface: str, container: str | None = "c",
        created: float = NOW - HOUR) -> None:
    annotations = {} if container is None else {"cni.tortie.io/container-id": container}
    put(ds, "WorkloadEndpoint", name, {"node": node, "interfaceName": iface, "ipNetworks": [f"{ip}/32"],
                                       "orchestrator": "cni", "workload": name, "endpoint": "eth0"},
        namespace="default", annotations=annotations, creationTimestamp=format_timestamp(created))


def kernel(interfaces: tuple[str, ...] = (), routed: dict[str, str] | None = None) -> KernelView:
    return KernelView(frozenset(("lo", "eth0", *interfaces)),
                      {ipaddress.ip_address(k): v for k, v in (routed or {}).items()})


def subjects(cands: Any) -> set[tuple[str, str]]:
    return {(c.kind.value, c.subject) for c in cands}


def test_what_is_garbage_and_what_is_in_use(ds: MemoryDatastore) -> None:
    used = alloc(ds, "net.used", "n1")
    wep(ds, "used", "n1", used, "tortaaa")
    routed = alloc(ds, "net.routed", "n1")  # no endpoint yet, but the kernel routes it: an ADD half way
    leaked = alloc(ds, "net.leaked", "n1")
    young = alloc(ds, "net.young", "n1", age=10)
    untimed = alloc(ds, "net.untimed", "n1", age=None)
    tunnel = alloc(ds, "vxlan-tunnel-addr-n1", "n1", type="vxlanTunnelAddress")
    theirs = alloc(ds, "net.theirs", "n2")  # another live node's: only its own pass judges it
    view = read_view(ds, "n1", lambda: kernel(("tortaaa",), {routed: "tortbbb", used: "tortaaa"}))
    got = plan(view, NOW, grace=900, first_seen={})
    assert subjects(got.due) == {("allocation", leaked)}
    assert subjects(got.waiting) == {("allocation", young), ("allocation", untimed)}
    assert subjects(got.kept) == {("allocation", routed)}
    assert "tortbbb" in got.kept[0].reason
    for ip in (used, tunnel, theirs):
        assert ("allocation", ip) not in subjects((*got.due, *got.waiting, *got.kept))
    # without a kernel (another host, or --cluster-only) nothing of a live node is judged
    assert plan(read_view(ds, None, None), NOW, 900, {}).due == ()
    # a collector that has seen the untimed one for the grace period releases it
    later = plan(view, NOW, grace=900, first_seen={got.waiting[1].identity: NOW - 901})
    assert ("allocation", untimed) in subjects(later.due)


def test_endpoint_whose_interface_vanished(ds: MemoryDatastore) -> None:
    ip = alloc(ds, "net.c", "n1")
    wep(ds, "gone", "n1", ip, "tortgone")
    wep(ds, "neutron", "n1", "10.0.1.9", "tapgone", container=None)  # not written by our CNI: never ours
    wep(ds, "fresh", "n1", "10.0.1.8", "tortfresh", created=NOW - 5)
    got = plan(read_view(ds, "n1", lambda: kernel()), NOW, 900, {})
    assert subjects(got.due) == {("endpoint", "default/gone")}
    assert subjects(got.waiting) == {("endpoint", "default/fresh")}
    assert "tortgone" in got.due[0].reason


def test_deleted_host_allocations_blocks_and_affinities(ds: MemoryDatastore) -> None:
    gone_ip = alloc(ds, "net.x", "n2")
    tunnel = alloc(ds, "vxlan-tunnel-addr-n2", "n2", type="vxlanTunnelAddress")
    borrowed_block = ipaddress.ip_network(f"{gone_ip}/28", strict=False)
    ds.delete(kind_info("Node").key("n2"))
    got = plan(read_view(ds, None, None), NOW, 900, {})
    assert subjects(got.due) >= {("allocation", gone_ip), ("allocation", tunnel)}
    assert all("n2 no longer exists" in c.reason for c in got.due if c.kind is Kind.ALLOCATION)
    report = IpamCollector(ds, None, None, grace=900, clock=lambda: NOW).run_once()
    assert subjects(report.done) == {
        ("allocation", gone_ip), ("allocation", tunnel), ("block", f"n2/{borrowed_block}")
    }
    assert ds.get(keys.block_key(borrowed_block)) is None
    assert ds.list(keys.host_affinity_prefix("n2"))[0] == []
    assert check(take_snapshot(ds)) == []


def test_a_pass_deletes_the_endpoint_then_releases_its_address(ds: MemoryDatastore) -> None:
    keep = alloc(ds, "net.keep", "n1")
    wep(ds, "keep", "n1", keep, "tortkeep")
    lost = alloc(ds, "net.lost", "n1")
    wep(ds, "lost", "n1", lost, "tortlost")
    collector = IpamCollector(ds, "n1", lambda: kernel(("tortkeep",), {keep: "tortkeep"}), grace=900,
                              clock=lambda: NOW)
    dry = collector.run_once(dry_run=True)
    assert subjects(dry.plan.due) == {("endpoint", "default/lost")} and dry.done == []
    assert ds.get(kind_info("WorkloadEndpoint").key("lost", "default")) is not None
    report = collector.run_once()
    assert subjects(report.done) == {("endpoint", "default/lost"), ("allocation", lost)}
    assert ds.get(kind_info("WorkloadEndpoint").key("lost", "default")) is None
    assert Ipam(ds).get_assignment(lost) is None and Ipam(ds).get_assignment(keep) is not None
    assert check(take_snapshot(ds)) == []
    assert collector.run_once().done == []


def test_guarded_release_leaves_an_address_handed_out_again(ds: MemoryDatastore) -> None:
    ip = alloc(ds, "net.a", "n1")
    ipam = Ipam(ds)
    kv = ipam.store.get_block(ipaddress.ip_network(f"{ip}/28", strict=False))
    assert kv is not None
    ordinal = int(ipaddress.ip_address(ip)) - int(kv.value.cidr.network_address)
    seen = kv.value.sequence_number_for_allocation[str(ordinal)]
    ipam.release_by_handle("net.a")
    ipam.assign_ip(ip, "net.a", "n1")  # the same address, same handle, allocated again
    assert ipam.writer.release_guarded(kv.value.cidr, {ordinal: ("net.a", seen)}, 0) == ()
    assert ipam.get_assignment(ip) is not None


def test_cooldowns_are_expired_by_a_pass(ds: MemoryDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
    ipam = Ipam(ds)
    ipam.configure(ip_cooldown_seconds=60)
    ip = alloc(ds, "net.c", "n1")
    monkeypatch.setattr(time, "time", lambda: NOW)
    ipam.release_by_handle("net.c")
    assert plan(read_view(ds, None, None), NOW + 59, 900, {}).due == ()
    monkeypatch.setattr(time, "time", lambda: NOW + 61)
    report = IpamCollector(ds, None, None, clock=lambda: NOW + 61).run_once()
    assert [c.kind for c in report.done] == [Kind.COOLDOWN]
    kv = ipam.store.get_block(ipaddress.ip_network(f"{ip}/28", strict=False))
    assert kv is not None and kv.value.cooling() == {}


def test_the_periodic_loop_collects_and_stops(ds: MemoryDatastore) -> None:
    ip = alloc(ds, "net.x", "n2")
    ds.delete(kind_info("Node").key("n2"))
    loop = IpamGcLoop(IpamCollector(ds, None, None, grace=0.0), interval=0.05)
    assert 0.03 < loop.period() < 0.07  # jittered +-20 %; one Node: no stretching
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while Ipam(ds).get_assignment(ip) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert Ipam(ds).get_assignment(ip) is None
    finally:
        loop.stop()
    assert not loop._thread.is_alive()
    loop.collector.nodes_seen = 5000
    assert loop.period() >= 0.8 * 5000 * 0.5  # large clusters: one pass per 0.5 s per Node
