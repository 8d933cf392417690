"""`AnchoredLabelIndex`: the label index for many selectors over many items (policy at scale).

Same contract as `tortie.selector.label_index_api` (and checked against `NaiveLabelIndex` by the
same state-machine test as `LabelIndex`): exactly the real match transitions, stops before starts
within a call, parents' labels inherited (first listed parent wins, own labels win).

Why another index: policy selectors are conjunctions scoped by namespace, e.g.
`projectcalico.org/namespace == "ns-3" && role == "db"`. `LabelIndex` narrows by *keys*, and every
endpoint carries the namespace key, so each new selector is evaluated against every item (20,000
endpoints x 3,000 selectors = 60 million evaluations). Here a selector is *anchored* on one of its
top-level conjuncts that pins a label value (`k == v`, `k in {...}`, or `has(k)`), the one with the
fewest matching items when the selector arrives. An item without the anchor pair can never match,
so:

* a new selector is evaluated only against the items holding its anchor pair(s);
* an item that appears or changes is evaluated only against the selectors anchored on one of its
  (old or new) pairs and using a changed key, plus the unanchored ones (`all()`, `!has(a)`,
  disjunctions...), which are few in practice.

Invariant after every call: `_matches[s]` == {i : selector s true for i's effective labels}.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tortie.selector.label_index_api import MatchCallback, effective_labels, ignore_match
from tortie.selector.nodes import AndNode, CompareNode, CompareOp, HasNode, InSetNode, Node
from tortie.selector.selector import Selector

_Pair = tuple[str, str]
K = TypeVar("K")
_Anchor = tuple[str, tuple[str, ...] | None]  # (key, values) or (key, None) for has(key)


@dataclass(slots=True)
class _Item:
    own: dict[str, str]
    parent_ids: tuple[Hashable, ...]
    labels: dict[str, str]
    matches: set[Hashable] = field(default_factory=set)


def _discard(index: dict[K, set[Hashable]], key: K, member: Hashable) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[key]


def _anchor_terms(root: Node) -> list[_Anchor]:
    terms = root.operands if isinstance(root, AndNode) else (root,)
    out: list[_Anchor] = []
    for term in terms:
        if isinstance(term, CompareNode) and term.op is CompareOp.EQ:
            out.append((term.label, (term.value,)))
        elif isinstance(term, InSetNode) and not term.negated:
            out.append((term.label, tuple(term.values)))
        elif isinstance(term, HasNode):
            out.append((term.label, None))
    return out


class AnchoredLabelIndex:
    """See the module docstring."""

    def __init__(
        self, on_match_started: MatchCallback = ignore_match, on_match_stopped: MatchCallback = ignore_match
    ) -> None:
        self._on_match_started = on_match_started
        self._on_match_stopped = on_match_stopped
        self._selectors: dict[Hashable, Selector] = {}
        self._anchors: dict[Hashable, _Anchor | None] = {}
        self._by_pair: dict[_Pair, set[Hashable]] = {}
        self._by_key: dict[str, set[Hashable]] = {}  # has(key) anchors
        self._unanchored: set[Hashable] = set()
        self._matches: dict[Hashable, set[Hashable]] = {}
        self._items: dict[Hashable, _Item] = {}
        self._items_by_pair: dict[_Pair, set[Hashable]] = {}
        self._items_by_key: dict[str, set[Hashable]] = {}
        self._parent_labels: dict[Hashable, dict[str, str]] = {}
        self._parent_children: dict[Hashable, set[Hashable]] = {}

    # -- selectors --------------------------------------------------------------------------------------
    def _candidates(self, anchor: _Anchor) -> set[Hashable]:
        key, values = anchor
        if values is None:
            return self._items_by_key.get(key, set())
        if len(values) == 1:
            return self._items_by_pair.get((key, values[0]), set())
        out: set[Hashable] = set()
        for value in values:
            out |= self._items_by_pair.get((key, value), set())
        return out

    def _choose_anchor(self, sel: Selector) -> _Anchor | None:
        best: _Anchor | None = None
        best_size = -1
        for anchor in _anchor_terms(sel.root):
            size = len(self._candidates(anchor))
            if best is None or size < best_size:
                best, best_size = anchor, size
        return best

    def _register(self, sel_id: Hashable, anchor: _Anchor | None) -> None:
        self._anchors[sel_id] = anchor
        if anchor is None:
            self._unanchored.add(sel_id)
            return
        key, values = anchor
        if values is None:
            self._by_key.setdefault(key, set()).add(sel_id)
        else:
            for value in values:
                self._by_pair.setdefault((key, value), set()).add(sel_id)

    def _unregister(self, sel_id: Hashable) -> None:
        anchor = self._anchors.pop(sel_id, None)
        if anchor is None:
            self._unanchored.discard(sel_id)
            return
        key, values = anchor
        if values is None:
            _discard(self._by_key, key, sel_id)
        else:
            for value in values:
                _discard(self._by_pair, (key, value), sel_id)

    def update_selector(self, sel_id: Hashable, sel: Selector) -> None:
        old = self._selectors.get(sel_id)
        if old == sel:
            return
        if old is not None:
            self._unregister(sel_id)
        self._selectors[sel_id] = sel
        anchor = self._choose_anchor(sel)
        self._register(sel_id, anchor)
        candidates = self._candidates(anchor) if anchor is not None else self._items.keys()
        items = self._items
        now = {item_id for item_id in candidates if sel.evaluate(items[item_id].labels)}
        before = self._matches.get(sel_id, set())
        self._matches[sel_id] = now
        stopped, started = before - now, now - before
        for item_id in stopped:
            items[item_id].matches.discard(sel_id)
        for item_id in started:
            items[item_id].matches.add(sel_id)
        self._emit([(sel_id, i) for i in stopped], [(sel_id, i) for i in started])

    def remove_selector(self, sel_id: Hashable) -> None:
        if self._selectors.pop(sel_id, None) is None:
            return
        self._unregister(sel_id)
        before = self._matches.pop(sel_id, set())
        for item_id in before:
            self._items[item_id].matches.discard(sel_id)
        self._emit([(sel_id, i) for i in before], [])

    # -- items --------------------------------------------------------------------------------------------
    def _index_item(self, item_id: Hashable, labels: Mapping[str, str], add: bool) -> None:
        for key, value in labels.items():
            if add:
                self._items_by_pair.setdefault((key, value), set()).add(item_id)
                self._items_by_key.setdefault(key, set()).add(item_id)
            else:
                _discard(self._items_by_pair, (key, value), item_id)
                _discard(self._items_by_key, key, item_id)

    def _selectors_for(self, labels: Iterable[Mapping[str, str]]) -> set[Hashable]:
        out = set(self._unanchored)
        for lab in labels:
            for key, value in lab.items():
                out |= self._by_pair.get((key, value), set())
                out |= self._by_key.get(key, set())
        return out

    def update_labels(
        self, item_id: Hashable, labels: Mapping[str, str], parent_ids: Sequence[Hashable] = ()
    ) -> None:
        own, parents = dict(labels), tuple(parent_ids)
        item = self._items.get(item_id)
        if item is None:
            self._add_item(item_id, own, parents)
            return
        if parents != item.parent_ids:
            for parent_id in set(item.parent_ids) - set(parents):
                children = self._parent_children[parent_id]
                children.discard(item_id)
                if not children:
                    del self._parent_children[parent_id]
            for parent_id in set(parents) - set(item.parent_ids):
                self._parent_children.setdefault(parent_id, set()).add(item_id)
            item.parent_ids = parents
        item.own = own
        self._emit(*self._relabel(item_id, item))

    def remove_labels(self, item_id: Hashable) -> None:
        item = self._items.pop(item_id, None)
        if item is None:
            return
        for parent_id in set(item.parent_ids):
            children = self._parent_children[parent_id]
            children.discard(item_id)
            if not children:
                del self._parent_children[parent_id]
        self._index_item(item_id, item.labels, add=False)
        for sel_id in item.matches:
            self._matches[sel_id].discard(item_id)
        self._emit([(sel_id, item_id) for sel_id in item.matches], [])

    def _add_item(self, item_id: Hashable, own: dict[str, str], parents: tuple[Hashable, ...]) -> None:
        labels = effective_labels(own, parents, self._parent_labels)
        item = _Item(own, parents, labels)
        self._items[item_id] = item
        for parent_id in set(parents):
            self._parent_children.setdefault(parent_id, set()).add(item_id)
        self._index_item(item_id, labels, add=True)
        selectors = self._selectors
        item.matches = {s for s in self._selectors_for([labels]) if selectors[s].evaluate(labels)}
        for sel_id in item.matches:
            self._matches[sel_id].add(item_id)
        self._emit([], [(sel_id, item_id) for sel_id in item.matches])

    def _relabel(
        self, item_id: Hashable, item: _Item
    ) -> tuple[list[tuple[Hashable, Hashable]], list[tuple[Hashable, Hashable]]]:
        old = item.labels
        new = effective_labels(item.own, item.parent_ids, self._parent_labels)
        changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        item.labels = new
        if not changed:
            return [], []
        self._index_item(item_id, old, add=False)
        self._index_item(item_id, new, add=True)
        stopped: list[tuple[Hashable, Hashable]] = []
        started: list[tuple[Hashable, Hashable]] = []
        for sel_id in self._selectors_for([old, new]):
            sel = self._selectors[sel_id]
            if not (sel.labels_used() & changed):
                continue
            now = sel.evaluate(new)
            if now == (sel_id in item.matches):
                continue
            if now:
                item.matches.add(sel_id)
                self._matches[sel_id].add(item_id)
                started.append((sel_id, item_id))
            else:
                item.matches.discard(sel_id)
                self._matches[sel_id].discard(item_id)
                stopped.append((sel_id, item_id))
        return stopped, started

    # -- parents ----------------------------------------------------------------------------------------
    def update_parent_labels(self, parent_id: Hashable, labels: Mapping[str, str]) -> None:
        self._set_parent_labels(parent_id, dict(labels))

    def remove_parent_labels(self, parent_id: Hashable) -> None:
        self._set_parent_labels(parent_id, None)

    def _set_parent_labels(self, parent_id: Hashable, labels: dict[str, str] | None) -> None:
        if labels is None:
            if self._parent_labels.pop(parent_id, None) is None:
                return
        else:
            if self._parent_labels.get(parent_id) == labels:
                return
            self._parent_labels[parent_id] = labels
        stopped: list[tuple[Hashable, Hashable]] = []
        started: list[tuple[Hashable, Hashable]] = []
        for item_id in self._parent_children.get(parent_id, ()):
            child_stopped, child_started = self._relabel(item_id, self._items[item_id])
            stopped += child_stopped
            started += child_started
        self._emit(stopped, started)

    # -- reads and plumbing ---------------------------------------------------------------------------------
    def matches(self, sel_id: Hashable) -> frozenset[Hashable]:
        return frozenset(self._matches.get(sel_id, ()))

    def selectors_matching(self, item_id: Hashable) -> frozenset[Hashable]:
        item = self._items.get(item_id)
        return frozenset(item.matches) if item is not None else frozenset()

    def _emit(
        self, stopped: list[tuple[Hashable, Hashable]], started: list[tuple[Hashable, Hashable]]
    ) -> None:
        for sel_id, item_id in stopped:
            self._on_match_stopped(sel_id, item_id)
        for sel_id, item_id in started:
            self._on_match_started(sel_id, item_id)
