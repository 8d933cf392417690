"""IPAM garbage collection and `tortie node delete` on real datastores (a sqlite file, a real etcd).

* Four processes collect at the same moment (a barrier), each with its own datastore connection, the
  garbage of two deleted hosts (60 addresses in 5 blocks, tunnel addresses among them): every address
  is released exactly once over all of them (compare-and-swap decides), every block of those hosts is
  given back, the live hosts' addresses are untouched and `tortie ipam check` is clean.
* `tortie node delete` (the CLI, -o json): --dry-run changes nothing and lists what would go; then the
  Node, its endpoints, host endpoint, BGP peer, CalicoNodeStatus, per-node BGP and Felix
  configuration, its addresses (one borrowed from another host's block, its tunnel address) and
  blocks are gone, another host's objects are not, and `tortie ipam check` is clean.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from typing import Any

import pytest

from tortie.datastore.api import Datastore
from tortie.datastore.url import open_datastore
from tortie.ipam import Ipam, keys
from tortie.ipam.audit import check
from tortie.ipam.snapshot import take_snapshot
from tortie.model.ipam_records import format_timestamp
from tortie.model.kinds import kind_info

COLLECTORS = 4
TIMEOUT_S = 240


def put(ds: Datastore, kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> None:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    ds.put(kind_info(kind).key(name, namespace),
           {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec})


def endpoint(ds: Datastore, name: str, node: str, ip: str) -> None:
    put(ds, "WorkloadEndpoint", name,
        {"node": node, "interfaceName": f"tort{name}", "ipNetworks": [f"{ip}/32"], "workload": name,
         "orchestrator": "cni", "endpoint": "eth0"}, "default")


def allocate(ds: Datastore, handle: str, node: str, **attrs: str) -> str:
    pod = handle.split(".", 1)[-1]  # the endpoint named so (if any) is this pod's
    attrs = {"namespace": "default", "pod": pod, "timestamp": format_timestamp(0), **attrs}
    return str(Ipam(ds).auto_assign(1, 0, handle, node, attrs).v4[0].ip)


def collect_worker(url: str, barrier: Any, out: Any) -> None:
    from tortie.node.ipam_gc import IpamCollector

    ds = open_datastore(url)
    try:
        barrier.wait()
        try:
            report = IpamCollector(ds, None, None, grace=0.0).run_once()
            out.put(([(c.kind.value, c.subject) for c in report.done], None))
        except Exception as exc:
            out.put(([], f"{type(exc).__name__}: {exc}"))
    finally:
        ds.close()


def assert_concurrent_collection(url: str) -> None:
    ds = open_datastore(url)
    try:
        put(ds, "IPPool", "pool", {"cidr": "10.30.0.0/22", "blockSize": 28})
        for n in ("live1", "live2", "gone1", "gone2"):
            put(ds, "Node", n, {})
        gone = [allocate(ds, f"net.g1-{i}", "gone1") for i in range(40)]
        gone += [allocate(ds, f"net.g2-{i}", "gone2") for i in range(19)]
        gone.append(allocate(ds, "vxlan-tunnel-addr-gone2", "gone2", type="vxlanTunnelAddress"))
        live = []
        for i in range(10):
            node = f"live{i % 2 + 1}"
            ip = allocate(ds, f"net.l{i}", node)
            endpoint(ds, f"l{i}", node, ip)
            live.append(ip)
        gone_blocks = {a.cidr for a in take_snapshot(ds).affinities if a.host.startswith("gone")}
        assert len(gone_blocks) == 5
        for n in ("gone1", "gone2"):
            ds.delete(kind_info("Node").key(n))
    finally:
        ds.close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(COLLECTORS)
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(target=collect_worker, args=(url, barrier, out), daemon=True) for _ in range(COLLECTORS)
    ]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=TIMEOUT_S) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    assert [err for _, err in results if err] == []
    done = [item for items, _ in results for item in items]
    released = [subject for kind, subject in done if kind == "allocation"]
    assert sorted(released) == sorted(gone)  # each exactly once, over all four collectors
    blocks_released = {subject.split("/", 1)[1] for kind, subject in done if kind == "block"}
    assert blocks_released == {str(b) for b in gone_blocks}
    ds = open_datastore(url)
    try:
        snap = take_snapshot(ds)
        assert check(snap) == []
        assert not any(str(c) in {str(b) for b in gone_blocks} for c in snap.blocks)
        held = {str(b.address(o)) for b in snap.blocks.values() for o in range(b.size) if b.attribute_of(o)}
        assert held == set(live)
        assert ds.list(keys.HOST_ROOT + "gone1/")[0] == [] and ds.list(keys.HOST_ROOT + "gone2/")[0] == []
    finally:
        ds.close()


def tortie(url: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "tortie.cli.main", "--datastore", url, *args, "-o", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def released_addresses(report: dict[str, Any]) -> set[str]:
    return {r["subject"] for r in report["ipam"]["released"] if r["kind"] == "allocation"}


def assert_node_delete(url: str) -> None:
    ds = open_datastore(url)
    try:
        put(ds, "IPPool", "pool", {"cidr": "10.40.0.0/24", "blockSize": 28})
        put(ds, "Node", "keep", {})
        put(ds, "Node", "old", {"bgp": {"ipv4Address": "192.0.2.9/24"}})
        ipam = Ipam(ds)
        kept = allocate(ds, "net.k", "keep")
        endpoint(ds, "k", "keep", kept)
        a, b = allocate(ds, "net.a", "old"), allocate(ds, "net.b", "old")
        endpoint(ds, "a", "old", a)
        endpoint(ds, "b", "old", b)
        keep_block = next(c for c, blk in take_snapshot(ds).blocks.items() if blk.host == "keep")
        borrowed = str(keep_block.network_address + 9)  # an address of old's in keep's block
        ipam.assign_ip(borrowed, "net.borrowed", "old", {"namespace": "default", "pod": "borrowed"})
        assert ipam.get_assignment(borrowed) is not None
        endpoint(ds, "borrowed", "old", borrowed)
        tunnel = allocate(ds, "vxlan-tunnel-addr-old", "old", type="vxlanTunnelAddress")
        node = ds.get(kind_info("Node").key("old"))
        assert node is not None
        ds.put(node.key, {**node.value, "spec": {**node.value["spec"], "ipv4VXLANTunnelAddr": tunnel}})
        put(ds, "HostEndpoint", "old-eth0", {"node": "old", "interfaceName": "eth0"})
        put(ds, "HostEndpoint", "keep-eth0", {"node": "keep", "interfaceName": "eth0"})
        put(ds, "BGPPeer", "old-tor", {"node": "old", "peerIP": "192.0.2.1", "asNumber": 64512})
        put(ds, "BGPPeer", "global-tor", {"peerIP": "192.0.2.2", "asNumber": 64512})
        put(ds, "BGPConfiguration", "node.old", {"logSeverityScreen": "Info"})
        put(ds, "FelixConfiguration", "node.old", {"logSeverityScreen": "Info"})
        put(ds, "FelixConfiguration", "node.keep", {"logSeverityScreen": "Info"})
        put(ds, "CalicoNodeStatus", "old-status", {"node": "old", "classes": ["Agent"]})
        before = take_snapshot(ds)
    finally:
        ds.close()

    dry = tortie(url, "node", "delete", "old", "--dry-run")
    assert dry["existed"] and dry["dryRun"]
    assert set(dry["deleted"]) == {
        "Node old", "WorkloadEndpoint default/a", "WorkloadEndpoint default/b",
        "WorkloadEndpoint default/borrowed", "HostEndpoint old-eth0", "BGPPeer old-tor",
        "CalicoNodeStatus old-status", "BGPConfiguration node.old", "FelixConfiguration node.old",
    }
    assert released_addresses(dry) == {a, b, borrowed, tunnel}
    ds = open_datastore(url)
    try:
        assert take_snapshot(ds) == before  # the dry run wrote nothing
    finally:
        ds.close()

    done = tortie(url, "node", "delete", "old")
    assert set(done["deleted"]) == set(dry["deleted"]) and done["skipped"] == []
    assert released_addresses(done) == {a, b, borrowed, tunnel}
    ds = open_datastore(url)
    try:
        snap = take_snapshot(ds)
        assert check(snap) == []
        assert snap.nodes == frozenset({"keep"})
        assert ds.list(keys.host_affinity_prefix("old"))[0] == []
        assert all(blk.host != "old" for blk in snap.blocks.values()) and keep_block in snap.blocks
        ipam = Ipam(ds)
        assert [ipam.get_assignment(ip) for ip in (a, b, borrowed, tunnel)] == [None] * 4
        owner = ipam.get_assignment(kept)
        assert owner is not None and owner.handle == "net.k"
        for kind, name in (("HostEndpoint", "keep-eth0"), ("BGPPeer", "global-tor"),
                           ("FelixConfiguration", "node.keep")):
            assert ds.get(kind_info(kind).key(name)) is not None, name
        for kind, name in (("HostEndpoint", "old-eth0"), ("BGPPeer", "old-tor"),
                           ("FelixConfiguration", "node.old"), ("BGPConfiguration", "node.old"),
                           ("CalicoNodeStatus", "old-status")):
            assert ds.get(kind_info(kind).key(name)) is None, name
    finally:
        ds.close()
    again = tortie(url, "node", "delete", "old")  # idempotent: nothing left to do
    assert not again["existed"] and again["deleted"] == [] and again["ipam"]["released"] == []


def test_concurrent_collectors_sqlite(sqlite_url: str) -> None:
    assert_concurrent_collection(sqlite_url)


@pytest.mark.etcd
def test_concurrent_collectors_etcd(etcd_url: str) -> None:
    assert_concurrent_collection(etcd_url)


def test_node_delete_sqlite(sqlite_url: str) -> None:
    assert_node_delete(sqlite_url)


@pytest.mark.etcd
def test_node_delete_etcd(etcd_url: str) -> None:
    assert_node_delete(etcd_url)
