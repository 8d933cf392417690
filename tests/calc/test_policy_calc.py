"""The policy calc as state sequences (conventions #2): incremental == from scratch, in any order.

Each step is a whole datastore state; its expected dataplane state is what a fresh agent would get
from that state alone (`run_snapshot`). `check_sequence` replays the steps incrementally, with keys
and states reversed, empty states inserted, squashed, and from an empty snapshot, and the strict
harness model rejects redundant updates and removes of unknown keys. Plus targeted checks of what
the messages say (only active policies and their sets, fail-closed ordering, flush ranks).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from tortie.calc.policy_graph import PolicyGraph, run_snapshot
from tortie.dataplane.messages import Message, WorkloadEndpointId
from tortie.dataplane.messages import policy as pm
from tortie.datastore.syncer import InSync
from tortie.selector import parse
from tortie.testing import calc_harness as h
from tortie.testing.policy_world import ALLOW_ALL, gnp, hep, keyed, network_set, np, pool, profile, tier, wep

_TABLES = {
    pm.IPSetUpdate: ("ipsets", lambda m: m.id, False),
    pm.IPSetRemove: ("ipsets", lambda m: m.id, True),
    pm.PolicyUpdate: ("policies", lambda m: m.id, False),
    pm.PolicyRemove: ("policies", lambda m: m.id, True),
    pm.ProfileUpdate: ("profiles", lambda m: m.id, False),
    pm.ProfileRemove: ("profiles", lambda m: m.id, True),
    pm.PoolUpdate: ("pools", lambda m: m.name, False),
    pm.PoolRemove: ("pools", lambda m: m.name, True),
    pm.EndpointPolicyUpdate: ("endpoint_policy", lambda m: m.id, False),
    pm.EndpointPolicyRemove: ("endpoint_policy", lambda m: m.id, True),
    pm.HostEndpointPolicyUpdate: ("host_endpoint_policy", lambda m: m.id, False),
    pm.HostEndpointPolicyRemove: ("host_endpoint_policy", lambda m: m.id, True),
}
for _type, (_table, _key, _remove) in _TABLES.items():
    h.MESSAGE_TABLES.setdefault(_type, h.TableSpec(_table, _key, _remove))


def make_graph(sink: h.Sink) -> PolicyGraph:
    return PolicyGraph("h1", sink)


def state(*objs: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return dict(keyed(objs))


def expected_from_scratch(datastore: Mapping[str, Mapping[str, Any]]) -> h.DataplaneState:
    tables: dict[str, dict[Hashable, object]] = {}
    for msg in run_snapshot("h1", list(datastore.items())):
        spec = h.MESSAGE_TABLES.get(type(msg))
        if spec is not None and not spec.remove:
            tables.setdefault(spec.table, {})[spec.key(msg)] = msg
    return h.DataplaneState(tables)


def steps(*states: dict[str, Mapping[str, Any]]) -> list[h.Step]:
    return [h.Step(s, expected_from_scratch(s)) for s in states]


A = wep(
    "a",
    "10.0.0.1/32",
    labels={"app": "a"},
    profiles=["allow-all"],
    ports=[{"name": "http", "protocol": "TCP", "port": 80}],
)
B = wep(
    "b",
    "10.0.1.2/32",
    node="h2",
    labels={"app": "b"},
    ports=[{"name": "http", "protocol": "TCP", "port": 8080}],
)
POL = gnp(
    "a-in",
    selector="app == 'a'",
    ingress=[
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {"selector": "app == 'b'"},
            "destination": {"ports": ["http"]},
        }
    ],
    egress=[{"action": "Allow", "destination": {"selector": "set == 'ext'"}}],
)
EXT = network_set("ext", ["192.0.2.0/24", "192.0.2.0/25"], labels={"set": "ext"})


def test_sequence_policy_labels_profiles_sets_and_tiers() -> None:
    h.check_sequence(
        make_graph,
        steps(
            state(A, B, ALLOW_ALL),
            state(A, B, ALLOW_ALL, POL, EXT),
            state(A, wep("b", "10.0.1.2/32", node="h2", labels={"app": "c"}), ALLOW_ALL, POL, EXT),
            state(
                A,
                B,
                profile("allow-all", ingress=[{"action": "Allow"}], labels_to_apply={"app": "b"}),
                POL,
                tier("default", order=5),
            ),
            state(wep("a", "10.0.0.1/32", node="h2", labels={"app": "a"}), B, POL, EXT),
            state(
                A,
                B,
                ALLOW_ALL,
                np("local", "default", selector="all()", egress=[{"action": "Deny"}]),
                POL,
                pool("p", "10.0.0.0/16", nat_outgoing=True),
                hep("eth0", iface="eth0", labels={"app": "a"}),
            ),
        ),
    )


def test_only_active_policies_and_their_sets_are_sent() -> None:
    out: list[Message] = []
    graph = PolicyGraph("h1", out.append)
    for obj in (
        A,
        B,
        POL,
        EXT,
        gnp(
            "elsewhere",
            selector="app == 'b'",
            ingress=[{"action": "Allow", "source": {"selector": "app == 'zz'"}}],
        ),
    ):
        graph.on_event(h.kv_event(keyed([obj])[0][0], obj))
    graph.on_event(InSync())
    graph.flush()
    policies = {m.id.name for m in out if isinstance(m, pm.PolicyUpdate)}
    assert policies == {"a-in"}
    sets = {m.id: m for m in out if isinstance(m, pm.IPSetUpdate)}
    assert parse("app == 'zz'").unique_id not in sets
    named = [m for m in sets.values() if m.kind == "port"]
    # destination named port without a selector: every endpoint (of a GNP's scope) naming "http"
    assert [sorted(m.members) for m in named] == [
        [pm.NamedPortMember("10.0.0.1", 6, 80), pm.NamedPortMember("10.0.1.2", 6, 8080)]
    ]
    assert sets[parse("set == 'ext'").unique_id].members == frozenset({"192.0.2.0/24", "192.0.2.0/25"})


def test_flush_order_sets_before_policies_before_endpoints_and_reverse_on_removal() -> None:
    out: list[Message] = []
    graph = PolicyGraph("h1", out.append)
    graph.on_event(InSync())
    graph.flush()
    out.clear()
    for key, value in keyed([A, B, ALLOW_ALL, POL]):
        graph.on_event(h.kv_event(key, value))
    graph.flush()
    kinds = [type(m).__name__ for m in out]
    assert (
        kinds.index("IPSetUpdate")
        < kinds.index("PolicyUpdate")
        < kinds.index("ProfileUpdate")
        < kinds.index("EndpointPolicyUpdate")
    )
    endpoint = next(m for m in out if isinstance(m, pm.EndpointPolicyUpdate))
    assert endpoint.id == WorkloadEndpointId("default", "a")
    assert [t.ingress for t in endpoint.tiers] == [(pm.PolicyId("GlobalNetworkPolicy", "", "a-in"),)]
    out.clear()
    for key, _value in keyed([A, POL]):
        graph.on_event(h.kv_event(key, None))
    graph.flush()
    kinds = [type(m).__name__ for m in out]
    assert kinds.index("EndpointPolicyRemove") < kinds.index("PolicyRemove") < kinds.index("IPSetRemove")


def _tier_names(objs: Sequence[Mapping[str, Any]]) -> list[str]:
    msgs = run_snapshot("h1", keyed(objs))
    endpoint = next(m for m in msgs if isinstance(m, pm.EndpointPolicyUpdate))
    return [t.name for t in endpoint.tiers]


def test_tier_order_and_missing_tiers() -> None:
    objs = [
        A,
        tier("late", order=2_000_000),
        tier("early", order=1),
        gnp("late.p", tier="late", selector="all()", ingress=[{"action": "Allow"}]),
        gnp("early.p", tier="early", selector="all()", ingress=[{"action": "Allow"}]),
        gnp("ghost.p", tier="ghost", selector="all()", ingress=[{"action": "Allow"}]),
        gnp("p", selector="all()", ingress=[{"action": "Allow"}]),
    ]
    assert _tier_names(objs) == ["early", "default", "late", "ghost"]
