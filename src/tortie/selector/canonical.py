"""Canonical text of a selector tree: the one spelling used for equality, hashing and set names.

Input: a canonical tree (see `nodes.normalize`). Output: text that parses back to the same tree.

Rules (deterministic, readable, no redundant parentheses):

* operators are spaced: `a == "x"`, `a starts with "x"`, `a not in {"x", "y"}`, `p && q || r`;
* strings use `"` unless the value contains `"`, then `'` (a value never contains both);
* set members are sorted and de-duplicated, separated by `, `; the empty set is `{}`;
* `||` operands are never parenthesised (`&&` binds tighter); an `||` inside `&&` is;
* `!` is written directly before `has(..)`, `all()` and `global()`; any other operand is
  parenthesised for readability: `!(a == "x")`, `!(a && b)`.
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
        return " || ".join(render(operand) for operand in node.operands)
    if isinstance(node, AndNode):
        return " && ".join(
            f"({render(operand)})" if isinstance(operand, OrNode) else render(operand)
            for operand in node.operands
        )
    if isinstance(node, NotNode):
        inner = render(node.operand)
        if isinstance(node.operand, HasNode | AllNode | GlobalNode):
            return f"!{inner}"
        return f"!({inner})"
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
