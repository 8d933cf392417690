"""Kubernetes' NetworkPolicy e2e cases (kubernetes test/e2e/network/netpol) as data: `netpol_cases(ip)`
gives every case the model can express, by name (ip: pod id -> address, for the ipBlock cases); the
calc-level test (tests/calc/test_k8s_netpol_e2e.py) and the lab test (tests/e2e/test_k8s_lab.py) run
them. This module holds the egress, ipBlock, several-policy and protocol cases;
k8s_netpol_ingress_cases the ingress ones; k8s_netpol_steps the vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping

from tortie.testing.k8s_netpol_ingress_cases import ingress_cases
from tortie.testing.k8s_netpol_steps import (
    ALL,
    DENY_ALL,
    INTO_X_DENIED,
    ONLY_Y_TO_XA,
    TCP80,
    TCP81,
    A,
    State,
    np,
    ns_is,
    peer,
    proto,
    reach,
)


def netpol_cases(ip: Mapping[str, str]) -> dict[str, list[State]]:
    """Every case, by name; `ip` maps a pod id (`x/b`) to its address (the ipBlock cases)."""
    x_b_ip, y_b_ip = ip["x/b"], ip["y/b"]
    cidr_around_x_b = np(
        "allow-client-a-via-cidr-egress-rule",
        pod=A,
        egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [f"{x_b_ip}/32"]}}]}],
    )
    return {
        **ingress_cases(),
        "deny-egress-by-pod-selector": [
            State(
                [np("deny-egress-pod-a", pod=A, egress=[])], [proto(*TCP80, reach(("egress", "x/a", False)))]
            )
        ],
        "deny-egress-from-all-pods-in-namespace": [
            State(
                [np("deny-egress-ns-x", pod={}, egress=[])], [proto(*TCP80, reach(("peer", "x", "", False)))]
            )
        ],
        "ingress-and-egress-together": [
            State(
                [
                    np(
                        "allow-client-a-via-pod-selector",
                        pod=A,
                        ingress=[{"from": [peer(pod="b")]}],
                        egress=[{"ports": [{"port": 80}]}],
                    )
                ],
                [
                    proto(*TCP80, reach(("ingress", "x/a", False), ("pair", "x/b", "x/a", True))),
                    proto(
                        *TCP81,
                        reach(
                            ("ingress", "x/a", False), ("egress", "x/a", False), ("pair", "x/b", "x/a", True)
                        ),
                    ),
                ],
            )
        ],
        "deny-egress-on-client-even-if-server-allows": [
            State(
                [
                    np("allow-to-ns-y-pod-a", pod=A, egress=[{"to": [peer("y", "a")]}]),
                    *(
                        np(
                            f"allow-from-xa-on-y{p}-match-selector",
                            "y",
                            pod={"pod": p},
                            ingress=[{"from": [peer("x", "a")]}],
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
                [np("allow-to-ns-y-pod-a", pod=A, egress=[{"to": [peer("y", "a")]}])],
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
                        egress=[{"to": [{"ipBlock": {"cidr": f"{y_b_ip}/32"}}]}],
                    )
                ],
                [proto(*TCP80, reach(("egress", "x/a", False), ("pair", "x/a", "y/b", True)))],
            )
        ],
        "except-clause-in-cidr-block": [
            State([cidr_around_x_b], [proto(*TCP80, reach(("pair", "x/a", "x/b", False)))])
        ],
        "ip-in-both-cidr-and-except": [
            State([cidr_around_x_b], [proto(*TCP80, reach(("pair", "x/a", "x/b", False)))]),
            State(
                [
                    np(
                        "allow-client-a-via-cidr-egress-rule",
                        pod=A,
                        egress=[{"to": [{"ipBlock": {"cidr": f"{x_b_ip}/32"}}]}],
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
                        ingress=[{"from": [peer("y")], "ports": [{"port": 81, "protocol": "UDP"}]}],
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
                        ingress=[{"from": [peer("y", "a")]}],
                    )
                ],
                [proto("SCTP", 80, reach(("ingress", "x/a", False), ("pair", "y/a", "x/a", True)))],
            )
        ],
    }
