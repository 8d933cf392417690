"""Recursive-descent parser: selector text -> canonical syntax tree.

Input: selector text. Output: a canonical `Node` (see `nodes`), or `SelectorError` with the 0-based
position where the text stops making sense.

Grammar (Calico; precedence low -> high: `||`, `&&`, unary `!`)::

    selector  := <whitespace only> | or_expr
    or_expr   := and_expr { "||" and_expr }
    and_expr  := operation { "&&" operation }
    operation := { "!" } ( "has(" label ")" | "all(" ")" | "global(" ")" | "(" or_expr ")"
                         | label op_rhs )
    op_rhs    := ( "==" | "!=" | "contains" | "starts" "with" | "ends" "with" ) string
               | ( "in" | "not" "in" ) "{" [ string { "," string } [ "," ] ] "}"

`has`, `all` and `global` are keywords only when `(` follows with no space (`has == "x"` compares a
label named `has`; `has (x)` is an error); whitespace is allowed inside their parentheses. An empty
text is `all()`. The tree keeps the grouping the text gives (`(a && b) && c` stays nested), as
Calico's parser does; a run of `!` collapses by parity, also across parentheses. Nesting deeper
than `MAX_DEPTH` parentheses is rejected so that hostile input cannot exhaust the Python stack.
"""

from __future__ import annotations

from tortie.selector.lexer import Scanner
from tortie.selector.nodes import (
    AllNode,
    AndNode,
    CompareNode,
    CompareOp,
    GlobalNode,
    HasNode,
    InSetNode,
    Node,
    OrNode,
    group,
    negation,
)

MAX_DEPTH = 100

_OPERATION_START = "a label, has(...), all(), global(), '!' or '('"
_OPERATORS = "==, !=, in, not in, contains, starts with, ends with"


def _found(scanner: Scanner) -> str:
    return "the end of the selector" if scanner.at_end() else repr(scanner.peek())


class _Parser:
    __slots__ = ("depth", "scan")

    def __init__(self, text: str) -> None:
        self.scan = Scanner(text)
        self.depth = 0

    def parse(self) -> Node:
        scan = self.scan
        scan.skip_whitespace()
        if scan.at_end():
            return AllNode()
        node = self.or_expr()
        scan.skip_whitespace()
        if not scan.at_end():
            scan.fail(f"unexpected content at end of selector: {scan.peek()!r}")
        return node

    def or_expr(self) -> Node:
        scan = self.scan
        operands = [self.and_expr()]
        while True:
            scan.skip_whitespace()
            if scan.take("||"):
                operands.append(self.and_expr())
            elif scan.peek() == "|":
                scan.fail("expected '||' (a single '|' is not an operator)")
            else:
                return group(OrNode, operands)

    def and_expr(self) -> Node:
        scan = self.scan
        operands = [self.operation()]
        while True:
            scan.skip_whitespace()
            if scan.take("&&"):
                operands.append(self.operation())
            elif scan.peek() == "&":
                scan.fail("expected '&&' (a single '&' is not an operator)")
            else:
                return group(AndNode, operands)

    def operation(self) -> Node:
        scan = self.scan
        negated = False
        scan.skip_whitespace()
        while scan.take("!"):
            negated = not negated
            scan.skip_whitespace()
        node = self.term()
        return negation(node) if negated else node

    def term(self) -> Node:
        scan = self.scan
        start = scan.pos
        if scan.take("("):
            if self.depth >= MAX_DEPTH:
                scan.fail(f"selector nested more than {MAX_DEPTH} parentheses deep", start)
            self.depth += 1
            node = self.or_expr()
            self.depth -= 1
            scan.skip_whitespace()
            if not scan.take(")"):
                scan.fail(f"expected ')' to close the '(' at position {start}, found {_found(scan)}")
            return node
        if scan.take("has("):
            scan.skip_whitespace()
            label = scan.read_label()
            if label is None:
                scan.fail(f"expected a label name inside has(...), found {_found(scan)}")
            scan.skip_whitespace()
            if not scan.take(")"):
                scan.fail(f"expected ')' to close has(, found {_found(scan)}")
            return HasNode(label)
        if scan.take("all("):
            self.close_empty_call("all")
            return AllNode()
        if scan.take("global("):
            self.close_empty_call("global")
            return GlobalNode()
        label = scan.read_label()
        if label is None:
            scan.fail(f"expected {_OPERATION_START}, found {_found(scan)}")
        return self.op_rhs(label)

    def close_empty_call(self, name: str) -> None:
        scan = self.scan
        scan.skip_whitespace()
        if not scan.take(")"):
            scan.fail(f"expected ')' after {name}(, found {_found(scan)}")

    def op_rhs(self, label: str) -> Node:
        scan = self.scan
        scan.skip_whitespace()
        op: CompareOp | None = None
        if scan.take("=="):
            op = CompareOp.EQ
        elif scan.take("!="):
            op = CompareOp.NE
        elif scan.take_word("contains"):
            op = CompareOp.CONTAINS
        elif scan.take_word("starts", "with"):
            op = CompareOp.STARTS_WITH
        elif scan.take_word("ends", "with"):
            op = CompareOp.ENDS_WITH
        elif scan.take_word("not", "in"):
            return InSetNode(label, self.set_literal(), negated=True)
        elif scan.take_word("in"):
            return InSetNode(label, self.set_literal())
        elif scan.peek() == "=":
            scan.fail("expected '==' (a single '=' is not an operator)")
        elif scan.peek() == "!":
            scan.fail("expected '!=' after a label ('!' alone negates an operation and goes before it)")
        else:
            scan.fail(f"expected an operator ({_OPERATORS}) after label {label!r}, found {_found(scan)}")
        scan.skip_whitespace()
        value = scan.read_string()
        if value is None:
            scan.fail(f"expected a quoted string after '{op.value}', found {_found(scan)}")
        return CompareNode(label, op, value)

    def set_literal(self) -> tuple[str, ...]:
        """`{ "a", 'b', }`: strings separated by commas; a trailing comma and `{}` are allowed."""
        scan = self.scan
        scan.skip_whitespace()
        if not scan.take("{"):
            scan.fail(f"expected '{{' to start a set of strings, found {_found(scan)}")
        values: list[str] = []
        string_allowed = True  # at the start, or just after a comma
        while True:
            scan.skip_whitespace()
            value = scan.read_string()
            if value is None:
                break
            values.append(value)
            scan.skip_whitespace()
            if not scan.take(","):
                string_allowed = False
                break
        if not scan.take("}"):
            expected = "a quoted string or '}'" if string_allowed else "',' or '}'"
            scan.fail(f"expected {expected} in set, found {_found(scan)}")
        return tuple(values)


def parse_node(text: str) -> Node:
    """The canonical tree for `text`; raises `SelectorError` if `text` is not a valid selector."""
    if not isinstance(text, str):
        raise TypeError(f"selector text must be a str, not {type(text).__name__}")
    return _Parser(text).parse()
