"""`AnchoredLabelIndex` obeys the label index contract: the shared scenarios, and the same Hypothesis
state machine as `LabelIndex`, with the naive linear-scan index as the oracle."""

from __future__ import annotations

from typing import Any

import pytest
import test_label_index as base  # the shared scenarios and state machine (same directory)
from hypothesis import settings

from tortie.selector import parse
from tortie.selector.label_index import AnchoredLabelIndex


@pytest.mark.parametrize(
    "scenario",
    [
        base.test_selector_then_items,
        base.test_items_then_selectors,
        base.test_new_item_matches_negative_selectors,
        base.test_parent_labels_are_inherited_and_own_labels_win,
        base.test_parent_change_reaches_every_child,
    ],
    ids=lambda f: f.__name__,
)
def test_shared_scenarios(scenario: Any) -> None:
    scenario(AnchoredLabelIndex)


def test_anchor_limits_evaluation_to_items_holding_the_pair() -> None:
    index = AnchoredLabelIndex()
    for i in range(50):
        index.update_labels(f"e{i}", {"ns": "a" if i < 49 else "b", "role": "db" if i == 3 else "web"})
    sel = parse("ns == 'a' && role == 'db'")
    calls = 0
    original = sel.evaluate

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(sel, name)

        def evaluate(self, labels: Any) -> bool:
            nonlocal calls
            calls += 1
            return original(labels)

    index.update_selector("s", Counting())  # type: ignore[arg-type]
    assert index.matches("s") == {"e3"}
    assert calls == 1  # only the one item with role=db was evaluated


class AnchoredAgreement(base.IndexAgreement):
    def __init__(self) -> None:
        super().__init__()
        self.fast = base.Recorder(AnchoredLabelIndex)


AnchoredAgreement.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_anchored_index_agrees_with_naive_oracle = AnchoredAgreement.TestCase
