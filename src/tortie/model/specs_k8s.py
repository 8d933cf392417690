"""Specs of the Kubernetes core kinds tortie accepts: v1 Namespace and networking.k8s.io/v1 NetworkPolicy.

Input: the `spec` of a manifest with those apiVersions. Output: frozen records that keep what the user
wrote (None / () = not given), with `effective_*` accessors for Kubernetes' defaults. Validation is the
API server's (kubernetes pkg/apis/networking/validation and apimachinery's label-selector rules), field
by field and with its wording where it has one:

* label selectors: keys are qualified names, values label values; In/NotIn need values,
  Exists/DoesNotExist take none; other operators are "not a valid selector operator";
* a peer sets podSelector and/or namespaceSelector, or ipBlock alone ("must specify a peer", "may not
  specify both ipBlock and another peer"); an ipBlock's cidr is a CIDR and each except entry "must be a
  strict subset of `cidr`";
* ports: protocol TCP, UDP or SCTP (default TCP); port a number 1-65535 or an IANA service name (the
  name of a container port); endPort only with a numeric port and not below it;
* policyTypes: Ingress and/or Egress, at most two.

The Kubernetes API server accepts a NetworkPolicy without podSelector (all pods of the namespace),
and so does tortie. Namespaces carry the label `kubernetes.io/metadata.name=<name>` (the API server
sets it); a manifest may give it only with that value.

Shared with the admin policies (tortie.model.specs_k8s_admin): the label selector record, the port
name rule, and the bound on the Calico rules a translation needs (tortie.k8s writes one per peer,
protocol and kind of port; a policy needing more than 1024 per direction is refused).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from tortie.common.ipfamily import IPNetwork, parse_network
from tortie.model.fields import check_label_key, check_label_value
from tortie.model.frozen import EMPTY_MAP, FrozenMap
from tortie.model.metadata import LABELS, Metadata
from tortie.model.problems import Issues, index, join
from tortie.model.rules import MAX_NETS, MAX_PORTS
from tortie.model.schema import Converted, Enum, Int, ListOf, Struct, Text, Wire, uses

K8S_PROTOCOLS = ("TCP", "UDP", "SCTP")
INGRESS, EGRESS = "Ingress", "Egress"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
MAX_CALICO_RULES = 1024  # tortie.model.rules.RULES: the rules one translated policy may hold


# -- label selectors (metav1.LabelSelector) ---------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LabelSelectorRequirement:
    key: Annotated[str, Wire(Text(check_label_key))]
    operator: Annotated[str, Wire(Enum("In", "NotIn", "Exists", "DoesNotExist"))]
    values: Annotated[tuple[str, ...], Wire(ListOf(Text(check_label_value)))] = ()


@uses("operator", "values")
def _check_requirement(req: LabelSelectorRequirement, path: str, issues: Issues) -> None:
    if req.operator in ("In", "NotIn") and not req.values:
        issues.add(join(path, "values"), "must be specified when `operator` is 'In' or 'NotIn'")
    if req.operator in ("Exists", "DoesNotExist") and req.values:
        issues.add(join(path, "values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")


@dataclass(frozen=True, kw_only=True)
class LabelSelector:
    """matchLabels AND every matchExpression; empty selects everything."""

    match_labels: Annotated[FrozenMap[str, str], Wire(LABELS)] = EMPTY_MAP
    match_expressions: Annotated[
        tuple[LabelSelectorRequirement, ...],
        Wire(ListOf(Struct(LabelSelectorRequirement, checks=[_check_requirement]))),
    ] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


LABEL_SELECTOR = Struct(LabelSelector)
EVERYTHING = LabelSelector()


# -- ports -------------------------------------------------------------------------------------------
_PORT_NAME_RE = re.compile(r"^[-a-z0-9]+$")


def check_port_name(name: str) -> str:
    """An IANA_SVC_NAME (RFC 6335), the rule for container port names: 1-15 lower-case letters,
    digits and '-', at least one letter, no '--', no '-' at either end."""
    if not 1 <= len(name) <= 15:
        raise ValueError(f"{name!r} is not a valid port name: must be 1-15 characters")
    if not _PORT_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a valid port name: use lower-case letters, digits and '-'")
    if not re.search(r"[a-z]", name):
        raise ValueError(f"{name!r} is not a valid port name: must contain at least one letter")
    if "--" in name or name.startswith("-") or name.endswith("-"):
        raise ValueError(f"{name!r} is not a valid port name: no '--' and no '-' at either end")
    return name


def _parse_port(raw: object) -> int | str:
    """intstr: a number 1-65535, or a port name (a string, even one of digits, is a name)."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(raw)
    if isinstance(raw, int):
        if not 1 <= raw <= 65535:
            raise ValueError(f"{raw} is not a valid port: must be between 1 and 65535, inclusive")
        return raw
    return check_port_name(raw)


