"""A small interpreter of tortie's own nftables model: one packet through one hook of a `Ruleset`.

Input: a `Ruleset` (what the renderer produced), a hook name and an `NftPacket`. Output: `Outcome`
(accept or drop, whether it was logged, marked notrack or masqueraded, and the trail of rules that
matched, in order). It implements exactly the subset of nftables the renderer emits, with the
kernel's semantics: base chains of a hook run by priority and a drop anywhere is final; `jump`
pushes a return point, `goto` does not, `return` (or the end of a regular chain) pops, the end of a
base chain applies its policy; a verdict map applies the verdict stored for the key or, with no
element, lets the rule fail; `ip`/`ip6`/`icmp`/`icmpv6` matches carry nft's implicit dependency
on the family and protocol (they fail, whatever the operator, on other packets); `th` ports of a
protocol without ports never equal anything.

It serves the property tests (rendered decision == naive evaluator) and `tortie policy trace`; it
is not a general nft implementation.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tortie.common.ipfamily import address_in
from tortie.dataplane.nft.ir import (
    AnonSet,
    BitAnd,
    Chain,
    Concat,
    Counter,
    Ct,
    Limit,
    Log,
    Masquerade,
    Match,
    Meta,
    NoTrack,
    Payload,
    Prefix,
    Range,
    Rule,
    Ruleset,
    SetMark,
    SetRef,
    Value,
    Verdict,
    VMap,
)
from tortie.policy.trace import PORT_PROTOCOLS, Packet

ICMP_NAMES = {
    "mld-listener-query": 130,
    "mld-listener-report": 131,
    "mld-listener-done": 132,
    "mld2-listener-report": 143,
    "nd-router-solicit": 133,
    "nd-router-advert": 134,
    "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136,
    "echo-request": 8,
    "echo-reply": 0,
}
_FAIL = object()  # a field whose implicit dependency does not hold: the whole match fails


@dataclass(frozen=True)
class NftPacket(Packet):
    """A packet at a hook: the flow's `Packet` plus the interfaces, mark and conntrack state."""

    iifname: str = ""
    oifname: str = ""
    mark: int = 0
    ct_state: str = "new"

    @classmethod
    def of(cls, pkt: Packet, iifname: str, oifname: str) -> NftPacket:
        return cls(**{f.name: getattr(pkt, f.name) for f in fields(Packet)}, iifname=iifname, oifname=oifname)


@dataclass
class Outcome:
    verdict: str  # "accept" | "drop"
    trail: list[tuple[str, Rule]] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)
    notrack: bool = False
    masquerade: bool = False
    mark: int = 0


class _Packet:
    def __init__(self, pkt: NftPacket) -> None:
        self.p = pkt
        self.mark = pkt.mark


def _field(f: Any, pkt: _Packet) -> Any:
    p = pkt.p
    if isinstance(f, Meta):
        if f.key == "iifname":
            return p.iifname
        if f.key == "oifname":
            return p.oifname
        if f.key == "nfproto":
            return p.family.key  # nft's nfproto names: ipv4 / ipv6
        if f.key == "l4proto":
            return p.protocol
        if f.key == "mark":
            return pkt.mark
        raise ValueError(f"meta {f.key} not supported")
    if isinstance(f, BitAnd):
        value = _field(f.left, pkt)
        return _FAIL if value is _FAIL else value & f.mask
    if isinstance(f, Ct):
        return p.ct_state
    if isinstance(f, Concat):
        parts = [_field(part, pkt) for part in f.parts]
        return _FAIL if any(part is _FAIL for part in parts) else tuple(parts)
    assert isinstance(f, Payload)
    if f.protocol in ("ip", "ip6"):
        if p.family.nft != f.protocol:
            return _FAIL
        return ipaddress.ip_address(p.src if f.field == "saddr" else p.dst)
    if f.protocol in ("icmp", "icmpv6"):
        if (p.family.nft, p.protocol) != (("ip", 1) if f.protocol == "icmp" else ("ip6", 58)):
            return _FAIL
        return p.icmp_type if f.field == "type" else p.icmp_code
    if f.protocol == "th":
        if p.protocol not in PORT_PROTOCOLS:
            return None
        return p.src_port if f.field == "sport" else p.dst_port
    raise ValueError(f"payload {f.protocol} not supported")


def _element_matches(elem: str, value: Any) -> bool:
    """A canonical set element (see ir) against a field value."""
    if isinstance(value, tuple):
        if len(value) != 3 or value[2] is None:
            return False
        return elem == f"{value[0]}|{value[1]}|{value[2]}"
    if "/" in elem:
        return address_in(value, ipaddress.ip_network(elem))
    lo, _, hi = elem.partition("-")
    lo_a, hi_a = ipaddress.ip_address(lo), ipaddress.ip_address(hi)
    return bool(lo_a.version == value.version and lo_a <= value <= hi_a)


