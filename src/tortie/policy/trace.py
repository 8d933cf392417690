"""Which tier, policy and rule decide a packet, from the resolved policy state (pure).

Input: the resolved policy state as the calc sends it to the dataplane (`ResolvedPolicy`: IP sets,
policies and profiles by id; the policy manager's `PolicyState` is one), an endpoint's update from
the same state and a `Packet`. Output: a `Decision` (allow, deny, or none when a preDNAT/doNotTrack
stage leaves the packet to normal policy), the tier, policy or profile and rule that decided (or
why a default applied) and the Log rules the packet passed.

It reads the same `ResolvedRule` fields the nft renderer turns into rules, with the semantics the
`ResolvedRule` contract states, and follows the evaluation order of docs/design/policy.md: tiers
in order (a tier with no policy in that direction is skipped); in a tier, policies in order; the
first matching rule of a policy acts (Allow and Deny decide, Pass leaves the tier, Log is noted and
evaluation goes on); a tier whose policies all fell through ends in its default action (Deny, in
the normal and forward stages); then the profiles (Pass ends a profile); then deny. So it answers
what the programmed table decides, in user space: `tortie policy trace` prints it beside the nft
interpreter's run of the rendered table, and flow records (staged policies) can be evaluated with
it without the kernel.

It is not the test oracle: the oracle (`tortie.testing.policy_oracle`) re-states Calico's semantics
from the resources themselves, and property tests hold both this module and the rendered table to
it (tests/calc/test_policy_properties.py).

Cost: a set lookup scans the set's members (fine for a trace; a flow-log evaluator would index them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from tortie.common.ipfamily import Family, IPAddress, address_in, family_of
from tortie.dataplane.messages.policy import (
    EndpointPolicyUpdate,
    HostEndpointPolicyUpdate,
    IPSetUpdate,
    NamedPortMember,
    PolicyId,
    PolicyUpdate,
    PortRange,
    ProfileUpdate,
    ResolvedRule,
    TierPolicies,
)
from tortie.policy.rule_sides import RuleSide

Verdict = Literal["allow", "deny", "none"]
Direction = Literal["ingress", "egress"]
Stage = Literal["normal", "forward", "pre_dnat", "untracked"]
PORT_PROTOCOLS = frozenset({6, 17, 132, 136})  # TCP, UDP, SCTP, UDP-Lite: the protocols with ports


@dataclass(frozen=True)
class Packet:
    """The first packet of a flow, as policy sees it (addresses as text; ports for TCP/UDP/SCTP;
    type and code for ICMP)."""

    src: str
    dst: str
    protocol: int
    src_port: int | None = None
    dst_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    @property
    def family(self) -> Family:
        return family_of(self.src)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    tier: str | None = None
    policy: str | None = None  # "GlobalNetworkPolicy(name)", "NetworkPolicy(ns/name)", "Profile(name)"
    rule: str | None = None  # the rule's origin, e.g. "ingress[2]"
    logged: tuple[str, ...] = ()


class ResolvedPolicy(Protocol):
    """What the calc sent about policy (read only)."""

    @property
    def ipsets(self) -> Mapping[str, IPSetUpdate]: ...

    @property
    def policies(self) -> Mapping[PolicyId, PolicyUpdate]: ...

    @property
    def profiles(self) -> Mapping[str, ProfileUpdate]: ...


# -- one rule --------------------------------------------------------------------------------------------
def _in_set(state: ResolvedPolicy, set_id: str, addr: IPAddress) -> bool:
    update = state.ipsets.get(set_id)
    if update is None:  # never sent: an empty set (the renderer's placeholder) holds nothing
        return False
    return any(isinstance(m, str) and address_in(addr, ipaddress.ip_network(m)) for m in update.members)


def _in_named_set(state: ResolvedPolicy, set_id: str, addr: IPAddress, protocol: int, port: int) -> bool:
    update = state.ipsets.get(set_id)
    return update is not None and NamedPortMember(str(addr), protocol, port) in update.members


def _in_nets(nets: tuple[str, ...], addr: IPAddress) -> bool:
    return any(address_in(addr, ipaddress.ip_network(n)) for n in nets)


def _on_ports(
    state: ResolvedPolicy,
    ranges: tuple[PortRange, ...],
    named_sets: tuple[str, ...],
    addr: IPAddress,
    pkt: Packet,
    port: int | None,
) -> bool:
    """The packet's port is in one of the ranges or (address, protocol, port) in one of the sets."""
    if port is None or pkt.protocol not in PORT_PROTOCOLS:
        return False
    return any(r.lo <= port <= r.hi for r in ranges) or any(
        _in_named_set(state, s, addr, pkt.protocol, port) for s in named_sets
    )


def _side_matches(state: ResolvedPolicy, r: ResolvedRule, pkt: Packet, src: bool) -> bool:
    addr = ipaddress.ip_address(pkt.src if src else pkt.dst)
    port = pkt.src_port if src else pkt.dst_port
    side = RuleSide.of(r, src)
    if side.nets and not _in_nets(side.nets, addr):
        return False
    if _in_nets(side.not_nets, addr):
        return False
    if not all(_in_set(state, s, addr) for s in side.sets):
        return False
    if any(_in_set(state, s, addr) for s in side.not_sets):
        return False
    if (side.ports or side.named_port_sets) and not _on_ports(
        state, side.ports, side.named_port_sets, addr, pkt, port
    ):
        return False
    return not _on_ports(state, side.not_ports, side.not_named_port_sets, addr, pkt, port)


