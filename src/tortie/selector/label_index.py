"""`LabelIndex`: incremental "which selectors match which labelled items" for the policy engine.

Input: selector and item (endpoint, network set) updates, plus parent (profile) labels that items
inherit. Output: `on_match_started(sel_id, item_id)` / `on_match_stopped(sel_id, item_id)` for every
real change of the match relation, and `matches(sel_id)`. The full contract (inheritance order,
callback order, no-op updates) is in `label_index_api`; `NaiveLabelIndex` is its linear-scan oracle.

How it avoids rescanning:

* a selector's result depends only on the labels it mentions (`Selector.labels_used`), so when an
  item's effective labels change, only selectors indexed under a changed key are re-evaluated;
* a selector evaluated against an item that has none of its keys gives the same result as against
  `{}`; `_empty_matchers` holds the selectors true for `{}` (`all()`, `!has(a)`, `a != "x"`, ...).
  A new item therefore matches `_empty_matchers` minus those sharing a key with it, plus whichever
  of those sharing a key evaluate true; selectors that mention no label at all need no evaluation;
* symmetrically, a new or changed selector is evaluated only against items that carry one of its
  keys (`_items_by_key`); every other item matches iff the selector matches `{}`.

Invariant after every call: `_matches[s]` == {i : selector s true for i's effective labels} and
`_item_matches` is its transpose.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tortie.selector.label_index_api import MatchCallback, effective_labels, ignore_match
from tortie.selector.naive_label_index import NaiveLabelIndex
from tortie.selector.selector import Selector

__all__ = ["LabelIndex", "NaiveLabelIndex"]

_log = logging.getLogger(__name__)

_Pair = tuple[Hashable, Hashable]  # (sel_id, item_id)


@dataclass(slots=True)
class _Item:
    own: dict[str, str]
    parent_ids: tuple[Hashable, ...]
    labels: dict[str, str]  # effective: inherited + own
    matches: set[Hashable] = field(default_factory=set)


def _add_to(index: dict[str, set[Hashable]], keys: Iterable[str], member: Hashable) -> None:
    for key in keys:
        index.setdefault(key, set()).add(member)


def _discard_from(index: dict[str, set[Hashable]], keys: Iterable[str], member: Hashable) -> None:
    for key in keys:
        members = index.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del index[key]


class LabelIndex:
    """Incremental selector x item match index (see module docstring)."""

    def __init__(
        self, on_match_started: MatchCallback = ignore_match, on_match_stopped: MatchCallback = ignore_match
    ) -> None:
        self._on_match_started = on_match_started
        self._on_match_stopped = on_match_stopped
        self._selectors: dict[Hashable, Selector] = {}
        self._selectors_by_key: dict[str, set[Hashable]] = {}
        self._empty_matchers: set[Hashable] = set()
        self._matches: dict[Hashable, set[Hashable]] = {}
        self._items: dict[Hashable, _Item] = {}
        self._items_by_key: dict[str, set[Hashable]] = {}
        self._parent_labels: dict[Hashable, dict[str, str]] = {}
        self._parent_children: dict[Hashable, set[Hashable]] = {}

    # ----------------------------------------------------------------- selectors

    def update_selector(self, sel_id: Hashable, sel: Selector) -> None:
        old = self._selectors.get(sel_id)
        if old == sel:
            return
        if old is not None:
            self._unindex_selector(sel_id, old)
        self._selectors[sel_id] = sel
        keys = sel.labels_used()
        _add_to(self._selectors_by_key, keys, sel_id)
        matches_empty = sel.evaluate({})
        if matches_empty:
            self._empty_matchers.add(sel_id)

        candidates: set[Hashable] = set()
        for key in keys:
            candidates.update(self._items_by_key.get(key, ()))
        items = self._items
        now = {item_id for item_id in candidates if sel.evaluate(items[item_id].labels)}
        if matches_empty:
            now.update(item_id for item_id in items if item_id not in candidates)
        before = self._matches.get(sel_id, set())
        self._matches[sel_id] = now
        stopped = before - now
        started = now - before
        for item_id in stopped:
            items[item_id].matches.discard(sel_id)
        for item_id in started:
            items[item_id].matches.add(sel_id)
        self._emit([(sel_id, item_id) for item_id in stopped], [(sel_id, item_id) for item_id in started])

    def remove_selector(self, sel_id: Hashable) -> None:
        old = self._selectors.pop(sel_id, None)
        if old is None:
            return
        self._unindex_selector(sel_id, old)
        before = self._matches.pop(sel_id, set())
        for item_id in before:
            self._items[item_id].matches.discard(sel_id)
        self._emit([(sel_id, item_id) for item_id in before], [])

    def _unindex_selector(self, sel_id: Hashable, sel: Selector) -> None:
        _discard_from(self._selectors_by_key, sel.labels_used(), sel_id)
        self._empty_matchers.discard(sel_id)

    # --------------------------------------------------------------------- items

    def update_labels(
        self, item_id: Hashable, labels: Mapping[str, str], parent_ids: Sequence[Hashable] = ()
    ) -> None:
        own = dict(labels)
        parents = tuple(parent_ids)
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
        _discard_from(self._items_by_key, item.labels, item_id)
        for sel_id in item.matches:
            self._matches[sel_id].discard(item_id)
        self._emit([(sel_id, item_id) for sel_id in item.matches], [])

    def _add_item(self, item_id: Hashable, own: dict[str, str], parents: tuple[Hashable, ...]) -> None:
        labels = effective_labels(own, parents, self._parent_labels)
        item = _Item(own=own, parent_ids=parents, labels=labels)
        self._items[item_id] = item
        for parent_id in set(parents):
            self._parent_children.setdefault(parent_id, set()).add(item_id)
        _add_to(self._items_by_key, labels, item_id)

        sharing_a_key: set[Hashable] = set()
        for key in labels:
            sharing_a_key.update(self._selectors_by_key.get(key, ()))
        selectors = self._selectors
        item.matches = {sel_id for sel_id in sharing_a_key if selectors[sel_id].evaluate(labels)}
        item.matches.update(sel_id for sel_id in self._empty_matchers if sel_id not in sharing_a_key)
        for sel_id in item.matches:
            self._matches[sel_id].add(item_id)
        self._emit([], [(sel_id, item_id) for sel_id in item.matches])

    def _relabel(self, item_id: Hashable, item: _Item) -> tuple[list[_Pair], list[_Pair]]:
        """Recompute `item`'s effective labels and re-evaluate the selectors that use a changed key.

        Returns the (stopped, started) pairs for the caller to emit once the index is consistent.
        """
        old = item.labels
        new = effective_labels(item.own, item.parent_ids, self._parent_labels)
        stopped: list[_Pair] = []
        started: list[_Pair] = []
        changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
        if not changed:
            item.labels = new
            return stopped, started
        _discard_from(self._items_by_key, old.keys() - new.keys(), item_id)
        _add_to(self._items_by_key, new.keys() - old.keys(), item_id)
        item.labels = new

        affected: set[Hashable] = set()
        for key in changed:
            affected.update(self._selectors_by_key.get(key, ()))
        for sel_id in affected:
            now = self._selectors[sel_id].evaluate(new)
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

    # ------------------------------------------------------------------- parents

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
        stopped: list[_Pair] = []
        started: list[_Pair] = []
        for item_id in self._parent_children.get(parent_id, ()):
            child_stopped, child_started = self._relabel(item_id, self._items[item_id])
            stopped += child_stopped
            started += child_started
        self._emit(stopped, started)

    # --------------------------------------------------------------------- reads

    def matches(self, sel_id: Hashable) -> frozenset[Hashable]:
        return frozenset(self._matches.get(sel_id, ()))

    def selectors_matching(self, item_id: Hashable) -> frozenset[Hashable]:
        """The ids of the selectors that currently match `item_id` (empty if unknown)."""
        item = self._items.get(item_id)
        return frozenset(item.matches) if item is not None else frozenset()

    # ------------------------------------------------------------------ plumbing

    def _emit(self, stopped: list[_Pair], started: list[_Pair]) -> None:
        if stopped or started:
            _log.debug("label index: %d match(es) stopped, %d started", len(stopped), len(started))
        for sel_id, item_id in stopped:
            self._on_match_stopped(sel_id, item_id)
        for sel_id, item_id in started:
            self._on_match_started(sel_id, item_id)
