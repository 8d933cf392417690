"""Value types of agent configuration parameters: raw input (string from a file or the environment,
JSON value from a FelixConfiguration) -> typed value.

Each `ParamType` has a `name` shown in the reference docs and a `parse(raw)` that returns the typed
value or raises `ValueError` with a short reason. Typed values are immutable and comparable: str, int,
bool, float seconds for durations, tuple[str, ...] for lists.

Accepted spellings follow Felix (reference §1.7): booleans true/1/yes/y/t and false/0/no/n/f (any
case); durations as seconds (`90`, `1.5`) or Go duration strings (`90s`, `1m30s`, `500ms`) as
FelixConfiguration stores them; lists as comma-separated strings or JSON lists; enums case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@dataclass(frozen=True)
class ParamType:
    name: str
    parse: Callable[[object], object]


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {type(raw).__name__}")
    return raw.strip()


def parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a boolean (true/false, yes/no, 1/0)")


def parse_duration(raw: object) -> float:
    """Seconds from a number or a Go duration string (`1h2m3.5s`, `250ms`)."""
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a duration")
    if isinstance(raw, int | float):
        seconds = float(raw)
    else:
        text = str(raw).strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(f"{raw!r} is not a duration (e.g. 90, 90s, 1m30s, 500ms)") from None
    if seconds < 0:
        raise ValueError(f"{raw!r}: a duration cannot be negative")
    return seconds


def string_type() -> ParamType:
    return ParamType("string", _text)


def int_type(low: int, high: int) -> ParamType:
    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not an integer")
        try:
            value = raw if isinstance(raw, int) else int(str(raw).strip(), 0)
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return ParamType(f"integer {low}..{high}", parse)


def mtu_type(minimum: int) -> ParamType:
    """0 (detect) or an MTU of at least `minimum` (68 for IPv4, 1280 for IPv6) up to 65535."""
    as_int = int_type(0, 65535).parse

    def parse(raw: object) -> int:
        value = as_int(raw)
        assert isinstance(value, int)
        if 0 < value < minimum:
            raise ValueError(f"{value} is below the minimum MTU {minimum} (0 detects it)")
        return value

    return ParamType(f"0 (detect) or an MTU {minimum}..65535", parse)


def regex_type() -> ParamType:
    """A regular expression (Python's `re`, searched anywhere in the name as Felix's Go regexp)."""

    def parse(raw: object) -> str:
        text = _text(raw)
        try:
            re.compile(text)
        except re.error as exc:
            raise ValueError(f"{text!r} is not a regular expression: {exc}") from None
        return text

    return ParamType("regular expression", parse)


def bool_type() -> ParamType:
    return ParamType("boolean", parse_bool)


def duration_type() -> ParamType:
    return ParamType("duration (seconds or 90s / 1m30s)", parse_duration)


def list_type(item_pattern: str | None = None) -> ParamType:
    """Non-empty list of strings; each item must match `item_pattern` (a regex) when given."""
    pattern = re.compile(item_pattern) if item_pattern else None

    def parse(raw: object) -> tuple[str, ...]:
        if isinstance(raw, list | tuple):
            items = [str(x).strip() for x in raw]
        else:
            items = [part.strip() for part in _text(raw).split(",")]
        items = [x for x in items if x]
        if not items:
            raise ValueError("the list is empty")
        for item in items:
            if pattern is not None and not pattern.fullmatch(item):
                raise ValueError(f"{item!r} does not match {pattern.pattern}")
        return tuple(items)

    return ParamType("comma-separated list", parse)


def enum_type(choices: Sequence[str]) -> ParamType:
    canonical = {c.lower(): c for c in choices}

    def parse(raw: object) -> str:
        text = str(raw).strip().lower()
        if text not in canonical:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return canonical[text]

    return ParamType("one of " + " / ".join(choices), parse)
