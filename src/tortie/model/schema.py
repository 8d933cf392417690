"""Declarative decoding/encoding of wire (JSON-like) values into typed frozen records.

A `Codec[T]` turns one raw value (what YAML/JSON parsing produced) into a `T`, reporting every
problem it finds into `Issues` at the value's field path, and turns a `T` back into a JSON-safe
wire value. Records are frozen dataclasses whose fields carry their codec in the type annotation:

    @dataclass(frozen=True, kw_only=True)
    class IPPoolSpec:
        cidr: Annotated[str, Wire(POOL_CIDR)]                      # required: no default
        block_size: Annotated[int | None, Wire(Int(0, 128))] = None  # wire name blockSize

`Struct(cls)` reads those annotations (the "field table" of the kind), so the table and the typed
record are one declaration. Invariants of `Struct`:

* unknown wire keys are errors (with a "did you mean" hint); `null` means "not given";
* a field without a default is required;
* encoding emits only fields that differ from "not given" (None, or the field's empty default), in
  declaration order, so that decode(encode(x)) == x and an input in canonical form re-encodes to
  itself;
* record-level checks (cross-field rules) run only when the fields they read decoded (a check
  declared with `@uses(...)` names them; a plain check needs every field), so one mistake is not
  reported again as a confusing consequence while unrelated rules are still checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from tortie.model.frozen import FrozenMap
from tortie.model.problems import Issues, describe_value, index, join

T = TypeVar("T")


class Invalid:
    """Marker returned by `Codec.decode` when the value was rejected (the reason is in Issues)."""

    _instance: Invalid | None = None

    def __new__(cls) -> Invalid:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = Invalid()

Check = Callable[[T, str, Issues], None]
"""A record-level rule: (record, path of the record, issues) -> None, adding issues if broken."""


@dataclass(frozen=True)
class FieldCheck(Generic[T]):
    """A record-level rule that reads only the named wire fields: it still runs when other fields
    of the record were rejected (they hold their "not given" value then)."""

    fn: Callable[[T, str, Issues], None]
    fields: frozenset[str]

    def __call__(self, record: T, path: str, issues: Issues) -> None:
        self.fn(record, path, issues)


def uses(*fields: str) -> Callable[[Callable[[T, str, Issues], None]], FieldCheck[T]]:
    """Decorator declaring which wire fields a record check depends on (see FieldCheck)."""

    def wrap(fn: Callable[[T, str, Issues], None]) -> FieldCheck[T]:
        return FieldCheck(fn, frozenset(fields))

    return wrap


class Codec(ABC, Generic[T]):
    """Decode a raw wire value into T (or INVALID, with issues added) and encode T back."""

    expected = "a value"

    @abstractmethod
    def decode(self, raw: object, path: str, issues: Issues) -> T | Invalid: ...

    @abstractmethod
    def encode(self, value: T) -> Any: ...

    def type_error(self, raw: object, path: str, issues: Issues) -> Invalid:
        issues.add(path, f"expected {self.expected}, got {describe_value(raw)}")
        return INVALID


class Text(Codec[str]):
    """A string, optionally converted/validated by `convert` (raises ValueError with the reason)."""

    expected = "a string"

    def __init__(self, convert: Callable[[str], str] | None = None, *, max_len: int | None = None,
                 non_empty: bool = False) -> None:
        self.convert = convert
        self.max_len = max_len
        self.non_empty = non_empty

    def decode(self, raw: object, path: str, issues: Issues) -> str | Invalid:
        if not isinstance(raw, str):
            return self.type_error(raw, path, issues)
        if self.non_empty and not raw:
            issues.add(path, "must not be empty")
            return INVALID
        if self.max_len is not None and len(raw) > self.max_len:
            issues.add(path, f"is too long ({len(raw)} characters; at most {self.max_len} allowed)")
            return INVALID
        if self.convert is None:
            return raw
        try:
            return self.convert(raw)
        except ValueError as exc:
            issues.add(path, str(exc))
            return INVALID

    def encode(self, value: str) -> Any:
        return value


class Bool(Codec[bool]):
    expected = "a boolean (true or false)"

    def decode(self, raw: object, path: str, issues: Issues) -> bool | Invalid:
        if not isinstance(raw, bool):
            return self.type_error(raw, path, issues)
        return raw

    def encode(self, value: bool) -> Any:
        return value


class Int(Codec[int]):
    """An integer in [lo, hi] (either bound optional); booleans are not integers here."""

    expected = "an integer"

    def __init__(self, lo: int | None = None, hi: int | None = None, *, hint: str = "") -> None:
        self.lo = lo
        self.hi = hi
        self.hint = hint

    def decode(self, raw: object, path: str, issues: Issues) -> int | Invalid:
        if isinstance(raw, bool) or not isinstance(raw, int):
            return self.type_error(raw, path, issues)
        if (self.lo is not None and raw < self.lo) or (self.hi is not None and raw > self.hi):
            issues.add(path, f"{raw} is out of range: {self.hint or self.range_text()}")
            return INVALID
        return raw

    def range_text(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"must be {self.lo}-{self.hi}"
        if self.lo is not None:
            return f"must be at least {self.lo}"
        return f"must be at most {self.hi}"

    def encode(self, value: int) -> Any:
        return value


class Float(Codec[float]):
    """A finite number; integral values are encoded as integers (so `order: 100` stays `100`)."""

    expected = "a number"

    def decode(self, raw: object, path: str, issues: Issues) -> float | Invalid:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return self.type_error(raw, path, issues)
        value = float(raw)
        if not math.isfinite(value):
            issues.add(path, f"{raw} is not a finite number")
            return INVALID
        return value

    def encode(self, value: float) -> Any:
        return int(value) if value.is_integer() and abs(value) < 2**53 else value


class Enum(Codec[str]):
    """One of a fixed set of strings. `case_insensitive` accepts any case and keeps the input's
    spelling (Felix parses such values case-insensitively); `canonical` instead stores the listed
    spelling."""

    expected = "a string"

    def __init__(self, *values: str, case_insensitive: bool = False, canonical: bool = False) -> None:
        self.values = values
        self.case_insensitive = case_insensitive or canonical
        self.canonical = canonical
        self._folded = {v.lower(): v for v in values}

    def decode(self, raw: object, path: str, issues: Issues) -> str | Invalid:
        if not isinstance(raw, str):
            return self.type_error(raw, path, issues)
        if raw in self.values:
            return raw
        if self.case_insensitive and raw.lower() in self._folded:
            return self._folded[raw.lower()] if self.canonical else raw
        issues.add(path, f"{raw!r} is not valid: must be one of {', '.join(self.values)}")
        return INVALID

    def encode(self, value: str) -> Any:
        return value


class ListOf(Codec[tuple[T, ...]]):
    """A list decoded element by element into a tuple. `allow_null` permits null elements (kept as
    None, e.g. free slots of an IPAM block); `unique` rejects repeated elements."""

    expected = "a list"

    def __init__(self, item: Codec[T], *, max_items: int | None = None, unique: bool = False,
                 allow_null: bool = False) -> None:
        self.item = item
        self.max_items = max_items
        self.unique = unique
        self.allow_null = allow_null

    def decode(self, raw: object, path: str, issues: Issues) -> tuple[T, ...] | Invalid:
        if not isinstance(raw, list | tuple):
            return self.type_error(raw, path, issues)
        ok = True
        if self.max_items is not None and len(raw) > self.max_items:
            issues.add(path, f"has {len(raw)} entries; at most {self.max_items} are allowed")
            ok = False
        out: list[Any] = []
        for i, element in enumerate(raw):
            if element is None:
                if self.allow_null:
                    out.append(None)
                    continue
                issues.add(index(path, i), "must not be null")
                ok = False
                continue
            value = self.item.decode(element, index(path, i), issues)
            if isinstance(value, Invalid):
                ok = False
                continue
            if self.unique and value in out:
                issues.add(index(path, i), f"{self.item.encode(value)!r} is listed more than once")
                ok = False
            out.append(value)
        return tuple(out) if ok else INVALID

    def encode(self, value: tuple[T, ...]) -> Any:
        return [None if v is None else self.item.encode(v) for v in value]


class MapOf(Codec[FrozenMap[str, T]]):
    """A mapping with string keys; `key` validates/normalises each key (raises ValueError)."""

    expected = "a mapping"

    def __init__(self, value: Codec[T], *, key: Callable[[str], str] | None = None,
                 check: Callable[[FrozenMap[str, T]], str | None] | None = None) -> None:
        self.value = value
        self.key = key
        self.check = check

    def decode(self, raw: object, path: str, issues: Issues) -> FrozenMap[str, T] | Invalid:
        if not isinstance(raw, Mapping):
            return self.type_error(raw, path, issues)
        ok = True
        out: dict[str, T] = {}
        for k, v in raw.items():
            sub = join(path, k)
            if not isinstance(k, str):
                issues.add(sub, f"keys must be strings, got {describe_value(k)}")
                ok = False
                continue
            key = k
            if self.key is not None:
                try:
                    key = self.key(k)
                except ValueError as exc:
                    issues.add(sub, str(exc))
                    ok = False
            if v is None:
                issues.add(sub, "must not be null")
                ok = False
                continue
            value = self.value.decode(v, sub, issues)
            if isinstance(value, Invalid):
                ok = False
                continue
            out[key] = value
        if not ok:
            return INVALID
        result = FrozenMap(out)
        if self.check is not None:
            reason = self.check(result)
            if reason:
                issues.add(path, reason)
                return INVALID
        return result

    def encode(self, value: FrozenMap[str, T]) -> Any:
        return {k: self.value.encode(v) for k, v in value.items()}


class Converted(Codec[T]):
    """A value of any raw type turned into T by `parse(raw)` (raises ValueError with the reason,
    TypeError for a wrong raw type) and back by `dump`."""

    def __init__(self, parse: Callable[[object], T], dump: Callable[[T], Any], expected: str) -> None:
        self.parse = parse
        self.dump = dump
        self.expected = expected

    def decode(self, raw: object, path: str, issues: Issues) -> T | Invalid:
        try:
            return self.parse(raw)
        except TypeError:
            return self.type_error(raw, path, issues)
        except ValueError as exc:
            issues.add(path, str(exc))
            return INVALID

    def encode(self, value: T) -> Any:
        return self.dump(value)


class JSONValue(Codec[Any]):
    """Any JSON-compatible value, kept as plain Python data (used for free-form `status`)."""

    expected = "a JSON value"

    def decode(self, raw: object, path: str, issues: Issues) -> Any:
        if not _is_json(raw):
            issues.add(path, f"holds a value that cannot be represented in JSON ({describe_value(raw)})")
            return INVALID
        return _copy_json(raw)

    def encode(self, value: Any) -> Any:
        return _copy_json(value)


def _is_json(raw: object) -> bool:
    if raw is None or isinstance(raw, str | bool | int):
        return True
    if isinstance(raw, float):
        return math.isfinite(raw)
    if isinstance(raw, list | tuple):
        return all(_is_json(v) for v in raw)
    if isinstance(raw, Mapping):
        return all(isinstance(k, str) and _is_json(v) for k, v in raw.items())
    return False


def _copy_json(raw: Any) -> Any:
    if isinstance(raw, Mapping):
        return {k: _copy_json(v) for k, v in raw.items()}
    if isinstance(raw, list | tuple):
        return [_copy_json(v) for v in raw]
    return raw


@dataclass(frozen=True)
class Wire:
    """Annotation marker: the codec of a record field and its wire name (default: camelCase)."""

    codec: Codec[Any]
    name: str | None = None


@dataclass(frozen=True)
class FieldSpec:
    attr: str
    wire: str
    codec: Codec[Any]
    required: bool
    empty: Any  # the value meaning "not given" (None, (), FrozenMap(), or a default record)


def camel(attr: str) -> str:
    """snake_case attribute name -> camelCase wire name (`block_size` -> `blockSize`)."""
    head, *rest = attr.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class Struct(Codec[T]):
    """A frozen dataclass record; see the module docstring for the rules."""

    expected = "a mapping"

    def __init__(self, cls: type[T], *, checks: Sequence[Check[T]] = (),
                 hints: Mapping[str, str] | None = None) -> None:
        self.cls = cls
        self.checks = tuple(checks)
        self.hints = dict(hints or {})
        self._fields: tuple[FieldSpec, ...] | None = None

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        if self._fields is None:
            self._fields = tuple(_field_specs(self.cls))
        return self._fields

    def decode(self, raw: object, path: str, issues: Issues) -> T | Invalid:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            return self.type_error(raw, path, issues)
        by_wire = {f.wire: f for f in self.fields}
        unknown = False
        for key in raw:
            if key not in by_wire:
                issues.add(join(path, key), self._unknown(key, by_wire))
                unknown = True
        values: dict[str, Any] = {}
        failed: set[str] = set()
        for spec in self.fields:
            raw_value = raw.get(spec.wire)
            sub = join(path, spec.wire)
            if raw_value is None:
                if spec.required:
                    issues.add(sub, "is required")
                    failed.add(spec.wire)
                continue
            value = spec.codec.decode(raw_value, sub, issues)
            if isinstance(value, Invalid):
                failed.add(spec.wire)
            else:
                values[spec.attr] = value
        if any(f.required and f.wire in failed for f in self.fields):
            return INVALID
        record = self.cls(**values)
        for check in self.checks:
            deps = check.fields if isinstance(check, FieldCheck) else None
            if not (failed or unknown) or (deps is not None and not deps & failed):
                check(record, path, issues)
        return INVALID if failed or unknown else record

    def _unknown(self, key: object, by_wire: Mapping[str, FieldSpec]) -> str:
        text = str(key)
        if text in self.hints:
            return f"unknown field {text!r}: {self.hints[text]}"
        folded = {w.lower(): w for w in by_wire}
        guess = folded.get(text.lower()) or next(iter(difflib.get_close_matches(text, by_wire, n=1)), None)
        if guess:
            return f"unknown field {text!r} (did you mean {guess!r}?)"
        return f"unknown field {text!r}"

    def encode(self, value: T) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in self.fields:
            v = getattr(value, spec.attr)
            if v is None or (spec.empty is not None and v == spec.empty):
                continue
            out[spec.wire] = spec.codec.encode(v)
        return out


def _field_specs(cls: type[Any]) -> Iterable[FieldSpec]:
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        marker = next((m for m in getattr(hints[f.name], "__metadata__", ()) if isinstance(m, Wire)), None)
        if marker is None:
            raise TypeError(f"{cls.__name__}.{f.name} has no Wire(...) annotation")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.default is not dataclasses.MISSING:
            empty = f.default
        elif f.default_factory is not dataclasses.MISSING:
            empty = f.default_factory()
        else:
            empty = None
        yield FieldSpec(f.name, marker.name or camel(f.name), marker.codec, required, empty)

