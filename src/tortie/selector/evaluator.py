"""Compile a selector tree into a nested closure that evaluates it against a label map.

Input: a canonical tree. Output: `Predicate`, a function `labels -> bool` where `labels` is any
`Mapping[str, str]` (only `get` and `in` are used).

Semantics (Calico): `==`, `in`, `contains`, `starts with`, `ends with` and `has` need the label to be
present; `!=` and `not in` are true when it is absent; `all()` and `global()` are always true;
`&&`/`||` short-circuit left to right. Compiling once per selector keeps the per-evaluation cost to a
few Python calls (no tree walk, no type dispatch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tortie.selector import nodes as n

Predicate = Callable[[Mapping[str, str]], bool]


def _always(labels: Mapping[str, str]) -> bool:
    return True


def _compile_compare(node: n.CompareNode) -> Predicate:
    key, value = node.label, node.value
    if node.op is n.CompareOp.EQ:
        return lambda labels: labels.get(key) == value
    if node.op is n.CompareOp.NE:
        return lambda labels: labels.get(key) != value

    if node.op is n.CompareOp.CONTAINS:

        def contains(labels: Mapping[str, str]) -> bool:
            actual = labels.get(key)
            return actual is not None and value in actual

        return contains
    if node.op is n.CompareOp.STARTS_WITH:

        def starts_with(labels: Mapping[str, str]) -> bool:
            actual = labels.get(key)
            return actual is not None and actual.startswith(value)

        return starts_with

    def ends_with(labels: Mapping[str, str]) -> bool:
        actual = labels.get(key)
        return actual is not None and actual.endswith(value)

    return ends_with


def _compile_and(operands: tuple[Predicate, ...]) -> Predicate:
    if len(operands) == 2:
        first, second = operands
        return lambda labels: first(labels) and second(labels)

    def all_of(labels: Mapping[str, str]) -> bool:
        # A plain loop: measurably faster than all() over a generator on this hot path.
        for operand in operands:  # noqa: SIM110
            if not operand(labels):
                return False
        return True

    return all_of


def _compile_or(operands: tuple[Predicate, ...]) -> Predicate:
    if len(operands) == 2:
        first, second = operands
        return lambda labels: first(labels) or second(labels)

    def any_of(labels: Mapping[str, str]) -> bool:
        for operand in operands:  # noqa: SIM110 (see all_of)
            if operand(labels):
                return True
        return False

    return any_of


def compile_node(node: n.Node) -> Predicate:
    """A predicate equivalent to evaluating `node` against a label map."""
    if isinstance(node, n.CompareNode):
        return _compile_compare(node)
    if isinstance(node, n.HasNode):
        key = node.label
        return lambda labels: key in labels
    if isinstance(node, n.InSetNode):
        key, values = node.label, frozenset(node.values)
        # A missing label gives None, which is never in a set of strings.
        if node.negated:
            return lambda labels: labels.get(key) not in values
        return lambda labels: labels.get(key) in values
    if isinstance(node, n.NotNode):
        operand = compile_node(node.operand)
        return lambda labels: not operand(labels)
    if isinstance(node, n.AndNode):
        return _compile_and(tuple(compile_node(operand) for operand in node.operands))
    if isinstance(node, n.OrNode):
        return _compile_or(tuple(compile_node(operand) for operand in node.operands))
    if isinstance(node, n.AllNode | n.GlobalNode):
        return _always
    raise TypeError(f"not a selector node: {node!r}")
