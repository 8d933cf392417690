"""Value encoding shared by the backends: a value is a JSON object stored as compact JSON text.

`encode_value(key, value)` checks that `value` is a JSON object made of JSON types and returns its text
(non-ASCII kept as UTF-8); anything else raises `UserError` naming the key. `decode_value(text)` is
the inverse; `decode_stored(text)` is the reading side's tolerant form (a bad record becomes
`({}, problem)`, never an exception: see "Bad records" in `tortie.datastore.api`) and `stored_kv`
builds a KV with it. `prefix_end(prefix)` is the smallest string greater than every string starting with
`prefix` (code-point order, which equals UTF-8 byte order), or None when no such bound exists.
`check_ops(ops)` validates a `commit` (known op names, distinct keys, values present and encodable)
and the small error constructors keep the messages of the three backends identical.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tortie.common.errors import AlreadyExists, Conflict, DatastoreError, LeaseExpired, NotFound, UserError
from tortie.datastore.api import KV, JSONObject, TxnOp


def encode_value(key: str, value: JSONObject) -> str:
    if not isinstance(value, dict):
        raise UserError(f"value for key {key!r} must be a JSON object, got {type(value).__name__}")
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise UserError(f"value for key {key!r} is not JSON-serialisable: {e}") from e


def decode_value(text: str | bytes) -> JSONObject:
    try:
        value: Any = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than json can read
        raise DatastoreError(f"stored value is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise DatastoreError(f"stored value is not a JSON object: {type(value).__name__}")
    return value


def decode_stored(text: str | bytes) -> tuple[JSONObject, str | None]:
    """(value, None) for a stored JSON object; ({}, why) for anything else."""
    try:
        return decode_value(text), None
    except DatastoreError as e:
        return {}, str(e)


def raw_text(text: str | bytes) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def stored_kv(
    key: str, text: str | bytes, mod_revision: int, create_revision: int, lease: int | None,
    decode: Callable[[Any], JSONObject] = decode_value,
) -> KV:
    """The KV of a stored row; `decode` may be a faster decoder with the same results and errors."""
    try:
        value = decode(text)
    except DatastoreError as e:
        return KV(key, {}, mod_revision, create_revision, lease, problem=str(e), raw=raw_text(text))
    return KV(key, value, mod_revision, create_revision, lease)


def check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise UserError(f"datastore key must be a non-empty string, got {key!r}")


def prefix_end(prefix: str) -> str | None:
    """Upper bound (exclusive) of the key range starting with `prefix`; None means "no bound"."""
    chars = list(prefix)
    while chars:
        c = ord(chars[-1])
        nxt = c + 1
        if nxt == 0xD800:  # skip the surrogate block, which cannot be encoded
            nxt = 0xE000
        if nxt <= 0x10FFFF:
            chars[-1] = chr(nxt)
            return "".join(chars)
        chars.pop()
    return None


OP_NAMES = frozenset({"create", "update", "put", "delete"})


@dataclass(frozen=True)
class CheckedOp:
    """A validated `TxnOp` with its value already encoded (None for delete)."""

    op: str
    key: str
    text: str | None
    expected_revision: int | None
    lease: int | None


def check_ops(ops: Sequence[TxnOp]) -> list[CheckedOp]:
    """Validate a transaction: known op names, non-empty distinct keys, JSON values where needed."""
    seen: set[str] = set()
    out: list[CheckedOp] = []
    for op in ops:
        if op.op not in OP_NAMES:
            raise UserError(f"unknown transaction operation {op.op!r} for key {op.key!r}")
        check_key(op.key)
        if op.key in seen:
            raise UserError(f"key {op.key!r} appears more than once in one transaction")
        seen.add(op.key)
        text: str | None = None
        if op.op == "delete":
            if op.lease is not None:
                raise UserError(f"delete of {op.key!r} cannot carry a lease")
        else:
            if op.value is None:
                raise UserError(f"{op.op} of {op.key!r} needs a value")
            text = encode_value(op.key, op.value)
        if op.expected_revision is not None and op.op in ("create", "put"):
            raise UserError(f"{op.op} of {op.key!r} cannot carry an expected revision")
        out.append(CheckedOp(op.op, op.key, text, op.expected_revision, op.lease))
    return out


def violation(op: CheckedOp, current: int | None) -> DatastoreError | None:
    """Why `op` cannot apply to its key, now at mod revision `current` (None: absent), or None."""
    if op.op == "create" and current is not None:
        return exists(op.key)
    if op.op in ("update", "delete"):
        if current is None:
            return missing(op.key)
        if op.expected_revision is not None and current != op.expected_revision:
            return conflict(op.key, current, op.expected_revision)
    return None


def conflict(key: str, actual: int, expected: int) -> Conflict:
    return Conflict(f"key {key!r} is at revision {actual}, not the expected {expected}")


def missing(key: str) -> NotFound:
    return NotFound(f"key {key!r} does not exist")


def exists(key: str) -> AlreadyExists:
    return AlreadyExists(f"key {key!r} already exists")


def lease_gone(lease: int) -> LeaseExpired:
    return LeaseExpired(f"lease {lease} does not exist (expired or revoked)")
