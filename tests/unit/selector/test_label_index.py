"""Label index: scenarios run against both implementations, and a Hypothesis state machine showing
that `LabelIndex` reports exactly the transitions and match sets of the naive `NaiveLabelIndex`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tortie.selector import parse
from tortie.selector.label_index import LabelIndex
from tortie.testing.naive_label_index import NaiveLabelIndex

Event = tuple[str, Hashable, Hashable]


class Recorder:
    """Wraps an index; records callbacks as ("start"|"stop", sel_id, item_id), drained per call."""

    def __init__(self, cls: Any) -> None:
        self.events: list[Event] = []
        self.index: LabelIndex | NaiveLabelIndex = cls(
            on_match_started=lambda s, i: self.events.append(("start", s, i)),
            on_match_stopped=lambda s, i: self.events.append(("stop", s, i)),
        )

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def do(self, method: str, *args: Any) -> set[Event]:
        """Run one index call; check stops came before starts; return the events as a set."""
        getattr(self.index, method)(*args)
        events = self.take()
        kinds = [kind for kind, _, _ in events]
        assert kinds == sorted(kinds, key=lambda k: k == "start"), f"a stop after a start: {events}"
        assert len(set(events)) == len(events), f"duplicate events: {events}"
        return set(events)


IMPLEMENTATIONS = pytest.mark.parametrize("cls", [LabelIndex, NaiveLabelIndex], ids=["optimised", "naive"])


@IMPLEMENTATIONS
def test_selector_then_items(cls: Any) -> None:
    r = Recorder(cls)
    assert r.do("update_selector", "web", parse('app == "web"')) == set()
    assert r.do("update_labels", "ep1", {"app": "web"}) == {("start", "web", "ep1")}
    assert r.do("update_labels", "ep2", {"app": "db"}) == set()
    assert r.do("update_labels", "ep1", {"app": "web", "tier": "1"}) == set()  # no change in match
    assert r.do("update_labels", "ep2", {"app": "web"}) == {("start", "web", "ep2")}
    assert r.index.matches("web") == {"ep1", "ep2"}
    assert r.do("update_labels", "ep1", {}) == {("stop", "web", "ep1")}
    assert r.do("remove_labels", "ep2") == {("stop", "web", "ep2")}
    assert r.do("remove_labels", "ep2") == set()  # unknown item: nothing
    assert r.index.matches("web") == frozenset()
    assert r.index.matches("unknown") == frozenset()


@IMPLEMENTATIONS
def test_items_then_selectors(cls: Any) -> None:
    r = Recorder(cls)
    r.do("update_labels", "ep1", {"a": "1"})
    r.do("update_labels", "ep2", {"b": "1"})
    r.do("update_labels", "ep3", {})
    assert r.do("update_selector", "all", parse("")) == {("start", "all", e) for e in ("ep1", "ep2", "ep3")}
    assert r.do("update_selector", "not-a", parse("!has(a)")) == {
        ("start", "not-a", "ep2"),
        ("start", "not-a", "ep3"),
    }
    assert r.do("update_selector", "ne", parse('a != "1"')) == {
        ("start", "ne", "ep2"),
        ("start", "ne", "ep3"),
    }
    assert r.do("update_selector", "none", parse("!all()")) == set()
    # The same selector again (different spelling, equal canonical form): nothing to report.
    assert r.do("update_selector", "not-a", parse("!!!has( a )")) == set()
    # Changing a selector reports only the difference, stops first.
    assert r.do("update_selector", "not-a", parse("!has(b)")) == {
        ("stop", "not-a", "ep2"),
        ("start", "not-a", "ep1"),
    }
    assert r.do("remove_selector", "all") == {("stop", "all", e) for e in ("ep1", "ep2", "ep3")}
    assert r.do("remove_selector", "all") == set()
    assert r.index.matches("all") == frozenset()


@IMPLEMENTATIONS
def test_new_item_matches_negative_selectors(cls: Any) -> None:
    r = Recorder(cls)
    r.do("update_selector", "s1", parse('!has(a) && b not in {"x"}'))
    r.do("update_selector", "s2", parse('a == "1" || b == "x"'))
    r.do("update_selector", "s3", parse("global()"))
    assert r.do("update_labels", "e", {"c": "1"}) == {("start", "s1", "e"), ("start", "s3", "e")}
    assert r.do("update_labels", "e", {"b": "x"}) == {("stop", "s1", "e"), ("start", "s2", "e")}
    assert r.do("update_labels", "e", {"b": "x", "a": "1"}) == set()
    assert r.do("remove_labels", "e") == {("stop", "s2", "e"), ("stop", "s3", "e")}


@IMPLEMENTATIONS
def test_parent_labels_are_inherited_and_own_labels_win(cls: Any) -> None:
    r = Recorder(cls)
    r.do("update_selector", "dev", parse('env == "dev"'))
    r.do("update_selector", "prod", parse('env == "prod"'))
    # An item may name a parent before the parent's labels are known.
    assert r.do("update_labels", "ep", {"app": "web"}, ["p1", "p2"]) == set()
    assert r.do("update_parent_labels", "p2", {"env": "prod"}) == {("start", "prod", "ep")}
    # First listed parent wins over later parents.
    assert r.do("update_parent_labels", "p1", {"env": "dev"}) == {
        ("stop", "prod", "ep"),
        ("start", "dev", "ep"),
    }
    # The item's own label wins over every parent.
    assert r.do("update_labels", "ep", {"env": "prod"}, ["p1", "p2"]) == {
        ("stop", "dev", "ep"),
        ("start", "prod", "ep"),
    }
    assert r.do("update_labels", "ep", {}, ["p1", "p2"]) == {("stop", "prod", "ep"), ("start", "dev", "ep")}
    assert r.do("remove_parent_labels", "p1") == {("stop", "dev", "ep"), ("start", "prod", "ep")}
    assert r.do("remove_parent_labels", "p1") == set()
    assert r.do("update_parent_labels", "p2", {"env": "prod"}) == set()  # unchanged
    # Reordering / dropping parents takes effect.
    r.do("update_parent_labels", "p1", {"env": "dev"})
    assert r.do("update_labels", "ep", {}, ["p2", "p1"]) == {("stop", "dev", "ep"), ("start", "prod", "ep")}
    assert r.do("update_labels", "ep", {}, []) == {("stop", "prod", "ep")}
    assert r.do("update_parent_labels", "p2", {"env": "dev"}) == set()  # no longer a child


@IMPLEMENTATIONS
def test_parent_change_reaches_every_child(cls: Any) -> None:
    r = Recorder(cls)
    r.do("update_selector", "s", parse('team == "red"'))
    for n in range(5):
        r.do("update_labels", f"ep{n}", {"n": str(n)}, ["prof"])
    r.do("update_labels", "ep2", {"team": "blue"}, ["prof"])
    assert r.do("update_parent_labels", "prof", {"team": "red"}) == {
        ("start", "s", f"ep{n}") for n in (0, 1, 3, 4)
    }
    assert r.index.matches("s") == {"ep0", "ep1", "ep3", "ep4"}
    assert r.do("remove_labels", "ep0") == {("stop", "s", "ep0")}
    assert r.do("remove_parent_labels", "prof") == {("stop", "s", f"ep{n}") for n in (1, 3, 4)}


def test_optimised_index_answers_selectors_matching() -> None:
    index = LabelIndex()
    index.update_selector(1, parse("has(a)"))
    index.update_selector(2, parse("all()"))
    index.update_labels("x", {"a": ""})
    assert index.selectors_matching("x") == {1, 2}
    assert index.selectors_matching("nope") == frozenset()


# ------------------------------------------------------------------------ state machine

KEYS = ["a", "b", "c"]
VALUES = ["1", "2"]
LEAF_TEXTS = [
    "all()", "global()", "has(a)", "has(b)", 'a == "1"', 'a != "1"', 'b in {"1", "2"}', 'c not in {"2"}',
    'a contains "1"', 'b starts with "2"', 'c ends with "1"', "a in {}",
]  # fmt: skip


def _selector_texts() -> st.SearchStrategy[str]:
    def compound(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            children.map(lambda t: f"!({t})"),
            st.tuples(children, children).map(lambda p: f"({p[0]}) && ({p[1]})"),
            st.tuples(children, children).map(lambda p: f"({p[0]}) || ({p[1]})"),
        )

    return st.recursive(st.sampled_from(LEAF_TEXTS), compound, max_leaves=4)


SEL_IDS = st.sampled_from(["s0", "s1", "s2", "s3"])
ITEM_IDS = st.sampled_from(["i0", "i1", "i2", "i3", "i4"])
PARENT_IDS = st.sampled_from(["p0", "p1", "p2"])
LABELS = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)


class IndexAgreement(RuleBasedStateMachine):
    """Drive both indexes with the same calls; their per-call transitions and match sets must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.fast = Recorder(LabelIndex)
        self.naive = Recorder(NaiveLabelIndex)
        self.pairs: set[tuple[Hashable, Hashable]] = set()  # the relation as told by the fast index

    def both(self, method: str, *args: Any) -> None:
        fast = self.fast.do(method, *args)
        naive = self.naive.do(method, *args)
        assert fast == naive, f"{method}{args}: fast={sorted(fast)} naive={sorted(naive)}"
        for kind, sel_id, item_id in sorted(fast, key=lambda e: e[0] == "start"):
            if kind == "start":
                assert (sel_id, item_id) not in self.pairs, "start for a pair that already matched"
                self.pairs.add((sel_id, item_id))
            else:
                assert (sel_id, item_id) in self.pairs, "stop for a pair that did not match"
                self.pairs.remove((sel_id, item_id))

    @rule(sel_id=SEL_IDS, text=_selector_texts())
    def update_selector(self, sel_id: str, text: str) -> None:
        self.both("update_selector", sel_id, parse(text))

    @rule(sel_id=SEL_IDS)
    def remove_selector(self, sel_id: str) -> None:
        self.both("remove_selector", sel_id)

    @rule(item_id=ITEM_IDS, labels=LABELS, parents=st.lists(PARENT_IDS, max_size=3))
    def update_labels(self, item_id: str, labels: Mapping[str, str], parents: list[str]) -> None:
        self.both("update_labels", item_id, labels, parents)

    @rule(item_id=ITEM_IDS)
    def remove_labels(self, item_id: str) -> None:
        self.both("remove_labels", item_id)

    @rule(parent_id=PARENT_IDS, labels=LABELS)
    def update_parent_labels(self, parent_id: str, labels: Mapping[str, str]) -> None:
        self.both("update_parent_labels", parent_id, labels)

    @rule(parent_id=PARENT_IDS)
    def remove_parent_labels(self, parent_id: str) -> None:
        self.both("remove_parent_labels", parent_id)

    @invariant()
    def match_sets_agree(self) -> None:
        for sel_id in ("s0", "s1", "s2", "s3"):
            fast = self.fast.index.matches(sel_id)
            assert fast == self.naive.index.matches(sel_id)
            assert fast == {item for (s, item) in self.pairs if s == sel_id}


IndexAgreement.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_index_agrees_with_naive_oracle = IndexAgreement.TestCase
