"""Kubernetes' own NetworkPolicy e2e cases (kubernetes test/e2e/network/netpol), at the calc level.

Layout: namespaces x, y, z, pods a, b, c in each (label `pod=<name>`), every pod serving 80 and 81 over
TCP, UDP and SCTP under the names `serve-<port>-<proto>`, spread over two hosts; every test uses all
nine pods. Each case is a sequence of cluster states (policies, namespace and pod labels) as the e2e
test steps through them; for each state:

* the reachability the e2e test expects for the probes it makes (written here from its
  expectations, extended to all nine pods) equals the independent reference evaluator's
  (tortie.testing.k8s_reference), so the reference reads Kubernetes as Kubernetes' tests do;
* for every ordered pair of pods, TCP, UDP and SCTP, ports 80 and 81, tortie's verdicts — the
  translated objects through the real calc, then the rendered nftables table run by its interpreter,
  and `tortie policy trace`'s evaluator on the same calc output, on each host crossed — equal the
  reference's;
* on the probes, the Calico-semantics test oracle (tortie.testing.policy_oracle) run on the
  translated resources agrees too.

Pod-to-itself traffic is left out, as the e2e suite ignores loopback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from tortie.testing.k8s_reference import Cluster, Connection, Pod
from tortie.testing.k8s_world import E2E_NAMESPACES, TortieVerdicts, e2e_pods, network_policy

PODS = e2e_pods()
IDS = [p.id for p in PODS]
X_B_IP = next(p.ip for p in PODS if p.id == "x/b")
Y_B_IP = next(p.ip for p in PODS if p.id == "y/b")
Op = tuple[Any, ...]


def reach(*ops: Op) -> dict[tuple[str, str], bool]:
    """Expected reachability: everything allowed, then each op in order.
    ("peer", src, dst, v): src/dst are "" (any pod), "x" (a namespace) or "x/a" (a pod);
    ("ingress", pod, v) / ("egress", pod, v): every connection into / out of a pod;
    ("pair", src, dst, v): one connection."""
    out = {(a, b): True for a in IDS for b in IDS if a != b}

    def hit(flt: str, pod: str) -> bool:
        return flt in ("", pod) or pod.split("/")[0] == flt

    for op in ops:
        kind = op[0]
        for a, b in out:
            if kind == "peer" and hit(op[1], a) and hit(op[2], b):
                out[a, b] = op[3]
            elif (kind == "ingress" and b == op[1]) or (kind == "egress" and a == op[1]):
                out[a, b] = op[2]
            elif kind == "pair" and (a, b) == (op[1], op[2]):
                out[a, b] = op[3]
    return out


@dataclass
class State:
    policies: list[dict[str, Any]]
    probes: Sequence[tuple[str, int, dict[tuple[str, str], bool]]]
    ns_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pod_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def np(
    name: str,
    ns: str = "x",
    *,
    pod: Mapping[str, str] | None = None,
    ingress: list[Any] | None = None,
    egress: list[Any] | None = None,
) -> dict[str, Any]:
    """A policy as the e2e helpers build it: podSelector matchLabels, and policyTypes naming exactly
    the directions given (SetSpecIngressRules / SetSpecEgressRules)."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": dict(pod)} if pod else {}, "policyTypes": []}
    if ingress is not None:
        spec["policyTypes"].append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = egress
    return network_policy(name, ns, spec)


def ns_is(*names: str, op: str = "In") -> dict[str, Any]:
    return {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": op, "values": list(names)}]
    }


def pods_in(*names: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": "pod", "operator": "In", "values": list(names)}]}


A = {"pod": "a"}
TCP80, TCP81 = ("TCP", 80), ("TCP", 81)
ALL = reach()
INTO_X_DENIED = reach(("peer", "", "x", False))
ONLY_Y_TO_XA = reach(("peer", "x", "x/a", False), ("peer", "z", "x/a", False))
PORT81_FROM_Y = np(
    "allow-client-a-via-ns-selector",
    pod=A,
    ingress=[
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
            "ports": [{"port": 81, "protocol": "TCP"}],
        }
    ],
)
PORT80_FROM_Y = np(
    "allow-client-a-via-ns-selector-80",
    pod=A,
    ingress=[
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
            "ports": [{"port": 80, "protocol": "TCP"}],
        }
    ],
)
DENY_ALL = np("deny-all", pod={}, ingress=[], egress=[])
CIDR_AROUND_X_B = np(
    "allow-client-a-via-cidr-egress-rule",
    pod=A,
    egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [f"{X_B_IP}/32"]}}]}],
)


