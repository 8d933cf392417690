"""sig-network policy-api conformance cases for AdminNetworkPolicy and BaselineAdminNetworkPolicy, as
data (kubernetes-sigs/network-policy-api conformance/tests, manifests in conformance/base, written in
the v1alpha1 API of the standard channel, v0.1.x): the calc-level test
(tests/calc/test_k8s_admin_conformance.py) and the lab test (tests/e2e/test_k8s_lab.py) run them.

Layout: the suite's houses (tortie.testing.k8s_world.conformance_pods). `admin_cases(luna_0,
ravenclaw_nets)` gives every case by name as a sequence of `State`s: the policies in force and the
probes the conformance test makes (client, server, protocol, port, allowed); the two arguments are
the address of luna-lovegood-0 and networks that hold both ravenclaw pods (the egress `networks`
case).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortie.testing.k8s_world import STAFF, admin_policy, baseline_policy, network_policy

Probe = tuple[str, str, str, int, bool]  # client, server, protocol, port, allowed


def ns(house: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": f"network-policy-conformance-{house}"}}


def house(name: str) -> dict[str, Any]:
    return {"matchLabels": {"conformance-house": name}}


def staff(pod: str) -> dict[str, Any]:
    return {
        "pods": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": STAFF}},
            "podSelector": {"matchLabels": {"statefulset.kubernetes.io/pod-name": pod}},
        }
    }


def ports(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"portNumber": {"protocol": proto, "port": port}} for proto, port in pairs]


def rule(
    action: str, peer: dict[str, Any], name: str, direction: str, port_list: list[Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "action": action, "from" if direction == "ingress" else "to": [peer]}
    if port_list is not None:
        out["ports"] = port_list
    return out


def gress_rules(direction: str, *, baseline: bool = False) -> list[dict[str, Any]]:
    """core-gress-rules-combined: the rule list of one direction (the BANP has no Pass rules)."""
    in_ports = (("TCP", 80), ("UDP", 5353), ("SCTP", 9003))
    out_ports = (("TCP", 8080), ("UDP", 5353), ("SCTP", 9003))
    rules = [
        rule("Allow", {"namespaces": ns("ravenclaw")}, "allow-ravenclaw-everything", direction),
        rule("Deny", {"namespaces": ns("ravenclaw")}, "deny-ravenclaw-everything", direction),
        rule("Pass", {"namespaces": ns("ravenclaw")}, "pass-ravenclaw-everything", direction),
        rule(
            "Deny",
            {"namespaces": ns("slytherin")},
            "deny-slytherin-at-80-53-9003",
            direction,
            ports(("TCP", 80), ("UDP", 53), ("SCTP", 9003)),
        ),
        rule(
            "Pass",
            {"namespaces": ns("slytherin")},
            "pass-slytherin-at-80-53-9003",
            direction,
            ports(("TCP", 80), ("UDP", 53), ("SCTP", 9003)),
        ),
        rule(
            "Allow",
            {"namespaces": ns("hufflepuff")},
            "allow-hufflepuff-at-ports",
            direction,
            ports(*(in_ports if direction == "ingress" else out_ports)),
        ),
        rule("Deny", {"namespaces": ns("hufflepuff")}, "deny-hufflepuff-everything-else", direction),
        rule(
            "Allow",
            staff("professor-dumbledore-0"),
            "allow-dumbledore-at-tcp-udp-sctp",
            direction,
            ports(("TCP", 8080), ("UDP", 5353), ("SCTP", 9003)),
        ),
        rule("Deny", staff("professor-dumbledore-0"), "deny-dumbledore-everything-else", direction),
        rule(
            "Deny",
            staff("professor-quirrell-0"),
            "deny-quirrell-at-tcp-udp-sctp",
            direction,
            ports(("TCP", 8080), ("UDP", 5353), ("SCTP", 9003)),
        ),
    ]
    if baseline:
        rules = [r for r in rules if r["action"] != "Pass"]
    return rules


def swapped(
    policy: dict[str, Any], i: int, j: int, directions: Sequence[str] = ("ingress", "egress")
) -> dict[str, Any]:
    out = copy.deepcopy(policy)
    for d in directions:
        if d in out["spec"]:
            rules = out["spec"][d]
            rules[i], rules[j] = rules[j], rules[i]
    return out


GRYFFINDOR = {"namespaces": ns("gryffindor")}
GRESS = admin_policy(
    "gress-rules", 15, GRYFFINDOR, ingress=gress_rules("ingress"), egress=gress_rules("egress")
)
BANP_GRESS = baseline_policy(
    GRYFFINDOR, ingress=gress_rules("ingress", baseline=True), egress=gress_rules("egress", baseline=True)
)
SLYTHERIN_PODS = {"pods": {"namespaceSelector": house("slytherin"), "podSelector": house("slytherin")}}
GRYFFINDOR_PODS = {"pods": {"namespaceSelector": house("gryffindor"), "podSelector": house("gryffindor")}}


def slytherin_rules(action: str, name: str) -> dict[str, Any]:
    return {
        "ingress": [rule(action, SLYTHERIN_PODS, f"{name}-ingress", "ingress")],
        "egress": [rule(action, SLYTHERIN_PODS, f"{name}-egress", "egress")],
    }


PRIORITY_50 = admin_policy("priority-50-example", 50, GRYFFINDOR_PODS, **slytherin_rules("Deny", "deny-all"))
PRIORITY_60 = admin_policy(
    "old-priority-60-new-priority-40-example", 60, GRYFFINDOR_PODS, **slytherin_rules("Pass", "pass-all")
)
PRIORITY_40 = copy.deepcopy(PRIORITY_60)
PRIORITY_40["spec"]["priority"] = 40
PRIORITY_BANP = baseline_policy(GRYFFINDOR_PODS, **slytherin_rules("Allow", "allow-all"))

PASS_EXAMPLE = admin_policy(
    "pass-example",
    10,
    {"namespaces": house("gryffindor")},
    ingress=[rule("Deny", {"namespaces": house("slytherin")}, "deny-in", "ingress")],
    egress=[rule("Deny", {"namespaces": house("slytherin")}, "deny-out", "egress")],
)
PASS_INGRESS = copy.deepcopy(PASS_EXAMPLE)
PASS_INGRESS["spec"]["ingress"][0]["action"] = "Pass"
PASS_BOTH = copy.deepcopy(PASS_INGRESS)
PASS_BOTH["spec"]["egress"][0]["action"] = "Pass"
NP_SLYTHERIN = network_policy(
    "allow-gress-from-to-slytherin-to-gryffindor",
    "network-policy-conformance-gryffindor",
    {
        "podSelector": None,
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"namespaceSelector": house("slytherin")}]}],
        "egress": [{"to": [{"namespaceSelector": house("slytherin")}]}],
    },
)
BANP_SLYTHERIN = baseline_policy(
    {"namespaces": house("gryffindor")},
    ingress=[rule("Deny", {"namespaces": house("slytherin")}, "deny-in", "ingress")],
    egress=[rule("Deny", {"namespaces": house("slytherin")}, "deny-out", "egress")],
)

LUNA, HARRY = "luna-lovegood", "harry-potter"
GRESS_ORDER: list[Probe] = [
    ("harry-potter-0", "luna-lovegood-0", "TCP", 80, True),
    ("harry-potter-1", "luna-lovegood-0", "UDP", 53, True),
    ("harry-potter-0", "luna-lovegood-0", "SCTP", 9003, True),
    ("luna-lovegood-0", "harry-potter-0", "TCP", 80, True),
    ("luna-lovegood-1", "harry-potter-0", "UDP", 53, True),
    ("luna-lovegood-1", "harry-potter-0", "SCTP", 9003, True),
]
GRESS_PORTS: list[Probe] = [
    ("harry-potter-0", "cedric-diggory-1", "TCP", 8080, True),
    ("harry-potter-1", "cedric-diggory-1", "TCP", 80, False),
    ("harry-potter-0", "cedric-diggory-1", "UDP", 5353, True),
    ("harry-potter-1", "cedric-diggory-1", "UDP", 53, False),
    ("harry-potter-0", "cedric-diggory-1", "SCTP", 9003, True),
    ("harry-potter-1", "cedric-diggory-1", "SCTP", 9005, False),
    ("cedric-diggory-0", "harry-potter-1", "TCP", 80, True),
    ("cedric-diggory-1", "harry-potter-1", "TCP", 8080, False),
    ("cedric-diggory-0", "harry-potter-1", "UDP", 5353, True),
    ("cedric-diggory-1", "harry-potter-1", "UDP", 53, False),
    ("cedric-diggory-0", "harry-potter-1", "SCTP", 9003, True),
    ("cedric-diggory-1", "harry-potter-1", "SCTP", 9005, False),
]
GRESS_STAFF: list[Probe] = [
    ("professor-dumbledore-0", "harry-potter-0", "TCP", 8080, True),
    ("professor-dumbledore-0", "harry-potter-0", "UDP", 5353, True),
    ("professor-dumbledore-0", "harry-potter-0", "SCTP", 9003, True),
    ("professor-dumbledore-0", "harry-potter-0", "TCP", 80, False),
    ("professor-quirrell-0", "harry-potter-0", "TCP", 8080, False),
    ("professor-quirrell-0", "harry-potter-0", "UDP", 5353, False),
    ("professor-quirrell-0", "harry-potter-0", "SCTP", 9003, False),
    ("professor-quirrell-0", "harry-potter-0", "TCP", 80, True),
    ("harry-potter-1", "professor-dumbledore-0", "UDP", 5353, True),
    ("harry-potter-1", "professor-quirrell-0", "SCTP", 9003, False),
]
SLYTHERIN_PORTS: list[Probe] = [
    ("draco-malfoy-0", "harry-potter-0", "TCP", 80, False),
    ("draco-malfoy-1", "harry-potter-0", "TCP", 8080, True),
    ("harry-potter-0", "draco-malfoy-0", "UDP", 53, False),
    ("harry-potter-0", "draco-malfoy-1", "UDP", 5353, True),
]


GRYFFINDOR_SLYTHERIN: list[Probe] = [  # both ways between the two houses, on TCP 80 and 8080
    ("draco-malfoy-0", "harry-potter-0", "TCP", 80, False),
    ("draco-malfoy-1", "harry-potter-0", "TCP", 8080, False),
    ("harry-potter-0", "draco-malfoy-0", "TCP", 80, False),
    ("harry-potter-1", "draco-malfoy-0", "TCP", 8080, False),
]


def _flip(probes: list[Probe], value: bool) -> list[Probe]:
    return [(a, b, p, n, value) for a, b, p, n, _ in probes]


@dataclass
class State:
    policies: list[dict[str, Any]]
    probes: list[Probe]


def admin_cases(luna_0: str, ravenclaw_nets: Sequence[str]) -> dict[str, list[State]]:
    """Every case, by name (see the module docstring)."""
    return {
        # AdminNetworkPolicyGress / ...PodSelectorGress / Ingress* / Egress* (core-gress-rules-combined.yaml)
        "anp-gress-rule-order-and-ports": [
            State([GRESS], GRESS_ORDER + GRESS_PORTS + GRESS_STAFF + SLYTHERIN_PORTS)
        ],
        "anp-deny-before-allow": [State([swapped(GRESS, 0, 1)], _flip(GRESS_ORDER, False))],
        "anp-pass-before-allow-and-deny": [State([swapped(GRESS, 0, 2)], _flip(GRESS_ORDER, True))],
        "anp-pass-before-deny-at-ports": [
            State(
                [swapped(GRESS, 3, 4)],
                [*_flip(SLYTHERIN_PORTS[:1], True), ("harry-potter-0", "draco-malfoy-0", "UDP", 53, True)],
            )
        ],
        # AdminNetworkPolicyPriorityField (core-priority-field.yaml)
        "anp-priority-field": [
            State([PRIORITY_50, PRIORITY_60, PRIORITY_BANP], _flip(GRYFFINDOR_SLYTHERIN, False)),
            State([PRIORITY_50, PRIORITY_40, PRIORITY_BANP], _flip(GRYFFINDOR_SLYTHERIN, True)),
        ],
        # AdminNetworkPolicyIntegration (core-anp-np-banp.yaml)
        "anp-np-banp-integration": [
            State([PASS_EXAMPLE, NP_SLYTHERIN, BANP_SLYTHERIN], _flip(GRYFFINDOR_SLYTHERIN, False)),
            State(
                [PASS_INGRESS, NP_SLYTHERIN, BANP_SLYTHERIN],
                [
                    ("draco-malfoy-0", "harry-potter-0", "TCP", 80, True),
                    ("draco-malfoy-1", "harry-potter-0", "TCP", 8080, True),
                    ("harry-potter-0", "draco-malfoy-0", "TCP", 80, False),
                ],
            ),
            State(
                [PASS_BOTH, NP_SLYTHERIN, BANP_SLYTHERIN],
                [
                    ("harry-potter-0", "draco-malfoy-0", "TCP", 80, True),
                    ("harry-potter-1", "draco-malfoy-0", "TCP", 8080, True),
                    ("harry-potter-0", "luna-lovegood-0", "TCP", 80, False),
                ],
            ),
            State(
                [PASS_BOTH, BANP_SLYTHERIN],
                [*_flip(GRYFFINDOR_SLYTHERIN, False), ("harry-potter-0", "luna-lovegood-0", "TCP", 80, True)],
            ),
        ],
        # BaselineAdminNetworkPolicyGress (baseline_admin_network_policy/core-gress-rules-combined.yaml)
        "banp-gress-rule-order-and-ports": [State([BANP_GRESS], GRESS_ORDER + GRESS_PORTS + SLYTHERIN_PORTS)],
        "banp-deny-before-allow": [State([swapped(BANP_GRESS, 0, 1)], _flip(GRESS_ORDER, False))],
        "banp-under-network-policy": [
            State(
                [BANP_GRESS, NP_SLYTHERIN],
                [
                    ("luna-lovegood-0", "harry-potter-0", "TCP", 80, False),
                    ("draco-malfoy-0", "harry-potter-0", "TCP", 80, True),
                    ("harry-potter-0", "cedric-diggory-1", "TCP", 8080, False),
                ],
            )
        ],
        # Networks peers (standard-egress-inline-cidr-rules): egress by CIDR, Deny overriding a later Allow.
        "anp-egress-networks": [
            State(
                [
                    admin_policy(
                        "egress-cidr",
                        20,
                        GRYFFINDOR,
                        egress=[
                            rule("Allow", {"networks": [f"{luna_0}/32"]}, "allow-luna-0", "egress"),
                            rule(
                                "Deny",
                                {"networks": [*ravenclaw_nets, "fd00:10::/64"]},
                                "deny-ravenclaw-net",
                                "egress",
                            ),
                            rule(
                                "Deny",
                                {"networks": ["0.0.0.0/0"]},
                                "deny-all-v4",
                                "egress",
                                ports(("UDP", 53)),
                            ),
                        ],
                    )
                ],
                [
                    ("harry-potter-0", "luna-lovegood-0", "TCP", 80, True),
                    ("harry-potter-0", "luna-lovegood-1", "TCP", 80, False),
                    ("harry-potter-0", "draco-malfoy-0", "UDP", 53, False),
                    ("harry-potter-0", "draco-malfoy-0", "UDP", 5353, True),
                    ("luna-lovegood-1", "harry-potter-0", "TCP", 80, True),
                ],
            )
        ],
    }