def _item_matches(item: Any, value: Any) -> bool:
    if value is None:
        return False
    if isinstance(item, Range):
        return isinstance(value, int) and int(item.lo) <= value <= int(item.hi)
    if isinstance(item, Prefix):
        net = ipaddress.ip_network(f"{item.addr}/{item.length}")
        return isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address) and address_in(value, net)
    if isinstance(item, tuple):
        return (
            isinstance(value, tuple)
            and len(item) == len(value)
            and all(_item_matches(i, v) for i, v in zip(item, value, strict=True))
        )
    if isinstance(item, str):
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return value == ipaddress.ip_address(item)
        if isinstance(value, int):
            return ICMP_NAMES.get(item) == value
        if item.endswith("*"):
            return isinstance(value, str) and value.startswith(item[:-1])
        return bool(value == item)
    return bool(value == item)


def _in_value(right: Value, value: Any, rs: Ruleset) -> bool:
    if isinstance(right, SetRef):
        return any(_element_matches(e, value) for e in rs.elements.get(right.name, ()))
    if isinstance(right, AnonSet):
        return any(_item_matches(i, value) for i in right.items)
    return _item_matches(right, value)


def _match(m: Match, pkt: _Packet, rs: Ruleset) -> bool:
    value = _field(m.left, pkt)
    if value is _FAIL:
        return False
    if m.op == "in":
        assert isinstance(m.right, tuple)
        return value in m.right
    found = _in_value(m.right, value, rs)
    return found if m.op == "==" else not found


def _exec(r: Rule, pkt: _Packet, rs: Ruleset, out: Outcome) -> Verdict | bool | None:
    """Run one rule: a Verdict, None (rule ran without verdict) or False (it did not match)."""
    for stmt in r.stmts:
        if isinstance(stmt, Match):
            if not _match(stmt, pkt, rs):
                return False
        elif isinstance(stmt, SetMark):
            pkt.mark = (pkt.mark & stmt.and_mask) | stmt.or_bits
        elif isinstance(stmt, Log):
            out.logged.append(stmt.prefix)
        elif isinstance(stmt, NoTrack):
            out.notrack = True
        elif isinstance(stmt, Masquerade):
            out.masquerade = True
        elif isinstance(stmt, VMap):
            key = _field(stmt.key, pkt)
            verdict = rs.map_elements.get(stmt.map, {}).get(key)
            if verdict is None:
                return False
            return verdict
        elif isinstance(stmt, Verdict):
            return stmt
        elif isinstance(stmt, Counter | Limit):
            continue  # a traced packet is always under a rule's rate limit
    return None


def _run_base(chain: Chain, pkt: _Packet, rs: Ruleset, out: Outcome) -> str:
    stack: list[tuple[Chain, int]] = []
    current, index = chain, 0
    steps = 0
    while True:
        if index >= len(current.rules):
            if not stack:
                return chain.base.policy if chain.base is not None else "accept"
            current, index = stack.pop()
            continue
        r = current.rules[index]
        index += 1
        steps += 1
        if steps > 100_000:
            raise RuntimeError("nft interpreter: runaway evaluation (loop in chains?)")
        result = _exec(r, pkt, rs, out)
        if result is False:
            continue
        out.trail.append((current.name, r))
        if result is None or result is True:
            continue
        assert isinstance(result, Verdict)
        if result.kind in ("accept", "drop"):
            return result.kind
        if result.kind == "return":
            if not stack:
                return chain.base.policy if chain.base is not None else "accept"
            current, index = stack.pop()
        elif result.kind == "jump":
            stack.append((current, index))
            current, index = rs.chains[str(result.target)], 0
        elif result.kind == "goto":
            current, index = rs.chains[str(result.target)], 0


def run_hook(rs: Ruleset, hook: str, packet: NftPacket) -> Outcome:
    """All of the table's base chains on `hook`, by priority (a drop ends everything)."""
    pkt = _Packet(packet)
    out = Outcome("accept")
    bases = sorted(
        (c for c in rs.chains.values() if c.base is not None and c.base.hook == hook),
        key=lambda c: c.base.priority if c.base is not None else 0,
    )
    for chain in bases:
        verdict = _run_base(chain, pkt, rs, out)
        if verdict == "drop":
            out.verdict = "drop"
            break
    out.mark = pkt.mark
    return out


def forward(rs: Ruleset, packet: NftPacket) -> Outcome:
    """A routed packet: prerouting stages (raw, mangle), then forward, then postrouting (NAT)."""
    for hook in ("prerouting", "forward"):
        outcome = run_hook(rs, hook, packet)
        if outcome.verdict == "drop":
            return outcome
        packet = replace(packet, mark=outcome.mark)
    post = run_hook(rs, "postrouting", packet)
    outcome.masquerade = post.masquerade
    return outcome
