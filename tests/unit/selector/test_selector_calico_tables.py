"""Calico's own selector facts, case by case (libcalico-go `selector/parser/parser_test.go` and
`selector/tokenizer/tokenizer_test.go`): what parses, what matches, what is refused, and the
canonical string Calico prints.

The canonical strings are pinned twice: as text, and through Calico's unique id. Calico names a
selector `s:` + unpadded URL-safe base64 of SHA-224 over `"s:" + String()`; the three ids below are
the ones Calico's own table expects, so equal ids prove tortie prints exactly Calico's text.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from tortie.selector import SelectorError, parse


def calico_uid(text: str) -> str:
    digest = hashlib.sha224(("s:" + text).encode()).digest()
    return "s:" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


# (input, Calico's String(), Calico's UniqueID() or "")
CANONICAL = [
    ("", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    (" all() ", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    (" (all() )", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    ("! (has( b)||! has(a ))", "!(has(b) || !has(a))", "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"),
    ('! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")', "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w"),
    ("a == \"'\"", "a == \"'\"", ""),
    ("a == '\"'", "a == '\"'", ""),
    ("a contains '\"'", "a contains '\"'", ""),
    ("a contains \"'\"", "a contains \"'\"", ""),
    ("a startswith '\"'", "a starts with '\"'", ""),
    ("a endswith \"'\"", "a ends with \"'\"", ""),
    ("a!='\"'", "a != '\"'", ""),
    ('a in {"d"}', 'a in {"d"}', ""),
    ('a in {"a", "b"}', 'a in {"a", "b"}', ""),
    ('a in {"d", "a", "b"}', 'a in {"a", "b", "d"}', ""),
    ('a in {"z", "x", "y", "a"}', 'a in {"a", "x", "y", "z"}', ""),
    ('a in {"z", "z", "x", "y", "x", "a"}', 'a in {"a", "x", "y", "z"}', ""),
    # Calico's visitor table (label prefixing aside): how groups and negations print
    ("k == 'v' && x == 'y'", '(k == "v" && x == "y")', ""),
    ("k == 'v' || has(x)", '(k == "v" || has(x))', ""),
    ("!(k == 'v')", '!k == "v"', ""),
    ("k not in {'v'}", 'k not in {"v"}', ""),
    ("!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
     '!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})', ""),
]


@pytest.mark.parametrize(("text", "canonical", "uid"), CANONICAL)
def test_canonical_string_is_calicos(text: str, canonical: str, uid: str) -> None:
    sel = parse(text)
    assert str(sel) == canonical
    assert str(parse(canonical)) == canonical
    if uid:
        assert calico_uid(str(sel)) == uid


# (selector, label maps it matches, label maps it does not match)
MATCHES: list[tuple[str, list[dict[str, str]], list[dict[str, str]]]] = [
    ('a == "b"', [{"a": "b"}, {"a": "b", "c": "d"}], [{}, {"a": "c"}, {"c": "d"}]),
    ('a == "b" && c == "d"', [{"a": "b", "c": "d"}],
     [{}, {"a": "b", "c": "e"}, {"a": "c", "c": "d"}, {"c": "d"}, {"a": "b"}]),
    ('a == "b" || c == "d"', [{"a": "b", "c": "d"}, {"a": "b"}, {"c": "d"}],
     [{}, {"a": "e", "c": "e"}, {"c": "e"}, {"a": "e"}]),
    ("a in {\"'\", '\"', \"c\"}", [{"a": "c"}, {"a": '"'}, {"a": "'"}], [{}, {"a": "e"}]),
    ("a not in {\"'\", '\"', \"c\"}", [{}, {"a": "e"}], [{"a": "c"}, {"a": '"'}, {"a": "'"}]),
    ("a == 'a'", [{"a": "a"}], [{"a": "b"}, {}]),
    ('a != "b"', [{"a": "a"}], []),
    ('a != "a"', [{}], [{"a": "a"}]),
    ('a contains "a"', [{"a": "a"}, {"a": "bab"}, {"a": "aaa", "b": "c"}], [{}, {"a": "b"}, {"b": "aaa"}]),
    ('a starts with "a"', [{"a": "a"}, {"a": "abb"}, {"a": "aaa", "b": "c"}],
     [{}, {"a": "b"}, {"a": "baa"}, {"b": "aaa"}]),
    ('a ends with "a"', [{"a": "a"}, {"a": "bba"}, {"a": "aaa", "b": "c"}],
     [{}, {"a": "b"}, {"a": "aab"}, {"b": "aaa"}]),
    ('a in {"a"}', [{"a": "a"}], [{"a": "b"}]),
    ('!a in {"a"}', [{"a": "b"}], []),
    ('a in {"a", "b"}', [{"a": "a"}, {"a": "b"}], [{"a": "c"}]),
    ('a not in {"d", "e"}', [{"a": "a"}], []),
    ('a not in {"a"}', [], [{"a": "a"}]),
    ("has(a)", [{"a": "b"}], []),
    ("has(b)", [], [{"a": "b"}]),
    ("!has(a)", [{"b": "b"}], [{"a": "b"}]),
    ("!!has(b)", [], [{"a": "b"}]),
    ("! has(a)", [], [{"a": "b"}]),
    ("!!! has(a)", [], [{"a": "b"}]),
    ("!!!has(a)", [], [{"a": "b"}]),
    ("!! ! has(a)", [], [{"a": "b"}]),
    ("! !!has(a)", [], [{"a": "b"}]),
    ("", [{}, {"a": "b"}], []),
    (" ", [{}], []),
    ("all()", [{}], []),
    (" all()", [{}, {"a": "b"}], []),
    ("global()", [{}], []),
    (" global()", [{}, {"a": "b"}], []),
    ("a == 'a1' && b == 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a == 'a1' && b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("a != 'a1' && b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("a != 'a1' && b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("a != 'a1' && !b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("!a == 'a1' && b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("has(a) && !has(b)", [{"a": "a"}], []),
    ("!has(b) && has(a)", [{"a": "a"}], []),
    ("!(!has(a) || has(b))", [{"a": "a"}], []),
    ("!(has(b) || !has(a))", [{"a": "a"}], []),
    ("a == 'a1' || b == 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a == 'a1' || b != 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a != 'a1' || b == 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a != 'a1' || b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("! a == 'a1' || ! b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
]


@pytest.mark.parametrize(("text", "matches", "non_matches"), MATCHES)
def test_matches_as_calico_does(text: str, matches: list[dict[str, str]],
                                non_matches: list[dict[str, str]]) -> None:
    sel = parse(text)
    canonical = parse(str(sel))
    for labels in matches:
        assert sel.evaluate(labels) and canonical.evaluate(labels), labels
    for labels in non_matches:
        assert not sel.evaluate(labels) and not canonical.evaluate(labels), labels


# Refused by Calico's parser.
BAD = [
    "b == b", "b contains b", "b starts with b", "b ends with b", "'b1' == b", "b", "a b", "!",
    'foo == "bar" &', 'foo == "bar" |', "foo != ||", 'foo in {"", ||', 'foo in ""', '"FOO', "\"FOO'",
    "'FOO", "(", '(a == "foo"', ")", "()", "%", 'a == "b" && %', 'a == "b" || %', "a ", "has(foo) &&",
    # tokenizer table: unknown operator words
    'label starts foo "value"', 'label ends foo "value"', 'label squiggles "value"',
]


@pytest.mark.parametrize("text", BAD)
def test_refused_as_calico_refuses(text: str) -> None:
    with pytest.raises(SelectorError):
        parse(text)


# Calico's tokenizer accepts these spellings (operator words with any spacing, odd label names).
SPELLINGS = [
    ('a=="b"', 'a == "b"'),
    ('contains contains "contains"', 'contains contains "contains"'),
    ("contains contains 'contains'", 'contains contains "contains"'),
    ('label contains"value"', 'label contains "value"'),
    ('startswith starts with "value"', 'startswith starts with "value"'),
    ('endswith ends with "value"', 'endswith ends with "value"'),
    ('label starts  with "value"', 'label starts with "value"'),
    ('label ends  with "value"', 'label ends with "value"'),
    ("has(calico/k8s_ns)", "has(calico/k8s_ns)"),
    ("has(calico/k8s_NS-.1/role)", "has(calico/k8s_NS-.1/role)"),
    ('calico/k8s_ns == "kube-system" && k8s-app == "kube-dns"',
     '(calico/k8s_ns == "kube-system" && k8s-app == "kube-dns")'),
    ('a notin{"bar"}&&!has(foo)||b in{"c"}', '((a not in {"bar"} && !has(foo)) || b in {"c"})'),
    ('a  not  in  {"bar"}  &&  ! has( foo )', '(a not in {"bar"} && !has(foo))'),
    ("a not in {}", "a not in {}"),
    ('a not in {"a","B"}', 'a not in {"B", "a"}'),
]


@pytest.mark.parametrize(("text", "canonical"), SPELLINGS)
def test_spellings_calico_accepts(text: str, canonical: str) -> None:
    assert str(parse(text)) == canonical
