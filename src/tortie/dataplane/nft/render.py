"""Pure rendering of the policy dataplane's desired state into tortie's nftables table.

Input: `PolicyState` (the policy messages a manager holds, plus `RenderConfig`). Output: chains,
sets and verdict maps (`tortie.dataplane.nft.ir`); `render_ruleset(state)` gives the whole table,
and the per-object functions let the manager re-render only what changed.

Layout of table `inet tortie` (Felix's structure, reference §3.6-§3.8, in nftables terms):

    filter-forward (hook forward)   ct established/related accept, invalid drop, untracked accept
        iifname <workload> jump from-wl-dispatch:  iifname vmap @from-wl { <if>: goto fw-<if> }; drop
        oifname <workload> jump to-wl-dispatch:    oifname vmap @to-wl   { <if>: goto tw-<if> }; drop
        other interfaces:  jump hep-fwd-in / hep-fwd-out  (host endpoints with applyOnForward policy)
    filter-input  (hook input)      workload -> host: wl-to-host (egress policy, then
                                    endpoint_to_host_action); others: from-hep (failsafes, vmap @hep-in)
    filter-output (hook output)     host -> workload: not policed; others: to-hep (failsafes, @hep-out)
    raw-prerouting / raw-output     doNotTrack policy of host endpoints (allow = notrack)
    mangle-prerouting               preDNAT policy of host endpoints (before DNAT)
    nat-postrouting                 masquerade from natOutgoing pools to outside all pools

Per-packet cost: a hash lookup per dispatch (verdict maps keyed by interface name), then only the
policies that apply to that endpoint; unknown workload interfaces (policy not programmed yet) drop.

Evaluation with two mark bits (`accept_mark`, `pass_mark`): an endpoint chain clears them, jumps
to each policy chain of a tier while the pass bit is clear; a policy chain's Allow sets the accept
bit and returns (the endpoint chain then returns: allowed), Deny drops, Pass sets the pass bit and
returns, Log logs and goes on. A tier without a verdict ends in its default action (Deny = drop);
then profiles likewise; then drop. preDNAT and doNotTrack stages never drop at a tier's end and
return at the end (normal policy decides later). Allow in a doNotTrack chain also sets notrack.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from tortie.dataplane.messages import WorkloadEndpointId
from tortie.dataplane.messages.policy import (
    EndpointPolicyRemove,
    EndpointPolicyUpdate,
    HostEndpointId,
    HostEndpointPolicyRemove,
    HostEndpointPolicyUpdate,
    IPSetRemove,
    IPSetUpdate,
    NamedPortMember,
    PolicyId,
    PolicyRemove,
    PolicyUpdate,
    PoolRemove,
    PoolUpdate,
    PortRange,
    ProfileRemove,
    ProfileUpdate,
    ResolvedRule,
    TierPolicies,
)
from tortie.dataplane.nft.ir import (
    AnonSet,
    BaseHook,
    BitAnd,
    Chain,
    Concat,
    Counter,
    Ct,
    Log,
    MapDef,
    Masquerade,
    Match,
    Meta,
    NoTrack,
    Payload,
    Prefix,
    Range,
    Rule,
    SetDef,
    SetMark,
    SetRef,
    Stmt,
    Value,
    Verdict,
    VMap,
    rule,
)

log = logging.getLogger(__name__)

TABLE = "tortie"
Stage = Literal["normal", "forward", "pre_dnat", "untracked"]
ALL_INTERFACES = "*"
_CHAIN_NAME_MAX = 200
PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "SCTP": 132}
ND_TYPES = ("nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert")


@dataclass(frozen=True)
class FailsafePort:
    protocol: int
    port: int
    net: str | None = None


# Calico's defaults (reference §3.12): SSH, DHCP, BGP, etcd, Typha, Kubernetes API, 6666/6667.
DEFAULT_FAILSAFE_INBOUND = (
    FailsafePort(6, 22),
    FailsafePort(17, 68),
    FailsafePort(6, 179),
    FailsafePort(6, 2379),
    FailsafePort(6, 2380),
    FailsafePort(6, 5473),
    FailsafePort(6, 6443),
    FailsafePort(6, 6666),
    FailsafePort(6, 6667),
)
DEFAULT_FAILSAFE_OUTBOUND = (
    FailsafePort(17, 53),
    FailsafePort(17, 67),
    FailsafePort(6, 179),
    FailsafePort(6, 2379),
    FailsafePort(6, 2380),
    FailsafePort(6, 5473),
    FailsafePort(6, 6443),
    FailsafePort(6, 6666),
    FailsafePort(6, 6667),
)


# Ports of the host workloads always reach, before their egress policy (Felix's OpenStack special
# cases): DHCP (from 0.0.0.0 to the broadcast address: anti-spoofing would drop it), DHCPv6, DNS.
DEFAULT_WORKLOAD_TO_HOST_ALLOW = (
    FailsafePort(17, 67),
    FailsafePort(17, 547),
    FailsafePort(17, 53),
    FailsafePort(6, 53),
)


@dataclass(frozen=True)
class RenderConfig:
    interface_prefixes: tuple[str, ...] = ("tort",)
    failsafe_inbound: tuple[FailsafePort, ...] = DEFAULT_FAILSAFE_INBOUND
    failsafe_outbound: tuple[FailsafePort, ...] = DEFAULT_FAILSAFE_OUTBOUND
    workload_to_host_allow: tuple[FailsafePort, ...] = DEFAULT_WORKLOAD_TO_HOST_ALLOW
    endpoint_to_host_action: Literal["Drop", "Accept", "Return"] = "Drop"
    log_prefix: str = "tortie-packet"
    accept_mark: int = 0x10000
    pass_mark: int = 0x20000


@dataclass
class PolicyState:
    """Everything the policy manager has been told (the desired state, in message form)."""

    config: RenderConfig = field(default_factory=RenderConfig)
    ipsets: dict[str, IPSetUpdate] = field(default_factory=dict)
    policies: dict[PolicyId, PolicyUpdate] = field(default_factory=dict)
    profiles: dict[str, ProfileUpdate] = field(default_factory=dict)
    endpoints: dict[WorkloadEndpointId, EndpointPolicyUpdate] = field(default_factory=dict)
    host_endpoints: dict[HostEndpointId, HostEndpointPolicyUpdate] = field(default_factory=dict)
    pools: dict[str, PoolUpdate] = field(default_factory=dict)
    # host interface -> its addresses (canonical), to place host endpoints known by expectedIPs only
    interface_addresses: dict[str, frozenset[str]] = field(default_factory=dict)

    def record(self, msg: object) -> bool:
        """Take one message into the state; False for messages that are not about policy."""
        if isinstance(msg, IPSetUpdate):
            self.ipsets[msg.id] = msg
        elif isinstance(msg, IPSetRemove):
            self.ipsets.pop(msg.id, None)
        elif isinstance(msg, PolicyUpdate):
            self.policies[msg.id] = msg
        elif isinstance(msg, PolicyRemove):
            self.policies.pop(msg.id, None)
        elif isinstance(msg, ProfileUpdate):
            self.profiles[msg.id] = msg
        elif isinstance(msg, ProfileRemove):
            self.profiles.pop(msg.id, None)
        elif isinstance(msg, EndpointPolicyUpdate):
            self.endpoints[msg.id] = msg
        elif isinstance(msg, EndpointPolicyRemove):
            self.endpoints.pop(msg.id, None)
        elif isinstance(msg, HostEndpointPolicyUpdate):
            self.host_endpoints[msg.id] = msg
        elif isinstance(msg, HostEndpointPolicyRemove):
            self.host_endpoints.pop(msg.id, None)
        elif isinstance(msg, PoolUpdate):
            self.pools[msg.name] = msg
        elif isinstance(msg, PoolRemove):
            self.pools.pop(msg.name, None)
        else:
            return False
        return True


@dataclass
class Ruleset:
    """A whole table: chains, sets with elements, verdict maps with elements."""

    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, SetDef] = field(default_factory=dict)
    elements: dict[str, frozenset[str]] = field(default_factory=dict)
    maps: dict[str, MapDef] = field(default_factory=dict)
    map_elements: dict[str, dict[str, Verdict]] = field(default_factory=dict)


# -- names --------------------------------------------------------------------------------------------
def _bounded(name: str) -> str:
    if len(name) <= _CHAIN_NAME_MAX:
        return name
    return name[:150] + "~" + hashlib.sha1(name.encode()).hexdigest()[:16]


def policy_chain(pid: PolicyId, inbound: bool) -> str:
    tag = f"g.{pid.name}" if pid.kind == "GlobalNetworkPolicy" else f"n.{pid.namespace}.{pid.name}"
    return _bounded(("pi-" if inbound else "po-") + tag)


def profile_chain(name: str, inbound: bool) -> str:
    return _bounded(("pri-" if inbound else "pro-") + name)


def set_name(set_id: str, family: int) -> str:
    kind, _, digest = set_id.partition(":")
    return f"{kind}{family}-{digest}"


def endpoint_chain(iface: str, inbound: bool) -> str:
    return ("tw-" if inbound else "fw-") + iface


# -- set elements -------------------------------------------------------------------------------------
def interval_elements(members: Iterable[str], family: int) -> frozenset[str]:
    """Non-overlapping canonical CIDRs covering `members` of one family (an interval set rejects
    overlapping elements; adjacent ones are fine, so nothing is merged, only contained ones drop)."""
    host_suffix = "/32" if family == 4 else "/128"
    mine = [m for m in members if (":" in m) == (family == 6)]
    if all(m.endswith(host_suffix) for m in mine):  # canonical host addresses never overlap: no parsing
        return frozenset(mine)
    nets = [ipaddress.ip_network(m, strict=False) for m in mine]
    nets.sort(key=lambda n: (int(n.network_address), n.prefixlen))
    out: list[str] = []
    covered_to = -1
    for net in nets:
        if int(net.broadcast_address) <= covered_to:
            continue
        out.append(str(net))
        covered_to = int(net.broadcast_address)
    return frozenset(out)


def port_elements(members: Iterable[NamedPortMember], family: int) -> frozenset[str]:
    v6 = family == 6
    return frozenset(f"{m.ip}|{m.protocol}|{m.port}" for m in members if (":" in m.ip) == v6)


ALL_FAMILIES = frozenset({4, 6})


def member_families(update: IPSetUpdate) -> frozenset[int]:
    """The address families of an IP set's members."""
    found: set[int] = set()
    for m in update.members:
        found.add(6 if ":" in (m if isinstance(m, str) else m.ip) else 4)
        if len(found) == 2:
            break
    return frozenset(found)


