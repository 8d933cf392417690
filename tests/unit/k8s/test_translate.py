"""tortie.k8s: the shape of each translation (names, tiers, orders, selectors, rule expansion), the
derived datastore keys, and that every translation is a valid Calico-model object."""

from __future__ import annotations

from typing import Any

import pytest

from tortie.k8s.names import derived_key, is_kubernetes_kind
from tortie.k8s.selectors import namespace_selector, pod_selector
from tortie.k8s.translate import translate, translate_all
from tortie.model import Resource, parse_resource, validate_resource
from tortie.model.problems import Issues
from tortie.model.rules import Rule
from tortie.model.specs_k8s import LABEL_SELECTOR, LabelSelector
from tortie.model.specs_policy import GlobalNetworkPolicySpec, NetworkPolicySpec, ProfileSpec
from tortie.selector import parse
from tortie.testing.model_samples import VALID

POD = 'projectcalico.org/orchestrator == "k8s"'


def np(spec: dict[str, Any], name: str = "web", ns: str = "shop") -> NetworkPolicySpec:
    res = translate(
        parse_resource(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
            }
        )
    )
    assert (res.kind, res.metadata.name, res.metadata.namespace) == (
        "NetworkPolicy",
        f"knp.default.{name}",
        ns,
    )
    assert validate_resource(res) == []
    return res.spec_as(NetworkPolicySpec)


def admin(kind: str, spec: dict[str, Any], name: str = "guard") -> Resource:
    res = translate(
        parse_resource(
            {
                "apiVersion": "policy.networking.k8s.io/v1alpha1",
                "kind": kind,
                "metadata": {"name": name},
                "spec": spec,
            }
        )
    )
    assert validate_resource(res) == []
    return res


def selector(raw: dict[str, Any]) -> LabelSelector:
    value = LABEL_SELECTOR.decode(raw, "s", Issues())
    assert isinstance(value, LabelSelector)
    return value


@pytest.mark.parametrize("kind", [k for k in VALID if is_kubernetes_kind(k)])
def test_every_sample_translates_into_a_valid_calico_object(kind: str) -> None:
    res = translate(parse_resource(VALID[kind]))
    assert res.api_version == "projectcalico.org/v3"
    assert validate_resource(res) == []
    assert parse_resource(res.to_wire()) == res


def test_label_selectors_keep_their_meaning() -> None:
    sel = selector(
        {
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [
                {"key": "t", "operator": "In", "values": ["x", "y"]},
                {"key": "u", "operator": "NotIn", "values": ["z"]},
                {"key": "v", "operator": "Exists"},
                {"key": "kubernetes.io/w", "operator": "DoesNotExist"},
            ],
        }
    )
    text = namespace_selector(sel)
    assert (
        text == 'a == "1" && b == "2" && t in {"x", "y"} && u not in {"z"} && has(v) && !has(kubernetes.io/w)'
    )
    calico = parse(text)
    base = {"a": "1", "b": "2", "t": "x", "v": ""}
    assert calico.evaluate(base)
    assert not calico.evaluate({**base, "u": "z"})
    assert calico.evaluate({**base, "u": "other"})
    assert not calico.evaluate({**base, "kubernetes.io/w": ""})
    assert not calico.evaluate({**base, "t": "q"})
    assert namespace_selector(LabelSelector()) == "all()"
    assert pod_selector(None) == POD
    assert pod_selector(selector({"matchLabels": {"app": "web"}})) == f'{POD} && app == "web"'


def test_namespace_becomes_its_profile() -> None:
    res = translate(
        parse_resource(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "web"}}}
        )
    )
    assert (res.kind, res.metadata.name) == ("Profile", "kns.shop")
    spec = res.spec_as(ProfileSpec)
    assert spec.ingress == spec.egress == (Rule(action="Allow"),)
    assert dict(spec.labels_to_apply) == {
        "pcns.team": "web",
        "pcns.kubernetes.io/metadata.name": "shop",
        "pcns.projectcalico.org/name": "shop",
    }


