"""An immutable, hashable mapping for the string maps inside resources (labels, annotations, ...).

Input: any mapping or iterable of pairs. Output: a `FrozenMap` that compares equal to a dict with
the same items, keeps insertion order for iteration, and can be hashed, so the frozen dataclasses
of tortie.model stay hashable. Invariant: its contents never change after construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V]):
    """Read-only dict wrapper with value semantics (equality and hash by items)."""

    __slots__ = ("_data", "_hash")

    @overload
    def __init__(self) -> None: ...

    @overload
    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> None: ...

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] | None = None) -> None:
        self._data: dict[K, V] = dict(items) if items is not None else {}
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def to_dict(self) -> dict[K, V]:
        """A fresh, mutable copy."""
        return dict(self._data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._data,))


EMPTY_MAP: FrozenMap[Any, Any] = FrozenMap()
"""The shared empty map (the default of every optional map field)."""
