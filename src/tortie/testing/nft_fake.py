"""`FakeNftables`: an in-memory `NftDriver` with the kernel behaviour the policy manager relies on.

Modelled (and pinned against the real kernel by `tortie.testing.nft_conformance`):

* a batch is one transaction: any failing command leaves every table exactly as before;
* `add table/chain/set/map` is idempotent; a rule needs its chain, every chain it jumps to and
  every set or map it names (ENOENT);
* `delete chain` fails while a rule or map element jumps to it (EBUSY); a chain with rules but no
  referrers may be deleted; `delete set/map` fails while a rule names it;
* interval sets reject an element overlapping a different one ("interval overlaps"); adding an
  identical element is a no-op; deleting an element that is not there fails;
* verdict-map elements: adding a key that holds another verdict fails, deleting a missing one fails;
* `list_table` answers in the kernel's JSON shapes (single addresses as strings, prefixes, ranges,
  protocol names in concatenations, rule comments and handles);
* `generation()` counts committed transactions (ours and foreign changes alike).

Test controls: `batches` (every accepted batch), `lists` (how many times a table was listed),
`fail_next(times=1)` (reject batches), `add_foreign_rule(table, chain, comment)` (someone else's
rule in our table), `foreign_change()` (a transaction elsewhere in the namespace).
"""

from __future__ import annotations

import copy
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from tortie.dataplane.drivers.nftables import NftError
from tortie.dataplane.nft.parse import element_key

_PROTO_NAMES = {6: "tcp", 17: "udp", 132: "sctp", 136: "udplite", 1: "icmp", 58: "icmpv6"}


@dataclass
class _Rule:
    handle: int
    expr: list[Any]
    comment: str | None


@dataclass
class _Chain:
    name: str
    base: dict[str, Any] | None
    rules: list[_Rule] = field(default_factory=list)


@dataclass
class _Set:
    name: str
    type: Any
    flags: list[str]
    elements: dict[str, Any] = field(default_factory=dict)  # canonical key -> listed JSON
    is_map: bool = False


@dataclass
class _Table:
    chains: dict[str, _Chain] = field(default_factory=dict)
    sets: dict[str, _Set] = field(default_factory=dict)
    handle: int = 0


def _refs(expr: Any) -> tuple[set[str], set[str]]:
    """(chains jumped to, sets/maps named) anywhere in a rule's expression list."""
    chains: set[str] = set()
    sets: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("jump", "goto") and isinstance(value, dict):
                    chains.add(str(value["target"]))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str) and node.startswith("@"):
            sets.add(node[1:])

    walk(expr)
    return chains, sets


def _interval(key: str) -> tuple[int, int] | None:
    if "|" in key:
        return None
    if "/" in key:
        net = ipaddress.ip_network(key)
        return int(net.network_address), int(net.broadcast_address)
    lo, _, hi = key.partition("-")
    return int(ipaddress.ip_address(lo)), int(ipaddress.ip_address(hi))


def _listed(key: str) -> Any:
    if "|" in key:
        ip, proto, port = key.split("|")
        return {"concat": [ip, _PROTO_NAMES.get(int(proto), int(proto)), int(port)]}
    if "/" in key:
        net = ipaddress.ip_network(key)
        if net.prefixlen == net.max_prefixlen:
            return str(net.network_address)
        return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
    lo, _, hi = key.partition("-")
    return {"range": [lo, hi]}


