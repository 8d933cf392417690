"""The flow-log statements of the rendered table and the catalog that names them agree.

For each scenario the real calc runs for host h1, the table is rendered with flow logs on, and a
packet goes through the forward hook (the nft interpreter). Every prefix it logged must resolve in
a `RuleCatalog` fed the same messages; the last logged rule's action is the verdict (allow for
accept, deny for drop); and it names the policy, tier and rule the user-space evaluator
(`tortie.policy.trace`) says decided. With flow logs off, nothing is logged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tortie.calc.policy_graph import run_snapshot
from tortie.dataplane.nft.config import FLOW_LOG_GROUPS, RenderConfig
from tortie.dataplane.nft.interp import NftPacket, forward
from tortie.dataplane.nft.ir import Limit, Log
from tortie.dataplane.nft.ruleset import PolicyState, render_ruleset
from tortie.flows.catalog import RuleCatalog
from tortie.policy import trace
from tortie.policy.trace import Packet
from tortie.testing.policy_world import gnp, keyed, np, profile, tier, wep

FLOW_CFG = replace(RenderConfig(), flow_log_groups=FLOW_LOG_GROUPS)
A, B, C = "10.0.0.1", "10.0.0.2", "10.0.9.9"
WORLD: list[dict[str, Any]] = [
    wep("a", f"{A}/32", labels={"app": "a"}, profiles=["open"]),
    wep("b", f"{B}/32", labels={"app": "db"}, profiles=["open"]),
    wep("c", f"{C}/32", node="h2", labels={"app": "c"}),
    profile("open", ingress=[{"action": "Allow"}], egress=[{"action": "Allow"}]),
    tier("sec", 10),
    gnp("sec.gate", tier="sec", selector="app == 'db'",
        ingress=[{"action": "Pass", "source": {"selector": "app == 'a'"}},
                 {"action": "Deny", "protocol": "TCP", "destination": {"ports": [22]}}]),
    np("db-allow", selector="app == 'db'",
       ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [5432]}}]),
]


def _state(cfg: RenderConfig) -> tuple[PolicyState, RuleCatalog]:
    state, catalog = PolicyState(cfg), RuleCatalog()
    for msg in run_snapshot("h1", keyed(WORLD)):
        state.record(msg)
        catalog.on_message(msg)
    return state, catalog


@pytest.mark.parametrize(
    ("src", "dst", "iif", "oif", "port", "verdict", "last"),
    [
        (A, B, "torta", "tortb", 5432, "accept", "default|NetworkPolicy(default/db-allow)|ingress[0]|allow"),
        (A, B, "torta", "tortb", 80, "drop", "default|NetworkPolicy(default/db-allow)|end-of-tier|deny"),
        (C, B, "eth0", "tortb", 22, "drop", "sec|GlobalNetworkPolicy(sec.gate)|ingress[1]|deny"),
        (C, B, "eth0", "tortb", 5432, "drop", "sec|GlobalNetworkPolicy(sec.gate)|end-of-tier|deny"),
        (B, C, "tortb", "eth0", 443, "accept", "-|Profile(open)|egress[0]|allow"),
    ],
)
def test_logged_rules_resolve_and_name_the_deciding_rule(
    src: str, dst: str, iif: str, oif: str, port: int, verdict: str, last: str
) -> None:
    state, catalog = _state(FLOW_CFG)
    pkt = Packet(src, dst, 6, 40000, port)
    outcome = forward(render_ruleset(state), NftPacket.of(pkt, iif, oif))
    assert outcome.verdict == verdict
    hits = catalog.resolve(outcome.logged)
    assert set(hits) == set(outcome.logged), "every logged prefix names a rule"
    named = [str(hits[p]) for p in outcome.logged]
    assert named[-1] == last
    assert named[-1].endswith("allow" if verdict == "accept" else "deny")
    # the user-space evaluator agrees on the rule that decided the last policy check
    endpoints = {str(e.ipv4_nets[0]).split("/")[0]: e for e in state.endpoints.values()}
    if dst in endpoints:
        decision = trace.evaluate_endpoint(state, endpoints[dst], "ingress", pkt)
    else:
        decision = trace.evaluate_endpoint(state, endpoints[src], "egress", pkt)
    tier_, policy, rule, action = last.split("|")
    assert decision.verdict == action
    if rule not in ("end-of-tier", "default-deny"):
        assert (decision.policy, decision.rule) == (policy, rule)
    if rule == "end-of-tier":
        assert decision.tier == tier_ and decision.policy is None


def test_a_pass_then_allow_logs_both_tiers_in_order() -> None:
    state, catalog = _state(FLOW_CFG)
    outcome = forward(render_ruleset(state), NftPacket.of(Packet(A, B, 6, 40000, 5432), "torta", "tortb"))
    named = [str(h) for h in catalog.resolve(outcome.logged).values()]
    assert named == [
        "-|Profile(open)|egress[0]|allow",
        "sec|GlobalNetworkPolicy(sec.gate)|ingress[0]|pass",
        "default|NetworkPolicy(default/db-allow)|ingress[0]|allow",
    ]
    hits = catalog.resolve(outcome.logged)
    assert [hits[p].inbound for p in outcome.logged] == [False, True, True]


def test_denies_are_rate_limited_and_nothing_logs_without_flow_logs() -> None:
    state, _ = _state(FLOW_CFG)
    limited = [
        r for c in render_ruleset(state).chains.values() for r in c.rules
        if any(isinstance(s, Log) and s.group is not None for s in r.stmts)
    ]
    assert limited, "flow logs rendered"
    for r in limited:
        logs = [s for s in r.stmts if isinstance(s, Log)]
        assert logs[0].group in FLOW_LOG_GROUPS and logs[0].prefix.startswith("tf:")
        if "Deny" in r.label or "deny" in r.label:
            assert any(isinstance(s, Limit) for s in r.stmts)
    plain, _ = _state(RenderConfig())
    outcome = forward(render_ruleset(plain), NftPacket.of(Packet(A, B, 6, 40000, 5432), "torta", "tortb"))
    assert outcome.verdict == "accept" and outcome.logged == []


def test_removed_policies_stay_named_for_a_grace_period() -> None:
    state, catalog = _state(FLOW_CFG)
    outcome = forward(render_ruleset(state), NftPacket.of(Packet(A, B, 6, 40000, 5432), "torta", "tortb"))
    from tortie.dataplane.messages.policy import PolicyId, PolicyRemove

    catalog.on_message(PolicyRemove(PolicyId("NetworkPolicy", "default", "db-allow")))
    assert len(catalog.resolve(outcome.logged)) == 3
    catalog.expire()
    catalog.expire()
    assert len(catalog.resolve(outcome.logged)) == 2  # the removed policy's rule is forgotten
