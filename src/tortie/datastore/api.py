"""The Datastore contract shared by every backend (sqlite, etcd, memory).

The store is a flat, ordered key space of JSON objects (`dict[str, Any]`), like etcd v3:

* Every successful write (create, update, put, delete, lease expiry) gets a new cluster-wide revision;
  revisions are integers, strictly increasing, never reused. `KV.mod_revision` is the revision of the
  last write to that key and is what the resource layer exposes as `metadata.resourceVersion`.
* `list(prefix)` returns the keys under `prefix` in key order together with the store revision the
  snapshot was taken at; `watch(prefix, after_revision=R)` then delivers every later change under
  `prefix`, in revision order, exactly once. If revision R+1 is no longer available (compacted), the
  watch delivers one `EventType.RESYNC` event and ends: the consumer must list again.
* Compare-and-swap: `update(..., expected_revision=R)` and `delete(..., expected_revision=R)` succeed
  only if the key's current `mod_revision` is R, else raise `Conflict`.
* Leases: `grant_lease(ttl)` returns an id; keys written with that lease are deleted (with DELETE
  events) when it expires or is revoked; `refresh_lease` extends it. As in etcd, a write's `lease`
  replaces the key's lease (None detaches it). Using, refreshing or revoking a lease that no longer
  exists raises `LeaseExpired`.

Transactions: `commit(ops)` applies several create/update/put/delete operations atomically (all or
nothing) at ONE new revision shared by all of them; their watch events carry that revision and come
in op order. A failing condition raises the error the single operation would raise (AlreadyExists,
NotFound, Conflict), naming the key, and nothing is written. The CLI uses it so that a multi-document
apply is never applied partly.

Errors: `NotFound`, `AlreadyExists`, `Conflict`, `DatastoreUnavailable`, `LeaseExpired` from
`tortie.common.errors`. Backends translate their own errors into these.

Bad records: tortie only ever writes JSON objects, but a stored value can be anything (written by
hand, by another tool or an older version, torn). Reading one never raises: `get`, `list`, the KV a
`delete` returns and watch events carry it with `value == {}` and `problem` set to what is wrong
(`KV.raw` keeps the stored text), so that one bad record never stops a listing or a watch. A consumer
treats such a record as present-but-invalid (the agent: absent, with a warning naming the key), and
an operator can always delete it by key (`delete(key)` works on any stored value).

All methods are thread-safe; watches may be consumed from another thread.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

JSONObject = dict[str, Any]


@dataclass(frozen=True)
class KV:
    """One stored key: its value and the revisions the store keeps for it."""

    key: str
    value: JSONObject
    mod_revision: int
    create_revision: int
    lease: int | None = None
    problem: str | None = None
    """Why the stored value is not a JSON object (then `value` is {}); None for every good record."""
    raw: str | None = None
    """The stored text when `problem` is set (invalid UTF-8 replaced), for showing it to an operator."""


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"
    RESYNC = "resync"  # the watch fell behind compaction: list again, then watch from the new revision


@dataclass(frozen=True)
class WatchEvent:
    """A change under a watched prefix.

    PUT: `value` is the new value, `prev_value` the old one (None on create).
    DELETE: `value` is None, `prev_value` the deleted value when the backend knows it.
    RESYNC: key is "" and revision is the oldest revision still available (or 0 if unknown).
    A PUT of a bad record has `value == {}` and `problem` set (see the module docstring); a bad
    previous value is reported as None.
    """

    type: EventType
    key: str
    value: JSONObject | None
    revision: int
    prev_value: JSONObject | None = None
    problem: str | None = None


@dataclass(frozen=True)
class TxnOp:
    """One operation of a `commit`. op is "create", "update", "put" or "delete"; `expected_revision`
    makes update/delete conditional (CAS) as in the single-key methods."""

    op: str
    key: str
    value: JSONObject | None = None
    expected_revision: int | None = None
    lease: int | None = None


class Watch(Protocol):
    """A stream of events. `get` returns the next event or None on timeout; after RESYNC or close
    it returns None forever. Iterating blocks until the watch is closed or ends. If the backend
    loses the store beyond its own retries, `get` (and iteration) raises `DatastoreUnavailable`
    once, after the events already received; the watch is then over (list again)."""

    def get(self, timeout: float | None = None) -> WatchEvent | None: ...

    def close(self) -> None: ...

    def __iter__(self) -> Any: ...


@runtime_checkable
class Datastore(Protocol):
    """Key/value store with revisions, CAS, watches and leases. See the module docstring."""

    def get(self, key: str) -> KV | None: ...

    def list(self, prefix: str) -> tuple[list[KV], int]: ...

    def create(self, key: str, value: JSONObject, lease: int | None = None) -> KV: ...

    def update(
        self, key: str, value: JSONObject, expected_revision: int | None = None, lease: int | None = None
    ) -> KV: ...

    def put(self, key: str, value: JSONObject, lease: int | None = None) -> KV: ...

    def delete(self, key: str, expected_revision: int | None = None) -> KV: ...

    def commit(self, ops: Sequence[TxnOp]) -> builtins.list[KV]:  # `list` is a method name here
        """Apply ops atomically; returns one KV per op (for delete: the deleted KV)."""
        ...

    def watch(self, prefix: str, after_revision: int) -> Watch: ...

    def current_revision(self) -> int: ...

    def grant_lease(self, ttl: float) -> int: ...

    def refresh_lease(self, lease: int) -> None: ...

    def revoke_lease(self, lease: int) -> None: ...

    def close(self) -> None: ...