def proto(
    p: str, port: int, expected: dict[tuple[str, str], bool]
) -> tuple[str, int, dict[tuple[str, str], bool]]:
    return (p, port, expected)


CASES: dict[str, list[State]] = {
    "default-deny-ingress": [State([np("deny-ingress", pod={}, ingress=[])], [proto(*TCP80, INTO_X_DENIED)])],
    "default-deny-all": [
        State([DENY_ALL], [proto(*TCP80, reach(("peer", "", "x", False), ("peer", "x", "", False)))])
    ],
    "allow-from-pod-b-by-pod-selector": [
        State(
            [
                np(
                    "x-a-allows-x-b",
                    pod=A,
                    ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                )
            ],
            [proto(*TCP80, reach(("ingress", "x/a", False), ("pair", "x/b", "x/a", True)))],
        )
    ],
    "allow-ingress-for-a-target": [
        State(
            [
                np("deny-all", pod={}, ingress=[]),
                np(
                    "allow-all-to-a",
                    pod=A,
                    ingress=[{"from": [{"podSelector": {}, "namespaceSelector": {}}]}],
                ),
            ],
            [proto(*TCP80, reach(("peer", "", "x", False), ("ingress", "x/a", True)))],
        )
    ],
    "allow-from-all-namespaces": [
        State(
            [np("allow-from-another-ns", pod=A, ingress=[{"from": [{"namespaceSelector": {}}]}])],
            [proto(*TCP80, ALL)],
        )
    ],
    "allow-only-from-other-namespace-by-namespace-selector": [
        State(
            [
                np(
                    "allow-client-a-via-ns-selector",
                    pod=A,
                    ingress=[
                        {
                            "from": [
                                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}
                            ]
                        }
                    ],
                )
            ],
            [proto(*TCP80, ONLY_Y_TO_XA)],
        )
    ],
    "pod-selector-match-expressions": [
        State(
            [np("x-a-allows-x-b", pod=A, ingress=[{"from": [{"podSelector": pods_in("b")}]}])],
            [proto(*TCP80, reach(("ingress", "x/a", False), ("pair", "x/b", "x/a", True)))],
        )
    ],
    "namespace-selector-match-expressions": [
        State(
            [np("allow-ns-y-match-selector", pod=A, ingress=[{"from": [{"namespaceSelector": ns_is("y")}]}])],
            [proto(*TCP80, ONLY_Y_TO_XA)],
        )
    ],
    "pod-selector-or-namespace-selector": [
        State(
            [
                np(
                    "allow-ns-y-match-selector",
                    pod=A,
                    ingress=[
                        {
                            "from": [
                                {"namespaceSelector": ns_is("x", op="NotIn")},
                                {"podSelector": {"matchLabels": {"pod": "b"}}},
                            ]
                        }
                    ],
                )
            ],
            [proto(*TCP80, reach(("pair", "x/c", "x/a", False)))],
        )
    ],
    "pod-selector-and-namespace-selector": [
        State(
            [
                np(
                    "allow-ns-y-podselector-and-nsselector",
                    pod=A,
                    ingress=[
                        {
                            "from": [
                                {
                                    "namespaceSelector": ns_is("x", op="NotIn"),
                                    "podSelector": {"matchLabels": {"pod": "b"}},
                                }
                            ]
                        }
                    ],
                )
            ],
            [
                proto(
                    *TCP80,
                    reach(
                        ("ingress", "x/a", False), ("pair", "y/b", "x/a", True), ("pair", "z/b", "x/a", True)
                    ),
                )
            ],
        )
    ],
    "multiple-pod-and-namespace-selectors": [
        State(
            [
                np(
                    "allow-ns-y-z-pod-b-c",
                    pod=A,
                    ingress=[
                        {
                            "from": [
                                {
                                    "namespaceSelector": ns_is("x", op="NotIn"),
                                    "podSelector": pods_in("b", "c"),
                                }
                            ]
                        }
                    ],
                )
            ],
            [
                proto(
                    *TCP80,
                    reach(
                        ("ingress", "x/a", False),
                        *(("pair", f"{n}/{p}", "x/a", True) for n in "yz" for p in "bc"),
                    ),
                )
            ],
        )
    ],
    "any-pod-selectors": [
        State(
            [
                np(
                    "allow-ns-x-pod-b-c",
                    pod=A,
                    ingress=[
                        {
                            "from": [
                                {"podSelector": {"matchLabels": {"pod": "b"}}},
                                {"podSelector": {"matchLabels": {"pod": "c"}}},
                            ]
                        }
                    ],
                )
            ],
            [
                proto(
                    *TCP80,
                    reach(
                        ("ingress", "x/a", False), ("pair", "x/b", "x/a", True), ("pair", "x/c", "x/a", True)
                    ),
                )
            ],
        )
    ],
    "pod-in-other-namespace-by-pod-and-namespace-selector": [
        State(
            [
                np(
                    "allow-ns-y-pod-a-via-namespace-pod-selector",
                    pod=A,
                    ingress=[
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"kubernetes.io/metadata.name": "y"}
                                    },
                                    "podSelector": {"matchLabels": {"pod": "a"}},
                                }
                            ]
                        }
                    ],
                )
            ],
            [proto(*TCP80, reach(("ingress", "x/a", False), ("pair", "y/a", "x/a", True)))],
        )
    ],
    "ports": [
        State(
            [PORT81_FROM_Y],
            [
                proto(
                    *TCP81,
                    reach(
                        ("peer", "x", "x/a", False), ("peer", "y", "x/a", True), ("peer", "z", "x/a", False)
                    ),
                ),
                proto(*TCP80, reach(("ingress", "x/a", False))),
            ],
        )
    ],
    "stacked-policies-with-overlapping-pod-selectors": [
        State(
            [PORT81_FROM_Y], [proto(*TCP81, ONLY_Y_TO_XA), proto(*TCP80, reach(("ingress", "x/a", False)))]
        ),
        State([PORT81_FROM_Y, PORT80_FROM_Y], [proto(*TCP81, ONLY_Y_TO_XA), proto(*TCP80, ONLY_Y_TO_XA)]),
    ],
    "allow-all": [State([np("allow-all", pod={}, ingress=[{}])], [proto(*TCP80, ALL), proto(*TCP81, ALL)])],
    "ingress-on-one-named-port": [
        State(
            [np("allow-all", pod={}, ingress=[{"ports": [{"port": "serve-81-tcp"}]}])],
            [proto(*TCP81, ALL), proto(*TCP80, INTO_X_DENIED)],
        )
    ],
    "ingress-from-namespace-on-one-named-port": [
        State(
            [
                np(
                    "allow-client-a-via-ns-selector-80",
                    pod=A,
                    ingress=[
                        {
                            "from": [
                                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}
                            ],
                            "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}],
                        }
                    ],
                )
            ],
            [proto(*TCP80, ONLY_Y_TO_XA), proto(*TCP81, reach(("ingress", "x/a", False)))],
        )
    ],
    "egress-on-one-named-port": [
        State(
            [np("allow-egress", pod={}, egress=[{"ports": [{"port": "serve-80-tcp"}]}])],
            [proto(*TCP80, ALL), proto(*TCP81, reach(("peer", "x", "", False)))],
        )
    ],
    "updated-policy": [
        State([np("allow-all-mutate-to-deny-all", pod={}, ingress=[{}])], [proto(*TCP81, ALL)]),
        State([np("allow-all-mutate-to-deny-all", pod={}, ingress=[])], [proto(*TCP81, INTO_X_DENIED)]),
    ],
    "ingress-from-updated-namespace": [
        State(
            [
                np(
                    "allow-client-a-via-ns-selector",
                    pod=A,
                    ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"ns2": "updated"}}}]}],
                )
            ],
            [proto(*TCP80, reach(("ingress", "x/a", False)))],
        ),
        State(
            [
                np(
                    "allow-client-a-via-ns-selector",
                    pod=A,
                    ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"ns2": "updated"}}}]}],
                )
            ],
            [proto(*TCP80, reach(("ingress", "x/a", False), ("peer", "y", "", True)))],
            ns_labels={"y": {"ns2": "updated"}},
        ),
    ],
    "ingress-from-updated-pod": [
        State(
            [
                np(
                    "allow-client-a-via-pod-selector",
                    pod=A,
                    ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b", "pod2": "updated"}}}]}],
                )
            ],
            [proto(*TCP80, reach(("ingress", "x/a", False)))],
        ),
        State(
            [
                np(
                    "allow-client-a-via-pod-selector",
                    pod=A,
                    ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b", "pod2": "updated"}}}]}],
                )
            ],
            [proto(*TCP80, reach(("ingress", "x/a", False), ("pair", "x/b", "x/a", True)))],
            pod_labels={"x/b": {"pod": "b", "pod2": "updated"}},
        ),
    ],
    "deny-ingress-from-other-namespaces": [
        State(
            [np("deny-empty-policy", pod={}, ingress=[{"from": [{"podSelector": {}}]}])],
            [proto(*TCP80, reach(("peer", "y", "x", False), ("peer", "z", "x", False)))],
        )
    ],
    "deny-ingress-to-updated-pod": [
        State(
            [np("deny-ingress-via-label-selector", pod={"target": "isolated"}, ingress=[])],
            [proto(*TCP80, ALL)],
        ),
        State(
            [np("deny-ingress-via-label-selector", pod={"target": "isolated"}, ingress=[])],
            [proto(*TCP80, reach(("ingress", "x/a", False)))],
            pod_labels={"x/a": {"pod": "a", "target": "isolated"}},
        ),
    ],
    "deny-egress-by-pod-selector": [
        State([np("deny-egress-pod-a", pod=A, egress=[])], [proto(*TCP80, reach(("egress", "x/a", False)))])
    ],
    "deny-egress-from-all-pods-in-namespace": [
        State([np("deny-egress-ns-x", pod={}, egress=[])], [proto(*TCP80, reach(("peer", "x", "", False)))])
    ],
    "ingress-and-egress-together": [
        State(
            [
                np(
                    "allow-client-a-via-pod-selector",
                    pod=A,
                    ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                    egress=[{"ports": [{"port": 80}]}],
                )
            ],
            [
                proto(*TCP80, reach(("ingress", "x/a", False), ("pair", "x/b", "x/a", True))),
                proto(
                    *TCP81,
                    reach(("ingress", "x/a", False), ("egress", "x/a", False), ("pair", "x/b", "x/a", True)),
                ),
            ],
        )
    ],
    "deny-egress-on-client-even-if-server-allows": [
        State(
            [
                np(
                    "allow-to-ns-y-pod-a",
                    pod=A,
                    egress=[
                        {
                            "to": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"kubernetes.io/metadata.name": "y"}
                                    },
                                    "podSelector": {"matchLabels": {"pod": "a"}},
                                }
                            ]
                        }
                    ],
                ),
                *(
                    np(
                        f"allow-from-xa-on-y{p}-match-selector",
                        "y",
                        pod={"pod": p},
                        ingress=[
                            {
                                "from": [
                                    {
                                        "namespaceSelector": {
                                            "matchLabels": {"kubernetes.io/metadata.name": "x"}
                                        },
                                        "podSelector": {"matchLabels": {"pod": "a"}},
                                    }
                                ]
                            }
                        ],
                    )
                    for p in "ab"
                ),
            ],
            [
                proto(
                    *TCP80,
                    reach(
                        ("peer", "x/a", "", False),
                        ("peer", "", "y/a", False),
                        ("peer", "x/a", "y/a", True),
                        ("peer", "", "y/b", False),
                    ),
                )
            ],
        )
    ],
    "egress-to-other-namespace-by-pod-and-namespace-selector": [
        State(
            [
                np(
                    "allow-to-ns-y-pod-a",
                    pod=A,
                    egress=[
                        {
                            "to": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"kubernetes.io/metadata.name": "y"}
                                    },
                                    "podSelector": {"matchLabels": {"pod": "a"}},
                                }
                            ]
                        }
                    ],
                )
            ],
            [proto(*TCP80, reach(("egress", "x/a", False), ("pair", "x/a", "y/a", True)))],
        )
    ],
    "ingress-any-port-on-a-protocol": [
        State(
            [np("allow-ingress-by-proto", pod=A, ingress=[{"ports": [{"protocol": "TCP"}]}])],
            [proto(*TCP80, ALL), proto("UDP", 80, reach(("ingress", "x/a", False)))],
        )
    ],
    "multiple-ingress-policies-allow-all-wins": [
        State(
            [np("allow-ingress-port-80", pod={}, ingress=[{"ports": [{"port": 80}]}])],
            [proto(*TCP81, INTO_X_DENIED)],
        ),
        State(
            [
                np("allow-ingress-port-80", pod={}, ingress=[{"ports": [{"port": 80}]}]),
                np("allow-ingress", pod={}, ingress=[{}]),
            ],
            [proto(*TCP81, ALL)],
        ),
    ],
    "multiple-egress-policies-allow-all-wins": [
        State(
            [np("allow-egress-port-80", pod={}, egress=[{"ports": [{"port": 80}]}])],
            [proto(*TCP81, reach(("peer", "x", "", False)))],
        ),
        State(
            [
                np("allow-egress-port-80", pod={}, egress=[{"ports": [{"port": 80}]}]),
                np("allow-egress", pod={}, egress=[{}]),
            ],
            [proto(*TCP81, ALL)],
        ),
    ],
    "stop-enforcing-after-delete": [
        State([DENY_ALL], [proto(*TCP80, reach(("peer", "x", "", False), ("peer", "", "x", False)))]),
        State([], [proto(*TCP80, ALL)]),
    ],
    "egress-to-server-in-cidr-block": [
        State(
            [
                np(
                    "allow-client-a-via-cidr-egress-rule",
                    pod=A,
                    egress=[{"to": [{"ipBlock": {"cidr": f"{Y_B_IP}/32"}}]}],
                )
            ],
            [proto(*TCP80, reach(("egress", "x/a", False), ("pair", "x/a", "y/b", True)))],
        )
    ],
    "except-clause-in-cidr-block": [
        State([CIDR_AROUND_X_B], [proto(*TCP80, reach(("pair", "x/a", "x/b", False)))])
    ],
    "ip-in-both-cidr-and-except": [
        State([CIDR_AROUND_X_B], [proto(*TCP80, reach(("pair", "x/a", "x/b", False)))]),
        State(
            [
                np(
                    "allow-client-a-via-cidr-egress-rule",
                    pod=A,
                    egress=[{"to": [{"ipBlock": {"cidr": f"{X_B_IP}/32"}}]}],
                )
            ],
            [proto(*TCP80, reach(("egress", "x/a", False), ("pair", "x/a", "x/b", True)))],
        ),
    ],
    "ingress-and-egress-controlled-independently": [
        State([np("allow-egress-for-target", pod=A, egress=[{}])], [proto(*TCP80, ALL)]),
        State(
            [
                np("allow-egress-for-target", pod=A, egress=[{}]),
                np("deny-ingress-via-label-selector", pod=A, ingress=[]),
            ],
            [proto(*TCP80, reach(("ingress", "x/a", False)))],
        ),
    ],
    "sctp-is-not-tcp": [
        State(
            [
                np("deny-ingress", pod={}, ingress=[]),
                np(
                    "allow-only-sctp-ingress-on-port-81",
                    pod=A,
                    ingress=[{"ports": [{"port": 81, "protocol": "SCTP"}]}],
                ),
            ],
            [
                proto(*TCP81, INTO_X_DENIED),
                proto("SCTP", 81, reach(("peer", "", "x", False), ("ingress", "x/a", True))),
            ],
        )
    ],
    "sctp-policy-isolates-tcp": [
        State(
            [
                np(
                    "allow-only-sctp-ingress-on-port-80",
                    pod=A,
                    ingress=[{"ports": [{"port": 80, "protocol": "SCTP"}]}],
                )
            ],
            [proto(*TCP81, reach(("ingress", "x/a", False)))],
        )
    ],
    "udp-only-policy-denies-tcp": [
        State(
            [
                np(
                    "allow-only-udp-ingress-on-port-81",
                    pod=A,
                    ingress=[{"ports": [{"port": 81, "protocol": "UDP"}]}],
                )
            ],
            [proto(*TCP81, reach(("ingress", "x/a", False))), proto("UDP", 81, ALL)],
        )
    ],
    "namespace-selector-default-label-egress-not-in": [
        State(
            [
                np(
                    "allow-ns-y-match-selector-for-immutable-ns-label",
                    pod=A,
                    egress=[{"to": [{"namespaceSelector": ns_is("y", op="NotIn")}]}],
                )
            ],
            [proto(*TCP80, reach(("peer", "x/a", "y", False)))],
        )
    ],
    "udp-default-deny-ingress": [
        State([np("deny-all", pod={}, ingress=[])], [proto("UDP", 80, INTO_X_DENIED)])
    ],
    "udp-ports": [
        State(
            [
                np(
                    "allow-ingress-on-port-81-ns-x",
                    pod=A,
                    ingress=[
                        {
                            "from": [
                                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}
                            ],
                            "ports": [{"port": 81, "protocol": "UDP"}],
                        }
                    ],
                )
            ],
            [proto("UDP", 81, ONLY_Y_TO_XA), proto(*TCP81, reach(("ingress", "x/a", False)))],
        )
    ],
    "sctp-default-deny-ingress": [
        State([np("deny-all", pod={}, ingress=[])], [proto("SCTP", 80, INTO_X_DENIED)])
    ],
    "sctp-pod-in-other-namespace": [
        State(
            [
                np(
                    "allow-ns-y-pod-a-via-namespace-pod-selector",
                    pod=A,
                    ingress=[
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"kubernetes.io/metadata.name": "y"}
                                    },
                                    "podSelector": {"matchLabels": {"pod": "a"}},
                                }
                            ]
                        }
                    ],
                )
            ],
            [proto("SCTP", 80, reach(("ingress", "x/a", False), ("pair", "y/a", "x/a", True)))],
        )
    ],
}


