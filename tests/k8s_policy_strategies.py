"""Hypothesis strategies for random Kubernetes network policy, shared by the calc-level property test
(tests/calc/test_k8s_policy_properties.py) and its sample on the lab (tests/e2e/test_k8s_lab.py).

Random NetworkPolicies (pod/namespace selectors with matchLabels and matchExpressions, both in one
peer, ipBlocks with except, ports by number, range, name or protocol only, policyTypes given or
defaulted, empty rules), AdminNetworkPolicies with distinct priorities (Allow / Deny / Pass,
namespace, pod and network peers, port numbers, ranges and names), sometimes a
BaselineAdminNetworkPolicy (`policies`), and random namespace and pod labels. What they may name
(namespaces, addresses, ports) comes from a `Vocabulary`, so the calc test draws over its own
addresses and the lab over the lab's. Pod labels use the keys app, tier and env; namespace labels
env and team.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tortie.model import ValidationError, parse_resource
from tortie.testing.k8s_world import admin_policy, baseline_policy, network_policy

LABEL_KEYS = ("app", "tier", "env")
LABEL_VALUES = ("a", "b", "c")
NAMESPACE_KEYS = ("env", "team", "kubernetes.io/metadata.name")


@dataclass(frozen=True)
class Vocabulary:
    """What random policies may name: namespaces, ipBlocks (cidr, excepts), egress networks, port
    names and numbers."""

    namespaces: tuple[str, ...]
    cidrs: tuple[tuple[str, tuple[str, ...]], ...]
    networks: tuple[str, ...]
    port_names: tuple[str, ...]
    ports: tuple[int, ...]


def _maybe(draw: Any, percent: int) -> bool:
    return bool(draw(st.integers(0, 99)) < percent)


@st.composite
def label_selectors(draw: Any, keys: tuple[str, ...] = LABEL_KEYS) -> dict[str, Any]:
    sel: dict[str, Any] = {}
    if _maybe(draw, 50):
        sel["matchLabels"] = {draw(st.sampled_from(keys)): draw(st.sampled_from(LABEL_VALUES))}
    if _maybe(draw, 40):
        exprs = []
        for _ in range(draw(st.integers(1, 2))):
            op = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
            expr: dict[str, Any] = {"key": draw(st.sampled_from(keys)), "operator": op}
            if op in ("In", "NotIn"):
                expr["values"] = draw(
                    st.lists(st.sampled_from(LABEL_VALUES), min_size=1, max_size=2, unique=True)
                )
            exprs.append(expr)
        sel["matchExpressions"] = exprs
    return sel


@st.composite
def namespace_selectors(draw: Any, v: Vocabulary) -> dict[str, Any]:
    if _maybe(draw, 30):
        return {"matchLabels": {"kubernetes.io/metadata.name": draw(st.sampled_from(v.namespaces))}}
    sel: dict[str, Any] = draw(label_selectors(("env", "team")))
    return sel


@st.composite
def np_peers(draw: Any, v: Vocabulary) -> dict[str, Any]:
    kind = draw(st.sampled_from(("pod", "ns", "both", "both", "ip")))
    if kind == "ip":
        cidr, excepts = draw(st.sampled_from(v.cidrs))
        block: dict[str, Any] = {"cidr": cidr}
        if excepts and _maybe(draw, 70):
            block["except"] = list(excepts)
        return {"ipBlock": block}
    peer: dict[str, Any] = {}
    if kind in ("pod", "both"):
        peer["podSelector"] = draw(label_selectors())
    if kind in ("ns", "both"):
        peer["namespaceSelector"] = draw(namespace_selectors(v))
    return peer


@st.composite
def np_ports(draw: Any, v: Vocabulary) -> dict[str, Any]:
    port: dict[str, Any] = {}
    if _maybe(draw, 60):
        port["protocol"] = draw(st.sampled_from(("TCP", "UDP", "SCTP")))
    shape = draw(st.sampled_from(("number", "number", "range", "name", "name", "none")))
    if shape == "number":
        port["port"] = draw(st.sampled_from(v.ports))
    elif shape == "range":
        port["port"] = draw(st.sampled_from((53, 80)))
        port["endPort"] = port["port"] + draw(st.sampled_from((0, 1, 10)))
    elif shape == "name":
        port["port"] = draw(st.sampled_from(v.port_names))
    return port


@st.composite
def np_rules(draw: Any, direction: str, v: Vocabulary) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if _maybe(draw, 70):
        rule["from" if direction == "ingress" else "to"] = draw(st.lists(np_peers(v), min_size=1, max_size=2))
    if _maybe(draw, 55):
        rule["ports"] = draw(st.lists(np_ports(v), min_size=1, max_size=2))
    return rule


@st.composite
def network_policies(draw: Any, index: int, namespaces: list[str], v: Vocabulary) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if _maybe(draw, 70):
        spec["podSelector"] = draw(label_selectors())
    for direction in ("ingress", "egress"):
        if _maybe(draw, 60):
            spec[direction] = draw(st.lists(np_rules(direction, v), max_size=2))
    if _maybe(draw, 50):
        spec["policyTypes"] = draw(
            st.lists(st.sampled_from(("Ingress", "Egress")), min_size=1, max_size=2, unique=True)
        )
    return network_policy(f"np{index}", draw(st.sampled_from(namespaces)), spec)


@st.composite
def admin_peers(draw: Any, direction: str, v: Vocabulary) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(("namespaces", "pods", "pods") + (("networks",) if direction == "egress" else ()))
    )
    if kind == "namespaces":
        return {"namespaces": draw(namespace_selectors(v))}
    if kind == "pods":
        return {
            "pods": {
                "namespaceSelector": draw(namespace_selectors(v)),
                "podSelector": draw(label_selectors()),
            }
        }
    nets = draw(
        st.lists(
            st.sampled_from(v.networks),
            min_size=1,
            max_size=2,
            unique=True,
        )
    )
    return {"networks": nets}


@st.composite
def admin_ports(draw: Any, v: Vocabulary) -> dict[str, Any]:
    shape = draw(st.sampled_from(("portNumber", "portNumber", "portRange", "namedPort")))
    if shape == "namedPort":
        return {"namedPort": draw(st.sampled_from(v.port_names))}
    number: dict[str, Any] = {}
    if _maybe(draw, 70):
        number["protocol"] = draw(st.sampled_from(("TCP", "UDP", "SCTP")))
    if shape == "portNumber":
        number["port"] = draw(st.sampled_from(v.ports))
    else:
        number["start"] = draw(st.sampled_from((53, 80)))
        number["end"] = number["start"] + draw(st.sampled_from((1, 30)))
    return {shape: number}


@st.composite
def admin_rules(draw: Any, direction: str, actions: tuple[str, ...], v: Vocabulary) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "action": draw(st.sampled_from(actions)),
        "from" if direction == "ingress" else "to": draw(
            st.lists(admin_peers(direction, v), min_size=1, max_size=2)
        ),
    }
    if _maybe(draw, 30):
        rule["name"] = f"rule-{draw(st.integers(0, 9))}"
    if _maybe(draw, 50):
        rule["ports"] = draw(st.lists(admin_ports(v), min_size=1, max_size=2))
    return rule


@st.composite
def subjects(draw: Any, v: Vocabulary) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"namespaces": draw(namespace_selectors(v))}
    return {
        "pods": {"namespaceSelector": draw(namespace_selectors(v)), "podSelector": draw(label_selectors())}
    }


@st.composite
def namespace_labels(draw: Any) -> dict[str, str]:
    labels = {}
    if _maybe(draw, 60):
        labels["env"] = draw(st.sampled_from(LABEL_VALUES))
    if _maybe(draw, 40):
        labels["team"] = draw(st.sampled_from(LABEL_VALUES))
    return labels


@st.composite
def pod_labels(draw: Any) -> dict[str, str]:
    return {k: draw(st.sampled_from(LABEL_VALUES)) for k in LABEL_KEYS if _maybe(draw, 50)}


@st.composite
def policies(draw: Any, namespaces: list[str], v: Vocabulary) -> list[dict[str, Any]]:
    """0-3 NetworkPolicies in `namespaces`, 0-2 AdminNetworkPolicies, sometimes the BANP."""
    out = [draw(network_policies(i, namespaces, v)) for i in range(draw(st.integers(0, 3)))]
    priorities = draw(st.lists(st.integers(0, 1000), max_size=2, unique=True))
    for i, priority in enumerate(priorities):
        ingress = draw(st.lists(admin_rules("ingress", ("Allow", "Deny", "Pass"), v), max_size=3))
        egress = draw(st.lists(admin_rules("egress", ("Allow", "Deny", "Pass"), v), max_size=3))
        out.append(admin_policy(f"anp{i}", priority, draw(subjects(v)), ingress=ingress, egress=egress))
    if _maybe(draw, 40):
        out.append(
            baseline_policy(
                draw(subjects(v)),
                ingress=draw(st.lists(admin_rules("ingress", ("Allow", "Deny"), v), max_size=2)),
                egress=draw(st.lists(admin_rules("egress", ("Allow", "Deny"), v), max_size=2)),
            )
        )
    return out


def valid(manifests: list[dict[str, Any]]) -> bool:
    """Every manifest passes tortie's validation (random ones sometimes do not: `assume` it)."""
    try:
        for manifest in manifests:
            parse_resource(manifest)
    except ValidationError:
        return False
    return True
