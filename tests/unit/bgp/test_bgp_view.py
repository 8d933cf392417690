"""Semantics of `tortie.bgp.view.compute_view`: who peers with whom, how, and what is exported."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from tortie.bgp.records import (
    BgpConfig,
    Community,
    Node,
    Peer,
    Pool,
    PrefixAdvertisement,
    SecretRef,
    Snapshot,
)
from tortie.bgp.render import render
from tortie.bgp.session import PeerType, Session, protocol_name
from tortie.bgp.view import (
    DEFAULT_AGENT_ROUTE_PROTOCOL,
    ViewOptions,
    compute_view,
    derived_router_id,
)
from tortie.common.ipfamily import FAMILIES, V6
from tortie.model.ipam_block import BlockHead

V4 = ipaddress.IPv4Interface
IP = ipaddress.ip_address
NET = ipaddress.ip_network


def node(name: str, last: int, *, labels: Mapping[str, str] | None = None, asn: int | None = None,
         rr: str | None = None, v6: bool = False) -> Node:
    return Node(name, dict(labels or {}), V4(f"172.31.0.{last}/24"),
                ipaddress.IPv6Interface(f"fd00::{last}/64") if v6 else None, asn, rr)


def sessions(snap: Snapshot, host: str, opts: ViewOptions | None = None) -> dict[str, Session]:
    result = compute_view(snap, host, opts)
    assert result.view is not None, result.problems
    return {s.name: s for s in result.view.sessions}


def test_agent_protocol_matches_route_driver() -> None:
    from tortie.dataplane.drivers.routes import TORTIE_ROUTE_PROTOCOL

    assert DEFAULT_AGENT_ROUTE_PROTOCOL == TORTIE_ROUTE_PROTOCOL


def test_protocol_names_follow_calico() -> None:
    assert protocol_name("Mesh", IP("10.0.0.2")) == "Mesh_10_0_0_2"
    assert protocol_name("Global", IP("fd00::1"), 1179) == "Global_fd00__1_port_1179"
    assert protocol_name("Node", IP("10.0.0.2"), 179) == "Node_10_0_0_2"


def test_no_node_or_no_address_gives_no_view() -> None:
    r = compute_view(Snapshot(), "h1")
    assert r.view is None and "no Node 'h1'" in r.problems[0]
    r = compute_view(Snapshot(nodes=(Node("h1"),)), "h1")
    assert r.view is None and "no BGP address" in r.problems[0]


def test_full_mesh_by_default_with_one_active_side() -> None:
    snap = Snapshot(nodes=(node("h1", 1), node("h2", 2), node("h3", 3)))
    s1 = sessions(snap, "h1")
    assert set(s1) == {"Mesh_172_31_0_2", "Mesh_172_31_0_3"}
    assert all(s.peer_type is PeerType.MESH and s.remote_as == s.local_as == 64512 for s in s1.values())
    assert not any(s.passive for s in s1.values())  # lowest address connects to everyone
    s3 = sessions(snap, "h3")
    assert all(s.passive for s in s3.values())
    assert s1["Mesh_172_31_0_2"].local_address == IP("172.31.0.1")


def test_mesh_disabled_and_as_numbers() -> None:
    cfg = BgpConfig("default", as_number=65100, node_to_node_mesh_enabled=False)
    snap = Snapshot(nodes=(node("h1", 1), node("h2", 2, asn=65200)), configs=(cfg,))
    r = compute_view(snap, "h1")
    assert r.view is not None and r.view.sessions == () and r.view.as_number == 65100
    snap = Snapshot(nodes=(node("h1", 1), node("h2", 2, asn=65200)),
                    configs=(BgpConfig("default", as_number=65100),))
    s = sessions(snap, "h1")["Mesh_172_31_0_2"]
    assert (s.local_as, s.remote_as, s.ebgp) == (65100, 65200, True)


def test_route_reflectors_and_clients() -> None:
    rr_labels = {"route-reflector": "true"}
    snap = Snapshot(
        nodes=(node("rr1", 11, labels=rr_labels, rr="244.0.0.1"),
               node("rr2", 12, labels=rr_labels, rr="244.0.0.1"),
               node("c1", 21), node("c2", 22)),
        configs=(BgpConfig("default", node_to_node_mesh_enabled=False),),
        peers=(Peer("rrs", node_selector="all()", peer_selector="route-reflector == 'true'"),),
    )
    c1 = sessions(snap, "c1")
    assert set(c1) == {"Node_172_31_0_11", "Node_172_31_0_12"}
    assert all(s.peer_type is PeerType.ROUTE_REFLECTOR and not s.rr_client for s in c1.values())
    rr1 = sessions(snap, "rr1")
    assert set(rr1) == {"Node_172_31_0_12", "Node_172_31_0_21", "Node_172_31_0_22"}
    assert rr1["Node_172_31_0_21"].rr_client and rr1["Node_172_31_0_21"].rr_cluster_id == "244.0.0.1"
    assert rr1["Node_172_31_0_21"].peer_type is PeerType.RR_CLIENT
    assert not rr1["Node_172_31_0_12"].rr_client  # same cluster: plain iBGP between reflectors


def test_reverse_peering_manual_only_peers_from_the_scope_side() -> None:
    snap = Snapshot(
        nodes=(node("a", 1, labels={"role": "client"}), node("r", 2, labels={"role": "rr"})),
        peers=(Peer("p", node_selector="role == 'client'", peer_selector="role == 'rr'",
                    reverse_peering="Manual"),),
        configs=(BgpConfig("default", node_to_node_mesh_enabled=False),),
    )
    assert set(sessions(snap, "a")) == {"Node_172_31_0_2"}
    assert sessions(snap, "r") == {}
    auto = Snapshot(nodes=snap.nodes, configs=snap.configs,
                    peers=(Peer("p", node_selector="role == 'client'", peer_selector="role == 'rr'"),))
    assert set(sessions(auto, "r")) == {"Node_172_31_0_1"}


def test_explicit_peer_scope_and_precedence_over_mesh() -> None:
    snap = Snapshot(
        nodes=(node("h1", 1, labels={"rack": "a"}), node("h2", 2, labels={"rack": "b"})),
        peers=(
            Peer("tor-a", node_selector="rack == 'a'", peer_ip=IP("172.31.0.254"), as_number=65000),
            Peer("just-h2", node="h2", peer_ip=IP("172.31.0.253"), as_number=65000),
            Peer("glob", peer_ip=IP("172.31.0.250"), as_number=65001),
            # An explicit peering with another node replaces the mesh session to it.
            Peer("to-h2", node="h1", peer_ip=IP("172.31.0.2"), as_number=64512, keepalive_time=7),
            Peer("self", node="h1", peer_ip=IP("172.31.0.1"), as_number=65001),  # itself: ignored
        ),
    )
    s1 = sessions(snap, "h1")
    assert set(s1) == {"Node_172_31_0_254", "Global_172_31_0_250", "Node_172_31_0_2"}
    assert s1["Node_172_31_0_2"].keepalive_time == 7 and s1["Node_172_31_0_2"].origin == "to-h2"
    assert s1["Global_172_31_0_250"].peer_type is PeerType.GLOBAL and s1["Global_172_31_0_250"].ebgp
    s2 = sessions(snap, "h2")
    assert set(s2) == {"Node_172_31_0_253", "Global_172_31_0_250", "Mesh_172_31_0_1"}


def test_passwords_come_from_secrets_and_missing_ones_skip_the_peer() -> None:
    snap = Snapshot(
        nodes=(node("h1", 1),),
        peers=(
            Peer("ok", peer_ip=IP("192.0.2.1"), as_number=65000, password=SecretRef("s", "ok")),
            Peer("missing", peer_ip=IP("192.0.2.2"), as_number=65000, password=SecretRef("s", "nope")),
            Peer("quote", peer_ip=IP("192.0.2.3"), as_number=65000, password=SecretRef("s", "quote")),
        ),
    )
    table = {"ok": "pw-1", "quote": 'a"b'}

    def lookup(ref: SecretRef) -> str | None:
        return table.get(ref.key)

    r = compute_view(snap, "h1", ViewOptions(secrets=lookup))
    assert r.view is not None
    assert [(s.name, s.password) for s in r.view.sessions] == [("Global_192_0_2_1", "pw-1")]
    assert len(r.problems) == 2 and all("peer skipped" in p for p in r.problems)
    assert r.view.sessions[0].multihop  # 192.0.2.1 is not on the node's subnet


def test_peer_options_map_to_session() -> None:
    snap = Snapshot(nodes=(node("h1", 1),), peers=(
        Peer("a", peer_ip=IP("172.31.0.9"), peer_port=1179, as_number=65000, source_address="None",
             keep_original_next_hop=True, max_restart_time=30, local_as_number=64999),
        Peer("b", peer_ip=IP("172.31.0.8"), as_number=65000, next_hop_mode="Self"),
        Peer("v6", peer_ip=IP("fd00::9"), as_number=65000),
    ))
    r = compute_view(snap, "h1")
    assert r.view is not None
    s = {x.name: x for x in r.view.sessions}
    a = s["Global_172_31_0_9_port_1179"]
    assert (a.neighbor_port, a.local_address, a.next_hop, a.restart_time, a.local_as, a.multihop) == (
        1179, None, "keep", 30, 64999, False)
    assert s["Global_172_31_0_8"].next_hop == "self"
    assert any("no IPv6 BGP address" in p for p in r.problems)


def test_exports_blocks_and_communities() -> None:
    snap = Snapshot(
        nodes=(node("h1", 1), node("h2", 2)),
        pools=(Pool("a", NET("10.65.0.0/16")), Pool("b", NET("10.66.0.0/16"), disabled=True),
               Pool("c", NET("10.67.0.0/16"), disable_bgp_export=True),
               Pool("v", NET("10.68.0.0/16"), vxlan_mode="Always"),
               Pool("x", NET("10.69.0.0/16"), vxlan_mode="CrossSubnet")),
        blocks=(BlockHead(NET("10.65.0.0/26"), "host:h1"), BlockHead(NET("10.65.0.64/26"), "host:h2"),
                BlockHead(NET("10.66.0.0/26"), "host:h1"),
                BlockHead(NET("10.65.1.0/26"), None)),
        configs=(BgpConfig("default", communities=(Community("x", "65000:1"),), prefix_advertisements=(
            PrefixAdvertisement(NET("10.65.0.0/16"), ("x", "1:2:3", "bogus")),)),),
    )
    r = compute_view(snap, "h1")
    v = r.view
    assert v is not None
    assert v.export_pools == (NET("10.65.0.0/16"),)
    assert v.own_blocks == (NET("10.65.0.0/26"), NET("10.66.0.0/26"))
    assert v.communities[0].standard == ((65000, 1),) and v.communities[0].large == ((1, 2, 3),)
    assert any("bogus" in p for p in r.problems)


def test_node_level_config_overrides_default() -> None:
    snap = Snapshot(nodes=(node("h1", 1), node("h2", 2)), configs=(
        BgpConfig("default", listen_port=1790, log_severity_screen="Debug", ignored_interfaces=("eth9",)),
        BgpConfig("node.h1", log_severity_screen="Error"),
        BgpConfig("node.h2", listen_port=1791),
    ))
    r = compute_view(snap, "h1")
    v = r.view
    assert v is not None
    assert (v.listen_port, v.log_severity, v.ignored_interfaces) == (1790, "Error", ("eth9",))
    assert v.sessions[0].neighbor_port == 1791  # the remote node's own listen port


def test_ipv6_only_node_gets_derived_router_id() -> None:
    n = Node("h6", {}, None, ipaddress.IPv6Interface("fd00::6/64"))
    r = compute_view(Snapshot(nodes=(n,)), "h6")
    assert r.view is not None and r.view.router_id == derived_router_id("h6")
    assert r.view.families() == (V6,)


# --------------------------------------------------------------------------- properties

@st.composite
def topologies(draw: st.DrawFn) -> Snapshot:
    n = draw(st.integers(2, 7))
    nodes = []
    for i in range(n):
        rr = draw(st.sampled_from([None, None, "244.0.0.1", "244.0.0.2"]))
        labels = {"rr": "yes"} if rr else {"rr": "no"}
        labels["zone"] = draw(st.sampled_from(["a", "b"]))
        nodes.append(node(f"n{i}", 10 + i, labels=labels, rr=rr, v6=draw(st.booleans())))
    mesh = draw(st.booleans())
    peers = []
    if draw(st.booleans()):
        peers.append(Peer("rr", node_selector=draw(st.sampled_from(["all()", "zone == 'a'"])),
                          peer_selector="rr == 'yes'"))
    return Snapshot(nodes=tuple(draw(st.permutations(nodes))), peers=tuple(peers),
                    configs=(BgpConfig("default", node_to_node_mesh_enabled=mesh),))


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_node_sessions_are_symmetric(snap: Snapshot) -> None:
    """Between two tortie nodes: a session on one side exists on the other, exactly one side
    connects, and a reflector's client sees it as a route reflector (two reflectors of different
    clusters treat each other as clients, as Calico does)."""
    by_host = {n.name: sessions(snap, n.name) for n in snap.nodes}
    addr_to_host = {}
    for n in snap.nodes:
        for v in FAMILIES:
            a = n.address(v)
            if a is not None:
                addr_to_host[a] = n.name
    for host, ss in by_host.items():
        me = snap.node(host)
        assert me is not None
        for s in ss.values():
            other = addr_to_host[s.neighbor]
            mine = me.address(s.family)
            back = [t for t in by_host[other].values() if t.neighbor == mine]
            assert len(back) == 1, (host, s.name)
            t = back[0]
            assert s.passive != t.passive
            assert (s.local_as, s.remote_as) == (t.remote_as, t.local_as)
            if s.rr_client:
                other_node = snap.node(other)
                assert other_node is not None
                if other_node.rr_cluster_id:
                    assert t.rr_client and other_node.rr_cluster_id != me.rr_cluster_id
                else:
                    assert not t.rr_client and t.peer_type is PeerType.ROUTE_REFLECTOR


@settings(max_examples=30, deadline=None)
@given(topologies(), st.randoms())
def test_rendering_ignores_input_order(snap: Snapshot, rnd: object) -> None:
    import random

    assert isinstance(rnd, random.Random)
    nodes = list(snap.nodes)
    rnd.shuffle(nodes)
    shuffled = Snapshot(nodes=tuple(nodes), peers=snap.peers, configs=snap.configs)
    for n in snap.nodes[:2]:
        a, b = compute_view(snap, n.name), compute_view(shuffled, n.name)
        assert a.view is not None and b.view is not None
        assert render(a.view) == render(b.view)
