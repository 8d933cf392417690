"""Pure diff of desired vs kernel nftables state into ONE ordered batch (libnftables JSON commands).

Input: the desired `Ruleset`, the `KernelTable` last read back (and kept up to date after every
successful batch), and the names of chains, sets and maps to reconcile. Output: the commands, and
`commit(...)`, which updates the KernelTable once the kernel accepted the batch.

Order inside the batch (each step may rely on the previous ones; the whole batch is one
transaction, so no packet ever sees a half-applied state):

    add table -> add new sets and maps -> add new chains (empty) -> delete set elements -> add set
    elements (deletes first: interval sets reject overlaps) -> delete/add map elements -> rewrite
    changed chains (flush + add rules) -> flush unwanted chains (dropping their references) ->
    delete unwanted maps, chains, then sets (nothing references them any more)

A chain is rewritten only when its rules' digests differ from the kernel's; set and map elements
move one by one. So an unchanged table costs an empty batch (adoption after a restart changes
nothing), and a label change costs a few element operations.

Maps can also be reconciled key by key: `entries` names, per map, the keys that may have changed
(the policy manager knows which interfaces' entries it touched), so a new endpoint on a host with
a thousand costs a lookup of its own keys, not a walk of both verdict maps. A map named in `maps`
is compared whole; `entries` of a map the kernel does not hold yet are ignored (`maps` creates it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tortie.dataplane.nft.ir import (
    FAMILY,
    Ruleset,
    chain_json,
    element_json,
    map_json,
    rule_json,
    set_json,
    verdict_json,
)
from tortie.dataplane.nft.parse import KernelChain, KernelSet, KernelTable


def _ref(table: str, name: str) -> dict[str, Any]:
    return {"family": FAMILY, "table": table, "name": name}


def build_batch(
    table: str,
    desired: Ruleset,
    actual: KernelTable | None,
    chains: Iterable[str],
    sets: Iterable[str],
    maps: Iterable[str],
    entries: Mapping[str, Iterable[str]] | None = None,
) -> list[dict[str, Any]]:
    have = actual if actual is not None else KernelTable()
    chains, sets, maps = sorted(set(chains)), sorted(set(sets)), sorted(set(maps))
    keyed = _keyed(desired, have, maps, entries)
    cmds: list[dict[str, Any]] = []
    if actual is None:
        cmds.append({"add": {"table": {"family": FAMILY, "name": table}}})
    recreate: set[str] = set()
    for name in sets:
        want = desired.sets.get(name)
        old = have.sets.get(name)
        if want is not None and old is not None and (old.type != want.type or old.interval != want.interval):
            cmds.append({"delete": {"set": _ref(table, name)}})  # fails if referenced: kept dirty
            old = None
            recreate.add(name)
        if want is not None and old is None:
            cmds.append({"add": set_json(table, want)})
    for name in maps:
        if name in desired.maps and name not in have.maps:
            cmds.append({"add": map_json(table, desired.maps[name])})
    for name in chains:
        want_chain = desired.chains.get(name)
        old_chain = have.chains.get(name)
        if want_chain is None:
            continue
        if old_chain is not None and old_chain.base != want_chain.base:
            cmds.append({"delete": {"chain": _ref(table, name)}})
            old_chain = None
        if old_chain is None:
            cmds.append({"add": chain_json(table, want_chain)})
    for name in sets:
        if name not in desired.sets:
            continue
        old_elems = frozenset() if name in recreate else have.elements.get(name, frozenset())
        new_elems = desired.elements.get(name, frozenset())
        gone = sorted(old_elems - new_elems)
        if gone:
            cmds.append(
                {"delete": {"element": {**_ref(table, name), "elem": [element_json(e) for e in gone]}}}
            )
    for name in sets:
        if name not in desired.sets:
            continue
        old_elems = frozenset() if name in recreate else have.elements.get(name, frozenset())
        added = sorted(desired.elements.get(name, frozenset()) - old_elems)
        if added:
            cmds.append({"add": {"element": {**_ref(table, name), "elem": [element_json(e) for e in added]}}})
    for name in sorted({*maps, *keyed}):
        if name not in desired.maps:
            continue
        old_map = have.maps.get(name, {})
        new_map = desired.map_elements.get(name, {})
        if name in keyed:  # only these keys can differ
            keys = keyed[name]
            gone_keys = [k for k in keys if k in old_map and new_map.get(k) != old_map[k]]
            added_keys = [k for k in keys if k in new_map and old_map.get(k) != new_map[k]]
        else:
            gone_keys = sorted(k for k, v in old_map.items() if new_map.get(k) != v)
            added_keys = sorted(k for k, v in new_map.items() if old_map.get(k) != v)
        if gone_keys:
            cmds.append({"delete": {"element": {**_ref(table, name), "elem": gone_keys}}})
        if added_keys:
            cmds.append(
                {
                    "add": {
                        "element": {
                            **_ref(table, name),
                            "elem": [[k, verdict_json(new_map[k])] for k in added_keys],
                        }
                    }
                }
            )
    for name in chains:
        want_chain = desired.chains.get(name)
        if want_chain is None:
            continue
        old_chain = have.chains.get(name)
        fresh = old_chain is None or old_chain.base != want_chain.base
        if not fresh and old_chain is not None and old_chain.digests == want_chain.digests:
            continue
        if not fresh:
            cmds.append({"flush": {"chain": _ref(table, name)}})
        cmds.extend({"add": rule_json(table, name, r)} for r in want_chain.rules)
    doomed = [name for name in chains if name not in desired.chains and name in have.chains]
    cmds.extend({"flush": {"chain": _ref(table, name)}} for name in doomed)  # drop their references first
    for name in maps:
        if name not in desired.maps and name in have.maps:
            cmds.append({"delete": {"map": _ref(table, name)}})
    cmds.extend({"delete": {"chain": _ref(table, name)}} for name in doomed)
    for name in sets:
        if name not in desired.sets and name in have.sets:
            cmds.append({"delete": {"set": _ref(table, name)}})
    return cmds


def _keyed(
    desired: Ruleset, have: KernelTable, maps: Iterable[str], entries: Mapping[str, Iterable[str]] | None
) -> dict[str, list[str]]:
    """The maps reconciled key by key: their keys, sorted (maps compared whole are left out)."""
    whole = set(maps)
    return {
        name: sorted(set(keys))
        for name, keys in (entries or {}).items()
        if name not in whole and name in desired.maps and name in have.maps
    }


def commit(
    desired: Ruleset,
    actual: KernelTable,
    chains: Iterable[str],
    sets: Iterable[str],
    maps: Iterable[str],
    entries: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Record in `actual` that the batch for these names (and map keys) was applied."""
    for name, keys in _keyed(desired, actual, maps, entries).items():
        new_map, old_map = desired.map_elements.get(name, {}), actual.maps[name]
        for key in keys:
            if key in new_map:
                old_map[key] = new_map[key]
            else:
                old_map.pop(key, None)
    for name in chains:
        want = desired.chains.get(name)
        if want is None:
            actual.chains.pop(name, None)
        else:
            actual.chains[name] = KernelChain(name, want.base, want.digests)
    for name in sets:
        want_set = desired.sets.get(name)
        if want_set is None:
            actual.sets.pop(name, None)
            actual.elements.pop(name, None)
        else:
            actual.sets[name] = KernelSet(name, want_set.type, want_set.interval)
            actual.elements[name] = desired.elements.get(name, frozenset())
    for name in maps:
        if name in desired.maps:
            actual.maps[name] = dict(desired.map_elements.get(name, {}))
        else:
            actual.maps.pop(name, None)