def set_families(updates: Iterable[IPSetUpdate]) -> frozenset[int]:
    """Families in which IP sets exist: those with a member in at least one set. In a family where
    every set is empty, sets are not created and rules do not refer to them: a match on an empty set
    can never hold, a negated one always does, so the rules render as if the reference were there
    (rules that need a member are left out, negations dropped). A single-stack cluster thus loads
    half the sets and set-matching rules (the kernel looks up a set reference by name, linearly)."""
    found: set[int] = set()
    for update in updates:
        found |= member_families(update)
        if len(found) == 2:
            break
    return frozenset(found)


def ipset_defs(
    update: IPSetUpdate, families: frozenset[int] = ALL_FAMILIES
) -> dict[str, tuple[SetDef, frozenset[str]]]:
    out: dict[str, tuple[SetDef, frozenset[str]]] = {}
    for family, addr_type in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        if family not in families:
            continue
        name = set_name(update.id, family)
        if update.kind == "net":
            members = [m for m in update.members if isinstance(m, str)]
            out[name] = (SetDef(name, addr_type, interval=True), interval_elements(members, family))
        else:
            ports = [m for m in update.members if isinstance(m, NamedPortMember)]
            out[name] = (
                SetDef(name, (addr_type, "inet_proto", "inet_service")),
                port_elements(ports, family),
            )
    return out


