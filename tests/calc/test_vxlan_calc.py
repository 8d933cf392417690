"""State sequences of the VXLAN resolver (tunnel endpoints, remote block routes, encapsulation
state), replayed in every order by tortie.testing.calc_harness (conventions #2)."""

from __future__ import annotations

from typing import Any

from test_routing_calc import HOST, OTHER, Entry, affinity, block, make_graph, state

from tortie.common.ipfamily import V4, V6
from tortie.dataplane import messages as m
from tortie.model.kinds import kind_info
from tortie.testing.calc_harness import DataplaneState, Step, check_sequence

THIRD = "host-c"
MAC_A, MAC_B, MAC_C = "66:00:00:00:00:0a", "66:00:00:00:00:0b", "66:00:00:00:00:0c"


def pool(name: str, cidr: str, mode: str | None = "Always", **extra: Any) -> Entry:
    spec: dict[str, Any] = {"cidr": cidr, **extra}
    if mode is not None:
        spec["vxlanMode"] = mode
    value = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name}, "spec": spec}
    return kind_info("IPPool").key(name), value


def node(name: str, ip4: str | None, tunnel: str | None = None, mac: str | None = None,
         ip6: str | None = None, tunnel6: str | None = None, mac6: str | None = None) -> Entry:
    spec: dict[str, Any] = {}
    bgp = {k: v for k, v in (("ipv4Address", ip4), ("ipv6Address", ip6)) if v}
    if bgp:
        spec["bgp"] = bgp
    for field, value in (("ipv4VXLANTunnelAddr", tunnel), ("vxlanTunnelMACAddr", mac),
                         ("ipv6VXLANTunnelAddr", tunnel6), ("vxlanTunnelMACAddrV6", mac6)):
        if value:
            spec[field] = value
    wire = {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name}, "spec": spec}
    return kind_info("Node").key(name), wire


def expect(*, vteps: tuple[m.VtepUpdate, ...] = (), routes: tuple[m.RemoteBlockRouteUpdate, ...] = (),
           encap: m.EncapUpdate | None = None, blocks: tuple[str, ...] = ()) -> DataplaneState:
    tables: dict[str, dict[Any, object]] = {}
    if vteps:
        tables["vteps"] = {(v.node, v.family): v for v in vteps}
    if routes:
        tables["remote_routes"] = {r.cidr: r for r in routes}
    if encap is not None and encap != m.EncapUpdate():
        tables["encap"] = {"encap": encap}
    if blocks:
        tables["blocks"] = {c: m.HostBlockUpdate(c) for c in blocks}
    return DataplaneState(tables)


ME = node(HOST, "172.31.0.11/24", "10.244.0.1", MAC_A)
PEER = node(OTHER, "172.31.0.12/24", "10.244.1.1", MAC_B)
FAR = node(THIRD, "172.31.1.13/24", "10.244.2.1", MAC_C)
VTEP_ME = m.VtepUpdate(HOST, V4, "172.31.0.11", "10.244.0.1", MAC_A, local=True)
VTEP_PEER = m.VtepUpdate(OTHER, V4, "172.31.0.12", "10.244.1.1", MAC_B)
VTEP_FAR = m.VtepUpdate(THIRD, V4, "172.31.1.13", "10.244.2.1", MAC_C)
ADDRS = ("172.31.0.11/24",)
BLOCKS = (block("10.244.0.0/26"), affinity("10.244.0.0/26"), block("10.244.1.0/26", OTHER),
          block("10.244.2.0/26", THIRD))


def test_always_routes_every_remote_block_through_its_vtep() -> None:
    vxlan = m.EncapUpdate((V4,), ADDRS)
    check_sequence(make_graph, [
        Step(state(pool("p", "10.244.0.0/16"), ME, PEER, FAR, *BLOCKS), expect(
            vteps=(VTEP_ME, VTEP_PEER, VTEP_FAR), encap=vxlan, blocks=("10.244.0.0/26",),
            routes=(m.RemoteBlockRouteUpdate("10.244.1.0/26", OTHER, "vxlan", "10.244.1.1"),
                    m.RemoteBlockRouteUpdate("10.244.2.0/26", THIRD, "vxlan", "10.244.2.1")))),
        # the pool goes back to Never: no tunnel, no routes (BGP's job again); the host is still known
        Step(state(pool("p", "10.244.0.0/16", "Never"), ME, PEER, FAR, *BLOCKS),
             expect(encap=m.EncapUpdate((), ADDRS), blocks=("10.244.0.0/26",))),
        # a host without a tunnel address yet: no VTEP and no route to its blocks
        Step(state(pool("p", "10.244.0.0/16"), ME, node(OTHER, "172.31.0.12/24"), FAR, *BLOCKS), expect(
            vteps=(VTEP_ME, VTEP_FAR), encap=vxlan, blocks=("10.244.0.0/26",),
            routes=(m.RemoteBlockRouteUpdate("10.244.2.0/26", THIRD, "vxlan", "10.244.2.1"),))),
    ])


