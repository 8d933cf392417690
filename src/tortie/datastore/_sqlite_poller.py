"""The sqlite watch poller: one thread per `SqliteDatastore` that turns event-log rows into watch events.

Input: its own sqlite connection to the store file and the watches of this process (`add`/`remove`,
each with a `WatchCursor`). Output: events pushed to each watch's `QueueWatch`.

Every `interval` (10 ms) it reads `PRAGMA data_version`, which changes only when another connection
committed; only then (or when a watch was just added, or a local write woke it) it reads the new
`events` rows in one read transaction, 1000 at a time, and pushes each to the watches whose prefix
matches and whose cursor is behind it. Invariants: a watch's cursor `(revision, seq)` only moves
forward and moves past a row only after the row was pushed, so delivery is in order and exactly once;
a cursor at or below `meta.compacted` gets one RESYNC (revision `compacted + 1`) and is dropped.
Every 100 ms it also asks the owner to reap expired leases. If polling keeps failing for longer than
the owner's busy timeout, every watch fails with `DatastoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tortie.common.errors import DatastoreError, DatastoreUnavailable
from tortie.datastore._codec import decode_value
from tortie.datastore._watchbase import QueueWatch
from tortie.datastore.api import EventType, WatchEvent

log = logging.getLogger(__name__)

_POLL_REAP_INTERVAL_S = 0.1
_DELIVER_BATCH = 1000


class PollerOwner(Protocol):
    """What the poller needs from its datastore (SqliteDatastore implements it)."""

    @property
    def path(self) -> Path: ...

    @property
    def busy_timeout(self) -> float: ...

    def _reap_if_due(self, interval: float) -> None: ...


_ALL_SEQ = 1 << 62  # cursor seq meaning "every event of this revision was delivered"


@dataclass
class WatchCursor:
    """Delivery cursor of one watch: everything up to (after, after_seq) has been handed over."""

    prefix: str
    after: int
    after_seq: int = _ALL_SEQ
    fresh: bool = True

    @property
    def complete_revision(self) -> int:
        return self.after if self.after_seq == _ALL_SEQ else self.after - 1


class Poller(threading.Thread):
    """Delivers new event-log rows to this process's watches; also reaps expired leases."""

    def __init__(self, ds: PollerOwner, conn: sqlite3.Connection, interval: float) -> None:
        super().__init__(name=f"tortie-sqlite-watch:{ds.path.name}", daemon=True)
        self._ds = ds
        self._conn = conn
        self._interval = interval
        self._lock = threading.Lock()
        self._watches: dict[QueueWatch, WatchCursor] = {}
        self._wake = threading.Event()
        self._stopping = False

    def add(self, queue: QueueWatch, state: WatchCursor) -> None:
        with self._lock:
            if self._stopping:
                queue.end()
                return
            self._watches[queue] = state
        self._wake.set()

    def remove(self, queue: QueueWatch) -> None:
        with self._lock:
            self._watches.pop(queue, None)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            queues = list(self._watches)
            self._watches.clear()
        self._wake.set()
        if self is not threading.current_thread():
            self.join(timeout=5.0)
        for q in queues:
            q.end()
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def run(self) -> None:
        last_version: int | None = None
        last_reap = 0.0
        failing_since: float | None = None
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                fresh = any(s.fresh for s in self._watches.values())
                have_watches = bool(self._watches)
            try:
                version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
                if have_watches and (version != last_version or fresh):
                    last_version = version
                    self._deliver()
                now = time.monotonic()
                if now - last_reap >= _POLL_REAP_INTERVAL_S:
                    last_reap = now
                    self._ds._reap_if_due(0.0)
                failing_since = None
            except (sqlite3.Error, DatastoreError) as e:
                last_version = None  # retry the delivery on the next round
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    log.warning("sqlite watch poll failed path=%s error=%s", self._ds.path, e)
                elif now - failing_since > self._ds.busy_timeout:
                    self._fail_all(e)
                    failing_since = None
                time.sleep(self._interval)

    def _fail_all(self, e: Exception) -> None:
        with self._lock:
            queues = list(self._watches)
            self._watches.clear()
        err = DatastoreUnavailable(f"sqlite datastore {self._ds.path}: watch polling keeps failing: {e}")
        for q in queues:
            q.fail(err)

    def _deliver(self) -> None:
        conn = self._conn
        conn.execute("BEGIN")
        try:
            compacted = int(conn.execute("SELECT compacted FROM meta WHERE id = 1").fetchone()[0])
            with self._lock:
                states = list(self._watches.items())
                for _, st in states:
                    st.fresh = False
            live: list[tuple[QueueWatch, WatchCursor]] = []
            for q, st in states:
                if st.complete_revision < compacted:
                    q.push(WatchEvent(EventType.RESYNC, "", None, compacted + 1))
                    self.remove(q)
                elif q.active:
                    live.append((q, st))
                else:
                    self.remove(q)
            if not live:
                return
            low = min((st.after, st.after_seq) for _, st in live)
            while True:
                rows: list[tuple[int, int, str, str, str | None, str | None]] = conn.execute(
                    "SELECT revision, seq, key, type, value, prev_value FROM events"
                    " WHERE (revision, seq) > (?, ?) ORDER BY revision, seq LIMIT ?",
                    (low[0], low[1], _DELIVER_BATCH),
                ).fetchall()
                for rev, seq, key, typ, value, prev in rows:
                    for q, st in live:
                        if (rev, seq) <= (st.after, st.after_seq):
                            continue
                        if key.startswith(st.prefix):
                            q.push(
                                WatchEvent(
                                    EventType.PUT if typ == "put" else EventType.DELETE,
                                    key,
                                    decode_value(value) if value is not None else None,
                                    rev,
                                    decode_value(prev) if prev is not None else None,
                                )
                            )
                        st.after, st.after_seq = rev, seq
                if len(rows) < _DELIVER_BATCH:
                    for _, st in live:  # the last revision read is complete: nothing newer is visible
                        if rows and st.after == rows[-1][0]:
                            st.after_seq = _ALL_SEQ
                    return
                low = (rows[-1][0], rows[-1][1])
        finally:
            conn.execute("COMMIT")
