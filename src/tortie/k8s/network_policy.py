"""Namespace -> Profile and NetworkPolicy -> Calico NetworkPolicy, as libcalico-go's conversion does.

Namespace `<ns>` becomes profile `kns.<ns>`: allow-all ingress and egress (so a pod no policy selects
is unrestricted: Kubernetes' default) and `labelsToApply` holding the namespace's labels prefixed
`pcns.`, plus `pcns.kubernetes.io/metadata.name` and `pcns.projectcalico.org/name` (both the name):
a rule's namespaceSelector is evaluated against those.

NetworkPolicy `<ns>/<n>` becomes Calico NetworkPolicy `<ns>/knp.default.<n>` in tier `default` at order
1000, applying to the pods its podSelector selects (`projectcalico.org/orchestrator == "k8s" && ...`),
with `types` = the effective policyTypes (Ingress, plus Egress when there are egress rules, if
omitted). Every rule is an Allow (tortie.k8s.rules: one per port group and peer):

* no peers: any source / destination; no ports: any protocol and port;
* podSelector only: those pods in the policy's namespace (a Calico NetworkPolicy rule's default);
* namespaceSelector (with or without podSelector): those pods in the namespaces it selects;
* ipBlock: nets [cidr], notNets [except...];
* ports: protocol (default TCP), a port number, `port:endPort`, a named port, or no port (all ports).

One difference from libcalico-go's output: tortie looks a NetworkPolicy rule's named ports up in the
policy's own namespace unless the rule side has a namespaceSelector, while Felix looks them up in every
namespace when the side has no selector. An egress rule to any destination or to an ipBlock is allowed
to reach a pod's named port in any namespace in Kubernetes, so those named-port rules get
`namespaceSelector: all()` and the pod selector (named ports exist on pods only, so nothing else
changes).
"""

from __future__ import annotations

from tortie.k8s import names
from tortie.k8s.rules import Peer, calico_rules, group_ports
from tortie.k8s.selectors import namespace_selector, pod_selector
from tortie.model import Resource
from tortie.model.fields import Port
from tortie.model.frozen import FrozenMap
from tortie.model.rules import EntityRule, Rule
from tortie.model.specs_k8s import (
    NAMESPACE_NAME_LABEL,
    K8sNetworkPolicySpec,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    NetworkPolicyRule,
)
from tortie.model.specs_policy import NetworkPolicySpec, ProfileSpec

NETWORK_POLICY_ORDER = 1000.0
NAMESPACE_LABEL_PREFIX = "pcns."
CALICO_NAME_LABEL = "projectcalico.org/name"
ANY_NAMESPACE_POD = EntityRule(selector=pod_selector(None), namespace_selector="all()")


def translate_namespace(namespace: Resource) -> Resource:
    name = namespace.metadata.name
    labels = {**namespace.metadata.labels, NAMESPACE_NAME_LABEL: name, CALICO_NAME_LABEL: name}
    target = names.derived(names.NAMESPACE_KIND, name)
    allow = (Rule(action="Allow"),)
    spec = ProfileSpec(
        ingress=allow,
        egress=allow,
        labels_to_apply=FrozenMap({NAMESPACE_LABEL_PREFIX + k: v for k, v in labels.items()}),
    )
    return Resource.of(target.kind, target.name, spec)


def _peer(peer: NetworkPolicyPeer) -> EntityRule:
    if peer.ip_block is not None:
        return EntityRule(nets=(peer.ip_block.cidr,), not_nets=peer.ip_block.except_)
    ns = namespace_selector(peer.namespace_selector) if peer.namespace_selector is not None else None
    return EntityRule(selector=pod_selector(peer.pod_selector), namespace_selector=ns)


def _calico_port(port: NetworkPolicyPort) -> Port | None:
    """A number, a `port:endPort` range or a name; None = every port of the protocol."""
    if port.port is None:
        return None
    if isinstance(port.port, str):
        return Port.named(port.port)
    return Port.range(port.port, port.end_port) if port.end_port is not None else Port.single(port.port)


def _rules(rules: tuple[NetworkPolicyRule, ...], direction: str) -> tuple[Rule, ...]:
    out: list[Rule] = []
    peer_field = "from" if direction == "ingress" else "to"
    for i, rule in enumerate(rules):
        peers: list[Peer] = [(f"{peer_field}[{j}]", _peer(p)) for j, p in enumerate(rule.peers)]
        out += calico_rules(
            action="Allow",
            direction=direction,
            groups=group_ports((p.effective_protocol, _calico_port(p)) for p in rule.ports),
            peers=peers,
            origin=f"spec.{direction}[{i}]",
            scope_named=ANY_NAMESPACE_POD,
        )
    return tuple(out)


def translate_network_policy(policy: Resource) -> Resource:
    spec = policy.spec_as(K8sNetworkPolicySpec)
    types = spec.effective_policy_types
    target = names.derived(names.NETWORK_POLICY_KIND, policy.metadata.name, policy.metadata.namespace)
    calico = NetworkPolicySpec(
        tier=names.DEFAULT_TIER,
        order=NETWORK_POLICY_ORDER,
        selector=pod_selector(spec.effective_pod_selector),
        types=types,
        ingress=_rules(spec.ingress, "ingress") if "Ingress" in types else (),
        egress=_rules(spec.egress, "egress") if "Egress" in types else (),
    )
    return Resource.of(target.kind, target.name, calico, namespace=target.namespace)
