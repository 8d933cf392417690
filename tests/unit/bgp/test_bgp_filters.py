"""BGPFilter rendering (Calico's confd functions, statement by statement) and the view semantics of the
BGP options issue 18 added: filters (fail closed), ttlSecurity, numAllowedLocalASNumbers, reachableBy,
bindMode NodeIP, service CIDRs and workload peering."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tortie.bgp.filters import calls, function_name, render_functions, statement
from tortie.bgp.records import BgpConfig, Filter, Node, Peer, Snapshot, Workload
from tortie.bgp.session import PeerType, Session
from tortie.bgp.snapshot import WORKLOAD_PREFIX, SnapshotCache
from tortie.bgp.view import ViewResult, compute_view
from tortie.common.ipfamily import V4, V6
from tortie.model import parse_resource
from tortie.model.specs_bgp_filter import BGPFilterRuleV4, BGPFilterRuleV6, BGPFilterSpec

IP = ipaddress.ip_address
NET = ipaddress.ip_network


def spec(**rules: list[dict[str, Any]]) -> BGPFilterSpec:
    res = parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "BGPFilter",
                          "metadata": {"name": "f"}, "spec": rules})
    assert isinstance(res.spec, BGPFilterSpec)
    return res.spec


def v4(**rule: Any) -> BGPFilterRuleV4:
    return spec(importV4=[rule]).import_v4[0]


def v6(**rule: Any) -> BGPFilterRuleV6:
    return spec(importV6=[rule]).import_v6[0]


# Calico's own rendering of each condition and operation (confd template_funcs, its examples).
STATEMENTS = [
    (v4(action="Reject", matchOperator="Equal", cidr="44.4.0.0/16"),
     "if ((net = 44.4.0.0/16)) then { reject; }"),
    (v4(action="Accept", matchOperator="In", cidr="77.7.0.0/16"),
     "if ((net ~ 77.7.0.0/16)) then { accept; }"),
    (v6(action="Reject", matchOperator="NotEqual", cidr="7000:1::0/64"),
     "if ((net != 7000:1::/64)) then { reject; }"),
    (v6(action="Accept", matchOperator="NotIn", cidr="9000:1::0/64"),
     "if ((net !~ 9000:1::/64)) then { accept; }"),
    (v4(action="Accept", matchOperator="NotIn", cidr="55.4.0.0/16", source="RemotePeers",
        interface="vxlan.calico"),
     'if ((net !~ 55.4.0.0/16)&&((defined(source))&&(source ~ [ RTS_BGP ]))&&((defined(ifname))&&'
     '(ifname ~ "vxlan.calico"))) then { accept; }'),
    (v4(action="Reject", source="RemotePeers", matchOperator="NotIn", cidr="55.4.0.0/16",
        prefixLength={"min": 16, "max": 24}),
     "if ((net !~ [ 55.4.0.0/16{16,24} ])&&((defined(source))&&(source ~ [ RTS_BGP ]))) then { reject; }"),
    (v4(action="Accept", interface="eth0", source="RemotePeers"),
     'if (((defined(source))&&(source ~ [ RTS_BGP ]))&&((defined(ifname))&&(ifname ~ "eth0"))) then '
     '{ accept; }'),
    (v4(action="Reject"), "reject;"),
    # prefixLength: min defaults to (and never goes below) the cidr's length, max to 32 / 128.
    (v4(action="Accept", matchOperator="In", cidr="55.0.0.0/16", prefixLength={"min": 30}),
     "if ((net ~ [ 55.0.0.0/16{30,32} ])) then { accept; }"),
    (v4(action="Accept", matchOperator="In", cidr="55.0.0.0/16", prefixLength={"min": 8, "max": 20}),
     "if ((net ~ [ 55.0.0.0/16{16,20} ])) then { accept; }"),
    (v6(action="Accept", matchOperator="In", cidr="fd00::/8", prefixLength={"max": 64}),
     "if ((net ~ [ fd00::/8{8,64} ])) then { accept; }"),
    # Calico's full example (confd/docs/bgpfilter-bird-config-examples.md), without priorities.
    (v4(action="Accept", cidr="10.244.0.0/16", matchOperator="In", prefixLength={"min": 24, "max": 28},
        peerType="iBGP", communities={"values": ["65000:100"]}, asPathPrefix=[65000], interface="eth0",
        operations=[{"addCommunity": {"value": "65000:200"}}, {"prependASPath": {"prefix": [65001, 65002]}}]),
     'if (is_same_as) then { if ((net ~ [ 10.244.0.0/16{24,28} ])&&((defined(ifname))&&(ifname ~ "eth0"))'
     '&&((65000, 100) ~ bgp_community)&&(bgp_path.first = 65000)) then { bgp_community.add((65000, 200)); '
     'bgp_path.prepend(65002); bgp_path.prepend(65001); accept; } }'),
    (v4(action="Accept", cidr="10.244.0.0/16", matchOperator="In", peerType="eBGP",
        communities={"values": ["65000:100:999"]}, asPathPrefix=[65000, 65001]),
     "if (!is_same_as) then { if ((net ~ 10.244.0.0/16)&&((65000, 100, 999) ~ bgp_large_community)&&"
     "(bgp_path ~ [= 65000 65001 * =])) then { accept; } }"),
    (v4(action="Accept", operations=[{"addCommunity": {"value": "65000:300:400"}}]),
     "bgp_large_community.add((65000, 300, 400)); accept;"),
]


@pytest.mark.parametrize(("rule", "text"), STATEMENTS, ids=[t for _, t in STATEMENTS])
def test_rule_statements_are_calicos(rule: BGPFilterRuleV4 | BGPFilterRuleV6, text: str) -> None:
    assert statement(rule) == text


def test_function_names_and_truncation() -> None:
    assert function_name("my-filter", "import", V4) == "'bgp_my-filter_importFilterV4'"
    assert function_name("f", "export", V6) == "'bgp_f_exportFilterV6'"
    long = "a" * 45
    assert function_name(long, "import", V4) == f"'bgp_{long}_importFilterV4'"
    longer = function_name("a" * 46, "import", V4)
    assert len(longer) == 64 + 2 and longer.startswith("'bgp_" + "a" * 28 + "_") and longer.endswith("V4'")
    assert function_name("a" * 46, "import", V4) != function_name("a" * 45 + "b", "import", V4)


def test_functions_only_for_directions_and_families_with_rules() -> None:
    flt = Filter("edge", spec(importV4=[{"action": "Reject", "peerType": "eBGP"}],
                              exportV6=[{"action": "Reject"}]))
    assert render_functions([flt], V4) == [
        "# v4 BGPFilter edge", "function 'bgp_edge_importFilterV4'(bool is_same_as)", "{",
        "  if (!is_same_as) then { reject; }", "}"]
    assert render_functions([flt], V6) == [
        "# v6 BGPFilter edge", "function 'bgp_edge_exportFilterV6'()", "{", "  reject;", "}"]
    other = Filter("other", spec(importV4=[{"action": "Accept"}]))
    assert calls([flt, other], "import", V4, same_as=False) == [
        "'bgp_edge_importFilterV4'(false);", "'bgp_other_importFilterV4'();"]
    assert calls([flt, other], "export", V4, same_as=True) == []
    assert calls([flt], "export", V6, same_as=True) == ["'bgp_edge_exportFilterV6'();"]


# --------------------------------------------------------------------------- the view

ME = Node("h1", {"rack": "r1"}, ipaddress.IPv4Interface("172.31.0.1/24"),
          ipaddress.IPv6Interface("fd00:31::1/64"))
H2 = Node("h2", {"rack": "r1"}, ipaddress.IPv4Interface("172.31.0.2/24"))
TOR = Peer("tor", peer_ip=IP("172.31.0.254"), as_number=65000)
F1 = Filter("f1", spec(importV4=[{"action": "Reject"}]))


def view(snapshot: Snapshot) -> ViewResult:
    return compute_view(snapshot, "h1")


def sessions(snapshot: Snapshot) -> dict[str, Session]:
    result = view(snapshot)
    assert result.view is not None
    return {s.name: s for s in result.view.sessions}


def test_a_peer_naming_a_missing_filter_is_not_brought_up() -> None:
    peers = (Peer("tor", peer_ip=IP("172.31.0.254"), as_number=65000, filters=("f1", "gone")),
             Peer("tor2", peer_ip=IP("172.31.0.253"), as_number=65000, filters=("f1",)))
    result = view(Snapshot(nodes=(ME, H2), peers=peers, filters=(F1, Filter("unused", F1.spec))))
    assert result.view is not None
    names = {s.name for s in result.view.sessions}
    assert "Global_172_31_0_254" not in names and "Global_172_31_0_253" in names
    assert result.problems == ("BGPPeer tor: BGPFilter 'gone' does not exist; peer not brought up (it would "
                               "run unfiltered)",)
    assert [f.name for f in result.view.filters] == ["f1"]  # only what some session uses
    assert {s.name: s.filters for s in result.view.sessions}["Global_172_31_0_253"] == ("f1",)


def test_selector_and_workload_peers_fail_closed_too() -> None:
    by_selector = Peer("rr", peer_selector="all()", filters=("gone",))
    result = view(Snapshot(nodes=(ME, H2), peers=(by_selector,)))
    assert result.view is not None and {s.name for s in result.view.sessions} == {"Mesh_172_31_0_2"}
    assert "BGPPeer rr: BGPFilter 'gone' does not exist" in result.problems[0]


def test_peer_options_reach_the_session() -> None:
    gtsm = Peer("tor", peer_ip=IP("172.31.0.254"), as_number=65000, ttl_security=2, num_allowed_local_as=3,
                keepalive_time=20, max_restart_time=90)
    off = Peer("tor2", peer_ip=IP("172.31.0.253"), as_number=65000, ttl_security=0, num_allowed_local_as=0)
    s = sessions(Snapshot(nodes=(ME,), peers=(gtsm, off)))
    assert (s["Global_172_31_0_254"].ttl_security, s["Global_172_31_0_254"].allow_local_as) == (2, 3)
    assert (s["Global_172_31_0_254"].keepalive_time, s["Global_172_31_0_254"].restart_time) == (20, 90)
    assert (s["Global_172_31_0_253"].ttl_security, s["Global_172_31_0_253"].allow_local_as) == (None, None)


def test_bind_mode_node_ip_binds_every_session_from_default_only() -> None:
    no_source = Peer("far", peer_ip=IP("192.0.2.9"), as_number=65009, source_address="None")
    bound = sessions(Snapshot(nodes=(ME, H2), peers=(no_source,),
                              configs=(BgpConfig("default", bind_mode="NodeIP"),)))
    assert all(s.strict_bind and s.local_address == IP("172.31.0.1") for s in bound.values())
    node_only = sessions(Snapshot(nodes=(ME, H2), peers=(no_source,),
                                  configs=(BgpConfig("node.h1", bind_mode="NodeIP"),)))
    assert not any(s.strict_bind for s in node_only.values())
    assert node_only["Global_192_0_2_9"].local_address is None


def test_services_come_from_default_and_reachable_by_from_running_peers() -> None:
    default = BgpConfig("default", service_cluster_ips=(NET("10.96.0.0/12"), NET("fd00:96::/112")),
                        service_external_ips=(NET("203.0.113.0/24"),),
                        service_load_balancer_ips=(NET("10.96.0.0/12"),))
    node_cfg = BgpConfig("node.h1", service_cluster_ips=(NET("10.200.0.0/16"),))
    far = Peer("far", peer_ip=IP("192.0.2.9"), as_number=65009, reachable_by=IP("172.31.0.254"))
    elsewhere = Peer("elsewhere", node="h2", peer_ip=IP("192.0.2.10"), as_number=65009,
                     reachable_by=IP("172.31.0.254"))
    result = view(Snapshot(nodes=(ME, H2), configs=(default, node_cfg), peers=(far, elsewhere)))
    assert result.view is not None
    assert result.view.services == (NET("10.96.0.0/12"), NET("203.0.113.0/24"), NET("fd00:96::/112"))
    assert result.view.peer_routes == ((IP("192.0.2.9"), IP("172.31.0.254")),)


def red(name: str, node: str, ip: str, ipv6: str | None = None) -> Workload:
    return Workload(name, node, {"color": "red"}, ipaddress.IPv4Address(ip),
                    ipaddress.IPv6Address(ipv6) if ipv6 else None)


def test_workload_peering() -> None:
    default = BgpConfig("default", local_workload_peering_ipv4=ipaddress.IPv4Address("169.254.0.179"))
    to_workloads = Peer("vr", local_workload_selector="color == 'red'", as_number=65123, filters=("f1",))
    workloads = (red("ns/vr1", "h1", "10.65.0.5", "fd10::5"), red("ns/vr2", "h2", "10.65.1.5"),
                 Workload("ns/web", "h1", {"color": "blue"}, ipaddress.IPv4Address("10.65.0.6")))
    result = view(Snapshot(nodes=(ME, H2), configs=(default,), peers=(to_workloads,), filters=(F1,),
                           workloads=workloads))
    assert result.view is not None
    local = [s for s in result.view.sessions if s.peer_type is PeerType.LOCAL_WORKLOAD]
    assert [(s.name, s.neighbor, s.local_address, s.remote_as, s.local_as, s.multihop, s.filters)
            for s in local] == [("Local_Workload_10_65_0_5", IP("10.65.0.5"), IP("169.254.0.179"), 65123,
                                 64512, True, ("f1",))]
    assert result.view.workload_peering == (IP("169.254.0.179"),)
    # No IPv6 peering address configured: the IPv6 session is skipped, and says why.
    assert result.problems == ("BGPPeer vr: BGPConfiguration default sets no localWorkloadPeeringIPV6; IPv6 "
                               "workload peering skipped",)
    elsewhere = Peer("vr", node="h2", local_workload_selector="color == 'red'", as_number=65123)
    none_here = view(Snapshot(nodes=(ME, H2), configs=(default,), peers=(elsewhere,), workloads=workloads))
    assert none_here.view is not None and none_here.view.workload_peering == ()


def test_snapshot_cache_keeps_only_this_nodes_workloads() -> None:
    def wep(name: str, node: str) -> dict[str, Any]:
        return {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": name, "namespace": "nfv", "labels": {"color": "red"}},
                "spec": {"node": node, "interfaceName": "cali1",
                         "ipNetworks": ["10.65.0.5/32", "fd10::5/128"]}}

    cache = SnapshotCache("h1")
    assert cache.on_update(f"{WORKLOAD_PREFIX}nfv/a", wep("h1-k8s-a-eth0", "h1"))
    assert not cache.on_update(f"{WORKLOAD_PREFIX}nfv/b", wep("h2-k8s-b-eth0", "h2"))
    (w,) = cache.snapshot().workloads
    assert (w.node, w.ipv4, w.ipv6, w.labels["projectcalico.org/namespace"]) == (
        "h1", IP("10.65.0.5"), IP("fd10::5"), "nfv")
    # A workload that moves to another node leaves this node's snapshot.
    assert cache.on_update(f"{WORKLOAD_PREFIX}nfv/a", wep("h1-k8s-a-eth0", "h2"))
    assert cache.snapshot().workloads == ()
    assert cache.on_update(f"{WORKLOAD_PREFIX}nfv/a", wep("h1-k8s-a-eth0", "h1"))
    assert cache.drop_prefix(WORKLOAD_PREFIX) and cache.snapshot().workloads == ()
