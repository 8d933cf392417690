"""Validation problems: what was wrong, where (file, document, resource, field path), and the error.

Inputs: validators call `Issues.add(path, message)` while decoding one document; the resource layer
turns each (path, message) into a `Problem` stamped with the source file, the document index and
the resource's kind and name. Output: `ValidationError` carrying every problem found, never just the
first. Field paths look like `spec.ingress[0].destination.ports[1]` (see `join` / `index`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tortie.common.errors import UserError

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def join(path: str, key: object) -> str:
    """Path of a mapping member: `spec` + `cidr` -> `spec.cidr`; odd keys are quoted: `labels['a/b']`."""
    text = str(key)
    if not _PLAIN_KEY.match(text):
        return f"{path}[{text!r}]"
    return f"{path}.{text}" if path else text


def index(path: str, i: int) -> str:
    """Path of a list element: `spec.ingress` + 0 -> `spec.ingress[0]`."""
    return f"{path}[{i}]"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one document of the input."""

    source: str
    document: int
    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        what = f"{self.kind}/{self.name}" if self.kind and self.name else (self.kind or self.name)
        where = f"{self.source}: document {self.document}" + (f" ({what})" if what else "")
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ValidationError(UserError, ValueError):
    """The input holds invalid resources; `.problems` lists every problem found, in input order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid input")

    def __reduce__(self) -> tuple[type[ValidationError], tuple[list[Problem]]]:
        return (ValidationError, (self.problems,))


class Issues:
    """Accumulates (path, message) pairs while one document is decoded."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def problems(self, *, source: str, document: int, kind: str, name: str,
                 prefix: str = "") -> list[Problem]:
        """The collected issues as Problems; `prefix` is prepended to every path (e.g. `items[3]`)."""
        out: list[Problem] = []
        for path, message in self.items:
            full = f"{prefix}.{path}" if prefix and path else (prefix or path)
            out.append(Problem(source, document, kind, name, full, message))
        return out


def describe_value(value: object) -> str:
    """Short description of a raw input value for type errors: `string 'abc'`, `integer 5`, `a list`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__

