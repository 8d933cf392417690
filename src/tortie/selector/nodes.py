"""The selector syntax tree: immutable node values and the rules that keep a tree canonical.

Input: nodes built by the parser or by code (e.g. a test generating random trees).
Output: frozen, hashable node values; `normalize` returns the canonical tree for any tree.

Invariants of a canonical tree (what `normalize` guarantees and what the parser always produces):

* `AndNode`/`OrNode` have at least two operands, in the order written. Groups keep the nesting the
  text gave them, as in Calico's parser: `a && b && c` is one `AndNode` of three operands, but
  `(a && b) && c` is an `AndNode` whose first operand is the `AndNode` of `a && b` (Calico prints
  the two differently, so they are different selectors).
* A `NotNode` never wraps another `NotNode` (`!!e` is `e`: negations collapse by parity).
* `InSetNode.values` is sorted and free of duplicates (done at construction for every tree).

`conjunction` is for trees built in code (policy scoping): it flattens nested `&&` groups, which is
how such combined selectors are meant to read.

Leaf nodes check their own fields at construction: a label is 1..512 characters of
`[A-Za-z0-9_./-]`, and a value must be writable as a selector string literal, which has no escapes,
so it may contain `"` or `'` but not both.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

MAX_LABEL_LENGTH = 512
LABEL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./-")


def check_label(label: str) -> None:
    """Raise ValueError unless `label` is a valid selector label key."""
    if not isinstance(label, str) or not 1 <= len(label) <= MAX_LABEL_LENGTH:
        raise ValueError(f"label must be a string of 1..{MAX_LABEL_LENGTH} characters: {label!r}")
    if not LABEL_CHARS.issuperset(label):
        raise ValueError(f"label may only contain A-Z a-z 0-9 _ . / -: {label!r}")


def check_value(value: str) -> None:
    """Raise ValueError unless `value` can be written as a selector string literal."""
    if not isinstance(value, str):
        raise ValueError(f"selector value must be a string: {value!r}")
    if '"' in value and "'" in value:
        raise ValueError(f"selector strings have no escapes; a value cannot hold both quote kinds: {value!r}")


@dataclass(frozen=True, slots=True)
class AllNode:
    """`all()` (and the empty selector): matches everything."""


@dataclass(frozen=True, slots=True)
class GlobalNode:
    """`global()`: matches everything when evaluated; means "non-namespaced" in a namespaceSelector."""


@dataclass(frozen=True, slots=True)
class HasNode:
    """`has(label)`: the label is present, whatever its value (even empty)."""

    label: str

    def __post_init__(self) -> None:
        check_label(self.label)


class CompareOp(enum.Enum):
    """A label-versus-string operator; the value is its canonical spelling."""

    EQ = "=="
    NE = "!="
    CONTAINS = "contains"
    STARTS_WITH = "starts with"
    ENDS_WITH = "ends with"


@dataclass(frozen=True, slots=True)
class CompareNode:
    """`label <op> "value"`. Only `!=` is true when the label is absent."""

    label: str
    op: CompareOp
    value: str

    def __post_init__(self) -> None:
        check_label(self.label)
        if not isinstance(self.op, CompareOp):
            raise ValueError(f"op must be a CompareOp: {self.op!r}")
        check_value(self.value)


@dataclass(frozen=True, slots=True)
class InSetNode:
    """`label in {...}` or, when `negated`, `label not in {...}` (true when the label is absent)."""

    label: str
    values: tuple[str, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        check_label(self.label)
        if isinstance(self.values, str):
            raise ValueError(f"values must be a collection of strings, not one string: {self.values!r}")
        for value in self.values:
            check_value(value)
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))


@dataclass(frozen=True, slots=True)
class NotNode:
    """`!operand`."""

    operand: Node


@dataclass(frozen=True, slots=True)
class AndNode:
    """`a && b && ...`, evaluated left to right with short circuit."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class OrNode:
    """`a || b || ...`, evaluated left to right with short circuit."""

    operands: tuple[Node, ...]


Node = AllNode | GlobalNode | HasNode | CompareNode | InSetNode | NotNode | AndNode | OrNode
LEAF_TYPES = (AllNode, GlobalNode, HasNode, CompareNode, InSetNode)


def negation(operand: Node) -> Node:
    """`!operand`, collapsing a double negation (the operand must already be canonical)."""
    if isinstance(operand, NotNode):
        return operand.operand
    return NotNode(operand)


def conjunction(operands: Iterable[Node]) -> Node:
    """`&&` of canonical operands: nested `&&` flattened, a single operand returned as it is."""
    flat: list[Node] = []
    for operand in operands:
        if isinstance(operand, AndNode):
            flat.extend(operand.operands)
        else:
            flat.append(operand)
    if not flat:
        raise ValueError("'&&' needs at least one operand")
    return flat[0] if len(flat) == 1 else AndNode(tuple(flat))


def group(kind: type[AndNode] | type[OrNode], operands: Iterable[Node]) -> Node:
    """`&&` or `||` of operands as written (no flattening); a single operand is returned as it is."""
    items = tuple(operands)
    if not items:
        raise ValueError(f"'{'&&' if kind is AndNode else '||'}' needs at least one operand")
    return items[0] if len(items) == 1 else kind(items)


def normalize(node: Node) -> Node:
    """The canonical tree equivalent to `node` (see the module docstring); idempotent."""
    if isinstance(node, NotNode):
        return negation(normalize(node.operand))
    if isinstance(node, AndNode | OrNode):
        return group(type(node), (normalize(operand) for operand in node.operands))
    if isinstance(node, LEAF_TYPES):
        return node
    raise TypeError(f"not a selector node: {node!r}")


def labels_used(node: Node) -> frozenset[str]:
    """Every label key the tree mentions."""
    found: set[str] = set()
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, HasNode | CompareNode | InSetNode):
            found.add(current.label)
        elif isinstance(current, NotNode):
            stack.append(current.operand)
        elif isinstance(current, AndNode | OrNode):
            stack.extend(current.operands)
    return frozenset(found)
