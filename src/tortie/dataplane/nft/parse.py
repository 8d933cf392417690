"""Pure parse of `nft -j list table inet tortie` into what the policy manager compares against.

Input: the table's JSON objects (as `NftDriver.list_table` returns them). Output: `KernelTable`:
chains (base hook if any, and the digests of their rules, read from the `h=<digest>` comments:
a rule without our comment gets a digest no rendered rule has, so its chain is rewritten), sets
(type, interval flag, elements as the canonical strings of `ir`), verdict maps (key -> Verdict).
Unknown object kinds (flowtables, counters, ...) are ignored: tortie never creates them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tortie.dataplane.nft.ir import BaseHook, Verdict

PROTOCOL_NAMES = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136, "icmp": 1, "icmpv6": 58}


@dataclass(frozen=True)
class KernelChain:
    name: str
    base: BaseHook | None
    digests: tuple[str, ...] = ()


@dataclass(frozen=True)
class KernelSet:
    name: str
    type: str | tuple[str, ...]
    interval: bool


@dataclass
class KernelTable:
    chains: dict[str, KernelChain] = field(default_factory=dict)
    sets: dict[str, KernelSet] = field(default_factory=dict)
    elements: dict[str, frozenset[str]] = field(default_factory=dict)
    maps: dict[str, dict[str, Verdict]] = field(default_factory=dict)


def _addr_element(raw: Any) -> str:
    if isinstance(raw, str):
        addr = ipaddress.ip_address(raw)
        return f"{addr}/{addr.max_prefixlen}"
    if isinstance(raw, dict) and "prefix" in raw:
        return str(ipaddress.ip_network(f"{raw['prefix']['addr']}/{raw['prefix']['len']}"))
    if isinstance(raw, dict) and "range" in raw:
        lo, hi = raw["range"]
        return f"{ipaddress.ip_address(lo)}-{ipaddress.ip_address(hi)}"
    if isinstance(raw, dict) and "elem" in raw:  # element with options (timeout, comment)
        return _addr_element(raw["elem"]["val"])
    raise ValueError(f"unexpected set element {raw!r}")


def element_key(raw: Any) -> str:
    """A listed element as the canonical string the renderer uses."""
    if isinstance(raw, dict) and "concat" in raw:
        ip, proto, port = raw["concat"]
        number = proto if isinstance(proto, int) else PROTOCOL_NAMES.get(str(proto), proto)
        return f"{ipaddress.ip_address(ip)}|{number}|{port}"
    return _addr_element(raw)


def _verdict(raw: Any) -> Verdict:
    ((kind, body),) = raw.items()
    target = body.get("target") if isinstance(body, dict) else None
    return Verdict(kind, target)


def rule_digest(rule: dict[str, Any]) -> str:
    comment = rule.get("comment")
    if isinstance(comment, str) and comment.startswith("h="):
        return comment[2:].split(" ", 1)[0]
    return f"foreign#{rule.get('handle', '?')}"


def parse_table(objects: list[dict[str, Any]]) -> KernelTable:
    out = KernelTable()
    rules: dict[str, list[str]] = {}
    for obj in objects:
        if "chain" in obj:
            c = obj["chain"]
            base = None
            if "hook" in c:
                base = BaseHook(
                    str(c.get("type", "filter")),
                    str(c["hook"]),
                    int(c.get("prio", 0)),
                    str(c.get("policy", "accept")),
                )
            out.chains[c["name"]] = KernelChain(c["name"], base)
        elif "rule" in obj:
            r = obj["rule"]
            rules.setdefault(r["chain"], []).append(rule_digest(r))
        elif "set" in obj:
            s = obj["set"]
            kind = tuple(s["type"]) if isinstance(s["type"], list) else str(s["type"])
            out.sets[s["name"]] = KernelSet(s["name"], kind, "interval" in s.get("flags", []))
            out.elements[s["name"]] = frozenset(element_key(e) for e in s.get("elem", []))
        elif "map" in obj:
            m = obj["map"]
            out.maps[m["name"]] = {str(key): _verdict(value) for key, value in m.get("elem", [])}
    for name, digests in rules.items():
        chain = out.chains.get(name)
        if chain is not None:
            out.chains[name] = KernelChain(name, chain.base, tuple(digests))
    return out
