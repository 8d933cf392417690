"""Specs of sig-network's cluster policies: policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy (ANP)
and BaselineAdminNetworkPolicy (BANP).

Input: the `spec` of such a manifest. Output: frozen records, validated as the CRDs (v0.1.x, standard
channel plus the extended namedPort) and their CEL rules do:

* ANP `priority` 0-1000 (required); BANP has none and must be named `default`;
* `subject`: exactly one of `namespaces` (a label selector) or `pods` (`namespaceSelector` and
  `podSelector`, both required);
* at most 100 ingress and 100 egress rules; each rule has `action` (ANP: Allow, Deny, Pass; BANP:
  Allow, Deny), an optional `name` of at most 100 characters, optional `ports` (1-100 entries, each
  exactly one of `portNumber` {protocol (default TCP), port}, `portRange` {protocol, start < end} or
  `namedPort`), and 1-100 peers in `from` / `to`;
* a peer sets exactly one field: `namespaces` or `pods` (ingress and egress), `networks` (egress: 1-25
  CIDRs). The experimental `nodes` egress peer is rejected: tortie has no node labels to select by.

Label selectors are checked as Kubernetes checks them for built-in kinds (the CRD itself does not):
a selector tortie cannot evaluate must not be accepted. A namedPort must be a valid container port
name (an IANA service name), or it could never match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from tortie.model.metadata import Metadata
from tortie.model.problems import Issues, join
from tortie.model.schema import Enum, Int, ListOf, Struct, Text, Wire, uses
from tortie.model.specs_k8s import (
    K8S_CIDR,
    LABEL_SELECTOR,
    PORT_NUMBER,
    PROTOCOL,
    LabelSelector,
    calico_rule_count,
    calico_rules_per_peer,
    check_port_name,
    check_rule_count,
)

MAX_RULES = 100
MAX_PEERS = 100
MAX_NETWORKS = 25
BASELINE_NAME = "default"


def _exactly_one(path: str, issues: Issues, fields: Mapping[str, object], what: str) -> None:
    given = [wire for wire, value in fields.items() if value is not None]
    if len(given) != 1:
        choices = ", ".join(fields)
        found = f"found {', '.join(given)}" if given else "found none"
        issues.add(path, f"{what} must set exactly one of {choices} ({found})")


# -- subject -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class NamespacedPod:
    """Pods matching `pod_selector` in namespaces matching `namespace_selector` (empty: all)."""

    namespace_selector: Annotated[LabelSelector, Wire(LABEL_SELECTOR)]
    pod_selector: Annotated[LabelSelector, Wire(LABEL_SELECTOR)]


NAMESPACED_POD = Struct(NamespacedPod)


@dataclass(frozen=True, kw_only=True)
class AdminPolicySubject:
    namespaces: Annotated[LabelSelector | None, Wire(LABEL_SELECTOR)] = None
    pods: Annotated[NamespacedPod | None, Wire(NAMESPACED_POD)] = None


def _check_subject(subject: AdminPolicySubject, path: str, issues: Issues) -> None:
    _exactly_one(path, issues, {"namespaces": subject.namespaces, "pods": subject.pods}, "a subject")


SUBJECT = Struct(AdminPolicySubject, checks=[_check_subject])


# -- ports -------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PortNumber:
    port: Annotated[int, Wire(PORT_NUMBER)]
    protocol: Annotated[str | None, Wire(PROTOCOL)] = None


@dataclass(frozen=True, kw_only=True)
class PortRange:
    start: Annotated[int, Wire(PORT_NUMBER)]
    end: Annotated[int, Wire(PORT_NUMBER)]
    protocol: Annotated[str | None, Wire(PROTOCOL)] = None


@uses("start", "end")
def _check_range(r: PortRange, path: str, issues: Issues) -> None:
    if r.start >= r.end:
        issues.add(join(path, "end"), f"{r.end} must be greater than start ({r.start})")


@dataclass(frozen=True, kw_only=True)
class AdminPolicyPort:
    port_number: Annotated[PortNumber | None, Wire(Struct(PortNumber))] = None
    port_range: Annotated[PortRange | None, Wire(Struct(PortRange, checks=[_check_range]))] = None
    named_port: Annotated[str | None, Wire(Text(check_port_name))] = None


def _check_port(port: AdminPolicyPort, path: str, issues: Issues) -> None:
    fields = {"portNumber": port.port_number, "portRange": port.port_range, "namedPort": port.named_port}
    _exactly_one(path, issues, fields, "a port")


ADMIN_PORTS = ListOf(Struct(AdminPolicyPort, checks=[_check_port]), max_items=100)


# -- peers -------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class AdminIngressPeer:
    namespaces: Annotated[LabelSelector | None, Wire(LABEL_SELECTOR)] = None
    pods: Annotated[NamespacedPod | None, Wire(NAMESPACED_POD)] = None


def _check_ingress_peer(peer: AdminIngressPeer, path: str, issues: Issues) -> None:
    _exactly_one(path, issues, {"namespaces": peer.namespaces, "pods": peer.pods}, "a peer")


@dataclass(frozen=True, kw_only=True)
class AdminEgressPeer:
    namespaces: Annotated[LabelSelector | None, Wire(LABEL_SELECTOR)] = None
    pods: Annotated[NamespacedPod | None, Wire(NAMESPACED_POD)] = None
    networks: Annotated[
        tuple[str, ...] | None, Wire(ListOf(K8S_CIDR, max_items=MAX_NETWORKS, unique=True))
    ] = None


def _check_egress_peer(peer: AdminEgressPeer, path: str, issues: Issues) -> None:
    fields = {"namespaces": peer.namespaces, "pods": peer.pods, "networks": peer.networks}
    _exactly_one(path, issues, fields, "a peer")
    if peer.networks is not None and not peer.networks:
        issues.add(join(path, "networks"), "must hold at least one CIDR")


_NODES = (
    "not supported: tortie cannot select nodes by label in a rule; use `networks` with the nodes' addresses"
)
INGRESS_PEERS = ListOf(
    Struct(
        AdminIngressPeer,
        checks=[_check_ingress_peer],
        hints={
            "networks": "only egress rules may select networks",
            "nodes": _NODES,
        },
    ),
    max_items=MAX_PEERS,
)
EGRESS_PEERS = ListOf(
    Struct(AdminEgressPeer, checks=[_check_egress_peer], hints={"nodes": _NODES}), max_items=MAX_PEERS
)


# -- rules -------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class AdminIngressRule:
    action: Annotated[str, Wire(Enum("Allow", "Deny", "Pass"))]
    from_: Annotated[tuple[AdminIngressPeer, ...], Wire(INGRESS_PEERS, "from")]
    name: Annotated[str | None, Wire(Text(max_len=100))] = None
    ports: Annotated[tuple[AdminPolicyPort, ...] | None, Wire(ADMIN_PORTS)] = None

    @property
    def peers(self) -> tuple[AdminIngressPeer, ...]:
        return self.from_


@dataclass(frozen=True, kw_only=True)
class AdminEgressRule:
    action: Annotated[str, Wire(Enum("Allow", "Deny", "Pass"))]
    to: Annotated[tuple[AdminEgressPeer, ...], Wire(EGRESS_PEERS)]
    name: Annotated[str | None, Wire(Text(max_len=100))] = None
    ports: Annotated[tuple[AdminPolicyPort, ...] | None, Wire(ADMIN_PORTS)] = None

    @property
    def peers(self) -> tuple[AdminEgressPeer, ...]:
        return self.to


AdminRule = AdminIngressRule | AdminEgressRule


def admin_rules_per_peer(rule: AdminRule) -> int:
    def key(port: AdminPolicyPort) -> tuple[str | None, bool]:
        number = port.port_number or port.port_range
        return (number.protocol or "TCP", False) if number is not None else (None, True)

    return calico_rules_per_peer(key(p) for p in rule.ports or ())


@uses("from", "to", "ports")
def _check_rule(rule: AdminRule, path: str, issues: Issues) -> None:
    wire = "from" if isinstance(rule, AdminIngressRule) else "to"
    if not rule.peers:
        issues.add(join(path, wire), "must hold at least one peer")
    if rule.ports is not None and not rule.ports:
        issues.add(join(path, "ports"), "must hold at least one port when given (omit it for all ports)")


def _baseline_action(rule: AdminRule, path: str, issues: Issues) -> None:
    if rule.action == "Pass":
        issues.add(
            join(path, "action"),
            "'Pass' is not valid in a BaselineAdminNetworkPolicy: must be one of Allow, Deny",
        )


def _rule_lists(checks: list[object]) -> tuple[ListOf[AdminIngressRule], ListOf[AdminEgressRule]]:
    ingress = ListOf(Struct(AdminIngressRule, checks=[_check_rule, *checks]), max_items=MAX_RULES)  # type: ignore[list-item]
    egress = ListOf(Struct(AdminEgressRule, checks=[_check_rule, *checks]), max_items=MAX_RULES)  # type: ignore[list-item]
    return ingress, egress


ANP_INGRESS, ANP_EGRESS = _rule_lists([])
BANP_INGRESS, BANP_EGRESS = _rule_lists([_baseline_action])


# -- specs -------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class AdminNetworkPolicySpec:
    priority: Annotated[int, Wire(Int(0, 1000, hint="must be 0-1000 (0 is evaluated first)"))]
    subject: Annotated[AdminPolicySubject, Wire(SUBJECT)]
    ingress: Annotated[tuple[AdminIngressRule, ...], Wire(ANP_INGRESS)] = ()
    egress: Annotated[tuple[AdminEgressRule, ...], Wire(ANP_EGRESS)] = ()


@dataclass(frozen=True, kw_only=True)
class BaselineAdminNetworkPolicySpec:
    subject: Annotated[AdminPolicySubject, Wire(SUBJECT)]
    ingress: Annotated[tuple[AdminIngressRule, ...], Wire(BANP_INGRESS)] = ()
    egress: Annotated[tuple[AdminEgressRule, ...], Wire(BANP_EGRESS)] = ()


AdminSpec = AdminNetworkPolicySpec | BaselineAdminNetworkPolicySpec


@uses("ingress", "egress")
def _check_rule_count(spec: AdminSpec, path: str, issues: Issues) -> None:
    for wire, rules in (("ingress", spec.ingress), ("egress", spec.egress)):
        count = calico_rule_count((admin_rules_per_peer(r), len(r.peers)) for r in rules)
        check_rule_count(count, join(path, wire), issues)


ADMIN_NETWORK_POLICY_SPEC = Struct(AdminNetworkPolicySpec, checks=[_check_rule_count])
BASELINE_ADMIN_NETWORK_POLICY_SPEC = Struct(
    BaselineAdminNetworkPolicySpec,
    checks=[_check_rule_count],
    hints={
        "priority": "a BaselineAdminNetworkPolicy has no priority (there is only one, named 'default')",
    },
)


def check_baseline_resource(meta: Metadata, spec: BaselineAdminNetworkPolicySpec, issues: Issues) -> None:
    if meta.name != BASELINE_NAME:
        issues.add(
            "metadata.name",
            f"{meta.name!r} is not allowed: the only BaselineAdminNetworkPolicy is named {BASELINE_NAME!r}",
        )