def test_network_policy_lands_in_the_default_tier_at_order_1000() -> None:
    spec = np({"podSelector": {"matchLabels": {"app": "web"}}})
    assert (spec.tier, spec.order, spec.selector) == ("default", 1000.0, f'{POD} && app == "web"')
    assert spec.types == ("Ingress",) and spec.ingress == spec.egress == ()
    assert np({}).selector == POD


def test_policy_types_defaulting_and_unlisted_directions() -> None:
    assert np({"egress": [{}]}).types == ("Ingress", "Egress")
    only_egress = np({"policyTypes": ["Egress"], "ingress": [{}], "egress": [{}]})
    assert only_egress.types == ("Egress",) and only_egress.ingress == ()
    assert len(only_egress.egress) == 1


def test_peers_become_one_rule_each() -> None:
    spec = np(
        {
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"role": "lb"}}},
                        {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
                        {"podSelector": {}, "namespaceSelector": {}},
                        {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}},
                    ]
                }
            ]
        }
    )
    sources = [r.source for r in spec.ingress]
    assert all(r.action == "Allow" and r.protocol is None for r in spec.ingress)
    assert (sources[0].selector, sources[0].namespace_selector) == (f'{POD} && role == "lb"', None)
    assert (sources[1].selector, sources[1].namespace_selector) == (POD, 'env == "prod"')
    assert (sources[2].selector, sources[2].namespace_selector) == (POD, "all()")
    assert (sources[3].nets, sources[3].not_nets, sources[3].selector) == (
        ("10.0.0.0/16",),
        ("10.0.1.0/24",),
        None,
    )
    origins = [r.metadata.annotations["origin"] for r in spec.ingress if r.metadata]
    assert origins == [f"spec.ingress[0].from[{i}]" for i in range(4)]


def test_empty_rule_allows_everything() -> None:
    (rule,) = np({"ingress": [{}]}).ingress
    assert rule == Rule(action="Allow", metadata=rule.metadata)
    assert rule.metadata is not None and rule.metadata.annotations["origin"] == "spec.ingress[0]"


def test_ports_are_grouped_by_protocol() -> None:
    spec = np(
        {
            "ingress": [
                {
                    "ports": [
                        {"port": 80},
                        {"protocol": "UDP", "port": 53},
                        {"port": 81, "endPort": 90},
                        {"port": "http"},
                        {"protocol": "SCTP"},
                        {"protocol": "SCTP", "port": 9},
                    ]
                }
            ]
        }
    )
    got = [(str(r.protocol), tuple(str(p) for p in r.destination.ports)) for r in spec.ingress]
    assert got == [("SCTP", ()), ("TCP", ("80", "81:90")), ("TCP", ("http",)), ("UDP", ("53",))]


