"""The policy test oracle: Calico's semantics written down directly from the resources, one packet
at a time.

Input: every resource (`PolicyWorld`), an endpoint, a direction and a `Packet`. Output: a
`Decision` (allow / deny / none, and which tier, policy or profile and rule decided, or why the
default applied). No indexes, no IP sets, no caching: every question is answered by scanning the
resources, so this module is slow and obviously right. The property and table tests hold the
product to it: the calc + nft renderer (run by the interpreter) and the calc + user-space evaluator
(`tortie.policy.trace`). It is independent of the code it checks: it reads resources, not the
calc's resolved rules, and shares nothing with it but the `Packet` and `Decision` records.

Semantics (reference §1.8-§1.15), per endpoint and direction:

1. policies that apply: NetworkPolicy in the endpoint's namespace, or GlobalNetworkPolicy (also to
   host endpoints), whose selector (and namespaceSelector, serviceAccountSelector) matches the
   endpoint's labels, whose `types` contain the direction; doNotTrack/preDNAT policies only for host
   endpoints, in their own stages;
2. tiers by (order, name), a missing order last; within a tier policies by (order, name); a rule's
   Allow/Deny decides, Pass leaves the tier, Log continues; a tier whose policies all fell through
   ends in its default action (Deny, or Pass = continue); tiers with no applicable policy are skipped;
3. then the endpoint's profiles in order (Allow/Deny decide, Pass ends that profile); then deny.

A rule side (source/destination) matches an address when all of: nets / notNets; selector: some
endpoint or network set with that address (or a CIDR containing it) has matching labels, in the
policy's namespace for a NetworkPolicy unless a namespaceSelector chooses namespaces (whose labels
are the `pcns.` labels of profile `kns.<ns>` plus `projectcalico.org/name`); notSelector: no such
thing; serviceAccounts likewise (profile `ksa.<ns>.<sa>`, `pcsa.`); ports: the packet's port in a
range or, for a named port, some selected endpoint with that address declares that name for the
packet's protocol and port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tortie.model import Resource
from tortie.model.rules import EntityRule, Rule
from tortie.model.specs_policy import (
    EGRESS,
    INGRESS,
    GlobalNetworkPolicySpec,
    NetworkPolicySpec,
    ProfileSpec,
    TierSpec,
    effective_tier_order,
)
from tortie.policy.trace import Decision, Direction, Packet, Stage, Verdict
from tortie.selector import parse

PORT_PROTOCOLS = frozenset({6, 17, 132, 136})
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _addr(text: str) -> _Address:
    return ipaddress.ip_address(text.split("/")[0])


class PolicyWorld:
    """Every resource, by kind (invalid ones are the caller's business: pass only valid ones)."""

    def __init__(self, resources: Iterable[Resource]) -> None:
        self.by_kind: dict[str, list[Resource]] = {}
        for resource in resources:
            self.by_kind.setdefault(resource.kind, []).append(resource)

    def of(self, kind: str) -> list[Resource]:
        return self.by_kind.get(kind, [])

    def profile(self, name: str) -> ProfileSpec | None:
        for resource in self.of("Profile"):
            if resource.metadata.name == name:
                return resource.spec_as(ProfileSpec)
        if name == "projectcalico-default-allow":  # Calico's etcd mode: allow-all unless defined
            return ProfileSpec(ingress=(Rule(action="Allow"),), egress=(Rule(action="Allow"),))
        return None

    def tier(self, name: str) -> tuple[float, str]:
        for resource in self.of("Tier"):
            if resource.metadata.name == name:
                spec = resource.spec_as(TierSpec)
                return effective_tier_order(name, spec), spec.effective_default_action
        default = "Pass" if name in ("kube-admin", "kube-baseline") else "Deny"
        return effective_tier_order(name, TierSpec()), default

    # -- labels ---------------------------------------------------------------------------------------
    def _profile_labels(self, name: str) -> Mapping[str, str]:
        spec = self.profile(name)
        return spec.labels_to_apply if spec is not None else {}

    def _unprefixed(self, profile: str, prefix: str, name: str) -> dict[str, str]:
        """A profile's labelsToApply that carry `prefix`, without it, plus `projectcalico.org/name`."""
        out = {k[len(prefix) :]: v for k, v in self._profile_labels(profile).items() if k.startswith(prefix)}
        out["projectcalico.org/name"] = name
        return out

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return self._unprefixed(f"kns.{namespace}", "pcns.", namespace)

    def service_account_labels(self, namespace: str, account: str) -> dict[str, str]:
        return self._unprefixed(f"ksa.{namespace}.{account}", "pcsa.", account)

    def labels(self, resource: Resource) -> dict[str, str]:
        """Effective labels: profiles' labelsToApply (first listed wins), own labels, implicit ones."""
        spec: Any = resource.spec
        ns = resource.metadata.namespace
        parents = list(getattr(spec, "profiles", ()))
        account = getattr(spec, "service_account_name", None)
        if ns:
            parents.append(f"kns.{ns}")
        if ns and account:
            parents.append(f"ksa.{ns}.{account}")
        merged: dict[str, str] = {}
        for parent in reversed(parents):
            merged.update(self._profile_labels(parent))
        merged.update(resource.metadata.labels)
        if ns:
            merged["projectcalico.org/namespace"] = ns
            merged["pcns.projectcalico.org/name"] = ns
        if resource.kind == "WorkloadEndpoint":
            if spec.orchestrator:
                merged["projectcalico.org/orchestrator"] = spec.orchestrator
            if account:
                merged["projectcalico.org/serviceaccount"] = account
                merged["pcsa.projectcalico.org/name"] = account
        return merged

    # -- selectable things ----------------------------------------------------------------------------
    def selectables(self) -> list[Resource]:
        return (
            self.of("WorkloadEndpoint")
            + self.of("HostEndpoint")
            + self.of("NetworkSet")
            + self.of("GlobalNetworkSet")
        )

    @staticmethod
    def nets(resource: Resource) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        spec: Any = resource.spec
        if resource.kind == "WorkloadEndpoint":
            raw = spec.ip_networks
        elif resource.kind == "HostEndpoint":
            raw = spec.expected_ips
        else:
            raw = spec.nets
        return [ipaddress.ip_network(n, strict=False) for n in raw]

    @staticmethod
    def ports(resource: Resource) -> list[tuple[str, int, int]]:
        spec: Any = resource.spec
        if resource.kind not in ("WorkloadEndpoint", "HostEndpoint"):
            return []
        return [(p.name, p.protocol.number, p.port) for p in spec.ports if p.name]


# -- matching -------------------------------------------------------------------------------------------
def _selects(
    world: PolicyWorld, item: Resource, entity: EntityRule, namespace: str | None, selector: str | None
) -> bool:
    """Does `selector` (with the entity's namespace and service-account conditions) pick `item`?"""
    ns = item.metadata.namespace
    if entity.namespace_selector:
        ns_sel = parse(entity.namespace_selector)
        if ns_sel.is_global_only:
            if ns:
                return False
        elif not ns or not ns_sel.evaluate(world.namespace_labels(ns)):
            return False
    elif namespace is not None and ns != namespace:
        return False
    labels = world.labels(item)
    if selector and not parse(selector).evaluate(labels):
        return False
    sa = entity.service_accounts
    if sa is not None and selector is entity.selector:
        spec: Any = item.spec
        account = getattr(spec, "service_account_name", None) if item.kind == "WorkloadEndpoint" else None
        if not account:
            return False
        if sa.names and account not in sa.names:
            return False
        if sa.selector and not parse(sa.selector).evaluate(world.service_account_labels(str(ns), account)):
            return False
    return True


def _has_positive(entity: EntityRule) -> bool:
    return bool(entity.selector or entity.namespace_selector or entity.service_accounts is not None)


def _side_matches(
    world: PolicyWorld,
    entity: EntityRule,
    namespace: str | None,
    address: str,
    port: int | None,
    protocol: int,
) -> bool:
    addr = _addr(address)
    if entity.nets and not any(addr in ipaddress.ip_network(n) for n in entity.nets):
        return False
    if any(addr in ipaddress.ip_network(n) for n in entity.not_nets):
        return False
    holders = [r for r in world.selectables() if any(addr in net for net in world.nets(r))]
    if _has_positive(entity) and not any(
        _selects(world, r, entity, namespace, entity.selector) for r in holders
    ):
        return False
    if entity.not_selector and any(
        _selects(world, r, _without_sa(entity), namespace, entity.not_selector) for r in holders
    ):
        return False

    def on_port(ports: Iterable[Any]) -> bool:
        for p in ports:
            if port is None or protocol not in PORT_PROTOCOLS:
                continue
            if not p.is_named:
                if p.min_port <= port <= p.max_port:
                    return True
                continue
            for r in holders:
                if not any(net.prefixlen == net.max_prefixlen and addr in net for net in world.nets(r)):
                    continue
                if (p.name, protocol, port) not in world.ports(r):
                    continue
                if _has_positive(entity):
                    if _selects(world, r, entity, namespace, entity.selector):
                        return True
                elif namespace is None or r.metadata.namespace == namespace:
                    return True
        return False

    if entity.ports and not on_port(entity.ports):
        return False
    return not (entity.not_ports and on_port(entity.not_ports))


def _without_sa(entity: EntityRule) -> EntityRule:
    return EntityRule(namespace_selector=entity.namespace_selector, selector=entity.not_selector)


def rule_matches(world: PolicyWorld, rule: Rule, namespace: str | None, pkt: Packet) -> bool:
    """Does `rule` (of a policy in `namespace`, None if global) match the packet?"""
    if rule.source.services is not None or rule.destination.services is not None:
        return False
    version = rule.effective_ip_version
    if version is not None and version != pkt.family.version:
        return False
    if rule.protocol is not None and rule.protocol.number != pkt.protocol:
        return False
    if rule.not_protocol is not None and rule.not_protocol.number == pkt.protocol:
        return False
    icmp_protocol = 1 if pkt.family.version == 4 else 58
    if rule.icmp is not None:
        if pkt.protocol != icmp_protocol or pkt.icmp_type != rule.icmp.type:
            return False
        if rule.icmp.code is not None and pkt.icmp_code != rule.icmp.code:
            return False
    if (
        rule.not_icmp is not None
        and pkt.protocol == icmp_protocol
        and pkt.icmp_type == rule.not_icmp.type
        and (rule.not_icmp.code is None or pkt.icmp_code == rule.not_icmp.code)
    ):
        return False
    if not _side_matches(world, rule.source, namespace, pkt.src, pkt.src_port, pkt.protocol):
        return False
    return _side_matches(world, rule.destination, namespace, pkt.dst, pkt.dst_port, pkt.protocol)


# -- which policies apply --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppliedPolicy:
    label: str  # "GlobalNetworkPolicy(name)" / "NetworkPolicy(ns/name)"
    namespace: str | None  # rule scope
    tier: str
    order: float
    name: str
    rules: tuple[Rule, ...]


def _policy_applies(world: PolicyWorld, policy: Resource, endpoint: Resource) -> bool:
    spec: Any = policy.spec
    labels = world.labels(endpoint)
    ep_ns = endpoint.metadata.namespace
    if policy.kind == "NetworkPolicy":
        if endpoint.kind != "WorkloadEndpoint" or ep_ns != policy.metadata.namespace:
            return False
    elif isinstance(spec, GlobalNetworkPolicySpec) and spec.namespace_selector:
        ns_sel = parse(spec.namespace_selector)
        if ns_sel.is_global_only:
            if ep_ns:
                return False
        elif not ep_ns or not ns_sel.evaluate(world.namespace_labels(ep_ns)):
            return False
    if not parse(spec.effective_selector).evaluate(labels):
        return False
    if spec.service_account_selector:
        account = (
            getattr(endpoint.spec, "service_account_name", None)
            if endpoint.kind == "WorkloadEndpoint"
            else None
        )
        if not account or not parse(spec.service_account_selector).evaluate(
            world.service_account_labels(str(ep_ns), account)
        ):
            return False
    return True


def _stage_of(spec: NetworkPolicySpec | GlobalNetworkPolicySpec) -> str:
    if isinstance(spec, GlobalNetworkPolicySpec):
        if spec.do_not_track:
            return "untracked"
        if spec.pre_dnat:
            return "pre_dnat"
    return "normal"


def applied_policies(
    world: PolicyWorld, endpoint: Resource, direction: Direction, stage: Stage = "normal"
) -> list[list[AppliedPolicy]]:
    """The policies that apply, grouped by tier, both in evaluation order."""
    wanted_type = INGRESS if direction == "ingress" else EGRESS
    found: list[AppliedPolicy] = []
    for policy in world.of("NetworkPolicy") + world.of("GlobalNetworkPolicy"):
        spec: Any = policy.spec
        policy_stage = _stage_of(spec)
        if stage == "forward":
            if policy_stage != "normal" or not getattr(spec, "apply_on_forward", False):
                continue
        elif policy_stage != stage:
            continue
        if stage != "normal" and endpoint.kind != "HostEndpoint":
            continue
        if wanted_type not in spec.effective_types or not _policy_applies(world, policy, endpoint):
            continue
        ns = policy.metadata.namespace if policy.kind == "NetworkPolicy" else None
        label = (
            f"NetworkPolicy({ns}/{policy.metadata.name})"
            if ns
            else f"GlobalNetworkPolicy({policy.metadata.name})"
        )
        rules = spec.ingress if direction == "ingress" else spec.egress
        found.append(
            AppliedPolicy(
                label, ns, spec.effective_tier, spec.effective_order, policy.metadata.name, tuple(rules)
            )
        )
    tiers: dict[str, list[AppliedPolicy]] = {}
    for applied in found:
        tiers.setdefault(applied.tier, []).append(applied)
    ordered = sorted(tiers, key=lambda name: (world.tier(name)[0], name))
    out = []
    for name in ordered:
        members = tiers[name]
        members.sort(
            key=lambda p: (p.order, p.name, p.namespace or "", "NetworkPolicy" if p.namespace else "Global")
        )
        out.append(members)
    return out


def evaluate_endpoint(
    world: PolicyWorld, endpoint: Resource, direction: Direction, pkt: Packet, stage: Stage = "normal"
) -> Decision:
    """The verdict of one endpoint's policy for one direction ("ingress": traffic to it)."""
    logged: list[str] = []
    tiers = applied_policies(world, endpoint, direction, stage)
    for members in tiers:
        tier = members[0].tier
        passed = False
        for policy in members:
            for i, rule in enumerate(policy.rules):
                if not rule_matches(world, rule, policy.namespace, pkt):
                    continue
                where = f"{direction}[{i}]"
                if rule.action == "Log":
                    logged.append(f"{policy.label} {where}")
                    continue
                if rule.action == "Pass":
                    passed = True
                    break
                verdict: Verdict = "allow" if rule.action == "Allow" else "deny"
                return Decision(
                    verdict, f"{rule.action} rule matched", tier, policy.label, where, tuple(logged)
                )
            if passed:
                break
        if passed or stage in ("pre_dnat", "untracked"):
            continue
        if world.tier(tier)[1] == "Deny":
            return Decision(
                "deny", f"end of tier {tier!r}: default action Deny", tier, None, None, tuple(logged)
            )
    if stage in ("pre_dnat", "untracked"):
        return Decision("none", "no policy decided; normal policy applies", logged=tuple(logged))
    if stage == "forward":
        if not tiers:
            return Decision(
                "allow",
                "no applyOnForward policy applies: forwarded traffic is allowed",
                logged=tuple(logged),
            )
        return Decision("deny", "no policy allowed the forwarded traffic", logged=tuple(logged))
    spec: Any = endpoint.spec
    for name in spec.profiles:
        profile = world.profile(name)
        if profile is None:
            continue
        rules = profile.ingress if direction == "ingress" else profile.egress
        for i, rule in enumerate(rules):
            if not rule_matches(world, rule, None, pkt):
                continue
            where = f"{direction}[{i}]"
            if rule.action == "Log":
                logged.append(f"Profile({name}) {where}")
                continue
            if rule.action == "Pass":
                break
            verdict = "allow" if rule.action == "Allow" else "deny"
            return Decision(
                verdict, f"{rule.action} rule matched", None, f"Profile({name})", where, tuple(logged)
            )
    why = "no policy or profile allowed the traffic" if tiers or spec.profiles else "no policy and no profile"
    return Decision("deny", f"{why}: default deny", logged=tuple(logged))


def anti_spoofing_ok(endpoint: Resource, source: str) -> bool:
    """Traffic from a workload must come from one of its ipNetworks or allowSpoofedSourcePrefixes."""
    spec: Any = endpoint.spec
    addr = _addr(source)
    allowed = [*spec.ip_networks, *spec.allow_spoofed_source_prefixes]
    return any(addr in ipaddress.ip_network(n, strict=False) for n in allowed)
