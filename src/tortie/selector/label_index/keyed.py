"""`LabelIndex`: the label index that narrows evaluation by the label *keys* a selector mentions.

Contract: `label_index.api`; shared machinery: `label_index.base`. Suits few selectors over items
with varied keys; for many namespace-scoped policy selectors use `AnchoredLabelIndex`.

How it avoids rescanning:

* a selector's result depends only on the labels it mentions (`Selector.labels_used`), so when an
  item's effective labels change, only selectors indexed under a changed key are re-evaluated;
* a selector evaluated against an item that has none of its keys gives the same result as against
  `{}`; `_empty_matchers` holds the selectors true for `{}` (`all()`, `!has(a)`, `a != "x"`, ...).
  A new item therefore matches `_empty_matchers` minus those sharing a key with it, plus whichever
  of those sharing a key evaluate true; selectors that mention no label at all need no evaluation;
* symmetrically, a new or changed selector is evaluated only against items that carry one of its
  keys (`_items_by_key`); every other item matches iff the selector matches `{}`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

from tortie.selector.label_index.api import MatchCallback, ignore_match
from tortie.selector.label_index.base import IndexBase
from tortie.selector.selector import Selector


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


class LabelIndex(IndexBase):
    """Incremental selector x item match index narrowed by label keys (see module docstring)."""

    def __init__(
        self, on_match_started: MatchCallback = ignore_match, on_match_stopped: MatchCallback = ignore_match
    ) -> None:
        super().__init__(on_match_started, on_match_stopped)
        self._selectors_by_key: dict[str, set[Hashable]] = {}
        self._empty_matchers: set[Hashable] = set()
        self._items_by_key: dict[str, set[Hashable]] = {}

    def _register(self, sel_id: Hashable, sel: Selector) -> set[Hashable]:
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
        return now

    def _unregister(self, sel_id: Hashable, sel: Selector) -> None:
        _discard_from(self._selectors_by_key, sel.labels_used(), sel_id)
        self._empty_matchers.discard(sel_id)

    def _index_item(self, item_id: Hashable, labels: Mapping[str, str]) -> None:
        _add_to(self._items_by_key, labels, item_id)

    def _unindex_item(self, item_id: Hashable, labels: Mapping[str, str]) -> None:
        _discard_from(self._items_by_key, labels, item_id)

    def _reindex_item(self, item_id: Hashable, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        _discard_from(self._items_by_key, old.keys() - new.keys(), item_id)
        _add_to(self._items_by_key, new.keys() - old.keys(), item_id)

    def _new_item_matches(self, labels: Mapping[str, str]) -> set[Hashable]:
        sharing_a_key: set[Hashable] = set()
        for key in labels:
            sharing_a_key.update(self._selectors_by_key.get(key, ()))
        selectors = self._selectors
        matches = {sel_id for sel_id in sharing_a_key if selectors[sel_id].evaluate(labels)}
        matches.update(sel_id for sel_id in self._empty_matchers if sel_id not in sharing_a_key)
        return matches

    def _recheck(self, old: Mapping[str, str], new: Mapping[str, str], changed: set[str]) -> set[Hashable]:
        affected: set[Hashable] = set()
        for key in changed:
            affected.update(self._selectors_by_key.get(key, ()))
        return affected