def test_egress_named_ports_are_looked_up_in_every_namespace() -> None:
    anywhere = np({"policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}, {"port": 80}]}]}).egress
    numeric, named = anywhere
    assert (numeric.destination.selector, numeric.destination.namespace_selector) == (None, None)
    assert (named.destination.selector, named.destination.namespace_selector) == (POD, "all()")
    to_pods = np(
        {
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": "http"}]}
            ],
        }
    ).egress
    assert to_pods[0].destination.namespace_selector is None  # the peer's own namespace scope holds
    to_block = np(
        {
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": "http"}]}],
        }
    ).egress
    assert (to_block[0].destination.nets, to_block[0].destination.namespace_selector) == (
        ("10.0.0.0/8",),
        "all()",
    )


def test_admin_network_policy_in_the_admin_tier() -> None:
    res = admin(
        "AdminNetworkPolicy",
        {
            "priority": 7,
            "subject": {"pods": {"namespaceSelector": {"matchLabels": {"env": "prod"}}, "podSelector": {}}},
            "ingress": [{"action": "Pass", "name": "hand over", "from": [{"namespaces": {}}]}],
            "egress": [
                {
                    "action": "Deny",
                    "to": [{"networks": ["10.0.0.0/8", "fd00::/8"]}],
                    "ports": [{"portRange": {"start": 80, "end": 90}}, {"namedPort": "dns"}],
                }
            ],
        },
    )
    assert (res.kind, res.metadata.name) == ("GlobalNetworkPolicy", "kanp.adminnetworkpolicy.guard")
    spec = res.spec_as(GlobalNetworkPolicySpec)
    assert (spec.tier, spec.order, spec.selector, spec.namespace_selector) == (
        "kube-admin",
        7.0,
        POD,
        'env == "prod"',
    )
    assert spec.types == ("Ingress", "Egress")
    (ingress,) = spec.ingress
    assert (
        ingress.action == "Pass"
        and ingress.source.namespace_selector == "all()"
        and ingress.source.selector == POD
    )
    assert ingress.metadata is not None and dict(ingress.metadata.annotations) == {
        "origin": "spec.ingress[0].from[0]",
        "name": "hand over",
    }
    got = [
        (str(r.protocol) if r.protocol else None, r.destination.nets, tuple(map(str, r.destination.ports)))
        for r in spec.egress
    ]
    assert got == [
        (None, ("10.0.0.0/8",), ("dns",)),
        (None, ("fd00::/8",), ("dns",)),
        ("TCP", ("10.0.0.0/8",), ("80:90",)),
        ("TCP", ("fd00::/8",), ("80:90",)),
    ]
    assert all(r.action == "Deny" for r in spec.egress)


def test_baseline_policy_in_the_baseline_tier() -> None:
    res = admin(
        "BaselineAdminNetworkPolicy",
        {"subject": {"namespaces": {}}, "egress": [{"action": "Deny", "to": [{"namespaces": {}}]}]},
        name="default",
    )
    assert (res.kind, res.metadata.name) == (
        "GlobalNetworkPolicy",
        "kbanp.baselineadminnetworkpolicy.default",
    )
    spec = res.spec_as(GlobalNetworkPolicySpec)
    assert (spec.tier, spec.types, spec.namespace_selector) == ("kube-baseline", ("Egress",), "all()")


def test_derived_keys() -> None:
    assert (
        derived_key("/tortie/kubernetes/core/namespaces/shop")
        == "/calico/resources/v3/projectcalico.org/profiles/kns.shop"
    )
    assert derived_key("/tortie/kubernetes/networking.k8s.io/networkpolicies/shop/web") == (
        "/calico/resources/v3/projectcalico.org/networkpolicies/shop/knp.default.web"
    )
    assert derived_key("/tortie/kubernetes/policy.networking.k8s.io/adminnetworkpolicies/a") == (
        "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/kanp.adminnetworkpolicy.a"
    )
    assert derived_key(
        "/tortie/kubernetes/policy.networking.k8s.io/baselineadminnetworkpolicies/default"
    ) == (
        "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/kbanp.baselineadminnetworkpolicy.default"
    )
    for key in (
        "/calico/resources/v3/projectcalico.org/profiles/kns.shop",
        "/tortie/kubernetes/networking.k8s.io/networkpolicies/shop",
        "/tortie/kubernetes/other/x",
    ):
        assert derived_key(key) is None


def test_derived_key_is_the_translations_key() -> None:
    for kind in (k for k in VALID if is_kubernetes_kind(k)):
        res = parse_resource(VALID[kind])
        assert derived_key(res.key) == translate(res).key


def test_only_kubernetes_kinds_translate() -> None:
    calico = parse_resource(VALID["GlobalNetworkPolicy"])
    with pytest.raises(ValueError, match="not a Kubernetes kind"):
        translate(calico)
    k8s = parse_resource(VALID["Namespace"])
    assert translate_all([calico, k8s]) == [calico, translate(k8s)]
