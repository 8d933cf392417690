"""Policy resolution (pure): a policy's resolved form, and per local endpoint the ordered tiers of the
policies that apply to it (Calico's PolicyResolver, reference §1.15).

Inputs: a policy's spec (`resolve_policy`), a profile's spec or its absence (`resolve_profile`), and
for an endpoint its resource, the `ResolvedPolicy`s that select it and the Tier specs by name.
Outputs: the messages of `tortie.dataplane.messages.policy` (`PolicyUpdate`, `ProfileUpdate`,
`EndpointPolicyUpdate`, `HostEndpointPolicyUpdate`) and, per policy and profile, the IP sets its
rules need (`SetSpec` by id).

Order: tiers by (order, name), a missing order last; in a tier, policies by (order, name); a tier
appears in a direction only if one of its policies applies in that direction (`types`, inferred
when omitted). A policy in a tier that does not exist is placed as that tier would be with no order
(last), default action Deny; the `default` tier and Calico's reserved tiers keep their fixed
orders, and `kube-admin` / `kube-baseline` pass by default. Workload endpoints get the normal
policies; host endpoints get them too, plus their forward (applyOnForward), preDNAT (ingress
only) and untracked (doNotTrack) stages. A profile the datastore lacks has no rules (it allows
nothing), except `projectcalico-default-allow`, which (as in Calico's etcd mode) allows everything
unless the datastore defines it.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tortie.calc.policy_items import cidr, sorted_nets
from tortie.calc.policy_rules import SetSpec, resolve_rules
from tortie.common.ipfamily import V4, V6, family_of
from tortie.dataplane.messages import WorkloadEndpointId
from tortie.dataplane.messages.policy import (
    EndpointPolicyUpdate,
    HostEndpointId,
    HostEndpointPolicyUpdate,
    PolicyId,
    PolicyUpdate,
    ProfileUpdate,
    ResolvedRule,
    TierPolicies,
)
from tortie.model.specs_policy import (
    EGRESS,
    INGRESS,
    GlobalNetworkPolicySpec,
    NetworkPolicySpec,
    ProfileSpec,
    TierSpec,
    effective_tier_order,
)

PASS_BY_DEFAULT_TIERS = ("kube-admin", "kube-baseline")
DEFAULT_ALLOW_PROFILE = "projectcalico-default-allow"
TierAction = Literal["Deny", "Pass"]


@dataclass(frozen=True)
class ResolvedPolicy:
    """A policy as resolution needs it: where it sorts, which stages it applies in, its message
    and the IP sets its rules need."""

    id: PolicyId
    tier: str
    order: float
    types: tuple[str, ...]
    update: PolicyUpdate
    needs: dict[str, SetSpec]

    @property
    def sort_key(self) -> tuple[float, str, str, str]:
        return (self.order, self.id.name, self.id.namespace, self.id.kind)

    @property
    def normal(self) -> bool:
        return not self.update.untracked and not self.update.pre_dnat


def resolve_policy(pid: PolicyId, spec: NetworkPolicySpec | GlobalNetworkPolicySpec) -> ResolvedPolicy:
    namespace = pid.namespace if pid.kind == "NetworkPolicy" else None
    needs: dict[str, SetSpec] = {}
    inbound = resolve_rules(spec.ingress, namespace, "ingress", needs)
    outbound = resolve_rules(spec.egress, namespace, "egress", needs)
    gnp = spec if isinstance(spec, GlobalNetworkPolicySpec) else None
    update = PolicyUpdate(
        pid,
        inbound,
        outbound,
        untracked=bool(gnp and gnp.do_not_track),
        pre_dnat=bool(gnp and gnp.pre_dnat),
        apply_on_forward=bool(gnp and gnp.apply_on_forward),
    )
    return ResolvedPolicy(pid, spec.effective_tier, spec.effective_order, spec.effective_types, update, needs)


def resolve_profile(name: str, spec: ProfileSpec | None, needs: dict[str, SetSpec]) -> ProfileUpdate:
    """A profile's rules (the IP sets they need are added to `needs`)."""
    if spec is None:
        if name == DEFAULT_ALLOW_PROFILE:  # synthesised, as Calico's etcd datastore does
            allow = (ResolvedRule("Allow", "ingress[0]"),)
            return ProfileUpdate(name, allow, (ResolvedRule("Allow", "egress[0]"),))
        return ProfileUpdate(name)
    return ProfileUpdate(
        name,
        resolve_rules(spec.ingress, None, "ingress", needs),
        resolve_rules(spec.egress, None, "egress", needs),
    )


