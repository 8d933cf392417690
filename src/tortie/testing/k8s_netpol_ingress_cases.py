"""Kubernetes' NetworkPolicy e2e cases (kubernetes test/e2e/network/netpol) about ingress: pod and
namespace selectors alone and together, ports and named ports, stacked policies, policies and labels
updated in place. Data in the vocabulary of tortie.testing.k8s_netpol_steps; all cases:
tortie.testing.k8s_netpol_cases.netpol_cases.
"""

from __future__ import annotations

from tortie.testing.k8s_netpol_steps import (
    ALL,
    DENY_ALL,
    INTO_X_DENIED,
    ONLY_Y_TO_XA,
    PORT80_FROM_Y,
    PORT81_FROM_Y,
    TCP80,
    TCP81,
    A,
    State,
    np,
    ns_is,
    peer,
    pods_in,
    proto,
    reach,
)


def ingress_cases() -> dict[str, list[State]]:
    return {
        "default-deny-ingress": [
            State([np("deny-ingress", pod={}, ingress=[])], [proto(*TCP80, INTO_X_DENIED)])
        ],
        "default-deny-all": [
            State([DENY_ALL], [proto(*TCP80, reach(("peer", "", "x", False), ("peer", "x", "", False)))])
        ],
        "allow-from-pod-b-by-pod-selector": [
            State(
                [np("x-a-allows-x-b", pod=A, ingress=[{"from": [peer(pod="b")]}])],
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
                [np("allow-client-a-via-ns-selector", pod=A, ingress=[{"from": [peer("y")]}])],
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
                [
                    np(
                        "allow-ns-y-match-selector",
                        pod=A,
                        ingress=[{"from": [{"namespaceSelector": ns_is("y")}]}],
                    )
                ],
                [proto(*TCP80, ONLY_Y_TO_XA)],
            )
        ],
        "pod-selector-or-namespace-selector": [
            State(
                [
                    np(
                        "allow-ns-y-match-selector",
                        pod=A,
                        ingress=[{"from": [{"namespaceSelector": ns_is("x", op="NotIn")}, peer(pod="b")]}],
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
                            ("ingress", "x/a", False),
                            ("pair", "y/b", "x/a", True),
                            ("pair", "z/b", "x/a", True),
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
                [np("allow-ns-x-pod-b-c", pod=A, ingress=[{"from": [peer(pod="b"), peer(pod="c")]}])],
                [
                    proto(
                        *TCP80,
                        reach(
                            ("ingress", "x/a", False),
                            ("pair", "x/b", "x/a", True),
                            ("pair", "x/c", "x/a", True),
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
                        ingress=[{"from": [peer("y", "a")]}],
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
                            ("peer", "x", "x/a", False),
                            ("peer", "y", "x/a", True),
                            ("peer", "z", "x/a", False),
                        ),
                    ),
                    proto(*TCP80, reach(("ingress", "x/a", False))),
                ],
            )
        ],
        "stacked-policies-with-overlapping-pod-selectors": [
            State(
                [PORT81_FROM_Y],
                [proto(*TCP81, ONLY_Y_TO_XA), proto(*TCP80, reach(("ingress", "x/a", False)))],
            ),
            State([PORT81_FROM_Y, PORT80_FROM_Y], [proto(*TCP81, ONLY_Y_TO_XA), proto(*TCP80, ONLY_Y_TO_XA)]),
        ],
        "allow-all": [
            State([np("allow-all", pod={}, ingress=[{}])], [proto(*TCP80, ALL), proto(*TCP81, ALL)])
        ],
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
                            {"from": [peer("y")], "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}]}
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
                        ingress=[
                            {"from": [{"podSelector": {"matchLabels": {"pod": "b", "pod2": "updated"}}}]}
                        ],
                    )
                ],
                [proto(*TCP80, reach(("ingress", "x/a", False)))],
            ),
            State(
                [
                    np(
                        "allow-client-a-via-pod-selector",
                        pod=A,
                        ingress=[
                            {"from": [{"podSelector": {"matchLabels": {"pod": "b", "pod2": "updated"}}}]}
                        ],
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
    }
