"""Property test: tortie enforces random Kubernetes policy exactly as the specification reads.

Hypothesis builds random clusters: two or three namespaces with random labels, pods with random
labels, named ports and hosts; random NetworkPolicies (pod/namespace selectors with matchLabels and
matchExpressions, both in one peer, ipBlocks with except, ports by number, range, name or protocol
only, policyTypes given or defaulted, empty rules), AdminNetworkPolicies with distinct priorities
(Allow / Deny / Pass, namespace, pod and network peers, port numbers, ranges and names) and sometimes
a BaselineAdminNetworkPolicy; then random connections between pods and outside addresses over TCP,
UDP and SCTP.

Every manifest goes through tortie's model validation and translation (and each translation must
itself be a valid Calico object); tortie's verdicts — the real calc on each host the connection
crosses, then the rendered nftables table run by its interpreter, and `tortie policy trace`'s
evaluator on the same calc output — and the Calico-semantics test oracle's on the translated
resources must all equal the independent reference evaluator's (tortie.testing.k8s_reference,
written from the Kubernetes and policy-api specifications, reading the raw manifests).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tortie.model import ValidationError, parse_resource, validate_resource
from tortie.testing.k8s_reference import Cluster, Connection, Pod
from tortie.testing.k8s_world import TortieVerdicts, admin_policy, baseline_policy, network_policy

NAMESPACES = ("ns1", "ns2", "ns3")
LABEL_KEYS = ("app", "tier", "env")
LABEL_VALUES = ("a", "b", "c")
NAMED_PORTS = (("http", "TCP", 80), ("dns", "UDP", 53), ("alt-http", "TCP", 81), ("assoc", "SCTP", 9000))
PORT_NAMES = ("http", "dns", "alt-http", "assoc", "missing")
CIDRS = (
    ("10.0.0.0/16", ["10.0.1.0/24"]),
    ("10.0.2.0/24", []),
    ("0.0.0.0/0", ["10.0.0.0/8"]),
    ("192.168.0.0/16", ["192.168.1.0/24", "192.168.2.0/24"]),
    ("10.0.1.3/32", []),
)
OUTSIDE = ("192.168.1.1", "192.168.7.7", "8.8.8.8", "10.0.9.9")
PORTS = (53, 80, 81, 85, 443, 9000)


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


NAMESPACE_KEYS = ("env", "team", "kubernetes.io/metadata.name")


@st.composite
def namespace_selectors(draw: Any) -> dict[str, Any]:
    if _maybe(draw, 30):
        return {"matchLabels": {"kubernetes.io/metadata.name": draw(st.sampled_from(NAMESPACES))}}
    sel: dict[str, Any] = draw(label_selectors(("env", "team")))
    return sel


@st.composite
def np_peers(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(("pod", "ns", "both", "both", "ip")))
    if kind == "ip":
        cidr, excepts = draw(st.sampled_from(CIDRS))
        block: dict[str, Any] = {"cidr": cidr}
        if excepts and _maybe(draw, 70):
            block["except"] = excepts
        return {"ipBlock": block}
    peer: dict[str, Any] = {}
    if kind in ("pod", "both"):
        peer["podSelector"] = draw(label_selectors())
    if kind in ("ns", "both"):
        peer["namespaceSelector"] = draw(namespace_selectors())
    return peer


@st.composite
def np_ports(draw: Any) -> dict[str, Any]:
    port: dict[str, Any] = {}
    if _maybe(draw, 60):
        port["protocol"] = draw(st.sampled_from(("TCP", "UDP", "SCTP")))
    shape = draw(st.sampled_from(("number", "number", "range", "name", "name", "none")))
    if shape == "number":
        port["port"] = draw(st.sampled_from(PORTS))
    elif shape == "range":
        port["port"] = draw(st.sampled_from((53, 80)))
        port["endPort"] = port["port"] + draw(st.sampled_from((0, 1, 10)))
    elif shape == "name":
        port["port"] = draw(st.sampled_from(PORT_NAMES))
    return port


@st.composite
def np_rules(draw: Any, direction: str) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if _maybe(draw, 70):
        rule["from" if direction == "ingress" else "to"] = draw(st.lists(np_peers(), min_size=1, max_size=2))
    if _maybe(draw, 55):
        rule["ports"] = draw(st.lists(np_ports(), min_size=1, max_size=2))
    return rule


@st.composite
def network_policies(draw: Any, index: int, namespaces: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if _maybe(draw, 70):
        spec["podSelector"] = draw(label_selectors())
    for direction in ("ingress", "egress"):
        if _maybe(draw, 60):
            spec[direction] = draw(st.lists(np_rules(direction), max_size=2))
    if _maybe(draw, 50):
        spec["policyTypes"] = draw(
            st.lists(st.sampled_from(("Ingress", "Egress")), min_size=1, max_size=2, unique=True)
        )
    return network_policy(f"np{index}", draw(st.sampled_from(namespaces)), spec)


@st.composite
def admin_peers(draw: Any, direction: str) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(("namespaces", "pods", "pods") + (("networks",) if direction == "egress" else ()))
    )
    if kind == "namespaces":
        return {"namespaces": draw(namespace_selectors())}
    if kind == "pods":
        return {
            "pods": {"namespaceSelector": draw(namespace_selectors()), "podSelector": draw(label_selectors())}
        }
    nets = draw(
        st.lists(
            st.sampled_from(("10.0.0.0/16", "10.0.2.0/24", "192.168.0.0/16", "0.0.0.0/0", "fd00::/8")),
            min_size=1,
            max_size=2,
            unique=True,
        )
    )
    return {"networks": nets}


@st.composite
def admin_ports(draw: Any) -> dict[str, Any]:
    shape = draw(st.sampled_from(("portNumber", "portNumber", "portRange", "namedPort")))
    if shape == "namedPort":
        return {"namedPort": draw(st.sampled_from(PORT_NAMES))}
    number: dict[str, Any] = {}
    if _maybe(draw, 70):
        number["protocol"] = draw(st.sampled_from(("TCP", "UDP", "SCTP")))
    if shape == "portNumber":
        number["port"] = draw(st.sampled_from(PORTS))
    else:
        number["start"] = draw(st.sampled_from((53, 80)))
        number["end"] = number["start"] + draw(st.sampled_from((1, 30)))
    return {shape: number}


@st.composite
def admin_rules(draw: Any, direction: str, actions: tuple[str, ...]) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "action": draw(st.sampled_from(actions)),
        "from" if direction == "ingress" else "to": draw(
            st.lists(admin_peers(direction), min_size=1, max_size=2)
        ),
    }
    if _maybe(draw, 30):
        rule["name"] = f"rule-{draw(st.integers(0, 9))}"
    if _maybe(draw, 50):
        rule["ports"] = draw(st.lists(admin_ports(), min_size=1, max_size=2))
    return rule


@st.composite
def subjects(draw: Any) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"namespaces": draw(namespace_selectors())}
    return {
        "pods": {"namespaceSelector": draw(namespace_selectors()), "podSelector": draw(label_selectors())}
    }


@st.composite
def clusters(draw: Any) -> tuple[list[Pod], dict[str, dict[str, str]], list[dict[str, Any]]]:
    namespaces = {}
    for name in NAMESPACES[: draw(st.integers(2, 3))]:
        labels = {}
        if _maybe(draw, 60):
            labels["env"] = draw(st.sampled_from(LABEL_VALUES))
        if _maybe(draw, 40):
            labels["team"] = draw(st.sampled_from(LABEL_VALUES))
        namespaces[name] = labels
    pods = []
    for i in range(draw(st.integers(2, 6))):
        labels = {k: draw(st.sampled_from(LABEL_VALUES)) for k in LABEL_KEYS if _maybe(draw, 50)}
        ports = tuple(p for p in NAMED_PORTS if _maybe(draw, 50))
        pods.append(
            Pod(
                draw(st.sampled_from(sorted(namespaces))),
                f"p{i}",
                f"10.0.{i % 3}.{i + 2}",
                labels,
                ports,
                draw(st.sampled_from(("h1", "h1", "h2"))),
            )
        )
    policies = [draw(network_policies(i, sorted(namespaces))) for i in range(draw(st.integers(0, 3)))]
    priorities = draw(st.lists(st.integers(0, 1000), max_size=2, unique=True))
    for i, priority in enumerate(priorities):
        ingress = draw(st.lists(admin_rules("ingress", ("Allow", "Deny", "Pass")), max_size=3))
        egress = draw(st.lists(admin_rules("egress", ("Allow", "Deny", "Pass")), max_size=3))
        policies.append(admin_policy(f"anp{i}", priority, draw(subjects()), ingress=ingress, egress=egress))
    if _maybe(draw, 40):
        policies.append(
            baseline_policy(
                draw(subjects()),
                ingress=draw(st.lists(admin_rules("ingress", ("Allow", "Deny")), max_size=2)),
                egress=draw(st.lists(admin_rules("egress", ("Allow", "Deny")), max_size=2)),
            )
        )
    return pods, namespaces, policies


def _valid(policies: list[dict[str, Any]]) -> bool:
    try:
        for policy in policies:
            parse_resource(policy)
    except ValidationError:
        return False
    return True


@st.composite
def connections(draw: Any, pods: list[Pod]) -> Connection:
    # Ends are drawn by index: Pods hold dicts, and Hypothesis labels sampled values by their hash.
    ends: list[Pod | str] = [*pods, *pods, *OUTSIDE]
    src = ends[draw(st.integers(0, len(ends) - 1))]
    targets = [e for e in ends if e is not src and (isinstance(e, Pod) or isinstance(src, Pod))]
    dst = targets[draw(st.integers(0, len(targets) - 1))]
    return Connection(
        src, dst, draw(st.sampled_from(("TCP", "TCP", "UDP", "SCTP"))), draw(st.sampled_from(PORTS))
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(st.data())
def test_tortie_enforces_kubernetes_policy_as_the_reference_evaluator(data: st.DataObject) -> None:
    pods, namespaces, policies = data.draw(clusters())
    assume(_valid(policies))
    reference = Cluster(pods, namespaces, policies)
    tortie = TortieVerdicts(pods, namespaces, policies)
    for translated in tortie.translated:
        assert validate_resource(translated) == [], translated
    for _ in range(12):
        conn = data.draw(connections(pods))
        want = reference.allowed(conn)
        assert tortie.allowed(conn) == want, f"dataplane disagrees on {conn}: reference {want}"
        assert tortie.trace_allowed(conn) == want, f"trace disagrees on {conn}: reference {want}"
        assert tortie.oracle_allowed(conn) == want, f"oracle disagrees on {conn}: reference {want}"
