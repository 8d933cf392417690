"""What every label index variant shares: items, parents, the match relation and its callbacks.

`IndexBase` keeps the state the contract in `api` talks about (selectors, items with their own
labels, parents and effective labels, parents' labels, the match relation both ways) and implements
every public call. A variant decides only *which* selectors and items a change must be evaluated
against, through these hooks:

* `_register(sel_id, sel)` indexes a new or changed selector and returns the items it matches now;
  `_unregister(sel_id, sel)` forgets its indexing;
* `_index_item(item_id, labels)` / `_unindex_item(item_id, labels)` add / drop an item's labels
  (`_reindex_item(item_id, old, new)` does both; a variant may do it more cheaply);
* `_new_item_matches(labels)` returns the selectors true for a new item's labels;
* `_recheck(old, new, changed)` returns the selectors whose result may differ after an item's
  effective labels changed from `old` to `new` (`changed`: the keys whose value differs).

Invariant after every call: `_matches[s]` == {i : selector s true for i's effective labels} and
`_Item.matches` is its transpose; callbacks run only once it holds (stops before starts).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tortie.selector.label_index.api import MatchCallback, effective_labels, ignore_match
from tortie.selector.selector import Selector

Pair = tuple[Hashable, Hashable]  # (sel_id, item_id)


@dataclass(slots=True)
class Item:
    own: dict[str, str]
    parent_ids: tuple[Hashable, ...]
    labels: dict[str, str]  # effective: inherited + own
    matches: set[Hashable] = field(default_factory=set)


class IndexBase(ABC):
    """The shared half of a label index (see the module docstring); not usable on its own."""

    def __init__(
        self, on_match_started: MatchCallback = ignore_match, on_match_stopped: MatchCallback = ignore_match
    ) -> None:
        self._on_match_started = on_match_started
        self._on_match_stopped = on_match_stopped
        self._selectors: dict[Hashable, Selector] = {}
        self._matches: dict[Hashable, set[Hashable]] = {}
        self._items: dict[Hashable, Item] = {}
        self._parent_labels: dict[Hashable, dict[str, str]] = {}
        self._parent_children: dict[Hashable, set[Hashable]] = {}

    # ----------------------------------------------------------------- hooks of a variant

    @abstractmethod
    def _register(self, sel_id: Hashable, sel: Selector) -> set[Hashable]: ...

    @abstractmethod
    def _unregister(self, sel_id: Hashable, sel: Selector) -> None: ...

    @abstractmethod
    def _index_item(self, item_id: Hashable, labels: Mapping[str, str]) -> None: ...

    @abstractmethod
    def _unindex_item(self, item_id: Hashable, labels: Mapping[str, str]) -> None: ...

    def _reindex_item(self, item_id: Hashable, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        self._unindex_item(item_id, old)
        self._index_item(item_id, new)

    @abstractmethod
    def _new_item_matches(self, labels: Mapping[str, str]) -> set[Hashable]: ...

    @abstractmethod
    def _recheck(
        self, old: Mapping[str, str], new: Mapping[str, str], changed: set[str]
    ) -> Iterable[Hashable]: ...

    # ----------------------------------------------------------------- selectors

    def update_selector(self, sel_id: Hashable, sel: Selector) -> None:
        old = self._selectors.get(sel_id)
        if old == sel:
            return
        if old is not None:
            self._unregister(sel_id, old)
        self._selectors[sel_id] = sel
        now = self._register(sel_id, sel)
        before = self._matches.get(sel_id, set())
        self._matches[sel_id] = now
        stopped, started = before - now, now - before
        items = self._items
        for item_id in stopped:
            items[item_id].matches.discard(sel_id)
        for item_id in started:
            items[item_id].matches.add(sel_id)
        self._emit([(sel_id, i) for i in stopped], [(sel_id, i) for i in started])

    def remove_selector(self, sel_id: Hashable) -> None:
        old = self._selectors.pop(sel_id, None)
        if old is None:
            return
        self._unregister(sel_id, old)
        before = self._matches.pop(sel_id, set())
        for item_id in before:
            self._items[item_id].matches.discard(sel_id)
        self._emit([(sel_id, i) for i in before], [])

    # --------------------------------------------------------------------- items

    def update_labels(
        self, item_id: Hashable, labels: Mapping[str, str], parent_ids: Sequence[Hashable] = ()
    ) -> None:
        own, parents = dict(labels), tuple(parent_ids)
        item = self._items.get(item_id)
        if item is None:
            self._add_item(item_id, own, parents)
            return
        if parents != item.parent_ids:
            self._unlink_parents(item_id, set(item.parent_ids) - set(parents))
            for parent_id in set(parents) - set(item.parent_ids):
                self._parent_children.setdefault(parent_id, set()).add(item_id)
            item.parent_ids = parents
        item.own = own
        self._emit(*self._relabel(item_id, item))

    def remove_labels(self, item_id: Hashable) -> None:
        item = self._items.pop(item_id, None)
        if item is None:
            return
        self._unlink_parents(item_id, set(item.parent_ids))
        self._unindex_item(item_id, item.labels)
        for sel_id in item.matches:
            self._matches[sel_id].discard(item_id)
        self._emit([(sel_id, item_id) for sel_id in item.matches], [])

    def _unlink_parents(self, item_id: Hashable, parent_ids: Iterable[Hashable]) -> None:
        for parent_id in parent_ids:
            children = self._parent_children[parent_id]
            children.discard(item_id)
            if not children:
                del self._parent_children[parent_id]

    def _add_item(self, item_id: Hashable, own: dict[str, str], parents: tuple[Hashable, ...]) -> None:
        labels = effective_labels(own, parents, self._parent_labels)
        item = Item(own, parents, labels)
        self._items[item_id] = item
        for parent_id in set(parents):
            self._parent_children.setdefault(parent_id, set()).add(item_id)
        self._index_item(item_id, labels)
        item.matches = self._new_item_matches(labels)
        for sel_id in item.matches:
            self._matches[sel_id].add(item_id)
        self._emit([], [(sel_id, item_id) for sel_id in item.matches])

    def _relabel(self, item_id: Hashable, item: Item) -> tuple[list[Pair], list[Pair]]:
        """Recompute `item`'s effective labels and re-evaluate the selectors the variant names.

        Returns the (stopped, started) pairs for the caller to emit once the index is consistent."""
        old = item.labels
        new = effective_labels(item.own, item.parent_ids, self._parent_labels)
        changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
        item.labels = new
        if not changed:
            return [], []
        self._reindex_item(item_id, old, new)
        stopped: list[Pair] = []
        started: list[Pair] = []
        for sel_id in self._recheck(old, new, changed):
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
        stopped: list[Pair] = []
        started: list[Pair] = []
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

    def _emit(self, stopped: list[Pair], started: list[Pair]) -> None:
        for sel_id, item_id in stopped:
            self._on_match_stopped(sel_id, item_id)
        for sel_id, item_id in started:
            self._on_match_started(sel_id, item_id)
