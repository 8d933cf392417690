"""The sqlite watch poller: one thread per `SqliteDatastore` that turns event-log rows into watch events.

Input: its own sqlite connection to the store file and the watches of this process (`add`/`remove`,
each with a `WatchCursor`). Output: events pushed to each watch's `QueueWatch`.

It wakes when the store's write-ahead log is written (inotify on the file's directory: a commit by
any process or connection writes `<db>-wal`), when a write through the owning object or a new watch
wakes it, and at the latest every `interval` (10 ms) where inotify is unavailable, or every second
where it works (a safety net: an idle host's two pollers then cost one wake a second each instead of
100). Should a timed look ever find a commit while inotify reported no log write for two seconds (a
filesystem where it is silent, e.g. some network and overlay filesystems), the poller says so once
and looks every 50 ms from then on. It then reads `PRAGMA data_version`, which changes only when
another connection committed; only then (or when a watch was just added) it reads
the new `events` rows in one read transaction, 1000 at a time, and pushes each to the watches whose
prefix matches and whose cursor is behind it. A log write can be seen a moment before its commit is
visible (the writer updates the shared index after writing the log), so a wake that finds nothing
new looks again after 1, 2, 4, ... 64 ms (one tiny query each, never longer than `interval`).
Waiting is blocking (`select`), never a busy loop.

Invariants: a watch's cursor `(revision, seq)` only moves forward and moves past a row only after
the row was pushed, so delivery is in order and exactly once;
a cursor at or below `meta.compacted` gets one RESYNC (revision `compacted + 1`) and is dropped.
At most every 100 ms (while idle: on each timed look) it also asks the owner to reap expired
leases. If polling keeps failing for longer than the owner's busy timeout, every watch fails with
`DatastoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tortie.common.errors import DatastoreError, DatastoreUnavailable
from tortie.datastore._codec import decode_stored
from tortie.datastore._watchbase import QueueWatch
from tortie.datastore.api import EventType, WatchEvent

log = logging.getLogger(__name__)

_POLL_REAP_INTERVAL_S = 0.1
_DELIVER_BATCH = 1000
_RECHECKS_S = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064)  # after a log write not visible yet
_INOTIFY_IDLE_S = 1.0  # longest wait between looks while inotify has reported every commit
_INOTIFY_FALLBACK_S = 0.05  # the same once inotify missed a commit

IN_MODIFY = 0x2
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000
_IN_EVENT = struct.Struct("=iIII")  # wd, mask, cookie, len; then `len` bytes of NUL-padded name


class WalWatch:
    """inotify on the store's directory, reporting writes to its write-ahead log `<name>-wal`.

    The directory (not the file) is watched so that a log deleted and re-created (the last connection
    closing, another process opening) keeps being seen. `fileno()` becomes readable on events;
    `drain()` consumes them and says whether one concerned our log (or the queue overflowed).
    Raises OSError when inotify is unavailable; callers then rely on polling alone.
    """

    def __init__(self, db_path: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        directory = os.path.dirname(os.path.abspath(db_path)) or "/"
        mask = IN_MODIFY | IN_CREATE | IN_MOVED_TO
        if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify on {directory}: {os.strerror(err)}")
        self._fd = fd
        self._name = os.fsencode(os.path.basename(db_path) + "-wal")

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> bool:
        ours = False
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return ours
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            offset = 0
            while offset + _IN_EVENT.size <= len(data):
                _wd, mask, _cookie, length = _IN_EVENT.unpack_from(data, offset)
                start = offset + _IN_EVENT.size
                name = data[start : start + length].rstrip(b"\0")
                offset = start + length
                if mask & IN_Q_OVERFLOW or name == self._name:
                    ours = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


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
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._fds_lock = threading.Lock()
        self._fds_open = True
        self._stopping = False
        self._wal: WalWatch | None
        try:
            self._wal = WalWatch(str(ds.path))
        except OSError as e:
            log.info("sqlite watch: no inotify, polling every %gs path=%s error=%s", interval, ds.path, e)
            self._wal = None

    def add(self, queue: QueueWatch, state: WatchCursor) -> None:
        with self._lock:
            if self._stopping:
                queue.end()
                return
            self._watches[queue] = state
        self.wake()

    def remove(self, queue: QueueWatch) -> None:
        with self._lock:
            self._watches.pop(queue, None)

    def wake(self) -> None:
        with self._fds_lock:
            if self._fds_open:
                with contextlib.suppress(BlockingIOError):  # a full pipe already means "wake up"
                    os.write(self._wake_w, b"x")

    def _wait(self, timeout: float) -> tuple[bool, bool]:
        """Block until woken, the log was written, or `timeout`: (log written, woken by `wake()`)."""
        fds = [self._wake_r] if self._wal is None else [self._wake_r, self._wal.fileno()]
        readable, _, _ = select.select(fds, [], [], timeout)
        woken = self._wake_r in readable
        if woken:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 4096):
                    pass
        return self._wal is not None and self._wal.fileno() in readable and self._wal.drain(), woken

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            queues = list(self._watches)
            self._watches.clear()
        self.wake()
        if self is not threading.current_thread():
            self.join(timeout=5.0)
        for q in queues:
            q.end()
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        if not self.is_alive():
            self._close_fds()

    def _close_fds(self) -> None:
        with self._fds_lock:
            if not self._fds_open:
                return
            self._fds_open = False
            if self._wal is not None:
                self._wal.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def run(self) -> None:
        idle = self._interval if self._wal is None else max(self._interval, _INOTIFY_IDLE_S)
        last_version: int | None = None
        last_reap = 0.0
        failing_since: float | None = None
        rechecks: tuple[float, ...] = ()
        # When inotify last reported a log write. Not "since the last delivery": one wake drains the
        # reports of every writer so far, including a commit that becomes visible only after that
        # wake's delivery (its writer updates the shared index after writing the log).
        last_report = float("-inf")
        while True:
            log_written, woken = self._wait(min(rechecks[0], idle) if rechecks else idle)
            rechecks = rechecks[1:]
            if log_written:
                last_report = time.monotonic()
            with self._lock:
                if self._stopping:
                    return
                fresh = any(s.fresh for s in self._watches.values())
                have_watches = bool(self._watches)
            try:
                version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
                if have_watches and (version != last_version or fresh):
                    recent = time.monotonic() - last_report < 2 * idle
                    if self._inotify_missed(idle, last_version, version, recent or woken or fresh):
                        idle = max(self._interval, _INOTIFY_FALLBACK_S)
                    last_version = version
                    self._deliver()
                elif log_written:
                    rechecks = _RECHECKS_S  # the commit may not be visible yet: look again shortly
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

    def _inotify_missed(self, idle: float, last: int | None, version: int, explained: bool) -> bool:
        """True (and said once) when a timed look found a commit while inotify had reported no log
        write for two idle intervals."""
        if self._wal is None or explained or last is None or version == last or idle < _INOTIFY_IDLE_S:
            return False
        log.warning("sqlite watch: inotify missed a commit; polling every %gs from now on path=%s",
                    max(self._interval, _INOTIFY_FALLBACK_S), self._ds.path)
        return True

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
                            q.push(_event(rev, key, typ, value, prev))
                        st.after, st.after_seq = rev, seq
                if len(rows) < _DELIVER_BATCH:
                    for _, st in live:  # the last revision read is complete: nothing newer is visible
                        if rows and st.after == rows[-1][0]:
                            st.after_seq = _ALL_SEQ
                    return
                low = (rows[-1][0], rows[-1][1])
        finally:
            conn.execute("COMMIT")


def _event(rev: int, key: str, typ: str, value: str | None, prev: str | None) -> WatchEvent:
    """One event-log row as a watch event; a bad stored value is flagged, never raised."""
    prev_value, prev_problem = decode_stored(prev) if prev is not None else (None, None)
    if typ != "put":
        return WatchEvent(EventType.DELETE, key, None, rev, None if prev_problem else prev_value)
    new_value, problem = decode_stored(value if value is not None else "")
    return WatchEvent(EventType.PUT, key, new_value, rev, None if prev_problem else prev_value, problem)
