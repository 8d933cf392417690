"""The nftables rule model tortie renders into, and its libnftables JSON form (pure).

Values are frozen dataclasses close to nft's own JSON schema (libnftables-json(5)): fields (`Meta`,
`Payload`, `Ct`, `Concat`, `BitAnd`), right-hand values (ints, strings, `Prefix`, `Range`,
`SetRef`, `AnonSet`, concatenations as tuples), statements (`Match`, `Verdict`, `VMap`, `SetMark`,
`Log`, `Limit`, `Counter`, `NoTrack`, `Masquerade`; and for the endpoints' own tables `Nat`, `RateOver`,
`CtCountOver`, `Reject`), `Rule`, `Chain`, `SetDef`, `MapDef`; a whole table
(`Ruleset`) and one owner's share of it (`Pieces`); `referenced(chains)`: what chains refer to.

A `Rule` carries a digest of its statements; its kernel comment is `h=<digest> <label>`. The
kernel's JSON for a rule differs from what we sent (it names constants, drops implied
dependencies), so read-back compares chains by their rules' digests, never by expressions.

Set elements travel as canonical strings: "10.0.0.0/24" or "10.0.0.1/32" (address sets),
"<lo>-<hi>" (a range somebody else added), "10.0.0.1|6|80" (address . protocol . port).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tortie.common.ipfamily import FAMILIES

FAMILY = "inet"
COMMENT_MAX = 127
# host prefix length by "has a ':'" (`ipfamily.family_of`'s rule; a plain lookup: every element goes
# through `element_json`)
_HOST_LENGTH = {fam.version == 6: str(fam.host_prefix) for fam in FAMILIES}


# -- fields -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Meta:
    key: str  # iifname, oifname, nfproto, l4proto, mark


@dataclass(frozen=True)
class Payload:
    protocol: str  # ip, ip6, th, icmp, icmpv6
    field: str  # saddr, daddr, sport, dport, type, code


@dataclass(frozen=True)
class Ct:
    key: str  # state


@dataclass(frozen=True)
class Concat:
    parts: tuple[Field, ...]


@dataclass(frozen=True)
class BitAnd:
    left: Field
    mask: int


Field = Meta | Payload | Ct | Concat | BitAnd


# -- values -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prefix:
    addr: str
    length: int


@dataclass(frozen=True)
class Range:
    lo: int | str
    hi: int | str


@dataclass(frozen=True)
class SetRef:
    name: str


@dataclass(frozen=True)
class AnonSet:
    items: tuple[Value, ...]


Value = int | str | Prefix | Range | SetRef | AnonSet | tuple[Any, ...]


# -- statements ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    left: Field
    op: str  # "==", "!=", "in"
    right: Value


@dataclass(frozen=True)
class Verdict:
    kind: str  # accept, drop, return, jump, goto
    target: str | None = None


@dataclass(frozen=True)
class VMap:
    key: Field
    map: str


@dataclass(frozen=True)
class SetMark:
    """meta mark set (mark & and_mask) | or_bits."""

    and_mask: int = 0xFFFFFFFF
    or_bits: int = 0


@dataclass(frozen=True)
class Log:
    """`log prefix P` (kernel log), or with `group` set `log group G snaplen S prefix P` (NFLOG: the
    packet's first `snaplen` bytes go to the process bound to the group)."""

    prefix: str
    group: int | None = None
    snaplen: int = 0

    def __repr__(self) -> str:  # rule digests hash reprs: a plain log keeps its digest
        if self.group is None:
            return f"Log(prefix={self.prefix!r})"
        return f"Log(prefix={self.prefix!r}, group={self.group}, snaplen={self.snaplen})"


@dataclass(frozen=True)
class Limit:
    """`limit rate N/second burst B packets`: the rule goes on while under the rate (a match)."""

    rate: int
    burst: int = 5


@dataclass(frozen=True)
class Counter:
    pass


@dataclass(frozen=True)
class NoTrack:
    pass


@dataclass(frozen=True)
class Masquerade:
    pass


@dataclass(frozen=True)
class Nat:
    """`dnat|snat <ip|ip6> to <addr>` (1:1 NAT of a floating IP)."""

    kind: str  # dnat, snat
    family: str  # ip, ip6
    addr: str


@dataclass(frozen=True)
class RateOver:
    """`limit rate over N <unit>/second burst B <unit>`: matches while OVER the rate (a policer's
    test); unit "packets" or "bytes"."""

    rate: int
    burst: int
    unit: str = "packets"


@dataclass(frozen=True)
class CtCountOver:
    """`ct count over N`: matches while more than N connections went through this rule and are
    still in the conntrack table (the rule's own list: one endpoint's connections)."""

    count: int


@dataclass(frozen=True)
class Reject:
    """`reject with tcp reset` (`tcp_reset`) or `reject` (ICMP(v6) port unreachable)."""

    tcp_reset: bool = False


Stmt = (Match | Verdict | VMap | SetMark | Log | Limit | Counter | NoTrack | Masquerade
        | Nat | RateOver | CtCountOver | Reject)


@dataclass(frozen=True)
class Rule:
    stmts: tuple[Stmt, ...]
    label: str = ""
    digest: str = field(default="", compare=False)

    @property
    def comment(self) -> str:
        return f"h={self.digest} {self.label}".strip()[:COMMENT_MAX]


def rule(*stmts: Stmt, label: str = "") -> Rule:
    """A rule with its digest (hash of the statements and the label)."""
    digest = hashlib.blake2b(repr((stmts, label)).encode(), digest_size=8).hexdigest()
    return Rule(tuple(stmts), label, digest)


@dataclass(frozen=True)
class BaseHook:
    type: str  # filter, nat
    hook: str  # prerouting, input, forward, output, postrouting
    priority: int
    policy: str = "accept"


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...] = ()
    base: BaseHook | None = None

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(r.digest for r in self.rules)


