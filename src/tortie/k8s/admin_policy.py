"""AdminNetworkPolicy and BaselineAdminNetworkPolicy -> Calico GlobalNetworkPolicy in the admin tiers.

ANP `<n>` becomes GlobalNetworkPolicy `kanp.adminnetworkpolicy.<n>` in tier `kube-admin` (order 1000,
before `default`) with order = priority, so a lower priority is evaluated first. The BANP becomes
`kbanp.baselineadminnetworkpolicy.default` in tier `kube-baseline` (order 10,000,000, after `default`).
Both tiers end in Pass, so traffic no rule decides goes on: ANP -> default tier (NetworkPolicies and
Calico policies) -> BANP -> the namespace profile (allow). A rule's action is kept: Allow and Deny
decide, Pass leaves the kube-admin tier for the default tier (Kubernetes: "skip the remaining ANPs and
let NetworkPolicy decide").

Subject `namespaces: S` selects pods in namespaces S: `namespaceSelector: S`, `selector:` the pod term;
subject `pods` selects by both. Peers translate the same way into a rule side (`namespaces` = every pod
of those namespaces); egress `networks` become `nets` (IPv4 and IPv6 in separate rules). Ports: a
number or range with its protocol (default TCP), a named port without protocol (the container port's
protocol applies); no ports = all traffic. `types` lists the directions that have rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from tortie.k8s import names
from tortie.k8s.rules import Peer, calico_rules, group_ports, split_by_family
from tortie.k8s.selectors import namespace_selector, pod_selector
from tortie.model import Resource
from tortie.model.fields import Port
from tortie.model.rules import EntityRule, Rule
from tortie.model.specs_k8s_admin import (
    AdminEgressPeer,
    AdminIngressPeer,
    AdminNetworkPolicySpec,
    AdminPolicyPort,
    AdminPolicySubject,
    AdminRule,
    BaselineAdminNetworkPolicySpec,
)
from tortie.model.specs_policy import GlobalNetworkPolicySpec


def _subject(subject: AdminPolicySubject) -> tuple[str, str]:
    """(selector, namespaceSelector) of the pods a subject selects."""
    if subject.namespaces is not None:
        return pod_selector(None), namespace_selector(subject.namespaces)
    assert subject.pods is not None
    return pod_selector(subject.pods.pod_selector), namespace_selector(subject.pods.namespace_selector)


def _peers(peer: AdminIngressPeer | AdminEgressPeer, where: str) -> list[Peer]:
    if peer.namespaces is not None:
        return [
            (
                where,
                EntityRule(
                    selector=pod_selector(None), namespace_selector=namespace_selector(peer.namespaces)
                ),
            )
        ]
    if peer.pods is not None:
        return [
            (
                where,
                EntityRule(
                    selector=pod_selector(peer.pods.pod_selector),
                    namespace_selector=namespace_selector(peer.pods.namespace_selector),
                ),
            )
        ]
    assert isinstance(peer, AdminEgressPeer) and peer.networks
    return [(where, EntityRule(nets=nets)) for nets in split_by_family(peer.networks)]


def _port(port: AdminPolicyPort) -> tuple[str | None, Port]:
    """(protocol, Calico port); a named port's protocol is its container port's (None)."""
    if port.port_number is not None:
        return port.port_number.protocol or "TCP", Port.single(port.port_number.port)
    if port.port_range is not None:
        return port.port_range.protocol or "TCP", Port.range(port.port_range.start, port.port_range.end)
    assert port.named_port is not None
    return None, Port.named(port.named_port)


def _rules(rules: tuple[AdminRule, ...], direction: str) -> tuple[Rule, ...]:
    out: list[Rule] = []
    peer_field = "from" if direction == "ingress" else "to"
    for i, rule in enumerate(rules):
        given: Sequence[AdminIngressPeer | AdminEgressPeer] = rule.peers
        peers = [p for j, peer in enumerate(given) for p in _peers(peer, f"{peer_field}[{j}]")]
        out += calico_rules(
            action=rule.action,
            direction=direction,
            groups=group_ports(_port(p) for p in rule.ports or ()),
            peers=peers,
            origin=f"spec.{direction}[{i}]",
            name=rule.name,
        )
    return tuple(out)


def translate_admin_policy(policy: Resource) -> Resource:
    spec = policy.spec
    if isinstance(spec, AdminNetworkPolicySpec):
        kind, tier, order = names.ADMIN_POLICY_KIND, names.ADMIN_TIER, float(spec.priority)
    elif isinstance(spec, BaselineAdminNetworkPolicySpec):
        kind, tier, order = names.BASELINE_POLICY_KIND, names.BASELINE_TIER, 0.0
    else:
        raise TypeError(f"{policy.kind} {policy.metadata.name} is not an admin network policy")
    selector, ns_selector = _subject(spec.subject)
    types = tuple(t for t, rules in (("Ingress", spec.ingress), ("Egress", spec.egress)) if rules)
    target = names.derived(kind, policy.metadata.name)
    calico = GlobalNetworkPolicySpec(
        tier=tier,
        order=order,
        selector=selector,
        namespace_selector=ns_selector,
        types=types or ("Ingress",),
        ingress=_rules(spec.ingress, "ingress"),
        egress=_rules(spec.egress, "egress"),
    )
    return Resource.of(target.kind, target.name, calico)