POOL_SETS = ("all-pools-4", "all-pools-6", "masq-pools-4", "masq-pools-6")


def pool_defs(pools: Iterable[PoolUpdate]) -> dict[str, tuple[SetDef, frozenset[str]]]:
    pools = list(pools)
    out: dict[str, tuple[SetDef, frozenset[str]]] = {}
    for family, addr_type in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        for kind in ("all", "masq"):
            members = [p.cidr for p in pools if kind == "all" or p.nat_outgoing]
            name = f"{kind}-pools-{family}"
            out[name] = (SetDef(name, addr_type, interval=True), interval_elements(members, family))
    return out


# -- rule rendering -----------------------------------------------------------------------------------
def _addr_field(family: int, side: str) -> Payload:
    return Payload("ip" if family == 4 else "ip6", side)


def _net_value(text: str) -> Value:
    net = ipaddress.ip_network(text, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return Prefix(str(net.network_address), net.prefixlen)


def _port_item(p: PortRange) -> int | Range:
    return p.lo if p.lo == p.hi else Range(p.lo, p.hi)


# A list of ports or nets is rendered without an anonymous set while it is this short: as one rule
# per item (ORed) or one `!=` statement per item (ANDed). The kernel allocates an anonymous set by
# scanning every set of the table, so thousands of them made the initial load quadratic (seconds
# at 1,700 named sets); single values and ranges are plain comparisons.
EXPAND_LIMIT = 8


def _is_any(field: Payload, values: list[Value]) -> list[list[Stmt]]:
    """Alternatives (ORed) for `field` in `values`."""
    if len(values) <= EXPAND_LIMIT:
        return [[Match(field, "==", v)] for v in values]
    return [[Match(field, "==", AnonSet(tuple(values)))]]


def _is_none(field: Payload, values: list[Value]) -> list[Stmt]:
    """Statements (ANDed) for `field` not in `values`."""
    if len(values) <= EXPAND_LIMIT:
        return [Match(field, "!=", v) for v in values]
    return [Match(field, "!=", AnonSet(tuple(values)))]


def _named_field(family: int, side: str) -> Concat:
    port = "sport" if side == "saddr" else "dport"
    return Concat((_addr_field(family, side), Meta("l4proto"), Payload("th", port)))


def _family_of_nets(nets: tuple[str, ...], family: int) -> tuple[str, ...]:
    return tuple(n for n in nets if ipaddress.ip_network(n, strict=False).version == family)


def _side_matches(
    r: ResolvedRule, family: int, src: bool, families: frozenset[int]
) -> tuple[list[Stmt], list[list[Stmt]]] | None:
    """Statements every alternative of one side needs, and the alternatives (ORed). None when the
    side cannot match in this family (nets of the other family only; a set of a family without sets)."""
    side = "saddr" if src else "daddr"
    nets, not_nets = (r.src_nets, r.not_src_nets) if src else (r.dst_nets, r.not_dst_nets)
    sets, not_sets = (r.src_sets, r.not_src_sets) if src else (r.dst_sets, r.not_dst_sets)
    ports, not_ports = (r.src_ports, r.not_src_ports) if src else (r.dst_ports, r.not_dst_ports)
    named, not_named = (
        (r.src_named_port_sets, r.not_src_named_port_sets)
        if src
        else (r.dst_named_port_sets, r.not_dst_named_port_sets)
    )
    out: list[Stmt] = []
    addr = _addr_field(family, side)
    net_alternatives: list[list[Stmt]] = [[]]
    if nets:
        mine = _family_of_nets(nets, family)
        if not mine:
            return None
        net_alternatives = _is_any(addr, [_net_value(n) for n in mine])
    out += _is_none(addr, [_net_value(n) for n in _family_of_nets(not_nets, family)])
    with_sets = family in families
    if sets and not with_sets:
        return None
    out += [Match(addr, "==", SetRef(set_name(s, family))) for s in sets]
    if with_sets:
        out += [Match(addr, "!=", SetRef(set_name(s, family))) for s in not_sets]
    port_field = Payload("th", "sport" if src else "dport")
    out += _is_none(port_field, [_port_item(p) for p in not_ports])
    if with_sets:
        out += [Match(_named_field(family, side), "!=", SetRef(set_name(s, family))) for s in not_named]
    port_alternatives: list[list[Stmt]] = _is_any(port_field, [_port_item(p) for p in ports]) if ports else []
    if with_sets:
        port_alternatives += [
            [Match(_named_field(family, side), "==", SetRef(set_name(s, family)))] for s in named
        ]
    if (ports or named) and not port_alternatives:
        return None
    alternatives = [n + p for n in net_alternatives for p in (port_alternatives or [[]])]
    return out, alternatives


def _needs_family(r: ResolvedRule) -> bool:
    return bool(r.src_nets or r.not_src_nets or r.dst_nets or r.not_dst_nets or r.set_ids())


def _action(r: ResolvedRule, cfg: RenderConfig, label: str) -> list[Stmt]:
    if r.action == "Allow":
        return [SetMark(or_bits=cfg.accept_mark), Verdict("return")]
    if r.action == "Deny":
        return [Counter(), Verdict("drop")]
    if r.action == "Pass":
        return [SetMark(or_bits=cfg.pass_mark), Verdict("return")]
    return [Log(f"{cfg.log_prefix} {label}"[:127]), Counter()]


def rule_statements(
    r: ResolvedRule, cfg: RenderConfig, label: str, families: frozenset[int] = ALL_FAMILIES
) -> list[list[Stmt]]:
    """One resolved rule as nft rules (several when it needs both families or ORed ports/nets);
    `families`: those in which IP sets exist (`set_families`)."""
    if r.never_matches:
        return []
    rule_families: list[int | None]
    if r.ip_version is not None:
        rule_families = [r.ip_version]
    elif _needs_family(r):
        rule_families = [4, 6]
    else:
        rule_families = [None]
    out: list[list[Stmt]] = []
    for family in rule_families:
        common: list[Stmt] = []
        if family is not None:
            common.append(Match(Meta("nfproto"), "==", "ipv4" if family == 4 else "ipv6"))
        if r.protocol is not None:
            common.append(Match(Meta("l4proto"), "==", r.protocol))
        if r.not_protocol is not None:
            common.append(Match(Meta("l4proto"), "!=", r.not_protocol))
        icmp = "icmpv6" if r.protocol == 58 else "icmp"
        if r.icmp_type is not None:
            common.append(Match(Payload(icmp, "type"), "==", r.icmp_type))
            if r.icmp_code is not None:
                common.append(Match(Payload(icmp, "code"), "==", r.icmp_code))
        if r.not_icmp_type is not None:
            if r.not_icmp_code is None:
                common.append(Match(Payload(icmp, "type"), "!=", r.not_icmp_type))
            else:
                both = Concat((Payload(icmp, "type"), Payload(icmp, "code")))
                common.append(Match(both, "!=", AnonSet(((r.not_icmp_type, r.not_icmp_code),))))
        # family None: no address matches at all, the sides hold only ports
        sides = [
            _side_matches(r, family or 4, True, families),
            _side_matches(r, family or 4, False, families),
        ]
        src, dst = sides
        if src is None or dst is None:
            continue
        for src_alt in src[1]:
            for dst_alt in dst[1]:
                out.append(common + src[0] + src_alt + dst[0] + dst_alt + _action(r, cfg, label))
    return out


def _rule_chain(
    name: str, rules: tuple[ResolvedRule, ...], owner: str, cfg: RenderConfig, families: frozenset[int]
) -> Chain:
    rendered: list[Rule] = []
    for r in rules:
        label = f"{owner} {r.origin}"
        for stmts in rule_statements(r, cfg, label, families):
            rendered.append(rule(*stmts, label=label))
    return Chain(name, tuple(rendered))


def policy_chains(
    update: PolicyUpdate, cfg: RenderConfig, families: frozenset[int] = ALL_FAMILIES
) -> list[Chain]:
    owner = str(update.id)
    return [
        _rule_chain(policy_chain(update.id, True), update.inbound, owner, cfg, families),
        _rule_chain(policy_chain(update.id, False), update.outbound, owner, cfg, families),
    ]


def profile_chains(
    update: ProfileUpdate, cfg: RenderConfig, families: frozenset[int] = ALL_FAMILIES
) -> list[Chain]:
    owner = f"Profile({update.id})"
    return [
        _rule_chain(profile_chain(update.id, True), update.inbound, owner, cfg, families),
        _rule_chain(profile_chain(update.id, False), update.outbound, owner, cfg, families),
    ]


def empty_policy_chains(pid: PolicyId) -> list[Chain]:
    return [Chain(policy_chain(pid, True)), Chain(policy_chain(pid, False))]


# -- endpoint chains ----------------------------------------------------------------------------------
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
            rules.append(
                rule(
                    _mark_is(p, False),
                    Counter(),
                    Verdict("drop"),
                    label=f"end of tier {tier.name}: default action Deny",
                )
            )
        rules.append(rule(SetMark(and_mask=0xFFFFFFFF & ~p), label=f"leave tier {tier.name}"))
    for name in profiles:
        rules.append(rule(Verdict("jump", profile_chain(name, inbound)), label=f"profile {name}"))
        rules.append(rule(_mark_is(a, True), *on_accept, label=f"allowed by profile {name}"))
        rules.append(rule(SetMark(and_mask=0xFFFFFFFF & ~p), label=f"leave profile {name}"))
    end_stmts: list[Stmt] = [Counter(), end] if end.kind == "drop" else [end]
    rules.append(rule(*end_stmts, label=end_label))
    return rules


def _anti_spoofing(ep: EndpointPolicyUpdate) -> list[Rule]:
    rules = []
    for family, nets in ((4, ep.ipv4_nets), (6, ep.ipv6_nets)):
        allowed = [
            n
            for n in (*nets, *ep.allowed_source_prefixes)
            if ipaddress.ip_network(n, strict=False).version == family
        ]
        nfproto = Match(Meta("nfproto"), "==", "ipv4" if family == 4 else "ipv6")
        label = f"anti-spoofing IPv{family}: source not the endpoint's"
        if allowed:
            values = [_net_value(n) for n in sorted(set(allowed))]
            rules.append(
                rule(
                    nfproto,
                    *_is_none(_addr_field(family, "saddr"), values),
                    Counter(),
                    Verdict("drop"),
                    label=label,
                )
            )
        else:
            rules.append(rule(nfproto, Counter(), Verdict("drop"), label=label))
    return rules


def endpoint_chains(ep: EndpointPolicyUpdate, cfg: RenderConfig) -> list[Chain]:
    """to-workload (ingress policy) and from-workload (anti-spoofing, egress policy) chains."""
    deny = Verdict("drop")
    why = f"{ep.id}: default deny"
    ingress = policy_section(ep.tiers, True, ep.profile_ids, "normal", cfg, deny, why)
    egress = _anti_spoofing(ep) + policy_section(ep.tiers, False, ep.profile_ids, "normal", cfg, deny, why)
    return [
        Chain(endpoint_chain(ep.interface_name, True), tuple(ingress)),
        Chain(endpoint_chain(ep.interface_name, False), tuple(egress)),
    ]


WILDCARD_CHAIN_TAG = "all-host-interfaces"  # longer than any interface name (15), so it cannot collide


def hep_chain(kind: str, iface: str) -> str:
    """`fh-eth0`; for interfaceName "*" a fixed tag (nft parses a `*` in a jump target as a wildcard)."""
    return f"{kind}-{WILDCARD_CHAIN_TAG if iface == ALL_INTERFACES else iface}"


HEP_STAGES: tuple[tuple[str, str, bool, Stage], ...] = (
    # (chain kind, map name, inbound, stage)
    ("fh", "hep-in", True, "normal"),
    ("th", "hep-out", False, "normal"),
    ("fhfw", "hep-fwd-in", True, "forward"),
    ("thfw", "hep-fwd-out", False, "forward"),
    ("pre", "hep-pre", True, "pre_dnat"),
    ("untin", "hep-unt-in", True, "untracked"),
    ("untout", "hep-unt-out", False, "untracked"),
)


def host_endpoint_chains(
    hep: HostEndpointPolicyUpdate, cfg: RenderConfig, iface: str | None = None
) -> dict[str, Chain]:
    """Chains by map name (the HEP_STAGES this endpoint needs; a normal chain always), for the
    endpoint on `iface` (default: its interfaceName)."""
    iface = iface or hep.interface_name
    if not iface:
        return {}
    out: dict[str, Chain] = {}
    for kind, map_name, inbound, stage in HEP_STAGES:
        if stage == "normal":
            tiers, profiles = hep.tiers, hep.profile_ids
            end, why = Verdict("drop"), f"host endpoint {hep.id}: default deny"
        else:
            tiers = {
                "forward": hep.forward_tiers,
                "pre_dnat": hep.pre_dnat_tiers,
                "untracked": hep.untracked_tiers,
            }[stage]
            profiles = ()
            if not any(t.ingress if inbound else t.egress for t in tiers):
                continue
            end = Verdict("drop") if stage == "forward" else Verdict("return")
            why = f"host endpoint {hep.id}: {stage} end"
        rules = policy_section(tiers, inbound, profiles, stage, cfg, end, why)
        out[map_name] = Chain(hep_chain(kind, iface), tuple(rules))
    return out


# -- static chains ------------------------------------------------------------------------------------
def _workload_ifaces(cfg: RenderConfig) -> AnonSet:
    return AnonSet(tuple(f"{p}*" for p in cfg.interface_prefixes))


def _ct_rules() -> list[Rule]:
    return [
        rule(Match(Ct("state"), "in", ("established", "related")), Verdict("accept"), label="conntrack"),
        rule(Match(Ct("state"), "in", ("invalid",)), Verdict("drop"), label="conntrack invalid"),
        rule(
            Match(Ct("state"), "in", ("untracked",)),
            Verdict("accept"),
            label="untracked (doNotTrack allowed)",
        ),
    ]


def _failsafe_rules(ports: tuple[FailsafePort, ...], inbound: bool, what: str = "failsafe") -> list[Rule]:
    rules = []
    for fp in ports:
        stmts: list[Stmt] = []
        if fp.net:
            net = ipaddress.ip_network(fp.net, strict=False)
            stmts.append(
                Match(_addr_field(net.version, "saddr" if inbound else "daddr"), "==", _net_value(fp.net))
            )
        stmts += [
            Match(Meta("l4proto"), "==", fp.protocol),
            Match(Payload("th", "dport"), "==", fp.port),
            Verdict("accept"),
        ]
        rules.append(rule(*stmts, label=f"{what} {'in' if inbound else 'out'} {fp.protocol}:{fp.port}"))
    return rules


def _dispatch(
    name: str,
    map_name: str,
    key: str,
    wildcard: str | None,
    fallback: Verdict,
    head: list[Rule] | None = None,
) -> Chain:
    rules = list(head or [])
    rules.append(rule(VMap(Meta(key), map_name), label=f"dispatch by {key}"))
    if wildcard is not None:
        rules.append(
            rule(
                Match(Meta(key), "!=", "lo"), Verdict("goto", wildcard), label="all-interfaces host endpoint"
            )
        )
    rules.append(
        rule(fallback, label="no endpoint" if fallback.kind == "return" else "unknown workload interface")
    )
    return Chain(name, tuple(rules))


def static_chains(
    cfg: RenderConfig,
    wildcard: HostEndpointPolicyUpdate | None,
    wildcard_maps: frozenset[str],
    pools: Iterable[PoolUpdate],
) -> list[Chain]:
    wl = _workload_ifaces(cfg)
    to_host = {"Drop": Verdict("drop"), "Accept": Verdict("accept"), "Return": Verdict("return")}
    chains = [
        Chain(
            "filter-forward",
            tuple(
                [
                    *_ct_rules(),
                    rule(
                        Match(Meta("iifname"), "!=", wl),
                        Verdict("jump", "hep-fwd-in-dispatch"),
                        label="from host endpoint",
                    ),
                    rule(
                        Match(Meta("iifname"), "==", wl),
                        Verdict("jump", "from-wl-dispatch"),
                        label="from workload",
                    ),
                    rule(
                        Match(Meta("oifname"), "==", wl),
                        Verdict("jump", "to-wl-dispatch"),
                        label="to workload",
                    ),
                    rule(
                        Match(Meta("oifname"), "!=", wl),
                        Verdict("jump", "hep-fwd-out-dispatch"),
                        label="to host endpoint",
                    ),
                ]
            ),
            BaseHook("filter", "forward", 0),
        ),
        Chain(
            "filter-input",
            tuple(
                [
                    *_ct_rules(),
                    rule(
                        Match(Meta("iifname"), "==", wl),
                        Verdict("jump", "wl-to-host"),
                        label="workload to host",
                    ),
                    rule(
                        Match(Meta("iifname"), "!=", wl),
                        Verdict("jump", "from-hep-dispatch"),
                        label="from host endpoint",
                    ),
                ]
            ),
            BaseHook("filter", "input", 0),
        ),
        Chain(
            "filter-output",
            tuple(
                [
                    *_ct_rules(),
                    rule(
                        Match(Meta("oifname"), "==", wl),
                        Verdict("return"),
                        label="host to workload: not policed",
                    ),
                    rule(Verdict("jump", "to-hep-dispatch"), label="to host endpoint"),
                ]
            ),
            BaseHook("filter", "output", 0),
        ),
        Chain(
            "wl-to-host",
            (
                rule(
                    Match(Meta("l4proto"), "==", 58),
                    Match(Payload("icmpv6", "type"), "==", AnonSet(ND_TYPES)),
                    Verdict("accept"),
                    label="IPv6 neighbour discovery",
                ),
                *_failsafe_rules(cfg.workload_to_host_allow, True, "workload to host allowed"),
                rule(Verdict("jump", "from-wl-dispatch"), label="workload egress policy"),
                rule(
                    to_host[cfg.endpoint_to_host_action],
                    label=f"endpoint to host: {cfg.endpoint_to_host_action}",
                ),
            ),
        ),
        Chain(
            "raw-prerouting",
            (
                rule(
                    Match(Meta("iifname"), "!=", wl),
                    Verdict("jump", "hep-unt-in-dispatch"),
                    label="untracked from host endpoint",
                ),
            ),
            BaseHook("filter", "prerouting", -300),
        ),
        Chain(
            "raw-output",
            (
                rule(
                    Match(Meta("oifname"), "!=", wl),
                    Verdict("jump", "hep-unt-out-dispatch"),
                    label="untracked to host endpoint",
                ),
            ),
            BaseHook("filter", "output", -300),
        ),
        Chain(
            "mangle-prerouting",
            (
                rule(
                    Match(Meta("iifname"), "!=", wl),
                    Verdict("jump", "hep-pre-dispatch"),
                    label="preDNAT from host endpoint",
                ),
            ),
            BaseHook("filter", "prerouting", -150),
        ),
    ]
    drop, ret = Verdict("drop"), Verdict("return")
    chains.append(_dispatch("from-wl-dispatch", "from-wl", "iifname", None, drop))
    chains.append(_dispatch("to-wl-dispatch", "to-wl", "oifname", None, drop))
    iface = wildcard.interface_name if wildcard is not None else None

    def wild(map_name: str, kind: str) -> str | None:
        return (
            hep_chain(kind, ALL_INTERFACES) if iface == ALL_INTERFACES and map_name in wildcard_maps else None
        )

    lo_in = [rule(Match(Meta("iifname"), "==", "lo"), Verdict("return"), label="loopback")]
    lo_out = [rule(Match(Meta("oifname"), "==", "lo"), Verdict("return"), label="loopback")]
    chains.append(
        _dispatch(
            "from-hep-dispatch",
            "hep-in",
            "iifname",
            wild("hep-in", "fh"),
            ret,
            lo_in + _failsafe_rules(cfg.failsafe_inbound, True),
        )
    )
    chains.append(
        _dispatch(
            "to-hep-dispatch",
            "hep-out",
            "oifname",
            wild("hep-out", "th"),
            ret,
            lo_out + _failsafe_rules(cfg.failsafe_outbound, False),
        )
    )
    chains.append(_dispatch("hep-fwd-in-dispatch", "hep-fwd-in", "iifname", wild("hep-fwd-in", "fhfw"), ret))
    chains.append(
        _dispatch("hep-fwd-out-dispatch", "hep-fwd-out", "oifname", wild("hep-fwd-out", "thfw"), ret)
    )
    chains.append(_dispatch("hep-pre-dispatch", "hep-pre", "iifname", wild("hep-pre", "pre"), ret))
    chains.append(
        _dispatch(
            "hep-unt-in-dispatch",
            "hep-unt-in",
            "iifname",
            wild("hep-unt-in", "untin"),
            ret,
            lo_in + _failsafe_rules(cfg.failsafe_inbound, True),
        )
    )
    chains.append(
        _dispatch(
            "hep-unt-out-dispatch",
            "hep-unt-out",
            "oifname",
            wild("hep-unt-out", "untout"),
            ret,
            lo_out + _failsafe_rules(cfg.failsafe_outbound, False),
        )
    )
    nat: list[Rule] = []
    if any(p.nat_outgoing for p in pools):
        for family in (4, 6):
            addr_s, addr_d = _addr_field(family, "saddr"), _addr_field(family, "daddr")
            nat.append(
                rule(
                    Match(addr_s, "==", SetRef(f"masq-pools-{family}")),
                    Match(addr_d, "!=", SetRef(f"all-pools-{family}")),
                    Masquerade(),
                    label=f"NAT outgoing IPv{family}",
                )
            )
    chains.append(Chain("nat-postrouting", tuple(nat), BaseHook("nat", "postrouting", 100)))
    return chains


DISPATCH_MAPS = ("from-wl", "to-wl", *tuple(stage[1] for stage in HEP_STAGES))


# -- whole table ----------------------------------------------------------------------------------------
def needs_interface_addresses(heps: Mapping[HostEndpointId, HostEndpointPolicyUpdate]) -> bool:
    """Whether some host endpoint is known by expectedIPs only (placing it needs the addresses)."""
    return any(not hep.interface_name and hep.expected_ips for hep in heps.values())


def choose_host_endpoints(
    heps: Mapping[HostEndpointId, HostEndpointPolicyUpdate],
    addresses: Mapping[str, frozenset[str]] | None = None,
    workload_prefixes: tuple[str, ...] = (),
) -> dict[str, HostEndpointPolicyUpdate]:
    """Interface (or `*`) -> the host endpoint enforced on it. Endpoints naming an interface come
    first (the first by name when several claim one); then, as Calico does, an interface no
    endpoint names gets the first endpoint (by name) without interfaceName whose expectedIPs
    include one of the interface's `addresses`. `lo` and workload interfaces are never host
    endpoints."""
    out: dict[str, HostEndpointPolicyUpdate] = {}
    for hep_id in sorted(heps):
        hep = heps[hep_id]
        if hep.interface_name and hep.interface_name not in out:
            out[hep.interface_name] = hep
    by_ips = [heps[i] for i in sorted(heps) if not heps[i].interface_name and heps[i].expected_ips]
    for iface in sorted(addresses or {}):
        if iface in out or iface == "lo" or (workload_prefixes and iface.startswith(workload_prefixes)):
            continue
        held = (addresses or {})[iface]
        for hep in by_ips:
            if held.intersection(hep.expected_ips):
                out[iface] = hep
                break
    return out


def owns_interface(cfg: RenderConfig, iface: str) -> bool:
    return bool(iface) and iface.startswith(cfg.interface_prefixes)


def render_ruleset(state: PolicyState) -> Ruleset:
    """The whole desired table (golden tests, the interpreter, full resyncs)."""
    cfg = state.config
    out = Ruleset()
    families = set_families(state.ipsets.values())
    for update in state.ipsets.values():
        for name, (definition, elements) in ipset_defs(update, families).items():
            out.sets[name], out.elements[name] = definition, elements
    for name, (definition, elements) in pool_defs(state.pools.values()).items():
        out.sets[name], out.elements[name] = definition, elements
    for map_name in DISPATCH_MAPS:
        out.maps[map_name] = MapDef(map_name)
        out.map_elements[map_name] = {}
    for policy in state.policies.values():
        for chain in policy_chains(policy, cfg, families):
            out.chains[chain.name] = chain
    for profile in state.profiles.values():
        for chain in profile_chains(profile, cfg, families):
            out.chains[chain.name] = chain
    for ep in state.endpoints.values():
        if not owns_interface(cfg, ep.interface_name):
            continue
        for chain, map_name in zip(endpoint_chains(ep, cfg), ("to-wl", "from-wl"), strict=True):
            out.chains[chain.name] = chain
            out.map_elements[map_name][ep.interface_name] = Verdict("goto", chain.name)
    heps = choose_host_endpoints(state.host_endpoints, state.interface_addresses, cfg.interface_prefixes)
    wildcard = heps.get(ALL_INTERFACES)
    wildcard_maps: set[str] = set()
    for iface, hep in heps.items():
        for map_name, chain in host_endpoint_chains(hep, cfg, iface).items():
            out.chains[chain.name] = chain
            if iface == ALL_INTERFACES:
                wildcard_maps.add(map_name)
            else:
                out.map_elements[map_name][iface] = Verdict("goto", chain.name)
    for chain in static_chains(cfg, wildcard, frozenset(wildcard_maps), state.pools.values()):
        out.chains[chain.name] = chain
    add_missing_references(out)
    return out


def referenced(chains: Iterable[Chain]) -> tuple[set[str], set[str]]:
    """Chains jumped to and sets referenced by these chains."""
    chain_refs: set[str] = set()
    set_refs: set[str] = set()
    for chain in chains:
        for r in chain.rules:
            for stmt in r.stmts:
                if isinstance(stmt, Verdict) and stmt.target is not None:
                    chain_refs.add(stmt.target)
                elif isinstance(stmt, Match) and isinstance(stmt.right, SetRef):
                    set_refs.add(stmt.right.name)
    return chain_refs, set_refs


def add_missing_references(out: Ruleset) -> None:
    """Fail closed on a message-order bug: a policy/profile chain or IP set that something refers to
    but that was never sent exists empty (a missing policy matches nothing; an empty set holds
    nothing), so the batch can load. Logged, because the calc should never let this happen."""
    chain_refs, set_refs = referenced(out.chains.values())
    for name in sorted(chain_refs - set(out.chains)):
        log.warning("nft render: chain referenced but not known; creating it empty chain=%s", name)
        out.chains[name] = Chain(name)
    for name in sorted(set_refs - set(out.sets)):
        log.warning("nft render: set referenced but not known; creating it empty set=%s", name)
        kind, family = name[0], int(name[1])
        addr_type = "ipv4_addr" if family == 4 else "ipv6_addr"
        out.sets[name] = (
            SetDef(name, addr_type, interval=True)
            if kind != "n"
            else SetDef(name, (addr_type, "inet_proto", "inet_service"))
        )
        out.elements[name] = frozenset()