@dataclass(frozen=True)
class SetDef:
    name: str
    type: str | tuple[str, ...]
    interval: bool = False


@dataclass(frozen=True)
class MapDef:
    name: str
    key_type: str = "ifname"


@dataclass
class Ruleset:
    """A whole table: chains, sets with elements, verdict maps with elements."""

    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, SetDef] = field(default_factory=dict)
    elements: dict[str, frozenset[str]] = field(default_factory=dict)
    maps: dict[str, MapDef] = field(default_factory=dict)
    map_elements: dict[str, dict[str, Verdict]] = field(default_factory=dict)


@dataclass
class Pieces:
    """What one owner (a policy, an endpoint, ...) contributes to a table: chains, sets with their
    elements, and verdict-map entries keyed by (map, interface)."""

    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, tuple[SetDef, frozenset[str]]] = field(default_factory=dict)
    entries: dict[tuple[str, str], Verdict] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.chains or self.sets or self.entries)


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


# -- JSON ---------------------------------------------------------------------------------------------
def field_json(f: Field) -> Any:
    if isinstance(f, Meta):
        return {"meta": {"key": f.key}}
    if isinstance(f, Payload):
        return {"payload": {"protocol": f.protocol, "field": f.field}}
    if isinstance(f, Ct):
        return {"ct": {"key": f.key}}
    if isinstance(f, Concat):
        return {"concat": [field_json(p) for p in f.parts]}
    return {"&": [field_json(f.left), f.mask]}


def value_json(v: Value) -> Any:
    if isinstance(v, Prefix):
        return {"prefix": {"addr": v.addr, "len": v.length}}
    if isinstance(v, Range):
        return {"range": [v.lo, v.hi]}
    if isinstance(v, SetRef):
        return "@" + v.name
    if isinstance(v, AnonSet):
        return {"set": [value_json(i) for i in v.items]}
    if isinstance(v, tuple):
        return {"concat": [value_json(i) for i in v]}
    return v


