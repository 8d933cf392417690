"""`AnchoredLabelIndex`: the label index for many selectors over many items (policy at scale).

Contract: `label_index.api` (checked against the linear-scan oracle
`tortie.testing.naive_label_index` by the same state-machine test as `LabelIndex`); shared
machinery: `label_index.base`.

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

"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

from tortie.selector.label_index.api import MatchCallback, ignore_match
from tortie.selector.label_index.base import IndexBase
from tortie.selector.nodes import AndNode, CompareNode, CompareOp, HasNode, InSetNode, Node
from tortie.selector.selector import Selector

_Pair = tuple[str, str]
K = TypeVar("K")
_Anchor = tuple[str, tuple[str, ...] | None]  # (key, values) or (key, None) for has(key)


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


class AnchoredLabelIndex(IndexBase):
    """See the module docstring."""

    def __init__(
        self, on_match_started: MatchCallback = ignore_match, on_match_stopped: MatchCallback = ignore_match
    ) -> None:
        super().__init__(on_match_started, on_match_stopped)
        self._anchors: dict[Hashable, _Anchor | None] = {}
        self._by_pair: dict[_Pair, set[Hashable]] = {}
        self._by_key: dict[str, set[Hashable]] = {}  # has(key) anchors
        self._unanchored: set[Hashable] = set()
        self._items_by_pair: dict[_Pair, set[Hashable]] = {}
        self._items_by_key: dict[str, set[Hashable]] = {}

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

    def _register(self, sel_id: Hashable, sel: Selector) -> set[Hashable]:
        anchor = self._choose_anchor(sel)
        self._anchors[sel_id] = anchor
        if anchor is None:
            self._unanchored.add(sel_id)
        else:
            key, values = anchor
            if values is None:
                self._by_key.setdefault(key, set()).add(sel_id)
            else:
                for value in values:
                    self._by_pair.setdefault((key, value), set()).add(sel_id)
        candidates = self._candidates(anchor) if anchor is not None else self._items.keys()
        items = self._items
        return {item_id for item_id in candidates if sel.evaluate(items[item_id].labels)}

    def _unregister(self, sel_id: Hashable, sel: Selector) -> None:
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

    # -- items --------------------------------------------------------------------------------------------
    def _index_item(self, item_id: Hashable, labels: Mapping[str, str]) -> None:
        for key, value in labels.items():
            self._items_by_pair.setdefault((key, value), set()).add(item_id)
            self._items_by_key.setdefault(key, set()).add(item_id)

    def _unindex_item(self, item_id: Hashable, labels: Mapping[str, str]) -> None:
        for key, value in labels.items():
            _discard(self._items_by_pair, (key, value), item_id)
            _discard(self._items_by_key, key, item_id)

    def _selectors_for(self, labels: Iterable[Mapping[str, str]]) -> set[Hashable]:
        out = set(self._unanchored)
        for lab in labels:
            for key, value in lab.items():
                out |= self._by_pair.get((key, value), set())
                out |= self._by_key.get(key, set())
        return out

    def _new_item_matches(self, labels: Mapping[str, str]) -> set[Hashable]:
        selectors = self._selectors
        return {s for s in self._selectors_for([labels]) if selectors[s].evaluate(labels)}

    def _recheck(self, old: Mapping[str, str], new: Mapping[str, str], changed: set[str]) -> list[Hashable]:
        selectors = self._selectors
        return [s for s in self._selectors_for([old, new]) if selectors[s].labels_used() & changed]
