"""`Selector`, the immutable parsed selector, and `parse`, the cached way to get one from text.

Input: selector text (`parse`) or a syntax tree (`Selector(node)`, normalised on the way in).
Output: a `Selector` that evaluates label maps, renders its canonical text with `str()`, and names
itself with `unique_id`.

Invariants:

* A Selector never changes after construction, so `parse` may return one shared instance per text.
* `str(sel)` is canonical: `parse(str(sel)) == sel` and `str(parse(str(sel))) == str(sel)`.
* `==` and `hash` compare the canonical tree (equivalently, the canonical text); two texts that
  differ only in spacing, quoting, set order/duplicates, redundant parentheses or doubled `!`
  give equal selectors. Operand order of `&&`/`||` is significant (it is kept as written).
* `unique_id` depends only on the canonical text, so it is stable across processes and releases
  as long as the canonical rendering is.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping
from typing import Any

from tortie.selector.canonical import render
from tortie.selector.evaluator import Predicate, compile_node
from tortie.selector.nodes import AllNode, GlobalNode, Node, labels_used, normalize
from tortie.selector.parser import parse_node

UNIQUE_ID_PREFIX = "s:"
_UNIQUE_ID_CHARS = 28  # base32 characters kept: 140 bits of the SHA-224 digest


class Selector:
    """A parsed label selector; build one with `parse(text)`."""

    __slots__ = ("_evaluate", "_labels_used", "_root", "_text", "_unique_id")

    _root: Node
    _text: str
    _evaluate: Predicate
    _labels_used: frozenset[str] | None
    _unique_id: str | None

    def __init__(self, root: Node) -> None:
        self._init(normalize(root))

    @classmethod
    def _from_canonical(cls, root: Node) -> Selector:
        selector = cls.__new__(cls)
        selector._init(root)
        return selector

    def _init(self, root: Node) -> None:
        self._root = root
        self._text = render(root)
        self._evaluate = compile_node(root)
        self._labels_used = None
        self._unique_id = None

    @property
    def root(self) -> Node:
        """The canonical syntax tree."""
        return self._root

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with these labels is selected."""
        return self._evaluate(labels)

    @property
    def is_all(self) -> bool:
        """True for `all()` (and the empty selector)."""
        return isinstance(self._root, AllNode)

    @property
    def is_global_only(self) -> bool:
        """True when the whole selector is exactly `global()`."""
        return isinstance(self._root, GlobalNode)

    def labels_used(self) -> frozenset[str]:
        """The label keys this selector mentions; labels outside it never change its result."""
        if self._labels_used is None:
            self._labels_used = labels_used(self._root)
        return self._labels_used

    @property
    def unique_id(self) -> str:
        """`s:` + base32 (lower case) of the SHA-224 of the canonical text, truncated to 28 chars."""
        if self._unique_id is None:
            digest = hashlib.sha224(self._text.encode("utf-8")).digest()
            encoded = base64.b32encode(digest).decode("ascii").lower()
            self._unique_id = UNIQUE_ID_PREFIX + encoded[:_UNIQUE_ID_CHARS]
        return self._unique_id

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Selector({self._text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selector):
            return NotImplemented
        return self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in Selector.__slots__ and not hasattr(self, name):
            object.__setattr__(self, name, value)
        elif name in ("_labels_used", "_unique_id") and getattr(self, name) is None:
            object.__setattr__(self, name, value)  # filling a lazily computed cache
        else:
            raise AttributeError(f"Selector is immutable; cannot set {name!r}")

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (parse, (self._text,))


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Selector:
    """Parse selector text (cached by text; Selectors are immutable, so sharing them is safe).

    Raises `SelectorError` (a ValueError) with the failing position if the text is not valid.
    """
    return Selector._from_canonical(parse_node(text))
