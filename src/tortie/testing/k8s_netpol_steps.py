"""The vocabulary of Kubernetes' NetworkPolicy e2e cases (kubernetes test/e2e/network/netpol), shared
by the case modules (k8s_netpol_ingress_cases, k8s_netpol_cases) and the tests that run them.

Layout: namespaces x, y, z, pods a, b, c in each (label `pod=<name>`, ids `x/a`...;
tortie.testing.k8s_world.e2e_pods), every pod serving 80 and 81 over TCP, UDP and SCTP under the
names `serve-<port>-<proto>`. A case is a sequence of cluster `State`s as the e2e test steps through
them: the policies in force, the namespace and pod labels that differ from the layout's, and the
reachability the e2e test expects for the probes it makes (written from its expectations, extended
to all nine pods: `reach`; pod-to-itself traffic is left out, as the e2e suite ignores loopback).
`np` builds a policy the way the e2e helpers do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tortie.testing.k8s_world import E2E_NAMESPACES, E2E_PODS, network_policy

IDS = [f"{ns}/{pod}" for ns in E2E_NAMESPACES for pod in E2E_PODS]
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


def peer(ns: str | None = None, pod: str | None = None) -> dict[str, Any]:
    """A NetworkPolicy peer: namespace `ns` by name and/or pods labelled `pod=<pod>` (both: AND)."""
    out: dict[str, Any] = {}
    if ns is not None:
        out["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    if pod is not None:
        out["podSelector"] = {"matchLabels": {"pod": pod}}
    return out


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


def proto(
    p: str, port: int, expected: dict[tuple[str, str], bool]
) -> tuple[str, int, dict[tuple[str, str], bool]]:
    return (p, port, expected)
