"""The contract every label index variant keeps, and its linear-scan oracle `NaiveLabelIndex` too.

A label index holds selectors (by `sel_id`) and labelled items (by `item_id`, e.g. endpoints and
network sets) and reports every change of the relation "selector matches item" through two
callbacks given at construction: `on_match_started(sel_id, item_id)` and
`on_match_stopped(sel_id, item_id)`.

Label inheritance: an item may name parents (profiles) whose labels (`labelsToApply`) it inherits.
The item's effective labels are, from weakest to strongest: the parents' labels, later-listed
parents first so that the FIRST listed parent wins a conflict between parents, then the item's own
labels, which win over every parent (Calico: "endpoint's own label wins on conflict"). A parent with
no labels known yet contributes nothing; parents do not create items.

Contract of every mutating call:

* exactly the real transitions are reported: no start for a pair that already matched, no stop for
  a pair that did not, nothing at all for a no-op update;
* all stops of one call are reported before its starts; order within each group is unspecified;
* the index is consistent before the first callback runs; callbacks must not call back into the
  index (they may read `matches`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Protocol

from tortie.selector.selector import Selector

MatchCallback = Callable[[Hashable, Hashable], None]


def ignore_match(sel_id: Hashable, item_id: Hashable) -> None:
    """The default callback: do nothing."""


def effective_labels(
    own: Mapping[str, str],
    parent_ids: Iterable[Hashable],
    parent_labels: Mapping[Hashable, Mapping[str, str]],
) -> dict[str, str]:
    """The labels an item is matched on: parents' labels (first listed wins), then its own on top."""
    merged: dict[str, str] = {}
    for parent_id in reversed(list(parent_ids)):
        inherited = parent_labels.get(parent_id)
        if inherited:
            merged.update(inherited)
    merged.update(own)
    return merged


class SelectorLabelIndex(Protocol):
    """What every label index offers (see the module docstring for the contract)."""

    def update_selector(self, sel_id: Hashable, sel: Selector) -> None: ...

    def remove_selector(self, sel_id: Hashable) -> None: ...

    def update_labels(
        self, item_id: Hashable, labels: Mapping[str, str], parent_ids: Sequence[Hashable] = ()
    ) -> None: ...

    def remove_labels(self, item_id: Hashable) -> None: ...

    def update_parent_labels(self, parent_id: Hashable, labels: Mapping[str, str]) -> None: ...

    def remove_parent_labels(self, parent_id: Hashable) -> None: ...

    def matches(self, sel_id: Hashable) -> frozenset[Hashable]: ...
