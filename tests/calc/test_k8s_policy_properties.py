"""Property test: tortie enforces random Kubernetes policy exactly as the specification reads.

Hypothesis builds random clusters: two or three namespaces with random labels, pods with random
labels, named ports and hosts; random NetworkPolicies, AdminNetworkPolicies and sometimes a
BaselineAdminNetworkPolicy (tests/k8s_policy_strategies.py, shared with the lab's sample in
tests/e2e/test_k8s_lab.py); then random connections between pods and outside addresses over TCP,
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

from k8s_policy_strategies import Vocabulary, namespace_labels, pod_labels, policies, valid
from tortie.model import validate_resource
from tortie.testing.k8s_reference import Cluster, Connection, Pod
from tortie.testing.k8s_world import TortieVerdicts

NAMESPACES = ("ns1", "ns2", "ns3")
NAMED_PORTS = (("http", "TCP", 80), ("dns", "UDP", 53), ("alt-http", "TCP", 81), ("assoc", "SCTP", 9000))
OUTSIDE = ("192.168.1.1", "192.168.7.7", "8.8.8.8", "10.0.9.9")
WORDS = Vocabulary(
    namespaces=NAMESPACES,
    cidrs=(
        ("10.0.0.0/16", ("10.0.1.0/24",)),
        ("10.0.2.0/24", ()),
        ("0.0.0.0/0", ("10.0.0.0/8",)),
        ("192.168.0.0/16", ("192.168.1.0/24", "192.168.2.0/24")),
        ("10.0.1.3/32", ()),
    ),
    networks=("10.0.0.0/16", "10.0.2.0/24", "192.168.0.0/16", "0.0.0.0/0", "fd00::/8"),
    port_names=("http", "dns", "alt-http", "assoc", "missing"),
    ports=(53, 80, 81, 85, 443, 9000),
)


@st.composite
def clusters(draw: Any) -> tuple[list[Pod], dict[str, dict[str, str]], list[dict[str, Any]]]:
    namespaces = {name: draw(namespace_labels()) for name in NAMESPACES[: draw(st.integers(2, 3))]}
    pods = []
    for i in range(draw(st.integers(2, 6))):
        labels = draw(pod_labels())
        ports = tuple(p for p in NAMED_PORTS if draw(st.booleans()))
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
    return pods, namespaces, draw(policies(sorted(namespaces), WORDS))


@st.composite
def connections(draw: Any, pods: list[Pod]) -> Connection:
    # Ends are drawn by index: Pods hold dicts, and Hypothesis labels sampled values by their hash.
    ends: list[Pod | str] = [*pods, *pods, *OUTSIDE]
    src = ends[draw(st.integers(0, len(ends) - 1))]
    targets = [e for e in ends if e is not src and (isinstance(e, Pod) or isinstance(src, Pod))]
    dst = targets[draw(st.integers(0, len(targets) - 1))]
    return Connection(
        src, dst, draw(st.sampled_from(("TCP", "TCP", "UDP", "SCTP"))), draw(st.sampled_from(WORDS.ports))
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(st.data())
def test_tortie_enforces_kubernetes_policy_as_the_reference_evaluator(data: st.DataObject) -> None:
    pods, namespaces, manifests = data.draw(clusters())
    assume(valid(manifests))
    reference = Cluster(pods, namespaces, manifests)
    tortie = TortieVerdicts(pods, namespaces, manifests)
    for translated in tortie.translated:
        assert validate_resource(translated) == [], translated
    for _ in range(12):
        conn = data.draw(connections(pods))
        want = reference.allowed(conn)
        assert tortie.allowed(conn) == want, f"dataplane disagrees on {conn}: reference {want}"
        assert tortie.trace_allowed(conn) == want, f"trace disagrees on {conn}: reference {want}"
        assert tortie.oracle_allowed(conn) == want, f"oracle disagrees on {conn}: reference {want}"
