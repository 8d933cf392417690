"""Limits on untrusted structured input: size and nesting depth, checked before anything recurses.

Python's parsers recurse: `json.loads` and PyYAML's composer/constructor raise `RecursionError` on
documents nested a few hundred levels deep (a 6 MB `- - - ...` manifest, a 10 MB `[[[[` CNI config),
and the model's validators recurse too. This module turns such input into a clear error instead,
with the standard library only, so that the CNI plugin (which must start in milliseconds and does not
import YAML) can use it as well as the manifest codec.

    check_size(data, limit, what)            InputTooLarge if len(data) > limit (bytes or characters)
    load_json(data, what, max_depth, max_bytes)  json.loads with both limits; InputTooDeep /
                                             InputTooLarge / ValueError (json's own syntax error)
    nesting_depth(value)                     depth of a parsed value (iterative; scalars are 0)
    DepthGuard                               the bookkeeping YAML loaders use while composing

Contract: every error is a `UserError` subclass whose message names `what` (a file, "stdin", ...),
the limit, and what to do; nothing here ever raises `RecursionError`. Callers choose the limits
(`MAX_DEPTH`, `MAX_MANIFEST_BYTES`, `MAX_EXPANDED_NODES` are the manifest defaults; the CNI plugin
would pass its own smaller size, e.g. `MAX_CNI_INPUT_BYTES`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tortie.common.errors import UserError

MAX_DEPTH = 100
"""Deepest nesting accepted (a Calico resource needs under 10 levels; list wrappers add 2)."""
MAX_MANIFEST_BYTES = 64 << 20
MAX_CNI_INPUT_BYTES = 1 << 20
MAX_EXPANDED_NODES = 1_000_000
"""Values, counted with YAML aliases expanded (a "billion laughs" document stops here)."""


class InputTooLarge(UserError):
    """The input is bigger than the caller's limit."""


class InputTooDeep(UserError):
    """The input nests deeper than the caller's limit (or expands past the node limit)."""


def check_size(data: str | bytes, limit: int, what: str) -> None:
    if len(data) > limit:
        unit = "bytes" if isinstance(data, bytes) else "characters"
        raise InputTooLarge(f"{what}: input is {len(data):,} {unit}, more than the limit of {limit:,}")


def too_deep(what: str, limit: int, where: str = "") -> InputTooDeep:
    at = f" at {where}" if where else ""
    return InputTooDeep(
        f"{what}: nested more than {limit} levels deep{at}; no valid resource or configuration is "
        "nested like that (a truncated or generated file?)"
    )


def nesting_depth(value: Any) -> int:
    """How deeply lists and mappings nest in `value` (a scalar is 0, `[]` is 1, `[[1]]` is 2)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if id(item) in seen:  # a shared (aliased) container: its depth below was already counted
            continue
        seen.add(id(item))
        stack.extend((child, depth) for child in children)
    return deepest


def load_json(
    data: str | bytes, what: str, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_MANIFEST_BYTES,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """`json.loads(data)` within the limits. json's own syntax errors propagate as `ValueError`
    (`json.JSONDecodeError`, with line and column) for the caller to report in its own format."""
    check_size(data, max_bytes, what)
    try:
        value = json.loads(data, object_pairs_hook=object_pairs_hook)
    except RecursionError:  # the C decoder stops cleanly at the interpreter's recursion limit
        raise too_deep(what, max_depth) from None
    if nesting_depth(value) > max_depth:
        raise too_deep(what, max_depth)
    return value


class DepthGuard:
    """Counts depth and expanded size while a YAML loader composes nodes (see `model.codec`).

    `enter(where)` before composing a node (raises InputTooDeep past `max_depth`), `leave()` after;
    `add(size)` accounts a composed node's expanded size (raises past `max_nodes`).
    """

    def __init__(self, what: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_EXPANDED_NODES) -> None:
        self.what = what
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.depth = 0

    def enter(self, where: str) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise too_deep(self.what, self.max_depth, where)

    def leave(self) -> None:
        self.depth -= 1

    def check_nodes(self, size: int, where: str) -> None:
        if size > self.max_nodes:
            raise InputTooDeep(
                f"{self.what}: the document expands to more than {self.max_nodes:,} values at {where} "
                "(YAML aliases repeating large parts?)"
            )
