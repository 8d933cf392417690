"""`NaiveLabelIndex`: the obviously-correct reference for every label index variant, used as a test
oracle by the Hypothesis state machines (tests/unit/selector).

Input/outputs and contract: exactly those of `tortie.selector.label_index.api` (same calls, same
callbacks).
How: it keeps only the raw state (selectors, items' own labels and parents, parents' labels) and,
after every call, recomputes the full match relation by evaluating every selector against every
item, then reports the difference from the previous relation. O(selectors x items) per call: for
tests and tiny deployments only.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from tortie.selector.label_index.api import MatchCallback, effective_labels, ignore_match
from tortie.selector.selector import Selector


class NaiveLabelIndex:
    """Linear-scan label index (see module docstring)."""

    def __init__(
        self, on_match_started: MatchCallback = ignore_match, on_match_stopped: MatchCallback = ignore_match
    ) -> None:
        self._on_match_started = on_match_started
        self._on_match_stopped = on_match_stopped
        self._selectors: dict[Hashable, Selector] = {}
        self._items: dict[Hashable, tuple[dict[str, str], tuple[Hashable, ...]]] = {}
        self._parent_labels: dict[Hashable, dict[str, str]] = {}
        self._pairs: set[tuple[Hashable, Hashable]] = set()

    def update_selector(self, sel_id: Hashable, sel: Selector) -> None:
        self._selectors[sel_id] = sel
        self._recompute()

    def remove_selector(self, sel_id: Hashable) -> None:
        self._selectors.pop(sel_id, None)
        self._recompute()

    def update_labels(
        self, item_id: Hashable, labels: Mapping[str, str], parent_ids: Sequence[Hashable] = ()
    ) -> None:
        self._items[item_id] = (dict(labels), tuple(parent_ids))
        self._recompute()

    def remove_labels(self, item_id: Hashable) -> None:
        self._items.pop(item_id, None)
        self._recompute()

    def update_parent_labels(self, parent_id: Hashable, labels: Mapping[str, str]) -> None:
        self._parent_labels[parent_id] = dict(labels)
        self._recompute()

    def remove_parent_labels(self, parent_id: Hashable) -> None:
        self._parent_labels.pop(parent_id, None)
        self._recompute()

    def matches(self, sel_id: Hashable) -> frozenset[Hashable]:
        return frozenset(item_id for (s, item_id) in self._pairs if s == sel_id)

    def _recompute(self) -> None:
        pairs: set[tuple[Hashable, Hashable]] = set()
        for item_id, (own, parent_ids) in self._items.items():
            labels = effective_labels(own, parent_ids, self._parent_labels)
            for sel_id, sel in self._selectors.items():
                if sel.evaluate(labels):
                    pairs.add((sel_id, item_id))
        stopped = self._pairs - pairs
        started = pairs - self._pairs
        self._pairs = pairs
        for sel_id, item_id in stopped:
            self._on_match_stopped(sel_id, item_id)
        for sel_id, item_id in started:
            self._on_match_started(sel_id, item_id)
