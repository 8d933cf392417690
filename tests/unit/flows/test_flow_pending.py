"""PendingPolicy: the verdict with the staged policies applied, held to the independent oracle.

The oracle (`tortie.testing.policy_oracle`, through `oracle_decision`) answers from the resources of
a world in which each staged policy has been applied by hand (Set: the enforced policy replaced or
added; Delete: removed); the pending evaluator must agree packet by packet, and follow staged
policies as they come and go through updates after its listing.
"""

from __future__ import annotations

from typing import Any

import pytest

from tortie.flows.pending import PendingPolicy
from tortie.kernel.conntrack import FlowTuple
from tortie.policy.trace import Packet
from tortie.testing.policy_world import gnp, key_of, np, oracle_decision, profile, wep

API = "projectcalico.org/v3"
A, B = "10.0.0.1", "10.0.0.2"
ENFORCED: list[dict[str, Any]] = [
    wep("a", f"{A}/32", labels={"app": "a"}, profiles=["open"]),
    wep("b", f"{B}/32", labels={"app": "db"}, profiles=["open"]),
    profile("open", ingress=[{"action": "Allow"}], egress=[{"action": "Allow"}]),
    np("db-allow", selector="app == 'db'",
       ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [5432, 6379]}}]),
    gnp("block-a-out", selector="app == 'a'", types=["Egress"],
        egress=[{"action": "Deny", "protocol": "UDP"}, {"action": "Allow"}]),
]


def staged(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


STAGE_DB = staged("StagedNetworkPolicy", "db-allow", {
    "selector": "app == 'db'",
    "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [6379]}}],
}, "default")
STAGE_UNBLOCK = staged("StagedGlobalNetworkPolicy", "block-a-out", {"stagedAction": "Delete"})
APPLIED = [o for o in ENFORCED if o["metadata"]["name"] not in ("db-allow", "block-a-out")] + [
    np("db-allow", selector="app == 'db'",
       ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [6379]}}]),
]


def pending_for(objs: list[dict[str, Any]]) -> PendingPolicy:
    listing = [(key_of(o), o, 1) for o in objs]
    return PendingPolicy("h1", lambda: listing)


CASES = [(6, 40000, 5432), (6, 40000, 6379), (17, 40000, 53), (6, 40000, 80)]


@pytest.mark.parametrize(("proto", "sport", "dport"), CASES)
def test_pending_verdicts_agree_with_the_oracle_of_the_applied_world(
    proto: int, sport: int, dport: int
) -> None:
    pending = pending_for([*ENFORCED, STAGE_DB, STAGE_UNBLOCK])
    for obj in (STAGE_DB, STAGE_UNBLOCK):
        pending.on_update(key_of(obj), obj, 1)
    pending.refresh()
    flow = FlowTuple(proto, A, B, sport, dport)
    pkt = Packet(A, B, proto, sport, dport)
    ingress = pending.evaluate(B, True, flow)
    egress = pending.evaluate(A, False, flow)
    assert ingress is not None and egress is not None
    verdict = "accept" if ingress[0] == egress[0] == "allow" else "drop"
    assert verdict == oracle_decision(APPLIED, "h1", pkt, "a", "b")
    if (proto, dport) == (6, 5432):
        assert ingress == ("deny", ("default|StagedNetworkPolicy(default/db-allow)|end-of-tier|deny",))
    if (proto, dport) == (6, 6379):
        assert ingress == ("allow", ("default|StagedNetworkPolicy(default/db-allow)|ingress[0]|allow",))
    if proto == 17:  # the staged Delete lifts the enforced egress deny
        assert egress[0] == "allow" and oracle_decision(ENFORCED, "h1", pkt, "a", "b") == "drop"


def test_staged_policies_come_and_go_through_updates() -> None:
    pending = pending_for(list(ENFORCED))
    flow = FlowTuple(6, A, B, 40000, 5432)
    pending.refresh()
    assert not pending.active and pending.evaluate(B, True, flow) is None
    pending.on_update(key_of(STAGE_DB), STAGE_DB, 5)  # the first staged policy: listing, then updates
    pending.refresh()
    assert pending.active and pending.evaluate(B, True, flow) == (
        "deny", ("default|StagedNetworkPolicy(default/db-allow)|end-of-tier|deny",))
    widened = {**STAGE_DB, "spec": {**STAGE_DB["spec"], "ingress": [{"action": "Allow"}]}}
    pending.on_update(key_of(STAGE_DB), widened, 6)
    pending.refresh()
    assert pending.evaluate(B, True, flow) == (
        "allow", ("default|StagedNetworkPolicy(default/db-allow)|ingress[0]|allow",))
    pending.on_update(key_of(STAGE_DB), None, 7)
    pending.refresh()
    assert not pending.active and pending.evaluate(B, True, flow) is None