def test_cross_subnet_routes_natively_inside_this_hosts_subnet() -> None:
    check_sequence(make_graph, [
        Step(state(pool("p", "10.244.0.0/16", "CrossSubnet"), ME, PEER, FAR, *BLOCKS), expect(
            vteps=(VTEP_ME, VTEP_PEER, VTEP_FAR), encap=m.EncapUpdate((V4,), ADDRS),
            blocks=("10.244.0.0/26",),
            routes=(m.RemoteBlockRouteUpdate("10.244.1.0/26", OTHER, "none", "172.31.0.12"),
                    m.RemoteBlockRouteUpdate("10.244.2.0/26", THIRD, "vxlan", "10.244.2.1")))),
        # this host moves to the far subnet: the decision flips for both
        Step(state(pool("p", "10.244.0.0/16", "CrossSubnet"),
                   node(HOST, "172.31.1.11/24", "10.244.0.1", MAC_A), PEER, FAR, *BLOCKS), expect(
            vteps=(m.VtepUpdate(HOST, V4, "172.31.1.11", "10.244.0.1", MAC_A, local=True), VTEP_PEER,
                   VTEP_FAR),
            encap=m.EncapUpdate((V4,), ("172.31.1.11/24",)), blocks=("10.244.0.0/26",),
            routes=(m.RemoteBlockRouteUpdate("10.244.1.0/26", OTHER, "vxlan", "10.244.1.1"),
                    m.RemoteBlockRouteUpdate("10.244.2.0/26", THIRD, "none", "172.31.1.13")))),
    ])


def test_cross_subnet_without_this_hosts_subnet_keeps_the_last_routes() -> None:
    good = state(pool("p", "10.244.0.0/16", "CrossSubnet"), ME, PEER, *BLOCKS[:3])
    routes = (m.RemoteBlockRouteUpdate("10.244.1.0/26", OTHER, "none", "172.31.0.12"),)
    bad = state(pool("p", "10.244.0.0/16", "CrossSubnet"), node(HOST, None, "10.244.0.1", MAC_A), PEER,
                *BLOCKS[:3])
    problems = (
        "IPv4 VXLAN: Node host-a has no spec.bgp.ipv4Address (the tunnel's underlay address); "
        "no tunnel device",
        "vxlanMode CrossSubnet: this host's subnet cannot be determined: Node host-a has no "
        "spec.bgp.ipv4Address: the routes of blocks 10.244.1.0/26 are kept as they were",
    )
    from tortie.testing.calc_harness import replay
    after = replay(make_graph, [Step(good, expect()), Step(bad, expect())])
    assert after[0].tables["remote_routes"] == {r.cidr: r for r in routes}
    assert after[1].tables["remote_routes"] == {r.cidr: r for r in routes}  # kept
    assert after[1].tables["encap"]["encap"] == m.EncapUpdate((V4,), (), problems)
    assert "vteps" in after[1].tables and (HOST, V4) not in after[1].tables["vteps"]
    fresh = replay(make_graph, [Step(bad, expect())])[0]  # a new agent programs nothing for it
    assert "remote_routes" not in fresh.tables


def test_overlapping_pools_with_different_modes_keep_the_last_route() -> None:
    from tortie.testing.calc_harness import replay
    one = state(pool("p", "10.244.0.0/16"), ME, PEER, *BLOCKS[:3])
    two = state(pool("p", "10.244.0.0/16"), pool("q", "10.244.0.0/16", "Never"), ME, PEER, *BLOCKS[:3])
    after = replay(make_graph, [Step(one, expect()), Step(two, expect())])
    route = m.RemoteBlockRouteUpdate("10.244.1.0/26", OTHER, "vxlan", "10.244.1.1")
    assert after[1].tables["remote_routes"] == {route.cidr: route}
    assert any("overlap with different vxlanMode" in p for p in after[1].tables["encap"]["encap"].problems)
    # the more specific pool decides: no conflict
    three = state(pool("p", "10.244.0.0/16"), pool("q", "10.244.1.0/24", "Never"), ME, PEER, *BLOCKS[:3])
    assert "remote_routes" not in replay(make_graph, [Step(three, expect())])[0].tables


def test_ipv6_vteps_and_routes() -> None:
    me = node(HOST, "172.31.0.11/24", ip6="fd00:31::b/64", tunnel6="fd00:244::1", mac6=MAC_A)
    peer = node(OTHER, "172.31.0.12/24", ip6="fd00:31::c/64", tunnel6="fd00:244:0:1::1", mac6=MAC_B)
    check_sequence(make_graph, [
        Step(state(pool("p6", "fd00:244::/48"), me, peer, block("fd00:244:0:1::/122", OTHER)), expect(
            vteps=(m.VtepUpdate(HOST, V6, "fd00:31::b", "fd00:244::1", MAC_A, local=True),
                   m.VtepUpdate(OTHER, V6, "fd00:31::c", "fd00:244:0:1::1", MAC_B)),
            encap=m.EncapUpdate((V6,), ("172.31.0.11/24", "fd00:31::b/64")),
            routes=(m.RemoteBlockRouteUpdate("fd00:244:0:1::/122", OTHER, "vxlan", "fd00:244:0:1::1"),))),
    ])


def test_deleted_and_moved_blocks() -> None:
    check_sequence(make_graph, [
        Step(state(pool("p", "10.244.0.0/16"), ME, PEER, FAR, block("10.244.1.0/26", OTHER)), expect(
            vteps=(VTEP_ME, VTEP_PEER, VTEP_FAR), encap=m.EncapUpdate((V4,), ADDRS),
            routes=(m.RemoteBlockRouteUpdate("10.244.1.0/26", OTHER, "vxlan", "10.244.1.1"),))),
        Step(state(pool("p", "10.244.0.0/16"), ME, PEER, FAR, block("10.244.1.0/26", THIRD)), expect(
            vteps=(VTEP_ME, VTEP_PEER, VTEP_FAR), encap=m.EncapUpdate((V4,), ADDRS),
            routes=(m.RemoteBlockRouteUpdate("10.244.1.0/26", THIRD, "vxlan", "10.244.2.1"),))),
        Step(state(pool("p", "10.244.0.0/16"), ME, PEER, FAR, block("10.244.1.0/26", THIRD, deleted=True)),
             expect(vteps=(VTEP_ME, VTEP_PEER, VTEP_FAR), encap=m.EncapUpdate((V4,), ADDRS))),
    ])
