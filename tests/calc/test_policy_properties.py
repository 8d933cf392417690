"""Property tests: the calc + nft renderer, and the calc + user-space evaluator, decide every packet
exactly like the oracle; the policy manager's incremental table is the full render.

Hypothesis builds random worlds (endpoints on this host and another, namespaces, profiles with
labelsToApply, network sets, tiers, GNPs and NPs with random rules over every match field) and
random packets between endpoints, network-set members and outside addresses. For each packet the
dataplane answer (PolicyGraph -> PolicyState -> render_ruleset -> interpreter, forward hook with
the endpoints' interfaces) and the user-space evaluator's (tortie.policy.trace on the same calc
output) must equal the oracle's (tortie.testing.policy_oracle, from the resources: anti-spoofing,
egress of a local source, ingress of a local destination).

A second property aims at NetworkPolicy's namespace scoping: *twins* (endpoints with the same
labels, named ports and service account in three namespaces, on both hosts), only
NetworkPolicies, rules whose selectors match twins everywhere, packets between namespaces. A
NetworkPolicy whose applies-to selector, rule selector, notSelector, service-account match or named
port reached outside its namespace would decide some packet differently from the oracle (checked
by mutating `policy_rules` that way: the first property alone missed the rule-selector mutation on
some seeds).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tortie.calc.policy_graph import PolicyGraph
from tortie.dataplane.managers.policy import PolicyManager
from tortie.dataplane.nft.parse import parse_table
from tortie.dataplane.nft.ruleset import render_ruleset
from tortie.datastore.syncer import InSync
from tortie.model import ValidationError, parse_resource
from tortie.policy.trace import Packet
from tortie.testing.calc_harness import kv_event
from tortie.testing.nft_fake import FakeNftables
from tortie.testing.policy_world import (
    dataplane_decision,
    gnp,
    hep,
    keyed,
    network_set,
    np,
    oracle_decision,
    policy_state,
    pool,
    profile,
    tier,
    trace_decision,
    wep,
)

HOST = "h1"
# Each property takes about a minute on a quiet 2-core machine and more than the suite's 300 s hang
# guard when the machine runs several suites at once; the guard is for hangs, not for speed.
LOADED_MACHINE_TIMEOUT = 900
NAMESPACES = ("ns1", "ns2", "ns3")
SELECTORS = (
    "all()",
    "app == 'a'",
    "app == 'b'",
    "app in {'a', 'c'}",
    "has(role)",
    "!has(app)",
    "role != 'db'",
    "kind == 'ext'",
    "app == 'a' && role == 'db'",
)
NS_SELECTORS = ("env == 'prod'", "all()", "global()", "projectcalico.org/name == 'ns2'", "!has(env)")
NETS = ("10.0.1.0/24", "10.0.0.0/16", "10.0.2.2/32", "192.168.5.0/24", "8.8.8.0/24")
PORTS: tuple[Any, ...] = (80, 53, 8080, "1000:2000", "http", "dns")
ADDRESSES = ("8.8.8.8", "192.168.5.7", "10.0.9.9")


def _maybe(draw: Any, percent: int) -> bool:
    """True about `percent`% of the time (absence first, so shrinking simplifies rules)."""
    return bool(draw(st.sampled_from([False] * (100 - percent) + [True] * percent)))


def _entity(draw: Any, protocol: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if _maybe(draw, 60):
        out["selector"] = draw(st.sampled_from(SELECTORS))
    if _maybe(draw, 10):
        out["notSelector"] = draw(st.sampled_from(SELECTORS))
    if _maybe(draw, 15):
        out["namespaceSelector"] = draw(st.sampled_from(NS_SELECTORS))
    if _maybe(draw, 15):
        out["nets"] = draw(st.lists(st.sampled_from(NETS), min_size=1, max_size=2, unique=True))
    if _maybe(draw, 10):
        out["notNets"] = draw(st.lists(st.sampled_from(NETS), min_size=1, max_size=2, unique=True))
    if _maybe(draw, 10):
        out["serviceAccounts"] = {"names": [draw(st.sampled_from(("sa1", "sa2")))]}
    numeric_ok = protocol in ("TCP", "UDP")
    choices = PORTS if numeric_ok else ("http", "dns")
    if protocol in (None, "TCP", "UDP") and _maybe(draw, 30):
        out["ports"] = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2, unique=True))
    if numeric_ok and _maybe(draw, 10):
        out["notPorts"] = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2, unique=True))
    return out


@st.composite
def rules(draw: Any) -> dict[str, Any]:
    protocol = draw(st.sampled_from((None, None, None, "TCP", "UDP", "ICMP", 17)))
    rule: dict[str, Any] = {"action": draw(st.sampled_from(("Allow", "Allow", "Deny", "Pass", "Log")))}
    proto_name = {17: "UDP"}.get(protocol, protocol) if protocol is not None else None
    if protocol is not None:
        rule["protocol"] = protocol
    if _maybe(draw, 10):
        rule["notProtocol"] = draw(st.sampled_from(("TCP", "UDP", 1)))
    if proto_name == "ICMP" and draw(st.booleans()):
        key = draw(st.sampled_from(("icmp", "notICMP")))
        rule[key] = {"type": 8} if draw(st.booleans()) else {"type": 8, "code": 0}
    src = _entity(draw, proto_name if isinstance(proto_name, str) else None) if _maybe(draw, 70) else {}
    dst = _entity(draw, proto_name if isinstance(proto_name, str) else None) if _maybe(draw, 50) else {}
    if src:
        rule["source"] = src
    if dst:
        rule["destination"] = dst
    return rule


@st.composite
def worlds(draw: Any) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    count = draw(st.integers(2, 6))
    for i in range(count):
        labels: dict[str, str] = {}
        if draw(st.booleans()):
            labels["app"] = draw(st.sampled_from(("a", "b", "c")))
        if draw(st.integers(0, 2)) == 0:
            labels["role"] = draw(st.sampled_from(("db", "web")))
        ports = []
        if draw(st.booleans()):
            ports.append({"name": "http", "protocol": "TCP", "port": draw(st.sampled_from((80, 8080)))})
        if draw(st.integers(0, 2)) == 0:
            ports.append({"name": "dns", "protocol": "UDP", "port": 53})
        objs.append(
            wep(
                f"w{i}",
                f"10.0.{i % 3}.{i + 2}/32",
                node=draw(st.sampled_from((HOST, HOST, "h2"))),
                namespace=draw(st.sampled_from(NAMESPACES)),
                labels=labels,
                profiles=draw(st.lists(st.sampled_from(("p1", "p2", "p2", "gone")), max_size=2, unique=True)),
                ports=ports,
                service_account=draw(st.sampled_from((None, "sa1", "sa2"))),
                allow_spoofed=["10.0.9.0/24"] if draw(st.integers(0, 5)) == 0 else (),
            )
        )
    if draw(st.booleans()):
        objs.append(network_set("ext", ["192.168.5.0/24"], labels={"kind": "ext", "app": "c"}))
    if draw(st.booleans()):
        objs.append(
            network_set("inner", ["10.0.9.0/24", "10.0.9.9/32"], namespace="ns2", labels={"kind": "ext"})
        )
    for name in ("p1", "p2"):
        if draw(st.integers(0, 3)) == 0:
            continue
        allow_all = [{"action": "Allow"}]
        ingress = allow_all if draw(st.booleans()) else draw(st.lists(rules(), max_size=2))
        egress = allow_all if draw(st.booleans()) else draw(st.lists(rules(), max_size=2))
        objs.append(
            profile(
                name,
                ingress=ingress,
                egress=egress,
                labels_to_apply={"role": "web"} if draw(st.integers(0, 3)) == 0 else None,
            )
        )
    objs.append(profile("kns.ns1", labels_to_apply={"pcns.env": "prod"}))
    objs.append(
        tier(
            "t1",
            order=draw(st.sampled_from((10.0, 2_000_000.0))),
            default_action=draw(st.sampled_from((None, "Pass"))),
        )
    )
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(("gnp", "np", "np")))
        extra: dict[str, Any] = {}
        order = draw(st.sampled_from((None, 1.0, 5.0, 5.0)))
        if order is not None:
            extra["order"] = order
        tier_name = draw(st.sampled_from((None, "t1")))
        if tier_name:
            extra["tier"] = tier_name
        if draw(st.integers(0, 3)) == 0:
            extra["types"] = draw(st.sampled_from((["Ingress"], ["Egress"], ["Ingress", "Egress"])))
        ingress = draw(st.lists(rules(), max_size=3))
        egress = draw(st.lists(rules(), max_size=3))
        name = f"{tier_name}.pol{i}" if tier_name else f"pol{i}"
        if kind == "gnp":
            if draw(st.integers(0, 4)) == 0:
                extra["namespaceSelector"] = draw(st.sampled_from(NS_SELECTORS[:2]))
            objs.append(
                gnp(name, selector=draw(st.sampled_from(SELECTORS)), ingress=ingress, egress=egress, **extra)
            )
        else:
            objs.append(
                np(
                    name,
                    draw(st.sampled_from(NAMESPACES)),
                    selector=draw(st.sampled_from(SELECTORS)),
                    ingress=ingress,
                    egress=egress,
                    **extra,
                )
            )
    return objs


def _valid(objs: list[dict[str, Any]]) -> bool:
    try:
        for obj in objs:
            parse_resource(obj)
    except ValidationError:
        return False
    return True


@st.composite
def packets(draw: Any, objs: list[dict[str, Any]]) -> tuple[Packet, str | None, str | None]:
    endpoints = [
        (o["metadata"]["name"], o["spec"]["ipNetworks"][0].split("/")[0])
        for o in objs
        if o["kind"] == "WorkloadEndpoint"
    ]
    choices: list[tuple[str | None, str]] = [*endpoints, *endpoints, *((None, a) for a in ADDRESSES)]
    src_name, src_ip = draw(st.sampled_from(choices))
    dst_name, dst_ip = draw(st.sampled_from(choices))
    if src_name is not None and draw(st.integers(0, 6)) == 0:
        src_ip = draw(st.sampled_from(("10.0.9.4", "10.0.2.2")))  # spoofed (maybe allowed) source
    protocol = draw(st.sampled_from((6, 17, 1)))
    if protocol == 1:
        pkt = Packet(src_ip, dst_ip, 1, icmp_type=draw(st.sampled_from((8, 0))), icmp_code=0)
    else:
        pkt = Packet(
            src_ip,
            dst_ip,
            protocol,
            draw(st.sampled_from((1234, 53, 80))),
            draw(st.sampled_from((53, 80, 8080, 1500, 443))),
        )
    return pkt, src_name, dst_name


@pytest.mark.timeout(LOADED_MACHINE_TIMEOUT)
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(st.data())
def test_rendered_dataplane_and_evaluator_decide_like_the_oracle(data: st.DataObject) -> None:
    objs = data.draw(worlds())
    assume(_valid(objs))
    state = policy_state(objs, HOST)
    ruleset = render_ruleset(state)
    for _ in range(12):
        pkt, src, dst = data.draw(packets(objs))
        expected = oracle_decision(objs, HOST, pkt, src, dst)
        actual = dataplane_decision(objs, HOST, pkt, src, dst, ruleset)
        assert actual == expected, f"{pkt} from {src} to {dst}: dataplane {actual}, oracle {expected}"
        evaluated = trace_decision(objs, HOST, pkt, src, dst, state)
        assert evaluated == expected, f"{pkt} from {src} to {dst}: evaluator {evaluated}, oracle {expected}"


def _scoped_rule(draw: Any) -> dict[str, Any]:
    """A rule whose sides select by labels, notSelector, service accounts and named ports, rarely
    across namespaces (namespaceSelector), never by nets."""
    rule: dict[str, Any] = {"action": draw(st.sampled_from(("Allow", "Allow", "Deny", "Pass")))}
    protocol = draw(st.sampled_from((None, "TCP", "TCP", "UDP")))
    if protocol is not None:
        rule["protocol"] = protocol
    for side in ("source", "destination"):
        entity: dict[str, Any] = {}
        if _maybe(draw, 40):
            entity["selector"] = draw(st.sampled_from(SELECTORS[:7]))
        if _maybe(draw, 40):
            entity["notSelector"] = draw(st.sampled_from(SELECTORS[1:7]))
        if _maybe(draw, 15):
            entity["serviceAccounts"] = {"names": [draw(st.sampled_from(("sa1", "sa2")))]}
        if _maybe(draw, 10):
            entity["namespaceSelector"] = draw(st.sampled_from(NS_SELECTORS))
        if side == "destination" and protocol is not None and _maybe(draw, 60):
            entity["ports"] = [draw(st.sampled_from(("http", "dns", "http", 80)))]
        if entity:
            rule[side] = entity
    return rule


APPLIES_TO = ("all()", "all()", "app == 'a'", "app == 'b'", "app in {'a', 'c'}", "has(role)")


@st.composite
def namespaced_worlds(draw: Any) -> list[dict[str, Any]]:
    allow = [{"action": "Allow"}]
    objs: list[dict[str, Any]] = [profile("allow-all", ingress=allow, egress=allow)]
    objs.append(profile("kns.ns1", labels_to_apply={"pcns.env": "prod"}))
    n = 0
    for _ in range(draw(st.integers(1, 3))):
        labels = {"app": draw(st.sampled_from(("a", "b", "c")))}
        if draw(st.booleans()):
            labels["role"] = draw(st.sampled_from(("db", "web")))
        ports = [
            {"name": "http", "protocol": "TCP", "port": 80},
            {"name": "dns", "protocol": "UDP", "port": 53},
        ]
        account = draw(st.sampled_from((None, "sa1", "sa2")))
        for ns_index, namespace in enumerate(NAMESPACES):
            if ns_index == 2 and draw(st.booleans()):
                continue
            objs.append(
                wep(
                    f"w{n}",
                    f"10.0.{ns_index}.{n + 2}/32",
                    node=draw(st.sampled_from((HOST, HOST, "h2"))),
                    namespace=namespace,
                    labels=labels,
                    profiles=["allow-all"],
                    ports=ports,
                    service_account=account,
                )
            )
            n += 1
    for i in range(draw(st.integers(1, 4))):
        extra: dict[str, Any] = {}
        if draw(st.integers(0, 3)) == 0:
            extra["types"] = draw(st.sampled_from((["Ingress"], ["Egress"])))
        objs.append(
            np(
                f"pol{i}",
                draw(st.sampled_from(NAMESPACES)),
                selector=draw(st.sampled_from(APPLIES_TO)),
                order=float(i),
                ingress=[_scoped_rule(draw) for _ in range(draw(st.integers(0, 3)))],
                egress=[_scoped_rule(draw) for _ in range(draw(st.integers(1, 3)))],
                **extra,
            )
        )
    return objs


@pytest.mark.timeout(LOADED_MACHINE_TIMEOUT)
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(st.data())
def test_network_policies_reach_only_their_namespace(data: st.DataObject) -> None:
    objs = data.draw(namespaced_worlds())
    assume(_valid(objs))
    state = policy_state(objs, HOST)
    ruleset = render_ruleset(state)
    endpoints = [
        (o["metadata"]["name"], o["metadata"]["namespace"], o["spec"]["ipNetworks"][0].split("/")[0])
        for o in objs
        if o["kind"] == "WorkloadEndpoint"
    ]
    for _ in range(20):
        src_name, src_ns, src_ip = data.draw(st.sampled_from(endpoints))
        others = [e for e in endpoints if e[1] != src_ns] or endpoints
        dst_name, _dst_ns, dst_ip = data.draw(st.sampled_from(others))
        protocol, port = data.draw(st.sampled_from(((6, 80), (6, 80), (17, 53), (6, 8080))))
        pkt = Packet(src_ip, dst_ip, protocol, 1234, port)
        expected = oracle_decision(objs, HOST, pkt, src_name, dst_name)
        actual = dataplane_decision(objs, HOST, pkt, src_name, dst_name, ruleset)
        assert actual == expected, f"{pkt} {src_name} -> {dst_name}: dataplane {actual}, oracle {expected}"
        evaluated = trace_decision(objs, HOST, pkt, src_name, dst_name, state)
        assert evaluated == expected, f"{pkt} {src_name}->{dst_name}: evaluator {evaluated} oracle {expected}"


@st.composite
def host_extras(draw: Any) -> list[dict[str, Any]]:
    """What `worlds` lacks: host endpoints (by name, `*`, by expectedIPs), an IPv6 endpoint (the
    first member of a family re-renders every set, policy and profile), pools with NAT outgoing."""
    out: list[dict[str, Any]] = []
    if draw(st.booleans()):
        iface = draw(st.sampled_from(("eth0", "*", None)))
        out.append(hep("h", iface=iface, ips=["172.31.0.11"], labels={"app": draw(st.sampled_from("ab"))}))
    if draw(st.booleans()):
        out.append(wep("v6", ["10.0.5.5/32", "fd00::5/128"], node=HOST, labels={"app": "a"}))
    if draw(st.booleans()):
        out.append(pool("p", "10.0.0.0/16", nat_outgoing=draw(st.booleans())))
    return out


@pytest.mark.timeout(LOADED_MACHINE_TIMEOUT)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(st.data())
def test_incremental_table_is_the_full_render_of_the_same_state(data: st.DataObject) -> None:
    """The policy manager re-renders only dirty owners; after any change its table (and what the
    fake kernel holds) must be exactly `render_ruleset` of the state it was told."""
    states = [data.draw(worlds()) + data.draw(host_extras()) for _ in range(2)]
    assume(all(_valid(objs) for objs in states))
    fake = FakeNftables()
    manager = PolicyManager(fake)
    manager.state.interface_addresses = {"eth0": frozenset({"172.31.0.11"})}
    graph = PolicyGraph(HOST, manager.on_update)
    previous: dict[str, Any] = {}
    for objs in [*states, states[0], []]:
        current = dict(keyed(objs))
        for key in sorted(previous.keys() - current.keys()):
            graph.on_event(kv_event(key, None))
        for key, value in current.items():
            if previous.get(key) != value:
                graph.on_event(kv_event(key, value))
        graph.on_event(InSync())
        graph.flush()
        manager.apply()
        previous = current
        full = render_ruleset(manager.state)
        desired = manager.desired
        assert desired.chains == full.chains
        assert (desired.sets, desired.elements) == (full.sets, full.elements)
        assert (desired.maps, desired.map_elements) == (full.maps, full.map_elements)
        kernel = parse_table(fake.list_table("tortie") or [])
        assert {n: c.digests for n, c in kernel.chains.items()} == {
            n: c.digests for n, c in full.chains.items()
        }
        assert kernel.elements == full.elements and kernel.maps == full.map_elements
