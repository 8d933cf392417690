"""Policy and profile rules as nft rules (pure): a `ResolvedRule` -> statements, a policy -> two chains.

Input: the calc's `PolicyUpdate` / `ProfileUpdate` (rules already resolved: selectors are IP set ids,
names are numbers), the `RenderConfig` and the families in which IP sets exist. Output: the chains
`pi-`/`po-<policy>` and `pri-`/`pro-<profile>` (names: `names.py`).

One `ResolvedRule` renders as zero or more nft rules (ORed alternatives; each alternative ANDs its
statements):
* no rule when it can never match (`never_matches`, nets only of the other family, a set of a
  family without sets); one per family when it matches addresses and does not say which family;
* one per alternative of a short list of nets or ports (up to `EXPAND_LIMIT`), and per named-port
  set, instead of an anonymous set; excluded items are ANDed `!=` statements;
* the action last: Allow sets the accept mark bit and returns, Pass the pass bit and returns, Deny
  counts and drops, Log logs (prefix `log_prefix` and the rule's origin) and counts, and the
  chain goes on (the evaluation around it: `endpoints.policy_section`);
* with flow logs enabled, Allow, Pass and Deny rules also send the packet to NFLOG (`flow_log`).

`addr_field`, `net_value` and `is_none` are shared with the endpoint and static chains.
"""

from __future__ import annotations

import ipaddress

from tortie.common.ipfamily import FAMILIES, V4, Family, family, family_of
from tortie.dataplane.messages.policy import PolicyUpdate, PortRange, ProfileUpdate, ResolvedRule
from tortie.dataplane.nft import flow_log
from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.ir import (
    AnonSet,
    Chain,
    Concat,
    Counter,
    Log,
    Match,
    Meta,
    Payload,
    Prefix,
    Range,
    Rule,
    SetMark,
    SetRef,
    Stmt,
    Value,
    Verdict,
    rule,
)
from tortie.dataplane.nft.names import policy_chain, profile_chain, set_name
from tortie.dataplane.nft.sets import ALL_FAMILIES
from tortie.policy.rule_sides import RuleSide


def addr_field(fam: Family, side: str) -> Payload:
    return Payload(fam.nft, side)


def net_value(text: str) -> Value:
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


def is_none(field: Payload, values: list[Value]) -> list[Stmt]:
    """Statements (ANDed) for `field` not in `values`."""
    if len(values) <= EXPAND_LIMIT:
        return [Match(field, "!=", v) for v in values]
    return [Match(field, "!=", AnonSet(tuple(values)))]


def _named_field(fam: Family, side: str) -> Concat:
    port = "sport" if side == "saddr" else "dport"
    return Concat((addr_field(fam, side), Meta("l4proto"), Payload("th", port)))


def _family_of_nets(nets: tuple[str, ...], fam: Family) -> tuple[str, ...]:
    return tuple(n for n in nets if family_of(n) == fam)