PROTOCOL = Enum(*K8S_PROTOCOLS)
PORT_NUMBER = Int(1, 65535, hint="must be between 1 and 65535, inclusive")


def calico_rules_per_peer(ports: Iterable[tuple[str | None, bool]]) -> int:
    """An upper bound on the Calico rules the ports of one Kubernetes rule need per peer, given each
    port's (protocol, is a name): tortie.k8s writes one rule per protocol and kind of port (numbers,
    names), at most 50 ports to a rule; a rule without ports needs one."""
    counts = Counter(ports)
    return max(1, sum(-(-n // MAX_PORTS) for n in counts.values()))


@dataclass(frozen=True, kw_only=True)
class NetworkPolicyPort:
    protocol: Annotated[str | None, Wire(PROTOCOL)] = None
    port: Annotated[int | str | None, Wire(Converted(_parse_port, lambda v: v, "a port number or name"))] = (
        None
    )
    end_port: Annotated[int | None, Wire(Int())] = None

    @property
    def effective_protocol(self) -> str:
        return self.protocol or "TCP"


@uses("port", "endPort")
def _check_port(port: NetworkPolicyPort, path: str, issues: Issues) -> None:
    if port.end_port is None:
        return
    where = join(path, "endPort")
    if port.port is None:
        issues.add(where, "may not be specified when `port` is not specified")
    elif isinstance(port.port, str):
        issues.add(where, "may not be specified when `port` is non-numeric")
    elif port.end_port < port.port:
        issues.add(where, f"{port.end_port} must be greater than or equal to `port` ({port.port})")
    if not 1 <= port.end_port <= 65535:
        issues.add(where, f"{port.end_port} is not a valid port: must be between 1 and 65535, inclusive")


NP_PORT = Struct(NetworkPolicyPort, checks=[_check_port])


# -- peers -------------------------------------------------------------------------------------------
def parse_k8s_cidr(text: str) -> IPNetwork:
    """A CIDR in CIDR notation (a prefix length is required); host bits are masked, as the API
    server's legacy CIDR fields allow."""
    if "/" not in text:
        raise ValueError(f"{text!r} is not a valid CIDR: use an address and a prefix length, "
                         "e.g. 10.9.8.0/24 or 2001:db8::/64")
    return parse_network(text, strict=False)


K8S_CIDR = Text(lambda t: str(parse_k8s_cidr(t)))


@dataclass(frozen=True, kw_only=True)
class IPBlock:
    cidr: Annotated[str, Wire(K8S_CIDR)]
    except_: Annotated[tuple[str, ...], Wire(ListOf(K8S_CIDR), "except")] = ()


@uses("cidr", "except")
def _check_ip_block(block: IPBlock, path: str, issues: Issues) -> None:
    outer = ipaddress.ip_network(block.cidr)
    for i, text in enumerate(block.except_):
        inner = ipaddress.ip_network(text)
        inside = inner.version == outer.version and inner.network_address in outer
        if not inside or inner.prefixlen <= outer.prefixlen:
            issues.add(
                index(join(path, "except"), i), f"{text} must be a strict subset of `cidr` ({block.cidr})"
            )
    if len(block.except_) > MAX_NETS:
        issues.add(
            join(path, "except"),
            f"has {len(block.except_)} entries; tortie supports at most {MAX_NETS} (a Calico rule's notNets)",
        )


@dataclass(frozen=True, kw_only=True)
class NetworkPolicyPeer:
    pod_selector: Annotated[LabelSelector | None, Wire(LABEL_SELECTOR)] = None
    namespace_selector: Annotated[LabelSelector | None, Wire(LABEL_SELECTOR)] = None
    ip_block: Annotated[IPBlock | None, Wire(Struct(IPBlock, checks=[_check_ip_block]), "ipBlock")] = None


def _check_peer(peer: NetworkPolicyPeer, path: str, issues: Issues) -> None:
    given = [f for f in (peer.pod_selector, peer.namespace_selector, peer.ip_block) if f is not None]
    if not given:
        issues.add(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    elif len(given) > 1 and peer.ip_block is not None:
        issues.add(path, "may not specify both ipBlock and another peer")


NP_PEER = Struct(NetworkPolicyPeer, checks=[_check_peer])


# -- rules and spec ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class NetworkPolicyIngressRule:
    """Traffic from any of `from_` (all sources when empty) to any of `ports` (all when empty)."""

    ports: Annotated[tuple[NetworkPolicyPort, ...], Wire(ListOf(NP_PORT))] = ()
    from_: Annotated[tuple[NetworkPolicyPeer, ...], Wire(ListOf(NP_PEER), "from")] = ()

    @property
    def peers(self) -> tuple[NetworkPolicyPeer, ...]:
        return self.from_


@dataclass(frozen=True, kw_only=True)
class NetworkPolicyEgressRule:
    """Traffic to any of `to` (all destinations when empty) on any of `ports` (all when empty)."""

    ports: Annotated[tuple[NetworkPolicyPort, ...], Wire(ListOf(NP_PORT))] = ()
    to: Annotated[tuple[NetworkPolicyPeer, ...], Wire(ListOf(NP_PEER))] = ()

    @property
    def peers(self) -> tuple[NetworkPolicyPeer, ...]:
        return self.to


NetworkPolicyRule = NetworkPolicyIngressRule | NetworkPolicyEgressRule


def np_rules_per_peer(rule: NetworkPolicyRule) -> int:
    return calico_rules_per_peer((p.effective_protocol, isinstance(p.port, str)) for p in rule.ports)


@dataclass(frozen=True, kw_only=True)
class K8sNetworkPolicySpec:
    pod_selector: Annotated[LabelSelector | None, Wire(LABEL_SELECTOR)] = None
    policy_types: Annotated[tuple[str, ...], Wire(ListOf(Enum(INGRESS, EGRESS)))] = ()
    ingress: Annotated[
        tuple[NetworkPolicyIngressRule, ...], Wire(ListOf(Struct(NetworkPolicyIngressRule)))
    ] = ()
    egress: Annotated[tuple[NetworkPolicyEgressRule, ...], Wire(ListOf(Struct(NetworkPolicyEgressRule)))] = ()

    @property
    def effective_pod_selector(self) -> LabelSelector:
        return self.pod_selector if self.pod_selector is not None else EVERYTHING

    @property
    def effective_policy_types(self) -> tuple[str, ...]:
        """policyTypes, or the API server's default: Ingress, plus Egress when there are egress rules."""
        if self.policy_types:
            return tuple(t for t in (INGRESS, EGRESS) if t in self.policy_types)
        return (INGRESS, EGRESS) if self.egress else (INGRESS,)


def calico_rule_count(rules: Iterable[tuple[int, int]]) -> int:
    """How many Calico rules (at most) a list of (rules per peer, peers) counts translates to."""
    return sum(groups * max(1, peers) for groups, peers in rules)


def check_rule_count(count: int, path: str, issues: Issues) -> None:
    if count > MAX_CALICO_RULES:
        issues.add(
            path,
            f"translates into {count} Calico rules (one per peer and protocol); tortie "
            f"supports at most {MAX_CALICO_RULES} per direction: split the policy",
        )


@uses("policyTypes")
def _check_policy_types(spec: K8sNetworkPolicySpec, path: str, issues: Issues) -> None:
    if len(spec.policy_types) > 2:
        issues.add(join(path, "policyTypes"), "may not specify more than two policyTypes")


@uses("ingress", "egress")
def _check_np_rule_count(spec: K8sNetworkPolicySpec, path: str, issues: Issues) -> None:
    for wire, rules in (("ingress", spec.ingress), ("egress", spec.egress)):
        count = calico_rule_count((np_rules_per_peer(r), len(r.peers)) for r in rules)
        check_rule_count(count, join(path, wire), issues)


K8S_NETWORK_POLICY_SPEC = Struct(
    K8sNetworkPolicySpec,
    checks=[_check_policy_types, _check_np_rule_count],
    hints={
        "selector": "a Kubernetes NetworkPolicy selects pods with podSelector (a label selector)",
        "types": "a Kubernetes NetworkPolicy names its directions in policyTypes",
    },
)


# -- Namespace ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class NamespaceSpec:
    """A Namespace has no spec fields tortie acts on (its labels are in metadata)."""


NAMESPACE_SPEC = Struct(
    NamespaceSpec,
    hints={
        "finalizers": "not supported: tortie deletes a Namespace at once (remove spec.finalizers)",
    },
)


def check_namespace_resource(meta: Metadata, spec: NamespaceSpec, issues: Issues) -> None:
    given = meta.labels.get(NAMESPACE_NAME_LABEL)
    if given is not None and given != meta.name:
        issues.add(
            join("metadata.labels", NAMESPACE_NAME_LABEL),
            f"must be the namespace's name {meta.name!r} (Kubernetes sets this label itself)",
        )


__all__ = [
    "EVERYTHING",
    "K8S_NETWORK_POLICY_SPEC",
    "NAMESPACE_NAME_LABEL",
    "NAMESPACE_SPEC",
    "IPBlock",
    "K8sNetworkPolicySpec",
    "LabelSelector",
    "LabelSelectorRequirement",
    "NamespaceSpec",
    "NetworkPolicyEgressRule",
    "NetworkPolicyIngressRule",
    "NetworkPolicyPeer",
    "NetworkPolicyPort",
    "calico_rules_per_peer",
    "check_namespace_resource",
    "check_port_name",
]