def rule_matches(state: ResolvedPolicy, r: ResolvedRule, pkt: Packet) -> bool:
    """Does the resolved rule match the packet (every given match holds)?"""
    if r.never_matches:
        return False
    if r.ip_version is not None and r.ip_version != pkt.family.version:
        return False
    if r.protocol is not None and r.protocol != pkt.protocol:
        return False
    if r.not_protocol is not None and r.not_protocol == pkt.protocol:
        return False
    is_icmp = pkt.protocol == pkt.family.icmp_protocol
    if r.icmp_type is not None:
        if not is_icmp or pkt.icmp_type != r.icmp_type:
            return False
        if r.icmp_code is not None and pkt.icmp_code != r.icmp_code:
            return False
    if (
        r.not_icmp_type is not None
        and is_icmp
        and pkt.icmp_type == r.not_icmp_type
        and (r.not_icmp_code is None or pkt.icmp_code == r.not_icmp_code)
    ):
        return False
    return _side_matches(state, r, pkt, True) and _side_matches(state, r, pkt, False)


# -- evaluation order ------------------------------------------------------------------------------------
def _first_action(
    state: ResolvedPolicy, rules: tuple[ResolvedRule, ...], owner: str, pkt: Packet, logged: list[str]
) -> ResolvedRule | None:
    """The first matching rule that is not Log (Log rules that match are noted in `logged`)."""
    for r in rules:
        if not rule_matches(state, r, pkt):
            continue
        if r.action == "Log":
            logged.append(f"{owner} {r.origin}")
            continue
        return r
    return None


def evaluate(
    state: ResolvedPolicy,
    tiers: tuple[TierPolicies, ...],
    profile_ids: tuple[str, ...],
    direction: Direction,
    pkt: Packet,
    stage: Stage = "normal",
) -> Decision:
    """One endpoint's verdict for one direction ("ingress": traffic to the endpoint) and stage."""
    inbound = direction == "ingress"
    logged: list[str] = []
    applied = False
    for tier in tiers:
        pids = tier.ingress if inbound else tier.egress
        if not pids:
            continue
        applied = True
        passed = False
        for pid in pids:
            policy = state.policies.get(pid)
            rules = (policy.inbound if inbound else policy.outbound) if policy is not None else ()
            r = _first_action(state, rules, str(pid), pkt, logged)
            if r is None:
                continue
            if r.action == "Pass":
                passed = True
                break
            verdict: Verdict = "allow" if r.action == "Allow" else "deny"
            return Decision(verdict, f"{r.action} rule matched", tier.name, str(pid), r.origin, tuple(logged))
        if not passed and stage in ("normal", "forward") and tier.default_action == "Deny":
            why = f"end of tier {tier.name!r}: default action Deny"
            return Decision("deny", why, tier.name, logged=tuple(logged))
    if stage in ("pre_dnat", "untracked"):
        return Decision("none", "no policy decided; normal policy applies", logged=tuple(logged))
    if stage == "forward":
        if not applied:
            why = "no applyOnForward policy applies: forwarded traffic is allowed"
            return Decision("allow", why, logged=tuple(logged))
        return Decision("deny", "no policy allowed the forwarded traffic", logged=tuple(logged))
    for name in profile_ids:
        profile = state.profiles.get(name)
        rules = (profile.inbound if inbound else profile.outbound) if profile is not None else ()
        owner = f"Profile({name})"
        r = _first_action(state, rules, owner, pkt, logged)
        if r is None or r.action == "Pass":
            continue
        verdict = "allow" if r.action == "Allow" else "deny"
        return Decision(verdict, f"{r.action} rule matched", None, owner, r.origin, tuple(logged))
    why = "no policy or profile allowed the traffic" if applied or profile_ids else "no policy and no profile"
    return Decision("deny", f"{why}: default deny", logged=tuple(logged))


def evaluate_endpoint(
    state: ResolvedPolicy, ep: EndpointPolicyUpdate, direction: Direction, pkt: Packet
) -> Decision:
    """A workload endpoint's policy ("egress": traffic from it; anti-spoofing is `anti_spoofing_ok`)."""
    return evaluate(state, ep.tiers, ep.profile_ids, direction, pkt)


def evaluate_host_endpoint(
    state: ResolvedPolicy,
    hep: HostEndpointPolicyUpdate,
    direction: Direction,
    pkt: Packet,
    stage: Stage = "normal",
) -> Decision:
    """A host endpoint's policy in one stage (profiles apply in the normal stage only)."""
    tiers = {
        "normal": hep.tiers,
        "forward": hep.forward_tiers,
        "pre_dnat": hep.pre_dnat_tiers,
        "untracked": hep.untracked_tiers,
    }[stage]
    return evaluate(state, tiers, hep.profile_ids if stage == "normal" else (), direction, pkt, stage)


def anti_spoofing_ok(ep: EndpointPolicyUpdate, source: str) -> bool:
    """Traffic from a workload must come from one of its nets or allowSpoofedSourcePrefixes."""
    return _in_nets((*ep.ipv4_nets, *ep.ipv6_nets, *ep.allowed_source_prefixes), ipaddress.ip_address(source))