class FakeNftables:
    """See the module docstring."""

    def __init__(self) -> None:
        self.tables: dict[str, _Table] = {}
        self.batches: list[list[dict[str, Any]]] = []
        self.lists = 0
        self._fail = 0
        self._generation = 1

    # -- test controls --------------------------------------------------------------------------------
    def fail_next(self, times: int = 1) -> None:
        self._fail = times

    def add_foreign_rule(self, table: str, chain: str, comment: str | None = None) -> None:
        t = self.tables[table]
        t.handle += 1
        t.chains[chain].rules.append(_Rule(t.handle, [{"accept": None}], comment))
        self._generation += 1

    def foreign_change(self) -> None:
        self._generation += 1

    def rule_comments(self, table: str, chain: str) -> list[str | None]:
        return [r.comment for r in self.tables[table].chains[chain].rules]

    def elements(self, table: str, name: str) -> frozenset[str]:
        return frozenset(self.tables[table].sets[name].elements)

    # -- NftDriver ------------------------------------------------------------------------------------
    def generation(self) -> int | None:
        return self._generation

    def list_table(self, name: str) -> list[dict[str, Any]] | None:
        self.lists += 1
        table = self.tables.get(name)
        if table is None:
            return None
        out: list[dict[str, Any]] = []
        base = {"family": "inet", "table": name}
        for s in table.sets.values():
            obj: dict[str, Any] = {**base, "name": s.name, "type": s.type}
            if s.flags:
                obj["flags"] = list(s.flags)
            if s.is_map:
                obj["map"] = "verdict"
                if s.elements:
                    obj["elem"] = [[k, v] for k, v in s.elements.items()]
                out.append({"map": obj})
            else:
                if s.elements:
                    obj["elem"] = [_listed(k) for k in s.elements]
                out.append({"set": obj})
        for c in table.chains.values():
            chain: dict[str, Any] = {**base, "name": c.name}
            if c.base:
                chain.update(c.base)
            out.append({"chain": chain})
        for c in table.chains.values():
            for r in c.rules:
                rule: dict[str, Any] = {**base, "chain": c.name, "handle": r.handle, "expr": r.expr}
                if r.comment is not None:
                    rule["comment"] = r.comment
                out.append({"rule": rule})
        copied: list[dict[str, Any]] = json.loads(json.dumps(out))
        return copied

    def run(self, commands: list[dict[str, Any]]) -> None:
        if not commands:
            return
        if self._fail:
            self._fail -= 1
            raise NftError("fake nft: injected failure")
        saved = copy.deepcopy(self.tables)
        try:
            for command in commands:
                self._command(command)
        except NftError:
            self.tables = saved
            raise
        except (KeyError, ValueError, TypeError) as exc:
            self.tables = saved
            raise NftError(f"fake nft: malformed command: {exc!r}") from exc
        self.batches.append(commands)
        self._generation += 1

    def close(self) -> None:
        pass

    # -- commands -------------------------------------------------------------------------------------
    def _table(self, obj: dict[str, Any]) -> _Table:
        name = obj.get("table", obj.get("name"))
        table = self.tables.get(str(name))
        if table is None:
            raise NftError(f"No such file or directory: table {name}")
        return table

    def _command(self, command: dict[str, Any]) -> None:
        ((verb, body),) = command.items()
        ((kind, obj),) = body.items()
        handler = getattr(self, f"_{verb}_{kind}", None)
        if handler is None:
            raise NftError(f"fake nft: unsupported command {verb} {kind}")
        handler(obj)

    def _add_table(self, obj: dict[str, Any]) -> None:
        self.tables.setdefault(obj["name"], _Table())

    def _delete_table(self, obj: dict[str, Any]) -> None:
        if self.tables.pop(obj["name"], None) is None:
            raise NftError("No such file or directory: table")

    def _add_chain(self, obj: dict[str, Any]) -> None:
        table = self._table(obj)
        base: dict[str, Any] | None = {
            k: obj[k] for k in ("type", "hook", "prio", "policy") if k in obj
        } or None
        existing = table.chains.get(obj["name"])
        if existing is not None:
            if base is not None and existing.base != base:
                raise NftError(f"fake nft: chain {obj['name']} exists with another hook")
            return
        table.chains[obj["name"]] = _Chain(obj["name"], base)

    def _referrers(self, table: _Table, name: str) -> list[str]:
        out = []
        for chain in table.chains.values():
            for r in chain.rules:
                if name in _refs(r.expr)[0]:
                    out.append(chain.name)
        for s in table.sets.values():
            if s.is_map and name in _refs(list(s.elements.values()))[0]:
                out.append(s.name)
        return out

    def _delete_chain(self, obj: dict[str, Any]) -> None:
        table = self._table(obj)
        if obj["name"] not in table.chains:
            raise NftError(f"No such file or directory: chain {obj['name']}")
        if self._referrers(table, obj["name"]):
            raise NftError(f"Device or resource busy: chain {obj['name']} is referenced")
        del table.chains[obj["name"]]

    def _flush_chain(self, obj: dict[str, Any]) -> None:
        table = self._table(obj)
        chain = table.chains.get(obj["name"])
        if chain is None:
            raise NftError(f"No such file or directory: chain {obj['name']}")
        chain.rules.clear()

    def _add_rule(self, obj: dict[str, Any]) -> None:
        table = self._table(obj)
        chain = table.chains.get(obj["chain"])
        if chain is None:
            raise NftError(f"No such file or directory: chain {obj['chain']}")
        chains, sets = _refs(obj["expr"])
        for target in chains:
            if target not in table.chains:
                raise NftError(f"No such file or directory: chain {target}")
        for target in sets:
            if target not in table.sets:
                raise NftError(f"No such file or directory: set {target}")
        table.handle += 1
        chain.rules.append(_Rule(table.handle, copy.deepcopy(obj["expr"]), obj.get("comment")))

    def _add_set(self, obj: dict[str, Any], is_map: bool = False) -> None:
        table = self._table(obj)
        if obj["name"] in table.sets:
            return
        table.sets[obj["name"]] = _Set(obj["name"], obj["type"], list(obj.get("flags", [])), is_map=is_map)

    def _add_map(self, obj: dict[str, Any]) -> None:
        self._add_set(obj, is_map=True)

    def _delete_set(self, obj: dict[str, Any]) -> None:
        table = self._table(obj)
        if obj["name"] not in table.sets:
            raise NftError(f"No such file or directory: set {obj['name']}")
        for chain in table.chains.values():
            for r in chain.rules:
                if obj["name"] in _refs(r.expr)[1]:
                    raise NftError(f"Device or resource busy: set {obj['name']} is referenced")
        del table.sets[obj["name"]]

    def _delete_map(self, obj: dict[str, Any]) -> None:
        self._delete_set(obj)

    def _add_element(self, obj: dict[str, Any]) -> None:
        table = self._table(obj)
        s = table.sets.get(obj["name"])
        if s is None:
            raise NftError(f"No such file or directory: set {obj['name']}")
        for elem in obj["elem"]:
            if s.is_map:
                key, verdict = elem
                ((vkind, vbody),) = verdict.items()
                if vkind in ("jump", "goto") and vbody["target"] not in table.chains:
                    raise NftError(f"No such file or directory: chain {vbody['target']}")
                if key in s.elements and s.elements[key] != verdict:
                    raise NftError(f"File exists: map element {key}")
                s.elements[key] = copy.deepcopy(verdict)
                continue
            key = element_key(elem)
            if key in s.elements:
                continue
            if "interval" in s.flags:
                span = _interval(key)
                for other in s.elements:
                    other_span = _interval(other)
                    if span and other_span and span[0] <= other_span[1] and other_span[0] <= span[1]:
                        raise NftError("interval overlaps with an existing one")
            s.elements[key] = elem

    def _delete_element(self, obj: dict[str, Any]) -> None:
        table = self._table(obj)
        s = table.sets.get(obj["name"])
        if s is None:
            raise NftError(f"No such file or directory: set {obj['name']}")
        for elem in obj["elem"]:
            key = elem if s.is_map else element_key(elem)
            if key not in s.elements:
                raise NftError("element does not exist")
            del s.elements[key]