def _tier_info(name: str, tiers: Mapping[str, TierSpec]) -> tuple[float, TierAction]:
    spec = tiers.get(name)
    if spec is None:
        default: TierAction = "Pass" if name in PASS_BY_DEFAULT_TIERS else "Deny"
        return effective_tier_order(name, TierSpec()), default
    action: TierAction = "Pass" if spec.effective_default_action == "Pass" else "Deny"
    return effective_tier_order(name, spec), action


def tiers_of(
    policies: Iterable[ResolvedPolicy], tiers: Mapping[str, TierSpec], ingress_only: bool = False
) -> tuple[TierPolicies, ...]:
    """`policies` grouped by tier, in evaluation order (see the module docstring)."""
    by_tier: dict[str, list[ResolvedPolicy]] = {}
    for policy in policies:
        by_tier.setdefault(policy.tier, []).append(policy)
    out: list[tuple[float, str, TierPolicies]] = []
    for name, members in by_tier.items():
        members.sort(key=lambda p: p.sort_key)
        ingress = tuple(p.id for p in members if INGRESS in p.types)
        egress = () if ingress_only else tuple(p.id for p in members if EGRESS in p.types)
        if not ingress and not egress:
            continue
        order, action = _tier_info(name, tiers)
        sort_order = order if not math.isnan(order) else math.inf
        out.append((sort_order, name, TierPolicies(name, action, ingress, egress)))
    out.sort(key=lambda t: (t[0], t[1]))
    return tuple(t[2] for t in out)


def endpoint_update(
    ep_id: WorkloadEndpointId,
    resource: Any,
    policies: Iterable[ResolvedPolicy],
    tiers: Mapping[str, TierSpec],
) -> EndpointPolicyUpdate:
    """A local WorkloadEndpoint with the normal policies that select it."""
    spec = resource.spec
    nets = sorted_nets(spec.ip_networks)
    return EndpointPolicyUpdate(
        id=ep_id,
        interface_name=str(spec.interface_name or ""),
        ipv4_nets=tuple(n for n in nets if family_of(n) == V4),
        ipv6_nets=tuple(n for n in nets if family_of(n) == V6),
        allowed_source_prefixes=tuple(cidr(n) for n in spec.allow_spoofed_source_prefixes),
        tiers=tiers_of((p for p in policies if p.normal), tiers),
        profile_ids=tuple(spec.profiles),
    )


def host_endpoint_update(
    ep_id: HostEndpointId,
    resource: Any,
    policies: Iterable[ResolvedPolicy],
    tiers: Mapping[str, TierSpec],
) -> HostEndpointPolicyUpdate:
    """A local HostEndpoint with the policies that select it, per stage."""
    spec = resource.spec
    policies = list(policies)
    normal = [p for p in policies if p.normal]
    return HostEndpointPolicyUpdate(
        id=ep_id,
        interface_name=spec.interface_name,
        expected_ips=tuple(str(ipaddress.ip_address(ip)) for ip in spec.expected_ips),
        tiers=tiers_of(normal, tiers),
        forward_tiers=tiers_of((p for p in normal if p.update.apply_on_forward), tiers),
        pre_dnat_tiers=tiers_of((p for p in policies if p.update.pre_dnat), tiers, ingress_only=True),
        untracked_tiers=tiers_of((p for p in policies if p.update.untracked), tiers),
        profile_ids=tuple(spec.profiles),
    )
