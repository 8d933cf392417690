"""`tortie.ipam.Ipam` against the in-memory datastore: Calico's allocation semantics."""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

import pytest

from tortie.common import ipfamily
from tortie.datastore.memory import MemoryDatastore
from tortie.ipam import (
    AddressInUse,
    AddressNotAvailable,
    InvalidIpamRequest,
    Ipam,
    NoSuitablePool,
    PoolExhausted,
    keys,
)
from tortie.ipam.claims import ClaimOutcome, claim_block, complete_pending
from tortie.ipam.store import IpamStore
from tortie.model.ipam_block import Block
from tortie.model.ipam_records import Affinity, AffinityState, encode_affinity, encode_block
from tortie.model.kinds import kind_info

V4 = ipaddress.IPv4Network


def put_pool(ds: MemoryDatastore, name: str, cidr: str, **spec: Any) -> None:
    obj = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, **spec},
    }
    ds.put(kind_info("IPPool").key(name), obj)


def put_node(ds: MemoryDatastore, name: str, labels: dict[str, str] | None = None) -> None:
    obj = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
    }
    ds.put(kind_info("Node").key(name), obj)


def put_reservation(ds: MemoryDatastore, name: str, *cidrs: str) -> None:
    obj = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPReservation",
        "metadata": {"name": name},
        "spec": {"reservedCIDRs": list(cidrs)},
    }
    ds.put(kind_info("IPReservation").key(name), obj)


@pytest.fixture
def ds() -> MemoryDatastore:
    return MemoryDatastore()


@pytest.fixture
def ipam(ds: MemoryDatastore) -> Ipam:
    return Ipam(ds)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def host_blocks(ds: MemoryDatastore, host: str) -> dict[str, str]:
    kvs, _ = ds.list(keys.host_affinity_prefix(host))
    return {kv.key.rsplit("/", 1)[1]: kv.value["state"] for kv in kvs}


# Per family: a pool of 32 blocks of 8 addresses, to run the block rules over IPv4 and IPv6 alike.
SMALL_BLOCKS = {ipfamily.V4: ("10.0.0.0/24", 29), ipfamily.V6: ("fd00::/120", 125)}
BOTH = pytest.mark.parametrize("fam", ipfamily.FAMILIES, ids=["ipv4", "ipv6"])


def put_small_blocks_pool(ds: MemoryDatastore, fam: ipfamily.Family) -> None:
    cidr, size = SMALL_BLOCKS[fam]
    put_pool(ds, "p", cidr, blockSize=size)


def assign(ipam: Ipam, fam: ipfamily.Family, count: int, handle: str, host: str, **kw: Any) -> list[Any]:
    """`count` addresses of family `fam` (auto_assign's list of that family)."""
    res = ipam.auto_assign(*((count, 0) if fam is ipfamily.V4 else (0, count)), handle, host, **kw)
    return res.v4 if fam is ipfamily.V4 else res.v6


# ----------------------------------------------------------------------------- claiming and affinity


