"""State-sequence tests of the agent's routing calc (endpoints, host blocks, config), with the
reordering helper of tortie.testing.calc_harness (conventions #2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest

from tortie.agent import config as cfg
from tortie.calc.calc_graph import CalcGraph
from tortie.dataplane import messages as m
from tortie.datastore.syncer import InSync, SyncEvent
from tortie.ipam import keys as ipam_keys
from tortie.model.kinds import kind_info
from tortie.testing.calc_harness import DataplaneModel, Graph, Sink, Step, check_sequence, expect, kv_event

HOST = "host-a"
OTHER = "host-b"
Entry = tuple[str, dict[str, Any]]


def wep(name: str, *, node: str = HOST, ips: tuple[str, ...] = ("10.65.0.1/32",), iface: str | None = None,
        ns: str = "default", labels: Mapping[str, str] | None = None, **extra: Any) -> Entry:
    spec: dict[str, Any] = {"orchestrator": "cni", "workload": name, "endpoint": "eth0", "node": node,
                            "ipNetworks": list(ips), "interfaceName": iface or f"tort{name}"[:15], **extra}
    metadata: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        metadata["labels"] = dict(labels)
    value = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint", "metadata": metadata,
             "spec": spec}
    return kind_info("WorkloadEndpoint").key(name, ns), value


def ep(name: str, *, ips: tuple[str, ...] = ("10.65.0.1/32",), iface: str | None = None, ns: str = "default",
       v6: tuple[str, ...] = (), labels: Mapping[str, str] | None = None) -> m.WorkloadEndpointUpdate:
    return m.WorkloadEndpointUpdate(id=m.WorkloadEndpointId(ns, name),
                                    interface_name=iface or f"tort{name}"[:15],
                                    ipv4_nets=ips, ipv6_nets=v6, labels=dict(labels or {}),
                                    orchestrator="cni", workload=name, endpoint="eth0")


def block(cidr: str, host: str | None = HOST, **extra: Any) -> Entry:
    import ipaddress

    net = ipaddress.ip_network(cidr)
    value: dict[str, Any] = {"cidr": cidr, "affinity": f"host:{host}" if host else None, "allocations": [],
                             "unallocated": [], "attributes": [], **extra}
    return ipam_keys.block_key(net), value


def affinity(cidr: str, host: str = HOST, state: str = "confirmed") -> Entry:
    import ipaddress

    return ipam_keys.affinity_key(host, ipaddress.ip_network(cidr)), {"state": state, "deleted": False}


def felix(name: str, **spec: Any) -> Entry:
    value = {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": name},
             "spec": spec}
    return kind_info("FelixConfiguration").key(name), value


def state(*entries: Entry) -> dict[str, dict[str, Any]]:
    return dict(entries)


def make_graph(sink: Sink) -> Graph:
    local = cfg.LocalConfig(cfg.Layer(cfg.Source.FILE, "file", {}), cfg.env_layer({}), cfg.cli_layer({}))
    return CalcGraph(HOST, sink, cfg.datastore_resolver(local, HOST))


# --------------------------------------------------------------------------------------------- endpoints


def test_local_endpoints_only() -> None:
    check_sequence(make_graph, [
        Step(state(wep("a"), wep("b", ips=("10.65.0.2/32",)), wep("r", node=OTHER)),
             expect([ep("a"), ep("b", ips=("10.65.0.2/32",))])),
        Step(state(wep("r", node=OTHER)), expect()),
        Step(state(wep("a", ips=("10.65.0.3/32", "10.65.0.9/32", "fd00::3/128"))),
             expect([ep("a", ips=("10.65.0.3/32", "10.65.0.9/32"), v6=("fd00::3/128",))])),
    ])


def test_endpoint_moving_between_hosts() -> None:
    check_sequence(make_graph, [
        Step(state(wep("a")), expect([ep("a")])),
        Step(state(wep("a", node=OTHER)), expect()),
        Step(state(wep("a", node=OTHER), wep("b", ns="other")), expect([ep("b", ns="other")])),
    ])


def test_endpoint_details_changes() -> None:
    check_sequence(make_graph, [
        Step(state(wep("a", labels={"app": "web"})), expect([ep("a", labels={"app": "web"})])),
        Step(state(wep("a", labels={"app": "db"}, iface="tortzzz")),
             expect([ep("a", labels={"app": "db"}, iface="tortzzz")])),
        Step(state(wep("a", ips=("10.65.0.1/32", "10.65.0.0/32"))),
             expect([ep("a", ips=("10.65.0.0/32", "10.65.0.1/32"))])),
    ])


def test_invalid_endpoint_is_treated_as_absent(caplog: pytest.LogCaptureFixture) -> None:
    bad_ip = wep("a", ips=("10.65.0.1/33",))
    check_sequence(make_graph, [
        Step(state(wep("a"), wep("b", ips=("10.65.0.2/32",))),
             expect([ep("a"), ep("b", ips=("10.65.0.2/32",))])),
        Step(state(bad_ip, wep("b", ips=("10.65.0.2/32",))), expect([ep("b", ips=("10.65.0.2/32",))])),
    ])
    assert any("invalid datastore object" in r.getMessage() and "10.65.0.1/33" in r.getMessage()
               for r in caplog.records)


def test_ip_nats_reach_the_dataplane() -> None:
    nats = [{"internalIP": "fd00::3", "externalIP": "2001:db8::9"},
            {"internalIP": "10.65.0.1", "externalIP": "192.0.2.10"},
            {"internalIP": "10.65.0.1", "externalIP": "192.0.2.9"}]
    base = ep("a", v6=("fd00::3/128",))
    want = replace(base, ip_nats=(m.IPNat("10.65.0.1", "192.0.2.9"), m.IPNat("10.65.0.1", "192.0.2.10"),
                                  m.IPNat("fd00::3", "2001:db8::9")))
    check_sequence(make_graph, [
        Step(state(wep("a", ips=("10.65.0.1/32", "fd00::3/128"), ipNATs=nats)),
             expect([want])),
        Step(state(wep("a", ips=("10.65.0.1/32", "fd00::3/128"))), expect([base])),
    ])


def test_an_endpoint_using_what_this_host_cannot_program_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    def graph(sink: Sink) -> Graph:
        local = cfg.LocalConfig(cfg.Layer(cfg.Source.FILE, "file", {}), cfg.env_layer({}), cfg.cli_layer({}))
        return CalcGraph(HOST, sink, cfg.datastore_resolver(local, HOST),
                         unsupported={"ipNATs": "no nftables here"})

    nat = [{"internalIP": "10.65.0.2", "externalIP": "192.0.2.10"}]
    check_sequence(graph, [
        Step(state(wep("a"), wep("b", ips=("10.65.0.2/32",), ipNATs=nat)), expect([ep("a")])),
        Step(state(wep("b", ips=("10.65.0.2/32",))), expect([ep("b", ips=("10.65.0.2/32",))])),
    ])
    messages = [r.getMessage() for r in caplog.records if "endpoint refused" in r.getMessage()]
    assert any("ipNATs: no nftables here" in msg for msg in messages)


def test_qos_controls_reach_the_dataplane_with_calico_s_defaults() -> None:
    qos = {"ingressBandwidth": 1000000, "egressPacketRate": 100, "egressMaxConnections": 7}
    want = replace(ep("a"), qos=m.QosLimits(ingress_bandwidth=1000000, ingress_burst=4 * 2**30,
                                            egress_packet_rate=100, egress_packet_burst=5,
                                            egress_max_connections=7))
    check_sequence(make_graph, [
        Step(state(wep("a", qosControls=qos)), expect([want])),
        Step(state(wep("a", qosControls={"ingressPacketRate": 0})), expect([ep("a")])),  # 0: no limit
        Step(state(wep("a")), expect([ep("a")])),
    ])


def test_qos_a_host_cannot_program_refuses_the_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    def graph(sink: Sink) -> Graph:
        local = cfg.LocalConfig(cfg.Layer(cfg.Source.FILE, "file", {}), cfg.env_layer({}), cfg.cli_layer({}))
        return CalcGraph(HOST, sink, cfg.datastore_resolver(local, HOST),
                         unsupported={"qosControls.egressBandwidth": "no ifb device here"})

    check_sequence(graph, [
        Step(state(wep("c", ips=("10.65.0.3/32",), qosControls={"egressBandwidth": 10**6}),
                   wep("d", ips=("10.65.0.4/32",), qosControls={"ingressBandwidth": 10**6})),
             expect([replace(ep("d", ips=("10.65.0.4/32",)), qos=m.QosLimits(
                 ingress_bandwidth=10**6, ingress_burst=4 * 2**30))])),
    ])
    assert any("qosControls.egressBandwidth: no ifb device here" in r.getMessage() for r in caplog.records)


def test_endpoint_stored_at_a_foreign_key_is_invalid() -> None:
    key, value = wep("a")
    check_sequence(make_graph, [Step({key.replace("/a", "/zz"): value}, expect())])


def test_interface_prefix_filter_follows_felix_configuration() -> None:
    check_sequence(make_graph, [
        Step(state(wep("a", iface="cali123")), expect()),
        Step(state(wep("a", iface="cali123"), felix("default", interfacePrefix="cali,tort")),
             expect([ep("a", iface="cali123")], config={"interface_prefix": ("cali", "tort")})),
        Step(state(wep("a", iface="cali123"), wep("b"), felix("default", interfacePrefix="cali"),
                   felix(f"node.{HOST}", interfacePrefix="tort")),
             expect([ep("b")], config={"interface_prefix": ("tort",)})),
    ])


# --------------------------------------------------------------------------------------------- blocks


def test_confirmed_affine_blocks_get_routes() -> None:
    check_sequence(make_graph, [
        Step(state(block("10.65.0.0/26"), affinity("10.65.0.0/26")), expect(blocks=["10.65.0.0/26"])),
        Step(state(block("10.65.0.0/26"), affinity("10.65.0.0/26", state="pending")), expect()),
        Step(state(block("10.65.0.0/26"), affinity("10.65.0.0/26", state="pendingDeletion")), expect()),
        Step(state(block("10.65.0.0/26")), expect()),
        Step(state(affinity("10.65.0.0/26")), expect()),
        Step(state(block("10.65.0.64/26", host=OTHER), affinity("10.65.0.64/26", host=OTHER),
                   affinity("10.65.0.64/26")), expect()),
        Step(state(block("10.65.0.0/26"), affinity("10.65.0.0/26"), block("fd00:65::/122"),
                   affinity("fd00:65::/122")), expect(blocks=["10.65.0.0/26", "fd00:65::/122"])),
        Step(state(block("10.65.0.0/26", deleted=True), affinity("10.65.0.0/26")), expect()),
        Step(state(block("10.65.0.0/26", host=None), affinity("10.65.0.0/26")), expect()),
    ])


def test_malformed_blocks_are_ignored() -> None:
    key, value = block("10.65.0.0/26")
    check_sequence(make_graph, [
        Step({key: {**value, "cidr": "10.65.1.0/26"}, **state(affinity("10.65.0.0/26"))}, expect()),
        Step({key: value, **state(affinity("10.65.0.0/26", state="weird"))}, expect()),
        Step({key: value, **state(affinity("10.65.0.0/26"))}, expect(blocks=["10.65.0.0/26"])),
    ])


# --------------------------------------------------------------------------------------------- config


def test_config_layers_from_felix_configuration() -> None:
    default_cfg = {"route_refresh_interval": 90.0, "health_port": 9099}
    check_sequence(make_graph, [
        Step(state(), expect(config=default_cfg)),
        Step(state(felix("default", routeRefreshInterval="10s")),
             expect(config={"route_refresh_interval": 10.0})),
        Step(state(felix("default", routeRefreshInterval="10s"),
                   felix(f"node.{HOST}", routeRefreshInterval="20s"),
                   felix(f"node.{OTHER}", routeRefreshInterval="30s")),
             expect(config={"route_refresh_interval": 20.0})),
        Step(state(felix("default", routeRefreshInterval="bogus", healthPort=1234)),
             expect(config={"route_refresh_interval": 90.0, "health_port": 1234})),
    ])


def test_everything_together() -> None:
    check_sequence(make_graph, [
        Step(state(wep("a"), block("10.65.0.0/26"), affinity("10.65.0.0/26"),
                   felix("default", ipv6Support=False)),
             expect([ep("a")], ["10.65.0.0/26"], {"ipv6_support": False})),
        Step(state(wep("a", node=OTHER), block("10.65.0.0/26", host=OTHER),
                   affinity("10.65.0.0/26", host=OTHER), wep("c", ips=("10.65.0.70/32",))),
             expect([ep("c", ips=("10.65.0.70/32",))], config={"ipv6_support": True})),
    ])


# --------------------------------------------------------------------------------------------- targeted


def _run(graph: CalcGraph, *events: SyncEvent) -> None:
    for event in events:
        graph.on_event(event)


def _graph() -> tuple[CalcGraph, DataplaneModel]:
    model = DataplaneModel()
    graph = make_graph(model.apply)
    assert isinstance(graph, CalcGraph)
    return graph, model


def test_nothing_reaches_the_dataplane_before_in_sync_then_config_first_and_in_sync_last() -> None:
    graph, model = _graph()
    _run(graph, kv_event(*wep("a")), kv_event(*block("10.65.0.0/26")), kv_event(*affinity("10.65.0.0/26")))
    assert graph.flush() == 0 and model.messages == []
    _run(graph, InSync())
    graph.flush()
    kinds = [type(msg).__name__ for msg in model.messages]
    assert kinds == ["ConfigUpdate", "WorkloadEndpointUpdate", "HostBlockUpdate", "InSync"]
    _run(graph, InSync())  # a later resync's InSync is not forwarded again
    assert graph.flush() == 0


def test_one_change_sends_only_its_own_message() -> None:
    graph, model = _graph()
    _run(graph, *(kv_event(*wep(f"w{i}", ips=(f"10.65.0.{i}/32",))) for i in range(20)), InSync())
    graph.flush()
    model.messages.clear()
    _run(graph, kv_event(*wep("w3", ips=("10.65.1.3/32",))), kv_event(*wep("r", node=OTHER)))
    graph.flush()
    assert model.messages == [ep("w3", ips=("10.65.1.3/32",))]
    model.messages.clear()
    _run(graph, kv_event(*wep("w3", ips=("10.65.1.3/32",))))  # rewritten unchanged (new revision)
    assert graph.flush() == 0


def test_coalescing_between_flushes() -> None:
    graph, model = _graph()
    _run(graph, InSync())
    graph.flush()
    model.messages.clear()
    key, value = wep("a")
    _run(graph, kv_event(key, value), kv_event(key, None))  # never reached the dataplane
    assert graph.flush() == 0
    _run(graph, kv_event(key, value))
    graph.flush()
    model.messages.clear()
    _run(graph, kv_event(*wep("a", ips=("10.65.0.9/32",))), kv_event(*wep("a", node=OTHER)))
    graph.flush()
    assert model.messages == [m.WorkloadEndpointRemove(m.WorkloadEndpointId("default", "a"))]


def test_unrelated_keys_are_ignored() -> None:
    graph, model = _graph()
    _run(graph, kv_event("/calico/felix/v2/no-region/host/x/status", {"time": "now"}),
         kv_event(ipam_keys.handle_key("h1"), {"block": {}}),
         kv_event(kind_info("IPPool").key("p"), {"junk": True}), InSync())
    graph.flush()
    assert [type(msg).__name__ for msg in model.messages] == ["ConfigUpdate", "InSync"]


Factory = Callable[[Sink], Graph]