def _cluster(state: State) -> tuple[list[Pod], dict[str, dict[str, str]]]:
    pods = [replace(p, labels=dict(state.pod_labels.get(p.id, p.labels))) for p in PODS]
    namespaces = {n: {"ns": n, **state.ns_labels.get(n, {})} for n in E2E_NAMESPACES}
    return pods, namespaces


def _differences(expected: Mapping[tuple[str, str], bool], got: Mapping[tuple[str, str], bool]) -> list[str]:
    return [
        f"{a}->{b}: expected {'allow' if v else 'deny'}" for (a, b), v in expected.items() if got[a, b] != v
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_e2e_case(case: str) -> None:
    for step, state in enumerate(CASES[case]):
        pods, namespaces = _cluster(state)
        reference = Cluster(pods, namespaces, state.policies)
        tortie = TortieVerdicts(pods, namespaces, state.policies)
        for protocol, port, expected in state.probes:
            got = reference.matrix(protocol, port)
            assert not _differences(expected, got), (step, protocol, port, _differences(expected, got))
            oracle = {
                (a.id, b.id): tortie.oracle_allowed(Connection(a, b, protocol, port))
                for a in pods
                for b in pods
                if a is not b
            }
            assert not _differences(got, oracle), ("oracle", step, protocol, port)
        for protocol in ("TCP", "UDP", "SCTP"):
            for port in (80, 81):
                want = reference.matrix(protocol, port)
                assert not _differences(want, tortie.matrix(protocol, port)), (step, protocol, port)
                traced = {
                    (a.id, b.id): tortie.trace_allowed(Connection(a, b, protocol, port))
                    for a in pods
                    for b in pods
                    if a is not b
                }
                assert not _differences(want, traced), ("trace", step, protocol, port)


def test_cases_cover_tcp_udp_sctp_and_both_ports() -> None:
    probes = {(p, port) for states in CASES.values() for s in states for p, port, _ in s.probes}
    assert {("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81), ("SCTP", 80), ("SCTP", 81)} <= probes
