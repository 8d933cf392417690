"""Canonical text of a selector tree: the one spelling used for equality, hashing and set names.

Input: a canonical tree (see `nodes.normalize`). Output: the text Calico's `Selector.String()`
prints for the same tree (libcalico-go `selector/parser/ast.go`), which parses back to that tree.

Rules (Calico's, checked against its canonicalisation table in tests/unit/selector):

* every `&&` and every `||` group is wrapped in one pair of parentheses, whatever its position:
  `a == "x" && b == "y"` prints `(a == "x" && b == "y")`, `a || b && c` prints
  `(a || (b && c))` with the operators spaced;
* `!` is written directly before its operand, which brings its own parentheses when it is a group:
  `!a == "x"` (Calico's form of `!(a == "x")`), `!has(a)`, `!(a && b)`;
* operators are spaced: `a == "x"`, `a starts with "x"`, `a not in {"x", "y"}`;
* strings use `"` unless the value contains `"`, then `'` (a value never contains both);
* set members are sorted and de-duplicated, separated by `, `; the empty set is `{}`.

One deliberate difference: a negation of a parenthesised negation, `!(!has(a))`, is collapsed when
parsed, so it prints `has(a)`; Calico keeps both operators and prints `!!has(a)`, which its own
parser then reads back as `has(a)`. Collapsing keeps `str` a fixed point (`str(parse(str(s))) ==
str(s)`), which Calico's rendering is not for that one input.
"""

from __future__ import annotations

from tortie.selector.nodes import (
    AllNode,
    AndNode,
    CompareNode,
    GlobalNode,
    HasNode,
    InSetNode,
    Node,
    NotNode,
    OrNode,
)


def quote(value: str) -> str:
    """`value` as a string literal: double quotes unless it contains one."""
    return f"'{value}'" if '"' in value else f'"{value}"'


def render(node: Node) -> str:
    """The canonical text of the canonical tree `node`."""
    if isinstance(node, OrNode):
        return "(" + " || ".join(render(operand) for operand in node.operands) + ")"
    if isinstance(node, AndNode):
        return "(" + " && ".join(render(operand) for operand in node.operands) + ")"
    if isinstance(node, NotNode):
        return "!" + render(node.operand)
    if isinstance(node, CompareNode):
        return f"{node.label} {node.op.value} {quote(node.value)}"
    if isinstance(node, InSetNode):
        members = ", ".join(quote(value) for value in node.values)
        return f"{node.label} {'not in' if node.negated else 'in'} {{{members}}}"
    if isinstance(node, HasNode):
        return f"has({node.label})"
    if isinstance(node, AllNode):
        return "all()"
    if isinstance(node, GlobalNode):
        return "global()"
    raise TypeError(f"not a selector node: {node!r}")
