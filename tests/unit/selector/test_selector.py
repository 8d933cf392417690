"""Selector language: grammar, lexical edge cases, canonical text, errors, evaluation, properties.

Cases follow the Calico reference §2 (calico-reference.md). Hypothesis properties:
(1) random tree -> canonical text -> parse gives the same tree and the same text;
(2) evaluation of the parsed canonical text agrees with an independent tree-walking evaluator run on
the original (un-normalised) tree; (3) arbitrary text either parses or raises SelectorError.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tortie.common.errors import UserError
from tortie.selector import Selector, SelectorError, parse
from tortie.selector.nodes import (
    AllNode,
    AndNode,
    CompareNode,
    CompareOp,
    GlobalNode,
    HasNode,
    InSetNode,
    Node,
    NotNode,
    OrNode,
    normalize,
)

LABEL_512 = "l" * 512

# (text, canonical text)
VALID = [
    ("", "all()"),
    ("   \t  ", "all()"),
    ("all()", "all()"),
    ("all(  )", "all()"),
    ("global()", "global()"),
    ("  global(\t)  ", "global()"),
    ('a == "x"', 'a == "x"'),
    ('a=="x"', 'a == "x"'),
    ("a == 'x'", 'a == "x"'),
    ("a == ''", 'a == ""'),
    ("a == 'say \"hi\"'", "a == 'say \"hi\"'"),
    ('a == "it\'s"', 'a == "it\'s"'),
    ('a == "x && y || (z) {}"', 'a == "x && y || (z) {}"'),
    ('a == "ünï cödé"', 'a == "ünï cödé"'),
    ('a != "x"', 'a != "x"'),
    ('a!="x"', 'a != "x"'),
    ('a contains "x"', 'a contains "x"'),
    ('a starts with "x"', 'a starts with "x"'),
    ('a startswith "x"', 'a starts with "x"'),
    ('a starts \t  with"x"', 'a starts with "x"'),
    ('a ends with "x"', 'a ends with "x"'),
    ('a endswith "x"', 'a ends with "x"'),
    ('a ends\twith "x"', 'a ends with "x"'),
    ('a in {"b","a","b"}', 'a in {"a", "b"}'),
    ("a in {}", "a in {}"),
    ("a in{ }", "a in {}"),
    ('a in {"a",}', 'a in {"a"}'),
    ('a in { "a" , "b" , }', 'a in {"a", "b"}'),
    ("a in {'x\"y', \"x'y\"}", "a in {'x\"y', \"x'y\"}"),
    ('a not in {"a"}', 'a not in {"a"}'),
    ('a notin {"a"}', 'a not in {"a"}'),
    ('a not   in{"a"}', 'a not in {"a"}'),
    ("a not in {}", "a not in {}"),
    ("has(a)", "has(a)"),
    ("has( a )", "has(a)"),
    ("has(\ta\t)", "has(a)"),
    # keywords are labels unless "(" follows immediately; operator words are labels in label position
    ('has == "x"', 'has == "x"'),
    ('all == "x"', 'all == "x"'),
    ('global != "x"', 'global != "x"'),
    ('in == "x"', 'in == "x"'),
    ('not in {"a"}', 'not in {"a"}'),
    ("in in {}", "in in {}"),
    ('contains contains "x"', 'contains contains "x"'),
    ('hasx == "x"', 'hasx == "x"'),
    ('k8s.io/app-name_v1 == "x"', 'k8s.io/app-name_v1 == "x"'),
    ('123 == "x"', '123 == "x"'),
    ("has(projectcalico.org/namespace)", "has(projectcalico.org/namespace)"),
    (f"has({LABEL_512})", f"has({LABEL_512})"),
    # negation: parity; `!` goes directly before its operand (Calico's spelling)
    ("!has(a)", "!has(a)"),
    ("! has(a)", "!has(a)"),
    ("!!has(a)", "has(a)"),
    ("!!!has(a)", "!has(a)"),
    ("! ! has(a)", "has(a)"),
    ("!(!(has(a)))", "has(a)"),
    ('!a == "x"', '!a == "x"'),
    ('!(a == "x")', '!a == "x"'),
    ('!a in {"x"}', '!a in {"x"}'),
    ("!all()", "!all()"),
    ("!global()", "!global()"),
    ("!(has(a) || has(b))", "!(has(a) || has(b))"),
    ("!(has(a) && has(b))", "!(has(a) && has(b))"),
    # every && and || group is parenthesised; grouping written with parentheses is kept
    ("has(a)&&has(b)||has(c)", "((has(a) && has(b)) || has(c))"),
    ("has(a) || has(b) && has(c)", "(has(a) || (has(b) && has(c)))"),
    ("(has(a) || has(b)) && has(c)", "((has(a) || has(b)) && has(c))"),
    ("has(c) && (has(a) || has(b))", "(has(c) && (has(a) || has(b)))"),
    ("((has(a)))", "has(a)"),
    ("has(a) && has(b) && has(c)", "(has(a) && has(b) && has(c))"),
    ("(has(a) && has(b)) && has(c)", "((has(a) && has(b)) && has(c))"),
    ("has(a) && (has(b) && has(c))", "(has(a) && (has(b) && has(c)))"),
    ("(has(a) || has(b)) || (has(c))", "((has(a) || has(b)) || has(c))"),
    ("(has(a) && has(b)) || has(c)", "((has(a) && has(b)) || has(c))"),
    ("( has(a) )&&( all() )", "(has(a) && all())"),
    ("all() && global()", "(all() && global())"),
    ("app == 'web' && !has(quarantine)", '(app == "web" && !has(quarantine))'),
]


@pytest.mark.parametrize(("text", "canonical"), VALID)
def test_valid_selector_has_canonical_text(text: str, canonical: str) -> None:
    sel = parse(text)
    assert str(sel) == canonical
    again = parse(canonical)
    assert again == sel
    assert again.root == sel.root
    assert hash(again) == hash(sel)
    assert str(again) == canonical


def test_precedence_builds_expected_tree() -> None:
    a, b, c = (CompareNode(k, CompareOp.EQ, "1") for k in "abc")
    assert parse('a == "1" || b == "1" && c == "1"').root == OrNode((a, AndNode((b, c))))
    assert parse('(a == "1" || b == "1") && c == "1"').root == AndNode((OrNode((a, b)), c))
    assert parse('!a == "1" && b == "1"').root == AndNode((NotNode(a), b))
    assert parse('(a == "1" && b == "1") && c == "1"').root == AndNode((AndNode((a, b)), c))
    assert parse('a == "1" && (b == "1" && c == "1")').root == AndNode((a, AndNode((b, c))))
    assert parse('a in {"z", "y", "z"}').root == InSetNode("a", ("y", "z"))
    assert parse("a notin {}").root == InSetNode("a", (), negated=True)
    assert parse("has == 'x'").root == CompareNode("has", CompareOp.EQ, "x")


# (text, position, part of the reason)
INVALID = [
    ('app =~ "x"', 4, "expected '=='"),
    ('a = "x"', 2, "expected '=='"),
    ("a == ", 5, "expected a quoted string"),
    ("a ==", 4, "expected a quoted string"),
    ("a == b", 5, "expected a quoted string"),
    ("a", 1, "expected an operator"),
    ("a b", 2, "expected an operator"),
    ("has (x)", 4, "expected an operator"),
    ("has()", 4, "expected a label name inside has"),
    ("has(a", 5, "expected ')' to close has("),
    ("has(a b)", 6, "expected ')' to close has("),
    ("has(é)", 4, "expected a label name inside has"),
    ("all(x)", 4, "expected ')' after all("),
    ("global( x)", 8, "expected ')' after global("),
    ("global (", 7, "expected an operator"),
    ('a inx {"a"}', 2, "expected an operator"),
    ('a containsx "y"', 2, "expected an operator"),
    ('a starts "x"', 2, "expected an operator"),
    ('a ends  wit "x"', 2, "expected an operator"),
    ('a not "x"', 2, "expected an operator"),
    ('a startswithx "x"', 2, "expected an operator"),
    ('a ! "x"', 2, "expected '!='"),
    ('a in "a"', 5, "expected '{'"),
    ("a in", 4, "expected '{'"),
    ('a in {"a" "b"}', 10, "expected ',' or '}'"),
    ("a in {,}", 6, "expected a quoted string or '}'"),
    ('a in {"a",,}', 10, "expected a quoted string or '}'"),
    ('a in {"a"', 9, "expected ',' or '}'"),
    ("a in {", 6, "expected a quoted string or '}'"),
    ("a in {a}", 6, "expected a quoted string or '}'"),
    ('a == "x', 5, "unterminated string"),
    ("a == 'x", 5, "unterminated string"),
    ("a == 'x\"", 5, "unterminated string"),
    ('a in {"x}', 6, "unterminated string"),
    ('a == "x" & b == "y"', 9, "expected '&&'"),
    ('a == "x" | b == "y"', 9, "expected '||'"),
    ('a == "x" b == "y"', 9, "unexpected content at end of selector"),
    ('a == "x")', 8, "unexpected content at end of selector"),
    ("all()x", 5, "unexpected content at end of selector"),
    ("has(a)b", 6, "unexpected content at end of selector"),
    ('a in {"a"}}', 10, "unexpected content at end of selector"),
    ("all() all()", 6, "unexpected content at end of selector"),
    ('(a == "x"', 9, "expected ')' to close the '(' at position 0"),
    ('a == "x" && (b == "y"', 21, "expected ')' to close the '(' at position 12"),
    ("()", 1, "expected a label"),
    ("(", 1, "expected a label"),
    ("!", 1, "expected a label"),
    ("!=", 1, "expected a label"),
    (")", 0, "expected a label"),
    ('&& a == "x"', 0, "expected a label"),
    ('a == "x" &&', 11, "expected a label"),
    ('a == "x" ||', 11, "expected a label"),
    ('a == "x" && || b == "y"', 12, "expected a label"),
    ('"x" == a', 0, "expected a label"),
    ("\n", 0, "expected a label"),
    ('a\n== "x"', 1, "expected an operator"),
    ('a == "x"\n', 8, "unexpected content at end of selector"),
    ('a ==\r"x"', 4, "expected a quoted string"),
    ('é == "x"', 0, "expected a label"),
    ('aé == "x"', 1, "expected an operator"),
    (f'{LABEL_512}x == "x"', 0, "longer than 512"),
    (f'a == "x" || {LABEL_512}x == "x"', 12, "longer than 512"),
    ("(" * 101 + "has(a)" + ")" * 101, 100, "nested more than 100"),
]


@pytest.mark.parametrize(("text", "position", "reason"), INVALID)
def test_invalid_selector_reports_position(text: str, position: int, reason: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse(text)
    err = caught.value
    assert err.text == text
    assert err.position == position
    assert reason in err.reason
    assert f"at position {position}: " in str(err)


def test_error_message_points_at_the_failure() -> None:
    with pytest.raises(SelectorError) as caught:
        parse('app =~ "x"')
    first, caret = str(caught.value).split("\n")
    assert first.startswith("expected '==' ") and first.endswith(' at position 4: app =~ "x"')
    text_start = first.index('app =~ "x"')
    assert caret == " " * (text_start + 4) + "^"


def test_error_is_a_value_error_and_a_user_error_and_pickles() -> None:
    with pytest.raises(SelectorError) as caught:
        parse("a = 'b'")
    err = caught.value
    assert isinstance(err, ValueError)
    assert isinstance(err, UserError)
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.text, clone.position, clone.reason, str(clone)) == (err.text, 2, err.reason, str(err))


def test_control_characters_keep_the_caret_aligned() -> None:
    with pytest.raises(SelectorError) as caught:
        parse("a ==\t\x01")
    first, caret = str(caught.value).split("\n")
    assert caret.index("^") == first.index("a ==") + 5
    assert "\x01" not in first


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse(None)


# ------------------------------------------------------------------------------ evaluation

E: dict[str, str] = {}

# (selector, labels, expected)
TRUTH = [
    ("", E, True),
    ("all()", {"a": "x"}, True),
    ("global()", E, True),
    ("!all()", E, False),
    ('a == "x"', E, False),
    ('a == "x"', {"a": "x"}, True),
    ('a == "x"', {"a": "y"}, False),
    ('a == "x"', {"a": ""}, False),
    ('a == "x"', {"b": "x"}, False),
    ('a == ""', {"a": ""}, True),
    ('a == ""', E, False),
    ('a != "x"', E, True),
    ('a != "x"', {"a": "x"}, False),
    ('a != "x"', {"a": "y"}, True),
    ('a != ""', {"a": ""}, False),
    ('a in {"x", "y"}', E, False),
    ('a in {"x", "y"}', {"a": "x"}, True),
    ('a in {"x", "y"}', {"a": "y"}, True),
    ('a in {"x", "y"}', {"a": "z"}, False),
    ("a in {}", {"a": ""}, False),
    ("a in {}", E, False),
    ('a not in {"x"}', E, True),
    ('a not in {"x"}', {"a": "x"}, False),
    ('a not in {"x"}', {"a": "z"}, True),
    ("a not in {}", E, True),
    ("a not in {}", {"a": "x"}, True),
    ("has(a)", E, False),
    ("has(a)", {"a": ""}, True),
    ("has(a)", {"b": "a"}, False),
    ("!has(a)", E, True),
    ("!has(a)", {"a": ""}, False),
    ('a contains "y"', {"a": "xyz"}, True),
    ('a contains "y"', {"a": "xz"}, False),
    ('a contains "y"', E, False),
    ('a contains ""', {"a": ""}, True),
    ('a contains ""', E, False),
    ('a starts with "x"', {"a": "xy"}, True),
    ('a starts with "x"', {"a": "yx"}, False),
    ('a starts with "x"', E, False),
    ('a ends with "x"', {"a": "yx"}, True),
    ('a ends with "x"', {"a": "xy"}, False),
    ('a ends with "x"', E, False),
    ('!(a == "x")', E, True),
    ('!(a == "x")', {"a": "x"}, False),
    ('a == "x" && b == "y"', {"a": "x", "b": "y"}, True),
    ('a == "x" && b == "y"', {"a": "x"}, False),
    ('a == "x" || b == "y"', {"b": "y"}, True),
    ('a == "x" || b == "y"', E, False),
    ('a == "1" || b == "2" && c == "3"', {"a": "1"}, True),
    ('a == "1" || b == "2" && c == "3"', {"b": "2"}, False),
    ('a == "1" || b == "2" && c == "3"', {"b": "2", "c": "3"}, True),
    ('(a == "1" || b == "2") && c == "3"', {"a": "1"}, False),
    ('(a == "1" || b == "2") && c == "3"', {"a": "1", "c": "3"}, True),
    ("has(a) && has(b) && has(c)", {"a": "", "b": "", "c": ""}, True),
    ("has(a) && has(b) && has(c)", {"a": "", "b": ""}, False),
    ("has(a) || has(b) || has(c)", {"c": ""}, True),
    ("has(a) || has(b) || has(c)", {"d": ""}, False),
    ('!(has(a) || b == "x")', {"b": "y"}, True),
    ("a == 'say \"hi\"'", {"a": 'say "hi"'}, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), TRUTH)
def test_evaluation_truth_table(text: str, labels: Mapping[str, str], expected: bool) -> None:
    assert parse(text).evaluate(labels) is expected


# ----------------------------------------------------------------------------- API details


def test_parse_is_cached_and_equal_spellings_are_equal() -> None:
    assert parse('a == "x"') is parse('a == "x"')
    assert parse("a == 'x'") == parse('  a=="x" ')
    assert parse("a in {'b', 'a'}") == parse('a in {"a","b","a",}')
    assert parse("has(a) && has(b)") != parse("has(b) && has(a)")  # operand order is kept
    assert parse("all()") != parse("global()")
    assert parse("") == parse("all()")
    assert parse("has(a)") != "has(a)"
    assert len({parse("!!has(a)"), parse("has( a )"), parse("((has(a)))")}) == 1


def test_unique_id_is_short_stable_and_follows_canonical_text() -> None:
    sel = parse('app == "web"')
    assert sel.unique_id == parse("app=='web'").unique_id
    assert sel.unique_id != parse('app == "db"').unique_id
    assert sel.unique_id.startswith("s:") and len(sel.unique_id) == 30
    # Golden values: ids name kernel sets, so they must not change between releases.
    assert sel.unique_id == "s:anfkj75h5kj4h6sb2rcfzdagvasi"
    assert parse("").unique_id == "s:zabkzf7arwqtubrg6i4kjwl2yv4r"


def test_is_all_and_is_global_only() -> None:
    assert parse("").is_all and parse("all()").is_all and parse("(all( ))").is_all
    assert not parse("!all()").is_all and not parse("global()").is_all
    assert not parse("all() && all()").is_all
    assert parse("global()").is_global_only and parse(" global( ) ").is_global_only
    assert not parse("global() && has(a)").is_global_only
    assert not parse("!global()").is_global_only and not parse("all()").is_global_only


def test_labels_used() -> None:
    assert parse("").labels_used() == frozenset()
    assert parse("global() || !all()").labels_used() == frozenset()
    sel = parse('a == "1" && !(has(b) || c in {"x"}) || d not in {} && e starts with "z" || a != "2"')
    assert sel.labels_used() == frozenset("abcde")


def test_selector_is_immutable_and_copies_by_value() -> None:
    sel = parse('a == "x" && has(b)')
    with pytest.raises(AttributeError):
        sel._text = "all()"
    with pytest.raises(AttributeError):
        sel.foo = 1
    for clone in (pickle.loads(pickle.dumps(sel)), copy.deepcopy(sel), copy.copy(sel)):
        assert clone == sel and clone.evaluate({"a": "x", "b": ""})
    assert repr(sel) == "Selector('(a == \"x\" && has(b))')"


def test_selector_from_tree_is_normalised() -> None:
    tree = NotNode(NotNode(AndNode((HasNode("a"), AndNode((HasNode("b"), OrNode((HasNode("c"),))))))))
    assert Selector(tree) == parse("has(a) && (has(b) && has(c))")
    assert Selector(tree).root == AndNode((HasNode("a"), AndNode((HasNode("b"), HasNode("c")))))


def test_tree_nodes_validate_their_fields() -> None:
    with pytest.raises(ValueError):
        HasNode("bad label")
    with pytest.raises(ValueError):
        HasNode("")
    with pytest.raises(ValueError):
        HasNode("x" * 513)
    with pytest.raises(ValueError):
        CompareNode("a", CompareOp.EQ, "both \" and '")
    with pytest.raises(ValueError):
        InSetNode("a", ("ok", "both \" and '"))
    with pytest.raises(ValueError):
        InSetNode("a", "abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Selector(AndNode(()))
    assert InSetNode("a", ("b", "a", "b")).values == ("a", "b")


# --------------------------------------------------------------------------- properties

WIDE_LABELS = st.one_of(
    st.sampled_from(["a", "b", "app", "has", "all", "global", "in", "not", "contains", "k8s.io/x-y_z"]),
    st.from_regex(r"[A-Za-z0-9_./-]{1,12}", fullmatch=True),
)
WIDE_VALUES = st.text(max_size=8).filter(lambda v: not ('"' in v and "'" in v))
NARROW_LABELS = st.sampled_from(["a", "b", "c"])
NARROW_VALUES = st.sampled_from(["", "x", "xy", "yx", 'q"', "q'"])


def trees(labels: st.SearchStrategy[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[Node]:
    leaves: st.SearchStrategy[Node] = st.one_of(
        st.just(AllNode()),
        st.just(GlobalNode()),
        st.builds(HasNode, labels),
        st.builds(CompareNode, labels, st.sampled_from(list(CompareOp)), values),
        st.builds(InSetNode, labels, st.lists(values, max_size=4).map(tuple), st.booleans()),
    )

    def compound(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        operands = st.lists(children, min_size=2, max_size=4).map(tuple)
        return st.one_of(
            st.builds(NotNode, children), st.builds(AndNode, operands), st.builds(OrNode, operands)
        )

    return st.recursive(leaves, compound, max_leaves=12)


def reference_evaluate(node: Node, labels: Mapping[str, str]) -> bool:
    """Direct reading of the semantics table in the Calico reference §2.2."""
    if isinstance(node, AllNode | GlobalNode):
        return True
    if isinstance(node, HasNode):
        return node.label in labels
    if isinstance(node, NotNode):
        return not reference_evaluate(node.operand, labels)
    if isinstance(node, AndNode):
        return all(reference_evaluate(operand, labels) for operand in node.operands)
    if isinstance(node, OrNode):
        return any(reference_evaluate(operand, labels) for operand in node.operands)
    if isinstance(node, InSetNode):
        if node.label not in labels:
            return node.negated
        return (labels[node.label] in node.values) != node.negated
    assert isinstance(node, CompareNode)
    if node.label not in labels:
        return node.op is CompareOp.NE
    actual = labels[node.label]
    return {
        CompareOp.EQ: actual == node.value,
        CompareOp.NE: actual != node.value,
        CompareOp.CONTAINS: node.value in actual,
        CompareOp.STARTS_WITH: actual.startswith(node.value),
        CompareOp.ENDS_WITH: actual.endswith(node.value),
    }[node.op]


@settings(max_examples=200, deadline=None)
@given(trees(WIDE_LABELS, WIDE_VALUES))
def test_canonical_text_round_trips(tree: Node) -> None:
    sel = Selector(tree)
    assert sel.root == normalize(tree)
    text = str(sel)
    parsed = parse(text)
    assert parsed.root == sel.root
    assert parsed == sel
    assert str(parsed) == text
    assert parsed.unique_id == sel.unique_id


@settings(max_examples=200, deadline=None)
@given(
    trees(NARROW_LABELS, NARROW_VALUES),
    st.lists(st.dictionaries(NARROW_LABELS, NARROW_VALUES), min_size=1, max_size=4),
)
def test_evaluation_agrees_with_reference(tree: Node, label_maps: list[dict[str, str]]) -> None:
    sel = Selector(tree)
    reparsed = parse(str(sel))
    for labels in label_maps:
        expected = reference_evaluate(tree, labels)
        assert sel.evaluate(labels) is expected
        assert reparsed.evaluate(labels) is expected


FRAGMENTS = st.sampled_from(
    [
        "a", "b", "has", "all", "global", "in", "not", "notin", "contains", "starts", "with", "ends",
        "startswith", "==", "!=", "=", "!", "&&", "&", "||", "|", "(", ")", "{", "}", ",", '"x"', "'y'",
        '"', "'", " ", "  ", "\t", "\n", "has(", "all(", "global(", "é", "-", "/", ".",
    ]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.lists(FRAGMENTS, max_size=14).map("".join), st.text(max_size=30)))
def test_any_text_parses_or_raises_selector_error(text: str) -> None:
    try:
        sel = parse(text)
    except SelectorError as err:
        assert 0 <= err.position <= len(text)
        assert err.text == text
    else:
        assert parse(str(sel)) == sel
