"""Validation of the Kubernetes kinds as the API server (and the policy-api CRDs) validate them: each
broken input is reported at its field path with a clear reason; valid edge cases are accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tortie.model import ValidationError, load_resources, parse_resource, validate_resource
from tortie.model.specs_k8s import K8sNetworkPolicySpec

NP_API, ADMIN_API = "networking.k8s.io/v1", "policy.networking.k8s.io/v1alpha1"
BASE: dict[str, dict[str, Any]] = {
    "Namespace": {"apiVersion": "v1", "metadata": {"name": "shop"}},
    "NetworkPolicy": {
        "apiVersion": NP_API,
        "metadata": {"name": "np", "namespace": "shop"},
        "spec": {"podSelector": {}},
    },
    "AdminNetworkPolicy": {
        "apiVersion": ADMIN_API,
        "metadata": {"name": "anp"},
        "spec": {"priority": 5, "subject": {"namespaces": {}}},
    },
    "BaselineAdminNetworkPolicy": {
        "apiVersion": ADMIN_API,
        "metadata": {"name": "default"},
        "spec": {"subject": {"namespaces": {}}},
    },
}


def make(
    kind: str,
    spec: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": kind, **copy.deepcopy(BASE[kind])}
    obj.setdefault("spec", {}).update(spec or {})
    obj["metadata"].update(meta or {})
    obj.update(top or {})
    return obj


def ingress(*peers: dict[str, Any], ports: list[Any] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if peers:
        rule["from"] = list(peers)
    if ports is not None:
        rule["ports"] = ports
    return {"ingress": [rule]}


def admin_rule(
    direction: str = "ingress", action: str = "Allow", peers: list[Any] | None = None, **extra: Any
) -> dict[str, Any]:
    field = "from" if direction == "ingress" else "to"
    return {
        direction: [{"action": action, field: peers if peers is not None else [{"namespaces": {}}], **extra}]
    }


def sel(*exprs: dict[str, Any], **labels: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if labels:
        out["matchLabels"] = labels
    if exprs:
        out["matchExpressions"] = list(exprs)
    return out


@pytest.mark.parametrize("kind", sorted(BASE))
def test_base_objects_are_valid(kind: str) -> None:
    assert validate_resource(make(kind)) == []


C = pytest.param
PS = "spec.podSelector"
PORT0 = "spec.ingress[0].ports[0]"
CASES = [
    # -- envelope and names -------------------------------------------------------------------------
    C(
        "Namespace",
        {"top": {"apiVersion": "projectcalico.org/v3"}},
        "apiVersion",
        "not supported for kind Namespace: use v1",
        id="namespace-wrong-api",
    ),
    C(
        "NetworkPolicy",
        {"top": {"apiVersion": "networking.k8s.io/v1beta1"}},
        "apiVersion",
        "use projectcalico.org/v3 or networking.k8s.io/v1",
        id="np-unknown-version",
    ),
    C(
        "NetworkPolicy",
        {"meta": {"namespace": None}},
        "metadata.namespace",
        "is required",
        id="np-no-namespace",
    ),
    C("NetworkPolicy", {"meta": {"name": "Bad_Name"}}, "metadata.name", "not a valid name", id="np-name"),
    C("Namespace", {"meta": {"name": "a.b"}}, "metadata.name", "not a valid name", id="namespace-name-dot"),
    C(
        "Namespace",
        {"meta": {"labels": {"kubernetes.io/metadata.name": "other"}}},
        "metadata.labels['kubernetes.io/metadata.name']",
        "must be the namespace's name",
        id="namespace-name-label",
    ),
    C(
        "Namespace",
        {"spec": {"finalizers": ["kubernetes"]}},
        "spec.finalizers",
        "not supported",
        id="finalizers",
    ),
    C(
        "NetworkPolicy",
        {"meta": {"managedFields": []}},
        "metadata.managedFields",
        "set by a Kubernetes API server",
        id="server-metadata",
    ),
    C("NetworkPolicy", {"spec": {"selector": "all()"}}, "spec.selector", "podSelector", id="calico-field"),
    # -- label selectors ------------------------------------------------------------------------------
    C(
        "NetworkPolicy",
        {"spec": {"podSelector": sel({"key": "a b", "operator": "Exists"})}},
        f"{PS}.matchExpressions[0].key",
        "not valid",
        id="selector-key",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"podSelector": sel({"key": "a", "operator": "Equals", "values": ["x"]})}},
        f"{PS}.matchExpressions[0].operator",
        "must be one of In, NotIn, Exists, DoesNotExist",
        id="selector-op",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"podSelector": sel({"key": "a", "operator": "In"})}},
        f"{PS}.matchExpressions[0].values",
        "must be specified when `operator` is 'In' or 'NotIn'",
        id="in-no-values",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"podSelector": sel({"key": "a", "operator": "Exists", "values": ["x"]})}},
        f"{PS}.matchExpressions[0].values",
        "may not be specified",
        id="exists-values",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"podSelector": sel({"key": "a", "operator": "In", "values": ["no spaces"]})}},
        f"{PS}.matchExpressions[0].values[0]",
        "label value",
        id="selector-value",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"podSelector": {"matchLabels": {"app": "a b"}}}},
        f"{PS}.matchLabels.app",
        "label value",
        id="match-labels-value",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": {"subject": {"namespaces": sel({"key": "-x", "operator": "Exists"})}}},
        "spec.subject.namespaces.matchExpressions[0].key",
        "not valid",
        id="anp-selector-key",
    ),
    # -- NetworkPolicy peers and ports ------------------------------------------------------------------
    C(
        "NetworkPolicy",
        {"spec": ingress({})},
        "spec.ingress[0].from[0]",
        "must specify a peer",
        id="empty-peer",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}})},
        "spec.ingress[0].from[0]",
        "may not specify both ipBlock and another peer",
        id="ipblock-and-selector",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress({"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.1.0.0/24"]}})},
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "must be a strict subset of `cidr`",
        id="except-outside",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress({"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/24"]}})},
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "strict subset",
        id="except-equal",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}})},
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "strict subset",
        id="except-family",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress({"ipBlock": {"cidr": "10.0.0.1"}})},
        "spec.ingress[0].from[0].ipBlock.cidr",
        "prefix length",
        id="cidr-no-prefix",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress({"ipBlock": {"cidr": "10.0.0.300/8"}})},
        "spec.ingress[0].from[0].ipBlock.cidr",
        "not a valid IP address",
        id="cidr-bad",
    ),
    C(
        "NetworkPolicy",
        {
            "spec": ingress(
                {
                    "ipBlock": {
                        "cidr": "10.0.0.0/8",
                        "except": [f"10.{i // 256}.{i % 256}.0/24" for i in range(257)],
                    }
                }
            )
        },
        "spec.ingress[0].from[0].ipBlock.except",
        "at most 256",
        id="too-many-excepts",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"port": "Http"}])},
        f"{PORT0}.port",
        "not a valid port name",
        id="port-name-case",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"port": "8080"}])},
        f"{PORT0}.port",
        "at least one letter",
        id="port-name-digits",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"port": "a--b"}])},
        f"{PORT0}.port",
        "no '--'",
        id="port-name-dashes",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"port": "p" * 16}])},
        f"{PORT0}.port",
        "1-15",
        id="port-name-long",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"port": 0}])},
        f"{PORT0}.port",
        "between 1 and 65535",
        id="port-0",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"protocol": "ICMP"}])},
        f"{PORT0}.protocol",
        "must be one of TCP, UDP, SCTP",
        id="protocol",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"endPort": 90}])},
        f"{PORT0}.endPort",
        "may not be specified when `port` is not specified",
        id="endport-without-port",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"port": "http", "endPort": 90}])},
        f"{PORT0}.endPort",
        "may not be specified when `port` is non-numeric",
        id="endport-named",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"port": 80, "endPort": 79}])},
        f"{PORT0}.endPort",
        "must be greater than or equal to `port`",
        id="endport-below",
    ),
    C(
        "NetworkPolicy",
        {"spec": ingress(ports=[{"port": 80, "endPort": 70000}])},
        f"{PORT0}.endPort",
        "between 1 and 65535",
        id="endport-range",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"policyTypes": ["Ingress", "Egress", "Ingress"]}},
        "spec.policyTypes",
        "may not specify more than two policyTypes",
        id="policy-types-three",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"policyTypes": ["Both"]}},
        "spec.policyTypes[0]",
        "must be one of Ingress, Egress",
        id="policy-type-value",
    ),
    C(
        "NetworkPolicy",
        {
            "spec": ingress(
                *[{"ipBlock": {"cidr": f"10.{i // 256}.{i % 256}.0/24"}} for i in range(350)],
                ports=[{"protocol": "TCP"}, {"protocol": "UDP"}, {"protocol": "SCTP"}],
            )
        },
        "spec.ingress",
        "translates into 1050 Calico rules",
        id="too-many-calico-rules",
    ),
    # -- AdminNetworkPolicy / BaselineAdminNetworkPolicy --------------------------------------------------
    C(
        "AdminNetworkPolicy",
        {"spec": {"priority": 1001}},
        "spec.priority",
        "must be 0-1000",
        id="priority-high",
    ),
    C("AdminNetworkPolicy", {"spec": {"priority": -1}}, "spec.priority", "must be 0-1000", id="priority-low"),
    C(
        "AdminNetworkPolicy",
        {"spec": {"priority": None}},
        "spec.priority",
        "is required",
        id="priority-missing",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": {"subject": {}}},
        "spec.subject",
        "exactly one of namespaces, pods",
        id="subject-none",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": {"subject": {"namespaces": {}, "pods": {"namespaceSelector": {}, "podSelector": {}}}}},
        "spec.subject",
        "found namespaces, pods",
        id="subject-both",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": {"subject": {"pods": {"podSelector": {}}}}},
        "spec.subject.pods.namespaceSelector",
        "is required",
        id="subject-pods-incomplete",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(action="Log")},
        "spec.ingress[0].action",
        "must be one of Allow, Deny, Pass",
        id="action",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(peers=[{"namespaces": {}}] * 101)},
        "spec.ingress[0].from",
        "101 entries; at most 100",
        id="too-many-peers",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(peers=[])},
        "spec.ingress[0].from",
        "at least one peer",
        id="no-peers",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(peers=[{}])},
        "spec.ingress[0].from[0]",
        "exactly one of",
        id="empty-peer",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": {"ingress": admin_rule()["ingress"] * 101}},
        "spec.ingress",
        "101 entries; at most 100",
        id="too-many-rules",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(name="n" * 101)},
        "spec.ingress[0].name",
        "at most 100",
        id="rule-name-long",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(ports=[])},
        "spec.ingress[0].ports",
        "at least one port",
        id="empty-ports",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(ports=[{"portNumber": {"port": 80}, "namedPort": "http"}])},
        "spec.ingress[0].ports[0]",
        "exactly one of portNumber, portRange, namedPort",
        id="port-two-choices",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(ports=[{"portRange": {"start": 90, "end": 90}}])},
        "spec.ingress[0].ports[0].portRange.end",
        "must be greater than start",
        id="port-range",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(ports=[{"portNumber": {"port": 80, "protocol": "icmp"}}])},
        "spec.ingress[0].ports[0].portNumber.protocol",
        "must be one of TCP, UDP, SCTP",
        id="anp-protocol",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(ports=[{"namedPort": "Web_1"}])},
        "spec.ingress[0].ports[0].namedPort",
        "not a valid port name",
        id="anp-named-port",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule("egress", peers=[{"networks": [f"10.0.{i}.0/24" for i in range(26)]}])},
        "spec.egress[0].to[0].networks",
        "26 entries; at most 25",
        id="too-many-networks",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule("egress", peers=[{"networks": ["10.0.0.0"]}])},
        "spec.egress[0].to[0].networks[0]",
        "prefix length",
        id="network-cidr",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule("egress", peers=[{"nodes": {}}])},
        "spec.egress[0].to[0].nodes",
        "not supported",
        id="nodes-peer",
    ),
    C(
        "AdminNetworkPolicy",
        {"spec": admin_rule(peers=[{"networks": ["10.0.0.0/8"]}])},
        "spec.ingress[0].from[0].networks",
        "only egress rules",
        id="ingress-networks",
    ),
    C(
        "BaselineAdminNetworkPolicy",
        {"meta": {"name": "other"}},
        "metadata.name",
        "named 'default'",
        id="banp-name",
    ),
    C(
        "BaselineAdminNetworkPolicy",
        {"spec": admin_rule(action="Pass")},
        "spec.ingress[0].action",
        "'Pass' is not valid in a BaselineAdminNetworkPolicy",
        id="banp-pass",
    ),
    C(
        "BaselineAdminNetworkPolicy",
        {"spec": {"priority": 3}},
        "spec.priority",
        "has no priority",
        id="banp-priority",
    ),
]


@pytest.mark.parametrize(("kind", "change", "path", "fragment"), CASES)
def test_invalid_input_is_reported_at_its_field(
    kind: str, change: dict[str, Any], path: str, fragment: str
) -> None:
    obj = make(kind, change.get("spec"), change.get("meta"), change.get("top"))
    for key, value in (change.get("spec") or {}).items():
        if value is None:
            del obj["spec"][key]
    problems = validate_resource(obj)
    assert any(p.path == path and fragment in p.message for p in problems), [
        (p.path, p.message) for p in problems
    ]
    with pytest.raises(ValidationError):
        parse_resource(obj)


def test_omitted_pod_selector_selects_every_pod() -> None:
    for spec in ({}, {"podSelector": None}):
        res = parse_resource(
            {
                "apiVersion": NP_API,
                "kind": "NetworkPolicy",
                "metadata": {"name": "np", "namespace": "x"},
                "spec": spec,
            }
        )
        assert res.spec_as(K8sNetworkPolicySpec).effective_pod_selector.is_empty


def test_policy_types_default_as_the_api_server_does() -> None:
    def types(spec: dict[str, Any]) -> tuple[str, ...]:
        return (
            parse_resource(make("NetworkPolicy", spec)).spec_as(K8sNetworkPolicySpec).effective_policy_types
        )

    assert types({}) == ("Ingress",)
    assert types({"ingress": [{}]}) == ("Ingress",)
    assert types({"egress": [{}]}) == ("Ingress", "Egress")
    assert types({"egress": []}) == ("Ingress",)
    assert types({"policyTypes": ["Egress", "Ingress"]}) == ("Ingress", "Egress")


def test_limits_are_inclusive() -> None:
    assert validate_resource(make("AdminNetworkPolicy", admin_rule(peers=[{"namespaces": {}}] * 100))) == []
    assert validate_resource(make("AdminNetworkPolicy", {"priority": 0})) == []
    assert validate_resource(make("AdminNetworkPolicy", {"priority": 1000})) == []
    assert validate_resource(make("NetworkPolicy", ingress(ports=[{"port": 80, "endPort": 80}]))) == []
    assert validate_resource(make("NetworkPolicy", ingress({"ipBlock": {"cidr": "10.0.0.5/24"}}))) == []


def test_both_network_policies_are_told_apart_by_api_version() -> None:
    text = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec: {podSelector: {}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec: {selector: all()}
"""
    k8s, calico = load_resources(text)
    assert (k8s.kind, calico.kind) == ("NetworkPolicy.networking.k8s.io", "NetworkPolicy")
    assert k8s.key == "/tortie/kubernetes/networking.k8s.io/networkpolicies/shop/web"
    assert calico.key == "/calico/resources/v3/projectcalico.org/networkpolicies/shop/web"
    assert k8s.to_wire()["kind"] == calico.to_wire()["kind"] == "NetworkPolicy"
    assert k8s.to_wire()["apiVersion"] == NP_API


def test_typed_lists_keep_their_api_version() -> None:
    text = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicyList
items:
- metadata: {name: a, namespace: x}
  spec: {podSelector: {}}
"""
    (res,) = load_resources(text)
    assert res.kind == "NetworkPolicy.networking.k8s.io"
    with pytest.raises(ValidationError) as info:
        load_resources(text.replace("networking.k8s.io/v1", "v1"))
    assert any(p.path == "apiVersion" for p in info.value.problems)


def test_store_keys_of_every_kind() -> None:
    keys = {
        res.kind: res.key
        for res in load_resources("""
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: guard}
spec: {priority: 1, subject: {namespaces: {}}}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec: {subject: {namespaces: {}}}
""")
    }
    root = "/tortie/kubernetes/"
    assert keys == {
        "Namespace": root + "core/namespaces/shop",
        "AdminNetworkPolicy.policy.networking.k8s.io": (
            root + "policy.networking.k8s.io/adminnetworkpolicies/guard"
        ),
        "BaselineAdminNetworkPolicy.policy.networking.k8s.io": (
            root + "policy.networking.k8s.io/baselineadminnetworkpolicies/default"
        ),
    }