def _side_matches(
    r: ResolvedRule, fam: Family, src: bool, families: frozenset[Family]
) -> tuple[list[Stmt], list[list[Stmt]]] | None:
    """Statements every alternative of one side needs, and the alternatives (ORed). None when the
    side cannot match in this family (nets of the other family only; a set of a family without sets)."""
    side = "saddr" if src else "daddr"
    rs = RuleSide.of(r, src)
    nets, not_nets, sets, not_sets = rs.nets, rs.not_nets, rs.sets, rs.not_sets
    ports, not_ports, named, not_named = rs.ports, rs.not_ports, rs.named_port_sets, rs.not_named_port_sets
    out: list[Stmt] = []
    addr = addr_field(fam, side)
    net_alternatives: list[list[Stmt]] = [[]]
    if nets:
        mine = _family_of_nets(nets, fam)
        if not mine:
            return None
        net_alternatives = _is_any(addr, [net_value(n) for n in mine])
    out += is_none(addr, [net_value(n) for n in _family_of_nets(not_nets, fam)])
    with_sets = fam in families
    if sets and not with_sets:
        return None
    out += [Match(addr, "==", SetRef(set_name(s, fam))) for s in sets]
    if with_sets:
        out += [Match(addr, "!=", SetRef(set_name(s, fam))) for s in not_sets]
    port_field = Payload("th", "sport" if src else "dport")
    out += is_none(port_field, [_port_item(p) for p in not_ports])
    if with_sets:
        out += [Match(_named_field(fam, side), "!=", SetRef(set_name(s, fam))) for s in not_named]
    port_alternatives: list[list[Stmt]] = _is_any(port_field, [_port_item(p) for p in ports]) if ports else []
    if with_sets:
        port_alternatives += [
            [Match(_named_field(fam, side), "==", SetRef(set_name(s, fam)))] for s in named
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


def _with_flow_log(matches: list[Stmt], action: list[Stmt], r: ResolvedRule, cfg: RenderConfig,
                   flow: tuple[str, bool] | None) -> list[list[Stmt]]:
    """The rule, with its flow log (`flow_log`) when `flow` (owner, inbound) is given."""
    if flow is None or r.action == "Log" or not flow_log.enabled(cfg):
        return [matches + action]
    owner, inbound = flow
    prefix = flow_log.rule_prefix(owner, inbound, r.origin, r.action)
    if r.action == "Deny":
        return [matches + flow_log.limited_log(cfg, inbound, prefix), matches + action]
    return [[*matches, flow_log.log(cfg, inbound, prefix), *action]]


def rule_statements(
    r: ResolvedRule,
    cfg: RenderConfig,
    label: str,
    families: frozenset[Family] = ALL_FAMILIES,
    flow: tuple[str, bool] | None = None,
) -> list[list[Stmt]]:
    """One resolved rule as nft rules (several when it needs both families or ORed ports/nets);
    `families`: those in which IP sets exist (`set_families`); `flow`: (owner, inbound) of a policy
    or profile rule, for its flow log when the configuration enables flow logs."""
    if r.never_matches:
        return []
    rule_families: list[Family | None]
    if r.ip_version is not None:
        rule_families = [family(r.ip_version)]
    elif _needs_family(r):
        rule_families = list(FAMILIES)
    else:
        rule_families = [None]
    out: list[list[Stmt]] = []
    for fam in rule_families:
        common: list[Stmt] = []
        if fam is not None:
            common.append(Match(Meta("nfproto"), "==", fam.key))  # nft's nfproto names: ipv4 / ipv6
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
            _side_matches(r, fam or V4, True, families),
            _side_matches(r, fam or V4, False, families),
        ]
        src, dst = sides
        if src is None or dst is None:
            continue
        for src_alt in src[1]:
            for dst_alt in dst[1]:
                matches = common + src[0] + src_alt + dst[0] + dst_alt
                out += _with_flow_log(matches, _action(r, cfg, label), r, cfg, flow)
    return out


def _rule_chain(
    name: str,
    rules: tuple[ResolvedRule, ...],
    owner: str,
    inbound: bool,
    cfg: RenderConfig,
    families: frozenset[Family],
) -> Chain:
    rendered: list[Rule] = []
    for r in rules:
        label = f"{owner} {r.origin}"
        for stmts in rule_statements(r, cfg, label, families, (owner, inbound)):
            rendered.append(rule(*stmts, label=label))
    return Chain(name, tuple(rendered))


def policy_chains(
    update: PolicyUpdate, cfg: RenderConfig, families: frozenset[Family] = ALL_FAMILIES
) -> list[Chain]:
    owner = str(update.id)
    return [
        _rule_chain(policy_chain(update.id, True), update.inbound, owner, True, cfg, families),
        _rule_chain(policy_chain(update.id, False), update.outbound, owner, False, cfg, families),
    ]


def profile_chains(
    update: ProfileUpdate, cfg: RenderConfig, families: frozenset[Family] = ALL_FAMILIES
) -> list[Chain]:
    owner = f"Profile({update.id})"
    return [
        _rule_chain(profile_chain(update.id, True), update.inbound, owner, True, cfg, families),
        _rule_chain(profile_chain(update.id, False), update.outbound, owner, False, cfg, families),
    ]
