"""In-process `Datastore` with the full contract: revisions, CAS, watches, compaction, leases.

For tests and the lab; nothing is persisted. One `threading.RLock` serialises every operation, so
revisions are handed out in the order writes happen and each write's event is pushed to the
matching watches while the lock is held (watch order == revision order, no gaps, no duplicates).

* The event history is a list of every event since the last `compact(revision)`; a watch that starts
  before the compacted point gets a single RESYNC. A `commit` gives all its ops one revision; their
  events follow op order.
* Leases use the injectable `clock` (default `time.monotonic`). Expired leases are reaped at the
  start of every operation and while a consumer is blocked in `Watch.get` (about every 50 ms), so a
  watcher sees the DELETE events without anyone else calling in; with a fake clock, advancing the
  clock and then calling anything (or waiting on a watch) expires them. One expiry is one write: all
  keys of the lease are deleted at one revision (in key order), as etcd does.
* Values are copied through JSON on the way in and out, so callers never share mutable state with
  the store, and non-JSON values fail the same way as on the real backends.
* `put_raw(key, text)` stores text as another tool could (tests of bad records): the contract's
  "bad records" then apply as on the real backends.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tortie.common.errors import UserError
from tortie.datastore._codec import (
    check_key,
    check_ops,
    lease_gone,
    stored_kv,
    violation,
)
from tortie.datastore._single_writes import SingleKeyWrites
from tortie.datastore._watchbase import QueueWatch
from tortie.datastore.api import KV, EventType, TxnOp, Watch, WatchEvent


@dataclass
class _Lease:
    ttl: float
    expires_at: float


@dataclass(frozen=True)
class _Watcher:
    prefix: str
    queue: QueueWatch


class MemoryDatastore(SingleKeyWrites):
    """The in-memory backend; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._revision = 0
        self._compacted = 0  # events with revision <= this are gone
        self._kvs: dict[str, KV] = {}
        self._history: list[WatchEvent] = []  # dense: one event per revision > _compacted
        self._watchers: list[_Watcher] = []
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x1000)
        self._closed = False

    # ----- reads -----

    def get(self, key: str) -> KV | None:
        with self._lock:
            self._reap()
            kv = self._kvs.get(key)
            return _copy_kv(kv) if kv is not None else None

    def list(self, prefix: str) -> tuple[list[KV], int]:
        with self._lock:
            self._reap()
            keys = sorted(k for k in self._kvs if k.startswith(prefix))
            return [_copy_kv(self._kvs[k]) for k in keys], self._revision

    def current_revision(self) -> int:
        with self._lock:
            self._reap()
            return self._revision

    # ----- writes -----

    def commit(self, ops: Sequence[TxnOp]) -> builtins.list[KV]:
        checked = check_ops(ops)
        with self._lock:
            self._reap()
            for op in checked:  # every condition first: all or nothing
                old = self._kvs.get(op.key)
                refused = violation(op, None if old is None else old.mod_revision)
                if refused is not None:
                    raise refused
                if op.lease is not None and op.lease not in self._leases:
                    raise lease_gone(op.lease)
            if not checked:
                return []
            self._revision += 1
            out: builtins.list[KV] = []
            for op in checked:
                old = self._kvs.get(op.key)
                if op.text is None:
                    assert old is not None
                    self._delete(old)
                    out.append(_copy_kv(old))
                else:
                    out.append(self._write(op.key, op.text, op.lease, old))
            return out

    def put_raw(self, key: str, text: str) -> KV:
        """Store `text` as it is, bypassing encoding (a test seam: another tool's bad record)."""
        check_key(key)
        with self._lock:
            self._reap()
            self._revision += 1
            return self._write(key, text, None, self._kvs.get(key))

    # ----- watches and history -----

    def watch(self, prefix: str, after_revision: int) -> Watch:
        with self._lock:
            self._reap()
            queue = QueueWatch(on_close=lambda: self._unregister(queue), tick=self._tick)
            watcher = _Watcher(prefix, queue)
            if after_revision < self._compacted:
                queue.push(WatchEvent(EventType.RESYNC, "", None, self._compacted + 1))
                return queue
            for ev in self._history:
                if ev.revision > after_revision and ev.key.startswith(prefix):
                    queue.push(_copy_event(ev))
            if self._closed:
                queue.end()
            else:
                self._watchers.append(watcher)
            return queue

    def compact(self, revision: int) -> None:
        """Forget the history before `revision` (watches from earlier revisions get RESYNC)."""
        with self._lock:
            revision = min(revision, self._revision + 1)
            if revision - 1 <= self._compacted:
                return
            self._compacted = revision - 1
            self._history = [ev for ev in self._history if ev.revision > self._compacted]

    # ----- leases -----

    def grant_lease(self, ttl: float) -> int:
        if ttl <= 0:
            raise UserError(f"lease TTL must be positive, got {ttl}")
        with self._lock:
            self._reap()
            lease_id = next(self._lease_ids)
            self._leases[lease_id] = _Lease(ttl, self._clock() + ttl)
            return lease_id

    def refresh_lease(self, lease: int) -> None:
        with self._lock:
            self._reap()
            entry = self._leases.get(lease)
            if entry is None:
                raise lease_gone(lease)
            entry.expires_at = self._clock() + entry.ttl

    def revoke_lease(self, lease: int) -> None:
        with self._lock:
            self._reap()
            if lease not in self._leases:
                raise lease_gone(lease)
            self._expire(lease)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            watchers, self._watchers = self._watchers, []
        for w in watchers:
            w.queue.end()

    # ----- internals (lock held) -----

    def _write(self, key: str, text: str, lease: int | None, old: KV | None) -> KV:
        create = old.create_revision if old is not None else self._revision
        kv = stored_kv(key, text, self._revision, create, lease)
        self._kvs[key] = kv
        prev = old.value if old is not None and old.problem is None else None
        self._emit(WatchEvent(EventType.PUT, key, kv.value, self._revision, prev, kv.problem))
        return _copy_kv(kv)

    def _delete(self, old: KV) -> None:
        del self._kvs[old.key]
        prev = old.value if old.problem is None else None
        self._emit(WatchEvent(EventType.DELETE, old.key, None, self._revision, prev))

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        live = []
        for w in self._watchers:
            if event.key.startswith(w.prefix) and not w.queue.push(_copy_event(event)):
                continue  # closed or ended: drop it
            if w.queue.active:
                live.append(w)
        self._watchers = live

    def _reap(self) -> None:
        if not self._leases:
            return
        now = self._clock()
        for lease_id in [i for i, e in self._leases.items() if e.expires_at <= now]:
            self._expire(lease_id)

    def _expire(self, lease_id: int) -> None:
        del self._leases[lease_id]
        keys = sorted(k for k, kv in self._kvs.items() if kv.lease == lease_id)
        if keys:
            self._revision += 1
            for key in keys:
                self._delete(self._kvs[key])

    def _tick(self) -> None:
        with self._lock:
            self._reap()

    def _unregister(self, queue: QueueWatch) -> None:
        with self._lock:
            self._watchers = [w for w in self._watchers if w.queue is not queue]


def _copy_kv(kv: KV) -> KV:
    return dataclasses.replace(kv, value=copy.deepcopy(kv.value))


def _copy_event(ev: WatchEvent) -> WatchEvent:
    return dataclasses.replace(ev, value=copy.deepcopy(ev.value), prev_value=copy.deepcopy(ev.prev_value))