def stmt_json(s: Stmt) -> Any:
    if isinstance(s, Match):
        right = list(s.right) if s.op == "in" and isinstance(s.right, tuple) else value_json(s.right)
        return {"match": {"op": s.op, "left": field_json(s.left), "right": right}}
    if isinstance(s, Verdict):
        if s.target is not None:
            return {s.kind: {"target": s.target}}
        return {s.kind: None}
    if isinstance(s, VMap):
        return {"vmap": {"key": field_json(s.key), "data": "@" + s.map}}
    if isinstance(s, SetMark):
        mark: Any = {"meta": {"key": "mark"}}
        value: Any = mark
        if s.and_mask != 0xFFFFFFFF:
            value = {"&": [value, s.and_mask]}
        if s.or_bits:
            value = {"|": [value, s.or_bits]}
        return {"mangle": {"key": mark, "value": value}}
    if isinstance(s, Log):
        if s.group is None:
            return {"log": {"prefix": s.prefix}}
        return {"log": {"prefix": s.prefix, "group": s.group, "snaplen": s.snaplen}}
    if isinstance(s, Limit):
        return {"limit": {"rate": s.rate, "per": "second", "burst": s.burst}}
    if isinstance(s, Counter):
        return {"counter": None}
    if isinstance(s, NoTrack):
        return {"notrack": None}
    if isinstance(s, Nat):
        return {s.kind: {"family": s.family, "addr": s.addr}}
    if isinstance(s, RateOver):
        if s.unit == "bytes":
            return {"limit": {"rate": s.rate, "per": "second", "rate_unit": "bytes", "burst": s.burst,
                              "burst_unit": "bytes", "inv": True}}
        return {"limit": {"rate": s.rate, "per": "second", "burst": s.burst, "inv": True}}
    if isinstance(s, CtCountOver):
        return {"ct count": {"val": s.count, "inv": True}}
    if isinstance(s, Reject):
        return {"reject": {"type": "tcp reset"}} if s.tcp_reset else {"reject": None}
    return {"masquerade": None}


def rule_json(table: str, chain: str, r: Rule) -> dict[str, Any]:
    return {
        "rule": {
            "family": FAMILY,
            "table": table,
            "chain": chain,
            "expr": [stmt_json(s) for s in r.stmts],
            "comment": r.comment,
        }
    }


def chain_json(table: str, c: Chain) -> dict[str, Any]:
    out: dict[str, Any] = {"family": FAMILY, "table": table, "name": c.name}
    if c.base is not None:
        out.update(type=c.base.type, hook=c.base.hook, prio=c.base.priority, policy=c.base.policy)
    return {"chain": out}


def set_json(table: str, s: SetDef) -> dict[str, Any]:
    out: dict[str, Any] = {
        "family": FAMILY,
        "table": table,
        "name": s.name,
        "type": list(s.type) if isinstance(s.type, tuple) else s.type,
    }
    if s.interval:
        out["flags"] = ["interval"]
    return {"set": out}


def map_json(table: str, m: MapDef) -> dict[str, Any]:
    return {"map": {"family": FAMILY, "table": table, "name": m.name, "type": m.key_type, "map": "verdict"}}


def element_json(elem: str) -> Any:
    """A canonical element string as nft JSON."""
    if "|" in elem:
        ip, proto, port = elem.split("|")
        return {"concat": [ip, int(proto), int(port)]}
    addr, _, length = elem.partition("/")
    if length == _HOST_LENGTH[":" in addr]:  # canonical host address (the common case)
        return addr
    if "/" in elem:
        net = ipaddress.ip_network(elem)
        if net.prefixlen == net.max_prefixlen:
            return str(net.network_address)
        return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
    lo, _, hi = elem.partition("-")
    return {"range": [lo, hi]}


def verdict_json(v: Verdict) -> Any:
    return stmt_json(v)
