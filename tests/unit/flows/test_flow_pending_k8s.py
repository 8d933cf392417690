"""PendingPolicy with StagedKubernetesNetworkPolicies, held to the Kubernetes reference evaluator.

The cluster is Kubernetes' e2e layout (namespaces x, y, z with pods a, b, c, all on this host) under
real Kubernetes NetworkPolicies; staged Kubernetes policies replace one (Set), add one (Set) and take
one away (Delete). The reference evaluator (tortie.testing.k8s_reference, written from the
Kubernetes specification) reads the cluster with the staged policies applied by hand; the pending
verdict of every pod pair, TCP and UDP, ports 80 and 81, must equal its answer.
"""

from __future__ import annotations

import itertools
from typing import Any

from tortie.flows.pending import PendingPolicy
from tortie.kernel.conntrack import FlowTuple
from tortie.testing.k8s_reference import Cluster, Connection, Pod
from tortie.testing.k8s_world import (
    E2E_NAMESPACES,
    PROTOCOL_NUMBERS,
    e2e_pods,
    namespace,
    network_policy,
    pod_endpoint,
)
from tortie.testing.policy_world import key_of

PODS = e2e_pods(("h1",))
NAMESPACES: dict[str, dict[str, str]] = {"x": {"ns": "x"}, "y": {"ns": "y"}, "z": {"ns": "z"}}


def by_id(ident: str) -> Pod:
    return next(p for p in PODS if p.id == ident)


X_ONLY_B = network_policy("only-b", "x", {  # x's pods: ingress from x/b, port 80 only
    "podSelector": {},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]}],
})
Y_NO_EGRESS = network_policy("no-egress", "y", {  # y/a may send nothing
    "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
})
ENFORCED = [X_ONLY_B, Y_NO_EGRESS]


def staged(name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "StagedKubernetesNetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


# Set over x/only-b: namespace y may call x's pods too, on any port
X_FROM_Y_SPEC = {
    "podSelector": {},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}},
                          {"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
}
STAGE_X = staged("only-b", "x", X_FROM_Y_SPEC)
STAGE_Z = staged("c-udp-81", "z", {  # Set, new: z/c takes only UDP 81
    "podSelector": {"matchLabels": {"pod": "c"}},
    "ingress": [{"ports": [{"protocol": "UDP", "port": 81}]}],
})
STAGE_Y = staged("no-egress", "y", {"stagedAction": "Delete", "podSelector": {}})
APPLIED = [
    network_policy("only-b", "x", X_FROM_Y_SPEC),
    network_policy("c-udp-81", "z", STAGE_Z["spec"]),
]
CONNECTIONS = [
    Connection(src, dst, proto, port)
    for src, dst in itertools.permutations(PODS, 2)
    for proto in ("TCP", "UDP")
    for port in (80, 81)
]


def cluster_objects() -> list[dict[str, Any]]:
    return [pod_endpoint(p, i) for i, p in enumerate(PODS)] + [
        namespace(ns, NAMESPACES[ns]) for ns in E2E_NAMESPACES
    ]


def pending_for(objs: list[dict[str, Any]]) -> PendingPolicy:
    listing = [(key_of(o), o, 1) for o in objs]
    pending = PendingPolicy("h1", lambda: listing)
    for obj in objs:
        pending.on_update(key_of(obj), obj, 1)
    pending.refresh()
    return pending


def pending_verdict(pending: PendingPolicy, conn: Connection) -> tuple[bool, tuple[str, ...]]:
    flow = FlowTuple(PROTOCOL_NUMBERS[conn.protocol], conn.src_ip, conn.dst_ip, 40000, conn.port)
    egress = pending.evaluate(conn.src_ip, False, flow)
    ingress = pending.evaluate(conn.dst_ip, True, flow)
    assert egress is not None and ingress is not None
    return egress[0] == ingress[0] == "allow", egress[1] + ingress[1]


def test_pending_verdicts_equal_the_reference_evaluator_of_the_applied_cluster() -> None:
    pending = pending_for([*cluster_objects(), *ENFORCED, STAGE_X, STAGE_Z, STAGE_Y])
    before = Cluster(PODS, NAMESPACES, ENFORCED)
    after = Cluster(PODS, NAMESPACES, APPLIED)
    changed = 0
    for conn in CONNECTIONS:
        allowed, _hits = pending_verdict(pending, conn)
        assert allowed == after.allowed(conn), conn
        changed += before.allowed(conn) != after.allowed(conn)
    assert changed > 20  # the staged policies change many verdicts, both ways


def test_pending_verdicts_name_the_staged_kubernetes_policies() -> None:
    pending = pending_for([*cluster_objects(), *ENFORCED, STAGE_X, STAGE_Z, STAGE_Y])
    allowed, hits = pending_verdict(pending, Connection(by_id("y/c"), by_id("x/a"), "TCP", 81))
    assert allowed and "default|StagedKubernetesNetworkPolicy(x/only-b)|ingress[1]|allow" in hits
    allowed, hits = pending_verdict(pending, Connection(by_id("x/a"), by_id("z/c"), "TCP", 80))
    assert not allowed and hits[-1] == "default|StagedKubernetesNetworkPolicy(z/c-udp-81)|end-of-tier|deny"
    # a Kubernetes policy no staged object touches keeps its own (translated) name
    pending = pending_for([*cluster_objects(), *ENFORCED, STAGE_Z])
    allowed, hits = pending_verdict(pending, Connection(by_id("z/a"), by_id("x/b"), "TCP", 80))
    assert not allowed and hits[-1] == "default|NetworkPolicy(x/knp.default.only-b)|end-of-tier|deny"


def test_staged_kubernetes_policies_come_and_go_through_updates() -> None:
    objs = [*cluster_objects(), *ENFORCED]
    pending = pending_for(objs)
    conn = Connection(by_id("y/a"), by_id("x/c"), "UDP", 81)
    assert not pending.active
    assert not Cluster(PODS, NAMESPACES, ENFORCED).allowed(conn)
    pending.on_update(key_of(STAGE_Y), STAGE_Y, 5)  # Delete y/no-egress: y/a may send to x... not to x/c
    pending.refresh()
    assert pending.active and pending_verdict(pending, conn)[0] is False
    pending.on_update(key_of(STAGE_X), STAGE_X, 6)  # and x now takes namespace y on every port
    pending.refresh()
    assert pending_verdict(pending, conn)[0] is True
    pending.on_update(key_of(STAGE_Y), None, 7)  # the Delete withdrawn: y/a's egress isolation is back
    pending.refresh()
    allowed, hits = pending_verdict(pending, conn)
    assert not allowed and hits[0] == "default|NetworkPolicy(y/knp.default.no-egress)|end-of-tier|deny"
    pending.on_update(key_of(STAGE_X), None, 8)
    pending.refresh()
    assert not pending.active