def test_first_allocation_claims_a_block_in_calico_layout(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    res = ipam.auto_assign(1, 0, "net.c1", "n1", {"namespace": "ns", "pod": "pod1"})
    (iface,) = res.v4
    assert res.v6 == []
    assert iface.network.prefixlen == 28  # block-masked, like Calico
    block = iface.network
    assert host_blocks(ds, "n1") == {f"{block.network_address}-28": "confirmed"}
    kv = ds.get(f"/calico/ipam/v2/assignment/ipv4/block/{block.network_address}-28")
    assert kv is not None
    value = kv.value
    assert value["cidr"] == str(block) and value["affinity"] == "host:n1"
    assert set(value) >= {"allocations", "unallocated", "attributes", "sequenceNumber", "deleted"}
    ordinal = int(iface.ip) - int(block.network_address)
    assert value["allocations"][ordinal] == 0
    assert value["attributes"][0] == {
        "handle_id": "net.c1",
        "secondary": {"namespace": "ns", "pod": "pod1", "node": "n1"},
    }
    assert ordinal not in value["unallocated"]
    handle = ds.get("/calico/ipam/v2/handle/net.c1")
    assert handle is not None and handle.value["block"] == {str(block): 1}


def test_same_host_reuses_its_block_and_hosts_diverge(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/16")
    a = [ipam.auto_assign(1, 0, f"h{i}", "n1").v4[0] for i in range(5)]
    assert len({x.network for x in a}) == 1 and len({x.ip for x in a}) == 5
    b = ipam.auto_assign(1, 0, "other", "n2").v4[0]
    assert b.network != a[0].network


@BOTH
def test_full_block_leads_to_claiming_another(ds: MemoryDatastore, ipam: Ipam, fam: ipfamily.Family) -> None:
    put_small_blocks_pool(ds, fam)
    got = assign(ipam, fam, 12, "h", "n1")
    assert len({g.ip for g in got}) == 12
    assert len({g.network for g in got}) == 2
    assert len(host_blocks(ds, "n1")) == 2


@BOTH
def test_max_blocks_per_host_then_borrow(ds: MemoryDatastore, ipam: Ipam, fam: ipfamily.Family) -> None:
    put_small_blocks_pool(ds, fam)
    # Calico's configuration only takes a cap with strict affinity; the per-request cap (Calico's
    # AutoAssignArgs.MaxBlocksPerHost) limits claiming while borrowing stays allowed
    n2 = assign(ipam, fam, 2, "h2", "n2")
    n1 = assign(ipam, fam, 10, "h1", "n1", max_blocks_per_host=1)
    assert len(host_blocks(ds, "n1")) == 1  # the cap holds
    own = n1[0].network
    borrowed = [x for x in n1 if x.network != own]
    assert len(borrowed) == 2 and all(x.network == n2[0].network for x in borrowed)
    owner = ipam.get_assignment(borrowed[0].ip)
    assert owner is not None and owner.borrowed and owner.block_host == "n2" and owner.attrs["node"] == "n1"


@BOTH
def test_strict_affinity_forbids_borrowing_and_rolls_back(
    ds: MemoryDatastore, ipam: Ipam, fam: ipfamily.Family
) -> None:
    put_small_blocks_pool(ds, fam)
    ipam.configure(strict_affinity=True, max_blocks_per_host=1)
    assign(ipam, fam, 2, "h2", "n2")
    before = {kv.key: kv.value for kv in ds.list(keys.BLOCK_ROOT)[0]}
    with pytest.raises(PoolExhausted, match="strictAffinity"):
        assign(ipam, fam, 10, "h1", "n1")
    after = {kv.key: kv.value["allocations"] for kv in ds.list(keys.BLOCK_ROOT)[0]}
    assert ipam.ips_by_handle("h1") == [] and ds.get(keys.handle_key("h1")) is None
    # n1's claimed block stays affine (and empty); n2's block is untouched
    assert {k: v["allocations"] for k, v in before.items()} == {k: after[k] for k in before}
    assert all(a is None for k, v in after.items() if k not in before for a in v)
    assert assign(ipam, fam, 8, "h1", "n1")  # exactly the one block's worth fits


def test_max_blocks_zero_means_calico_default_of_20(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/27", blockSize=32)  # 32 one-address blocks
    ipam.configure(strict_affinity=True)
    assert len(ipam.auto_assign(20, 0, "h", "n1").v4) == 20
    with pytest.raises(PoolExhausted):
        ipam.auto_assign(1, 0, "h-more", "n1")
    assert len(host_blocks(ds, "n1")) == 20


def test_auto_allocate_blocks_off_uses_existing_affine_blocks_only(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=30)
    ipam.auto_assign(1, 0, "first", "n1")
    ipam.configure(strict_affinity=True, auto_allocate_blocks=False)
    assert len(ipam.auto_assign(3, 0, "h", "n1").v4) == 3
    with pytest.raises(PoolExhausted):
        ipam.auto_assign(1, 0, "h2", "n1")
    with pytest.raises(PoolExhausted):
        ipam.auto_assign(1, 0, "h3", "n2")


def test_configure_validates(ipam: Ipam) -> None:
    with pytest.raises(InvalidIpamRequest):
        ipam.configure(auto_allocate_blocks=False)  # without strict affinity nothing could be allocated
    with pytest.raises(InvalidIpamRequest):
        ipam.configure(max_blocks_per_host=-1)
    capped = ipam.configure(max_blocks_per_host=2)  # Calico has no rule tying the cap to strict affinity
    assert (capped.strict_affinity, capped.max_blocks_per_host) == (False, 2)
    cfg = ipam.configure(strict_affinity=True, max_blocks_per_host=3)
    assert (cfg.strict_affinity, cfg.max_blocks_per_host, cfg.auto_allocate_blocks) == (True, 3, True)
    assert ipam.get_config() == cfg


def test_claim_race_past_the_limit_yields(ds: MemoryDatastore) -> None:
    store = IpamStore(ds)
    x, y = net("10.0.0.0/28"), net("10.0.0.16/28")
    # a concurrent claimer of the same host holds a young pending affinity for block x
    ds.create(
        keys.affinity_key("n1", x),
        encode_affinity(Affinity("n1", x, AffinityState.PENDING, claim_time=time.time())),
    )
    assert claim_block(store, "n1", y, max_blocks=1) is ClaimOutcome.OVER_LIMIT
    assert ds.get(keys.affinity_key("n1", y)) is None  # backed off cleanly
    young = store.get_affinity("n1", x)
    assert young is not None
    assert complete_pending(store, young, 1) is ClaimOutcome.SKIPPED  # someone else's claim in flight
    assert ds.get(keys.block_key(x)) is None


def test_claim_of_a_block_a_sibling_is_claiming_waits_for_it(ds: MemoryDatastore) -> None:
    store = IpamStore(ds)
    x = net("10.0.0.0/28")
    ds.create(
        keys.affinity_key("n1", x),
        encode_affinity(Affinity("n1", x, AffinityState.PENDING, claim_time=time.time())),
    )

    def sibling_finishes() -> None:
        time.sleep(0.05)
        ds.create(keys.block_key(x), encode_block(Block.new(x, "host:n1")))
        cur = ds.get(keys.affinity_key("n1", x))
        assert cur is not None
        ds.update(cur.key, {**cur.value, "state": "confirmed"}, expected_revision=cur.mod_revision)

    t = threading.Thread(target=sibling_finishes)
    t.start()
    try:
        assert claim_block(store, "n1", x, max_blocks=None) is ClaimOutcome.CLAIMED
    finally:
        t.join()
    z = net("10.0.0.32/28")
    ds.create(
        keys.affinity_key("n1", z),
        encode_affinity(Affinity("n1", z, AffinityState.PENDING, claim_time=time.time())),
    )
    t = threading.Thread(target=lambda: (time.sleep(0.05), ds.delete(keys.affinity_key("n1", z))))
    t.start()
    try:
        assert claim_block(store, "n1", z, max_blocks=None) is ClaimOutcome.LOST  # the sibling gave up
    finally:
        t.join()


def test_young_pending_affinity_is_left_to_its_claimer(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    x = net("10.0.0.64/28")
    ds.create(
        keys.affinity_key("n1", x),
        encode_affinity(Affinity("n1", x, AffinityState.PENDING, claim_time=time.time())),
    )
    assert ipam.auto_assign(1, 0, "h", "n1").v4[0].network != x
    assert host_blocks(ds, "n1")["10.0.0.64-28"] == "pending"


def test_claim_lost_to_another_host(ds: MemoryDatastore) -> None:
    store = IpamStore(ds)
    cidr = net("10.0.0.0/28")
    ds.create(keys.block_key(cidr), encode_block(Block.new(cidr, "host:n2")))
    assert claim_block(store, "n1", cidr, None) is ClaimOutcome.LOST
    assert ds.get(keys.affinity_key("n1", cidr)) is None


def test_pending_affinity_left_by_a_crash_is_completed(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    cidr = net("10.0.0.64/28")
    ds.create(keys.affinity_key("n1", cidr), encode_affinity(Affinity("n1", cidr, AffinityState.PENDING)))
    got = ipam.auto_assign(1, 0, "h", "n1").v4[0]
    assert got.network == cidr
    assert host_blocks(ds, "n1") == {"10.0.0.64-28": "confirmed"}


def test_stale_pending_affinity_on_someone_elses_block_is_dropped(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    cidr = net("10.0.0.64/28")
    ds.create(keys.block_key(cidr), encode_block(Block.new(cidr, "host:n2")))
    ds.create(keys.affinity_key("n1", cidr), encode_affinity(Affinity("n1", cidr, AffinityState.PENDING)))
    got = ipam.auto_assign(1, 0, "h", "n1").v4[0]
    assert got.network != cidr
    assert "10.0.0.64-28" not in host_blocks(ds, "n1")


def test_confirmed_affinity_with_missing_block_recreates_it(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    cidr = net("10.0.0.32/28")
    ds.create(keys.affinity_key("n1", cidr), encode_affinity(Affinity("n1", cidr, AffinityState.CONFIRMED)))
    assert ipam.auto_assign(1, 0, "h", "n1").v4[0].network == cidr


# ----------------------------------------------------------------------------- pools


def test_disabled_pools_are_never_used(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "a", "10.0.0.0/24", disabled=True)
    put_pool(ds, "b", "10.1.0.0/24")
    assert all(x.ip in net("10.1.0.0/24") for x in ipam.auto_assign(3, 0, "h", "n1").v4)
    put_pool(ds, "b", "10.1.0.0/24", disabled=True)
    with pytest.raises(NoSuitablePool):
        ipam.auto_assign(1, 0, "h2", "n1")  # n1's affine block in b is not used either
    with pytest.raises(NoSuitablePool):
        ipam.auto_assign(1, 0, "h3", "n1", pools={ipfamily.V4: ["a"]})


def test_node_selector(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "rack-a", "10.0.0.0/24", nodeSelector="rack == 'a'")
    put_pool(ds, "rest", "10.9.0.0/24", nodeSelector="!has(rack)")
    put_node(ds, "n1", {"rack": "a"})
    put_node(ds, "n2", {})
    assert ipam.auto_assign(1, 0, "h1", "n1").v4[0].ip in net("10.0.0.0/24")
    assert ipam.auto_assign(1, 0, "h2", "n2").v4[0].ip in net("10.9.0.0/24")
    assert ipam.auto_assign(1, 0, "h3", "unknown-host").v4[0].ip in net("10.9.0.0/24")  # no labels
    with pytest.raises(NoSuitablePool):
        ipam.auto_assign(1, 0, "h4", "n2", pools={ipfamily.V4: ["rack-a"]})


def test_allowed_uses(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "tunnels", "10.0.0.0/24", allowedUses=["Tunnel"])
    put_pool(ds, "workloads", "10.1.0.0/24", allowedUses=["Workload"])
    assert ipam.auto_assign(1, 0, "wl", "n1").v4[0].ip in net("10.1.0.0/24")
    assert ipam.auto_assign(1, 0, "ipip-tunnel-addr-n1", "n1", use="Tunnel").v4[0].ip in net("10.0.0.0/24")
    with pytest.raises(NoSuitablePool):
        ipam.auto_assign(1, 0, "lb", "n1", use="LoadBalancer")


def test_manual_pools_only_when_named_and_requested_order(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "manual", "10.5.0.0/24", assignmentMode="Manual")
    put_pool(ds, "auto", "10.6.0.0/24")
    assert ipam.auto_assign(1, 0, "a", "n1").v4[0].ip in net("10.6.0.0/24")
    assert ipam.auto_assign(1, 0, "b", "n1", pools={ipfamily.V4: ["manual"]}).v4[0].ip in net("10.5.0.0/24")
    by_cidr = ipam.auto_assign(1, 0, "c", "n1", pools={ipfamily.V4: ["10.5.0.0/24"]})
    assert by_cidr.v4[0].ip in net("10.5.0.0/24")
    with pytest.raises(NoSuitablePool, match="does not exist"):
        ipam.auto_assign(1, 0, "d", "n1", pools={ipfamily.V4: ["nope"]})


def test_reservations_are_never_handed_out(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/28", blockSize=29)
    put_reservation(ds, "r", "10.0.0.0/29", "10.0.0.9/32")
    got = {x.ip for x in ipam.auto_assign(7, 0, "h", "n1").v4}
    assert got == {ip(f"10.0.0.{i}") for i in (8, 10, 11, 12, 13, 14, 15)}
    with pytest.raises(PoolExhausted):
        ipam.auto_assign(1, 0, "h2", "n1")
    kvs, _ = ds.list(keys.block_prefix(ipfamily.V4))
    assert [kv.key for kv in kvs] == [
        keys.block_key(net("10.0.0.8/29"))
    ]  # the reserved block is never claimed
    with pytest.raises(AddressNotAvailable, match="reserved"):
        ipam.assign_ip("10.0.0.3", "x", "n1")


def test_ipv6_and_dual_stack(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "v4", "10.0.0.0/24")
    put_pool(ds, "v6", "fd00:1::/112")
    res = ipam.auto_assign(1, 2, "dual", "n1")
    assert len(res.v4) == 1 and len(res.v6) == 2
    assert res.v6[0].network.prefixlen == 122  # default IPv6 block size
    assert ds.get(keys.affinity_key("n1", res.v6[0].network)) is not None
    assert "/ipv6/block/" in keys.block_key(res.v6[0].network)
    assert set(ipam.ips_by_handle("dual")) == {res.v4[0].ip, res.v6[0].ip, res.v6[1].ip}


def test_pools_named_per_family(ds: MemoryDatastore, ipam: Ipam) -> None:
    """Calico's IPv4Pools / IPv6Pools: each family's names restrict that family only; a family with no
    names uses any of its pools; naming the other family's pool for a family is an error."""
    put_pool(ds, "v4a", "10.0.0.0/24")
    put_pool(ds, "v4b", "10.1.0.0/24")
    put_pool(ds, "v6a", "fd00:1::/112")
    put_pool(ds, "v6b", "fd00:2::/112")
    res = ipam.auto_assign(1, 1, "both", "n1", pools={ipfamily.V4: ["v4b"], ipfamily.V6: ["fd00:2::/112"]})
    assert res.v4[0].ip in net("10.1.0.0/24") and res.v6[0].ip in net("fd00:2::/112")
    res = ipam.auto_assign(1, 1, "v6-free", "n2", pools={ipfamily.V4: ["v4b"]})
    assert res.v4[0].ip in net("10.1.0.0/24") and res.v6[0].ip in net("fd00:1::/111")
    for pools in ({ipfamily.V4: ["v6a"]}, {ipfamily.V4: ["fd00:1::/112"]}):
        with pytest.raises(NoSuitablePool, match=r"requested IPv4 pool .* is an IPv6 pool"):
            ipam.auto_assign(1, 0, "wrong", "n1", pools=pools)
    with pytest.raises(NoSuitablePool, match="requested IPv6 pool 'v4a' is an IPv4 pool"):
        ipam.auto_assign(0, 1, "wrong6", "n1", pools={ipfamily.V6: ["v4a"]})
    assert ipam.ips_by_handle("wrong") == [] and ipam.ips_by_handle("wrong6") == []


def test_dual_stack_half_failure_rolls_back(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "v4", "10.0.0.0/24")
    with pytest.raises(NoSuitablePool):
        ipam.auto_assign(1, 1, "dual", "n1")
    assert ipam.ips_by_handle("dual") == []
    assert ds.get(keys.handle_key("dual")) is None


# ----------------------------------------------------------------------------- exhaustion


def test_exhaustion_is_clear_and_never_duplicates(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "tiny", "10.0.0.0/29", blockSize=30)  # 8 addresses in two blocks
    seen: set[Any] = set()
    for i in range(4):
        seen.update(x.ip for x in ipam.auto_assign(2, 0, f"h{i}", f"n{i % 2}").v4)
    assert len(seen) == 8
    for i in range(3):
        with pytest.raises(PoolExhausted, match="pool exhausted"):
            ipam.auto_assign(1, 0, f"x{i}", "n1")
        assert ds.get(keys.handle_key(f"x{i}")) is None


def test_partial_request_is_all_or_nothing(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "tiny", "10.0.0.0/29", blockSize=30)
    ipam.auto_assign(5, 0, "a", "n1")
    with pytest.raises(PoolExhausted, match=r"requested 4 .* only 3"):
        ipam.auto_assign(4, 0, "b", "n2")
    assert ipam.ips_by_handle("b") == []
    assert len(ipam.auto_assign(3, 0, "c", "n2").v4) == 3


# ----------------------------------------------------------------------------- specific addresses


def test_assign_ip(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    put_pool(ds, "off", "10.9.0.0/24", disabled=True)
    got = ipam.assign_ip("10.0.0.20", "port-1", "n1", {"port": "1"})
    assert got == ipaddress.ip_interface("10.0.0.20/28")
    assert host_blocks(ds, "n1") == {"10.0.0.16-28": "confirmed"}  # its block was claimed for n1
    with pytest.raises(AddressInUse, match="port-1") as exc:
        ipam.assign_ip("10.0.0.20", "port-2", "n2")
    assert exc.value.owner_handle == "port-1"
    with pytest.raises(AddressNotAvailable, match="not in any IPPool"):
        ipam.assign_ip("192.168.1.1", "x", "n1")
    with pytest.raises(AddressNotAvailable, match="disabled"):
        ipam.assign_ip("10.9.0.1", "x", "n1")
    with pytest.raises(InvalidIpamRequest):
        ipam.assign_ip("not-an-ip", "x", "n1")
    # a fixed IP may sit in another host's block; auto-assign never hands it out again
    assert ipam.assign_ip("10.0.0.21", "port-3", "n2").network == net("10.0.0.16/28")
    auto = {x.ip for x in ipam.auto_assign(14, 0, "rest", "n1").v4}
    assert ip("10.0.0.20") not in auto and ip("10.0.0.21") not in auto
    assert ipam.get_assignment_attrs("10.0.0.20") == {"port": "1", "node": "n1"}


def test_invalid_names(ipam: Ipam) -> None:
    with pytest.raises(InvalidIpamRequest):
        ipam.auto_assign(1, 0, "a/b", "n1")
    with pytest.raises(InvalidIpamRequest):
        ipam.auto_assign(1, 0, "h", "")
    with pytest.raises(InvalidIpamRequest):
        ipam.auto_assign(-1, 0, "h", "n1")


# ----------------------------------------------------------------------------- release and lookup


def test_release_by_handle_twice_is_a_noop(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    ipam.auto_assign(10, 0, "other", "n2")
    got = ipam.auto_assign(
        20, 0, "h", "n1", max_blocks_per_host=1
    ).v4  # spans n1's block and a borrowed part of n2's
    assert sorted(ipam.release_by_handle("h")) == sorted(x.ip for x in got)
    assert ds.get(keys.handle_key("h")) is None
    assert ipam.release_by_handle("h") == []
    assert ipam.ips_by_handle("h") == []
    assert len(ipam.ips_by_handle("other")) == 10


def test_release_ips(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    a, b = ipam.auto_assign(2, 0, "h", "n1").v4
    assert ipam.release_ips([a.ip, "10.0.0.250", "172.16.0.1"]) == [ip("10.0.0.250"), ip("172.16.0.1")]
    assert ipam.ips_by_handle("h") == [b.ip]
    handle = ds.get(keys.handle_key("h"))
    assert handle is not None and handle.value["block"] == {str(b.network): 1}
    assert ipam.release_ips([a.ip]) == [a.ip]
    assert ipam.release_ips([b.ip]) == []
    assert ds.get(keys.handle_key("h")) is None  # the last address took the handle with it


def test_empty_affine_block_stays_and_unaffine_block_goes(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    x = ipam.auto_assign(1, 0, "h", "n1").v4[0]
    ipam.release_by_handle("h")
    assert ds.get(keys.block_key(x.network)) is not None
    assert host_blocks(ds, "n1") == {f"{x.network.network_address}-28": "confirmed"}
    assert ipam.auto_assign(1, 0, "again", "n1").v4[0].network == x.network
    # a block without affinity (e.g. written by Calico for a released host) is deleted once empty
    free = net("10.0.0.128/28")
    ds.create(keys.block_key(free), encode_block(Block.new(free, None)))
    ipam.assign_ip("10.0.0.130", "y", "n2")
    ipam.release_by_handle("y")
    assert ds.get(keys.block_key(free)) is None


def test_lookups(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=28)
    x = ipam.auto_assign(1, 0, "net.cid", "n1", {"namespace": "ns", "pod": "p1"}).v4[0]
    got = ipam.get_assignment(x.ip)
    assert got is not None
    assert (got.handle, got.block, got.block_host, got.borrowed) == ("net.cid", x.network, "n1", False)
    assert got.attrs == {"namespace": "ns", "pod": "p1", "node": "n1"}
    assert ipam.get_assignment("10.0.0.200") is None
    assert ipam.get_assignment_attrs("10.0.0.200") is None
    assert ipam.ips_by_handle("net.cid") == [x.ip]
    assert ipam.ips_by_handle("unknown") == []


def test_released_address_is_reused_last(ds: MemoryDatastore, ipam: Ipam) -> None:
    put_pool(ds, "p", "10.0.0.0/24", blockSize=29)
    first = ipam.auto_assign(1, 0, "a", "n1").v4[0]
    ipam.release_by_handle("a")
    nxt = [ipam.auto_assign(1, 0, f"b{i}", "n1").v4[0].ip for i in range(8)]
    assert nxt[-1] == first.ip and first.ip not in nxt[:-1]


def test_applied_ipam_configuration_resource_counts_newest_wins(ds: MemoryDatastore, ipam: Ipam) -> None:
    ipam.configure(strict_affinity=True, max_blocks_per_host=3)
    resource = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPAMConfiguration",
        "metadata": {"name": "default"},
        "spec": {"strictAffinity": True, "maxBlocksPerHost": 7, "autoAllocateBlocks": True},
    }
    ds.put(keys.CONFIG_RESOURCE_KEY, resource)  # as `tortie apply` stores it
    assert ipam.get_config().max_blocks_per_host == 7
    ipam.configure(max_blocks_per_host=5)  # written later: wins
    assert ipam.get_config().max_blocks_per_host == 5
    stored = ds.get(keys.CONFIG_KEY)
    assert stored is not None
    assert stored.value == {"strict_affinity": True, "auto_allocate_blocks": True, "maxBlocksPerHost": 5}
