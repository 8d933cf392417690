"""IPAM audit (`check`, `release_orphan_blocks`) and the `show` report, over the memory datastore."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tortie.datastore.memory import MemoryDatastore
from tortie.ipam import Ipam, keys
from tortie.ipam.audit import check, release_orphan_blocks
from tortie.ipam.report import block_usage, describe_ip, pool_usage
from tortie.ipam.snapshot import take_snapshot
from tortie.model.ipam_block import Block
from tortie.model.ipam_records import Affinity, AffinityState, encode_affinity, encode_block
from tortie.model.kinds import kind_info


def put_pool(ds: MemoryDatastore, name: str, cidr: str, **spec: Any) -> None:
    ds.put(
        kind_info("IPPool").key(name),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, **spec},
        },
    )


def put_node(ds: MemoryDatastore, name: str, spec: dict[str, Any] | None = None) -> None:
    ds.put(
        kind_info("Node").key(name),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": spec or {},
        },
    )


def put_wep(ds: MemoryDatastore, ns: str, name: str, node: str, pod: str, *ips: str) -> None:
    spec = {"node": node, "pod": pod, "ipNetworks": [f"{i}/{32 if ':' not in i else 128}" for i in ips]}
    ds.put(
        kind_info("WorkloadEndpoint").key(name, ns),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        },
    )


def kinds(ds: MemoryDatastore) -> list[tuple[str, str]]:
    return [(f.kind, f.subject) for f in check(take_snapshot(ds))]


@pytest.fixture
def ds() -> MemoryDatastore:
    d = MemoryDatastore()
    put_pool(d, "p", "10.0.0.0/24", blockSize=28)
    put_node(d, "n1")
    put_node(d, "n2")
    return d


def test_clean_cluster_has_no_findings(ds: MemoryDatastore) -> None:
    ipam = Ipam(ds)
    a = ipam.auto_assign(1, 0, "net.a", "n1", {"namespace": "ns", "pod": "a"}).v4[0]
    t = ipam.auto_assign(1, 0, "ipip-tunnel-addr-n2", "n2", use="Tunnel").v4[0]
    put_wep(ds, "ns", "n1-k8s-a-eth0", "n1", "a", str(a.ip))
    put_node(ds, "n2", {"bgp": {"ipv4IPIPTunnelAddr": str(t.ip)}})
    assert check(take_snapshot(ds)) == []


def test_leaked_and_unallocated_and_shared_addresses(ds: MemoryDatastore) -> None:
    ipam = Ipam(ds)
    leaked = ipam.auto_assign(1, 0, "net.gone", "n1", {"namespace": "ns", "pod": "gone"}).v4[0]
    used = ipam.auto_assign(1, 0, "net.b", "n1", {"namespace": "ns", "pod": "b"}).v4[0]
    put_wep(ds, "ns", "b", "n1", "b", str(used.ip))
    put_wep(ds, "ns", "c", "n1", "b", str(used.ip))  # same address in two endpoints
    put_wep(ds, "ns", "d", "n1", "d", "10.0.0.250")  # in the pool, never allocated
    put_wep(ds, "ns", "e", "n1", "e", "192.168.9.9")  # outside every pool: not IPAM's business
    found = kinds(ds)
    assert ("leaked-address", str(leaked.ip)) in found
    assert ("address-shared", str(used.ip)) in found
    assert ("unallocated-address", "10.0.0.250") in found
    assert not any(s == "192.168.9.9" for _, s in found)
    assert ("leaked-address", str(used.ip)) not in found


def test_attribute_mismatch(ds: MemoryDatastore) -> None:
    a = Ipam(ds).auto_assign(1, 0, "net.a", "n1", {"namespace": "ns", "pod": "a"}).v4[0]
    put_wep(ds, "other-ns", "a", "n2", "a", str(a.ip))
    msgs = [f.message for f in check(take_snapshot(ds)) if f.kind == "attribute-mismatch"]
    assert len(msgs) == 2 and any("namespace" in m for m in msgs) and any("node" in m for m in msgs)


def test_handle_mismatch_and_missing_handle(ds: MemoryDatastore) -> None:
    ipam = Ipam(ds)
    a = ipam.auto_assign(2, 0, "h-a", "n1").v4
    ipam.auto_assign(1, 0, "h-b", "n1")
    put_wep(ds, "ns", "x", "n1", "x", *(str(x.ip) for x in a))
    ds.put(keys.handle_key("h-a"), {"block": {str(a[0].network): 5}, "deleted": False})
    kv = ds.get(keys.handle_key("h-b"))
    assert kv is not None
    ds.delete(kv.key)
    found = kinds(ds)
    assert ("handle-mismatch", "h-a") in found
    assert ("missing-handle", "h-b") in found
    # release_by_handle still frees everything a (over-counting) record names
    assert len(ipam.release_by_handle("h-a")) == 2 and ds.get(keys.handle_key("h-a")) is None


def test_orphan_blocks_are_reported_and_released_when_empty(ds: MemoryDatastore) -> None:
    ipam = Ipam(ds)
    gone_empty = ipam.auto_assign(1, 0, "x", "n3").v4[0].network
    ipam.release_by_handle("x")
    busy = ipam.auto_assign(1, 0, "y", "n4").v4[0]
    put_wep(ds, "ns", "y", "n4", "y", str(busy.ip))
    found = kinds(ds)
    assert ("orphan-block", str(gone_empty)) in found and ("orphan-block", str(busy.network)) in found
    assert release_orphan_blocks(ds) == [gone_empty]
    assert ds.get(keys.block_key(gone_empty)) is None
    assert ds.get(keys.affinity_key("n3", gone_empty)) is None
    assert ds.get(keys.block_key(busy.network)) is not None  # still in use: kept
    assert ipam.release_orphan_blocks() == []
    assert [k for k, _ in kinds(ds)] == ["orphan-block"]


def test_affinity_findings_and_malformed_objects(ds: MemoryDatastore) -> None:
    c1, c2, c3 = (ipaddress.ip_network(f"10.0.0.{i}/28") for i in (0, 16, 32))
    ds.create(keys.affinity_key("n1", c1), encode_affinity(Affinity("n1", c1, AffinityState.PENDING)))
    ds.create(keys.affinity_key("n1", c2), encode_affinity(Affinity("n1", c2, AffinityState.CONFIRMED)))
    ds.create(keys.block_key(c3), encode_block(Block.new(c3, "host:n2")))
    broken = Block.new(ipaddress.ip_network("10.0.0.48/28"), None)
    ds.create(keys.block_key(broken.cidr), {**encode_block(broken), "unallocated": [0, 0]})
    ds.create(keys.block_key(ipaddress.ip_network("10.0.0.64/28")), {"cidr": "nonsense"})
    found = kinds(ds)
    assert ("stale-affinity", f"n1/{c1}") in found
    assert ("stale-affinity", f"n1/{c2}") in found
    assert ("block-without-affinity", str(c3)) in found
    assert ("block-inconsistent", "10.0.0.48/28") in found
    assert ("invalid-record", keys.block_key(ipaddress.ip_network("10.0.0.64/28"))) in found


def test_report_usage_and_describe_ip(ds: MemoryDatastore) -> None:
    ds.put(
        kind_info("IPReservation").key("r"),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPReservation",
            "metadata": {"name": "r"},
            "spec": {"reservedCIDRs": ["10.0.0.240/28", "10.0.0.250/32"]},
        },
    )
    ipam = Ipam(ds)
    n2 = ipam.auto_assign(2, 0, "h2", "n2").v4
    n1 = ipam.auto_assign(18, 0, "h1", "n1", {"pod": "p"}, max_blocks_per_host=1).v4
    snap = take_snapshot(ds)
    (pool,) = pool_usage(snap)
    assert (pool.total, pool.in_use, pool.reserved, pool.blocks) == (256, 20, 16, 2)
    assert pool.free == 256 - 20 - 16
    blocks = {b.cidr: b for b in block_usage(snap)}
    assert blocks[n2[0].network].borrowed == 2 and blocks[n2[0].network].in_use == 4
    assert blocks[n1[0].network].affinity == "host:n1" and blocks[n1[0].network].free == 0
    rep = describe_ip(snap, n1[0].ip)
    assert (rep.allocated, rep.handle, rep.pool, rep.block_affinity) == (True, "h1", "p", "host:n1")
    assert rep.attrs == {"pod": "p", "node": "n1"}
    free = describe_ip(snap, ipaddress.ip_address("10.0.0.250"))
    assert (free.allocated, free.reserved, free.block) == (False, True, None)
    assert describe_ip(snap, ipaddress.ip_address("10.0.0.250")).as_dict()["reserved"] is True
