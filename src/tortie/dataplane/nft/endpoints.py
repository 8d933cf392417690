"""The evaluation around policy chains (pure): an endpoint's tiers and profiles as rules.

`policy_section(tiers, inbound, profiles, stage, cfg, end, label)` is the one definition of Calico's
evaluation order in nft terms, for workload and host endpoints alike. With two mark bits
(`accept_mark`, `pass_mark`): clear both; per tier jump to each policy chain while the pass bit is
clear and return as soon as the accept bit is set (a policy's Allow); a tier whose policies all
fell through ends in its default action (Deny: drop) in the normal and forward stages; leaving a
tier clears the pass bit. Then each profile likewise (Pass ends that profile), then `end`. In the
doNotTrack stage an Allow also sets notrack. With flow logs enabled, a tier's default Deny and a
dropping `end` are preceded by their rate-limited flow log (`flow_log`).

`endpoint_chains(ep, cfg)`: a workload interface's `tw-<if>` (ingress policy) and `fw-<if>`
(anti-spoofing per family: a source outside the endpoint's nets and allowSpoofedSourcePrefixes
is dropped; VXLAN packets, UDP to the VXLAN port, are dropped unless allowVXLANPacketsFromWorkloads:
a workload must not inject frames into the hosts' tunnels, as in Felix; then egress policy), both
ending in a drop (default deny).
"""

from __future__ import annotations

from tortie.common.ipfamily import V4, V6, family_of
from tortie.dataplane.messages.policy import EndpointPolicyUpdate, TierPolicies
from tortie.dataplane.nft import flow_log
from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.ir import (
    BitAnd,
    Chain,
    Counter,
    Match,
    Meta,
    NoTrack,
    Payload,
    Rule,
    SetMark,
    Stmt,
    Verdict,
    rule,
)
from tortie.dataplane.nft.names import Stage, endpoint_chain, policy_chain, profile_chain
from tortie.dataplane.nft.rules import addr_field, is_none, net_value


def _mark_is(bit: int, set_: bool) -> Match:
    return Match(BitAnd(Meta("mark"), bit), "==", bit if set_ else 0)


def policy_section(
    tiers: tuple[TierPolicies, ...],
    inbound: bool,
    profiles: tuple[str, ...],
    stage: Stage,
    cfg: RenderConfig,
    end: Verdict,
    end_label: str,
) -> list[Rule]:
    """The rules of one endpoint direction: tiers, profiles, then `end`."""
    a, p = cfg.accept_mark, cfg.pass_mark
    on_accept: list[Stmt] = [NoTrack(), Verdict("return")] if stage == "untracked" else [Verdict("return")]
    rules: list[Rule] = [rule(SetMark(and_mask=0xFFFFFFFF & ~(a | p)), label="clear marks")]
    for tier in tiers:
        pids = tier.ingress if inbound else tier.egress
        if not pids:
            continue
        for i, pid in enumerate(pids):
            guard: list[Stmt] = [_mark_is(p, False)] if i else []
            rules.append(
                rule(*guard, Verdict("jump", policy_chain(pid, inbound)), label=f"tier {tier.name}: {pid}")
            )
            rules.append(rule(_mark_is(a, True), *on_accept, label=f"allowed by {pid}"))
        if stage in ("normal", "forward") and tier.default_action == "Deny":
            why = f"end of tier {tier.name}: default action Deny"
            if flow_log.enabled(cfg):
                prefix = flow_log.end_of_tier_prefix(tier.name, str(pids[-1]), inbound)
                rules.append(rule(_mark_is(p, False), *flow_log.limited_log(cfg, inbound, prefix), label=why))
            rules.append(rule(_mark_is(p, False), Counter(), Verdict("drop"), label=why))
        rules.append(rule(SetMark(and_mask=0xFFFFFFFF & ~p), label=f"leave tier {tier.name}"))
    for name in profiles:
        rules.append(rule(Verdict("jump", profile_chain(name, inbound)), label=f"profile {name}"))
        rules.append(rule(_mark_is(a, True), *on_accept, label=f"allowed by profile {name}"))
        rules.append(rule(SetMark(and_mask=0xFFFFFFFF & ~p), label=f"leave profile {name}"))
    end_stmts: list[Stmt] = [Counter(), end] if end.kind == "drop" else [end]
    if end.kind == "drop" and flow_log.enabled(cfg):
        prefix = flow_log.default_deny_prefix(inbound)
        rules.append(rule(*flow_log.limited_log(cfg, inbound, prefix), label=end_label))
    rules.append(rule(*end_stmts, label=end_label))
    return rules


def _anti_spoofing(ep: EndpointPolicyUpdate) -> list[Rule]:
    rules = []
    for fam, nets in ((V4, ep.ipv4_nets), (V6, ep.ipv6_nets)):
        allowed = [n for n in (*nets, *ep.allowed_source_prefixes) if family_of(n) == fam]
        nfproto = Match(Meta("nfproto"), "==", fam.key)  # nft's nfproto names: ipv4 / ipv6
        label = f"anti-spoofing {fam.name}: source not the endpoint's"
        if allowed:
            values = [net_value(n) for n in sorted(set(allowed))]
            rules.append(
                rule(
                    nfproto,
                    *is_none(addr_field(fam, "saddr"), values),
                    Counter(),
                    Verdict("drop"),
                    label=label,
                )
            )
        else:
            rules.append(rule(nfproto, Counter(), Verdict("drop"), label=label))
    return rules


def _encapsulated(cfg: RenderConfig) -> list[Rule]:
    if not cfg.drop_vxlan_from_workloads:
        return []
    return [rule(Match(Meta("l4proto"), "==", 17), Match(Payload("th", "dport"), "==", cfg.vxlan_port),
                 Counter(), Verdict("drop"), label="VXLAN packets from workloads")]


def endpoint_chains(ep: EndpointPolicyUpdate, cfg: RenderConfig) -> list[Chain]:
    """to-workload (ingress policy) and from-workload (anti-spoofing, egress policy) chains."""
    deny = Verdict("drop")
    why = f"{ep.id}: default deny"
    ingress = policy_section(ep.tiers, True, ep.profile_ids, "normal", cfg, deny, why)
    egress = _anti_spoofing(ep) + _encapsulated(cfg) + policy_section(
        ep.tiers, False, ep.profile_ids, "normal", cfg, deny, why)
    return [
        Chain(endpoint_chain(ep.interface_name, True), tuple(ingress)),
        Chain(endpoint_chain(ep.interface_name, False), tuple(egress)),
    ]
