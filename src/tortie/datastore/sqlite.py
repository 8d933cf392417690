"""The embedded default `Datastore`: one SQLite file shared by many processes on one machine.

Inputs: a file path (its parent directory is created; a new file gets mode 0600, and SQLite gives its
`-wal` and `-shm` files the same mode). A database, `-wal` or `-shm` file that is world-writable is
refused (`DatastoreUnavailable` saying so): any local user could rewrite the network. Outputs: the
`tortie.datastore.api.Datastore` contract. Schema (see docs/design/datastore.md):

    meta(id=1, revision, compacted, schema_version)   the store revision; history <= compacted is gone
    kv(key PK, value JSON text, mod_revision, create_revision, lease)
    events(revision, seq, key, type 'put'|'delete', value, prev_value)  PK (revision, seq); one
                                                       revision per write, seq orders a commit's ops
    leases(id PK AUTOINCREMENT, ttl, expires_at)       expires_at is wall-clock (shared across processes)

Concurrency: WAL journal (readers never block the writer), `busy_timeout`, and every write is one
`BEGIN IMMEDIATE` transaction that reads the revision, checks the CAS condition, writes the row and
appends the event — so CAS and revision allocation are atomic across processes. Within a process one
connection is shared under a lock.

Watches: one poller thread per `SqliteDatastore` (started by the first `watch`; `_sqlite_poller.py`)
with its own connection. Every `poll_interval` (10 ms) it reads `PRAGMA data_version`, which changes only when
another connection committed, and only then reads the new event rows and hands them to the
matching watches; writes made through this object wake it at once. Each watch remembers the last
(revision, seq) it delivered, so delivery is in revision order, exactly once.

Compaction: the event log keeps the events of the newest `keep_events` (10,000) revisions; a write
that takes it more than 10% past that deletes the oldest rows and raises `meta.compacted`. A watch asking for
a revision <= compacted gets RESYNC. `compact(revision)` does the same on demand.

Leases: expiry is enforced without an explicit call — every write transaction first reaps expired
leases (deleting their keys with one DELETE event each), and so do the watch poller
(every 100 ms) and reads (at most every 50 ms, only when an expired lease exists). One expiry is one
write: the lease's keys are deleted at one revision.

Errors: sqlite3 errors become `DatastoreUnavailable` (lock held beyond `busy_timeout`, I/O errors,
unopenable file) with the file path in the message.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tortie.common.errors import DatastoreError, DatastoreUnavailable, TortieError, UserError
from tortie.datastore._codec import (
    check_ops,
    decode_value,
    lease_gone,
    prefix_end,
    stored_kv,
    violation,
)
from tortie.datastore._single_writes import SingleKeyWrites
from tortie.datastore._sqlite_poller import Poller, WatchCursor
from tortie.datastore._watchbase import QueueWatch
from tortie.datastore.api import KV, JSONObject, TxnOp, Watch

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1
DEFAULT_KEEP_EVENTS = 10_000
_READ_REAP_INTERVAL_S = 0.05

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL,"
    " compacted INTEGER NOT NULL, schema_version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta (id, revision, compacted, schema_version)"
    f" VALUES (1, 0, 0, {SCHEMA_VERSION})",
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
    " mod_revision INTEGER NOT NULL, create_revision INTEGER NOT NULL, lease INTEGER) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS events (revision INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,"
    " type TEXT NOT NULL, value TEXT, prev_value TEXT, PRIMARY KEY (revision, seq)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY AUTOINCREMENT, ttl REAL NOT NULL,"
    " expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at)",
)

_KV_COLUMNS = "key, value, mod_revision, create_revision, lease"
_KVRow = tuple[str, str, int, int, int | None]


def _kv(row: _KVRow, decode: Callable[[str], JSONObject] = decode_value) -> KV:
    return stored_kv(row[0], row[1], row[2], row[3], row[4], decode)


_BULK_DECODE_MIN = 256
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_bulk_loads: list[Callable[[str], Any] | None] = []  # [orjson.loads or None], resolved on first use


def _bulk_decoder() -> Callable[[str], JSONObject]:
    """`decode_value` at orjson's speed, for big listings (an agent lists tens of thousands of values
    when it starts). orjson is imported on first use only: the CNI plugin, which lists little, does
    not pay its import. What orjson refuses (text that is not valid UTF-8, 1e400, a non-object) and
    what it would read differently (integers beyond 64 bits become floats: any run of 19 digits)
    goes through `decode_value`: same results, same errors."""
    if not _bulk_loads:
        try:
            import orjson

            _bulk_loads.append(orjson.loads)
        except ImportError:  # a declared dependency, but the store works without it
            _bulk_loads.append(None)
    loads = _bulk_loads[0]
    if loads is None:
        return decode_value

    def decode(text: str) -> JSONObject:
        if _LONG_DIGITS.search(text) is not None:
            return decode_value(text)
        try:
            value = loads(text)
        except ValueError:
            return decode_value(text)
        return value if isinstance(value, dict) else decode_value(text)

    return decode


def _is_busy(e: sqlite3.Error) -> bool:
    msg = str(e).lower()
    return isinstance(e, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)


class _Tx:
    """One open write transaction: allocates revisions and appends events."""

    def __init__(self, conn: sqlite3.Connection, now: float, keep_events: int) -> None:
        self.conn = conn
        self.now = now
        self._keep = keep_events
        row = conn.execute("SELECT revision, compacted FROM meta WHERE id = 1").fetchone()
        self.start_revision: int = row[0]
        self.revision: int = row[0]
        self.compacted: int = row[1]
        self._start_compacted = self.compacted
        self._seq = 0

    def row(self, key: str) -> _KVRow | None:
        found: _KVRow | None = self.conn.execute(
            f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key,)
        ).fetchone()
        return found

    def lease_exists(self, lease: int) -> bool:
        return self.conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone() is not None

    def next_revision(self) -> int:
        """Start a new revision: every change until the next call shares it (one commit/expiry)."""
        self.revision += 1
        self._seq = 0
        return self.revision

    def _event(self, key: str, typ: str, value: str | None, prev: str | None) -> None:
        self.conn.execute(
            "INSERT INTO events (revision, seq, key, type, value, prev_value) VALUES (?, ?, ?, ?, ?, ?)",
            (self.revision, self._seq, key, typ, value, prev),
        )
        self._seq += 1

    def write(self, key: str, text: str, lease: int | None, old: _KVRow | None) -> KV:
        rev = self.revision
        create_rev = old[3] if old is not None else rev
        self.conn.execute(
            "INSERT INTO kv (key, value, mod_revision, create_revision, lease) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision,"
            " lease = excluded.lease",
            (key, text, rev, create_rev, lease),
        )
        self._event(key, "put", text, old[1] if old is not None else None)
        return KV(key, decode_value(text), rev, create_rev, lease)

    def delete(self, old: _KVRow) -> None:
        self.conn.execute("DELETE FROM kv WHERE key = ?", (old[0],))
        self._event(old[0], "delete", None, old[1])

    def expire_lease(self, lease: int) -> None:
        rows = self.conn.execute(
            f"SELECT {_KV_COLUMNS} FROM kv WHERE lease = ? ORDER BY key", (lease,)
        ).fetchall()
        if rows:
            self.next_revision()
        for row in rows:
            self.delete(row)
        self.conn.execute("DELETE FROM leases WHERE id = ?", (lease,))

    def reap(self) -> None:
        expired = self.conn.execute(
            "SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at, id", (self.now,)
        ).fetchall()
        for (lease,) in expired:
            self.expire_lease(lease)

    def compact_to(self, compacted: int) -> None:
        if compacted > self.compacted:
            self.conn.execute("DELETE FROM events WHERE revision <= ?", (compacted,))
            self.compacted = compacted

    def finish(self) -> None:
        if self.revision - self.compacted > self._keep + max(1, self._keep // 10):
            self.compact_to(self.revision - self._keep)
        if self.revision != self.start_revision or self.compacted != self._start_compacted:
            self.conn.execute(
                "UPDATE meta SET revision = ?, compacted = ? WHERE id = 1", (self.revision, self.compacted)
            )


class SqliteDatastore(SingleKeyWrites):
    """The SQLite backend; see the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        keep_events: int = DEFAULT_KEEP_EVENTS,
        poll_interval: float = 0.01,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser()
        self._keep_events = keep_events
        self._poll_interval = poll_interval
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._lock = threading.RLock()
        self._closed = False
        self._last_read_reap = 0.0
        self._poller: Poller | None = None
        self._create_file()
        self._conn = self._connect()
        self._init_schema()

    # ----- setup -----

    def _create_file(self) -> None:
        # An existing file is only stat()ed, never opened: closing any descriptor of the database
        # drops every POSIX lock this process holds on it, including the shared locks of this
        # process's other connections; a connection of another process closing then believes it
        # is the last one and deletes the -wal and -shm files under them (their watches and reads
        # freeze on the deleted files). O_EXCL creates a missing file without touching one that
        # another process created meanwhile.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            mode = os.stat(self.path).st_mode
        except OSError as e:
            raise DatastoreUnavailable(
                f"cannot create the sqlite datastore {self.path}: {e.strerror or e}; check the directory "
                "exists and is writable, or point TORTIE_DATASTORE elsewhere"
            ) from e
        unsafe = [(self.path, mode)]
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                unsafe.append((Path(f"{self.path}{suffix}"), os.stat(f"{self.path}{suffix}").st_mode))
        for path, st_mode in unsafe:
            if st_mode & stat.S_IWOTH:
                raise DatastoreUnavailable(
                    f"refusing the sqlite datastore {self.path}: {path} is world-writable (mode "
                    f"{stat.S_IMODE(st_mode):04o}), so any local user could rewrite the network's "
                    f"configuration and policy; make it private (chmod 600 {path}) and check who changed it"
                )

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = NORMAL")
            return conn
        except sqlite3.Error as e:
            raise self._translate(e) from e

    def _init_schema(self) -> None:
        def init(tx: _Tx) -> None:
            version = tx.conn.execute("SELECT schema_version FROM meta WHERE id = 1").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise DatastoreError(
                    f"sqlite datastore {self.path} has schema version {version}, this tortie reads "
                    f"{SCHEMA_VERSION}"
                )

        with self._lock:
            try:
                self._retry_busy(lambda: self._conn.execute("BEGIN IMMEDIATE"))
                try:
                    for stmt in _SCHEMA:
                        self._conn.execute(stmt)
                    self._conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise self._translate(e) from e
        self._write(init)

    # ----- plumbing -----

    def _retry_busy(self, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying SQLITE_BUSY (which can bypass the busy handler) until busy_timeout."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _translate(self, e: sqlite3.Error) -> DatastoreError:
        if _is_busy(e):
            return DatastoreUnavailable(
                f"sqlite datastore {self.path} stayed locked by another writer for more than "
                f"{self._busy_timeout:g}s ({e})"
            )
        if isinstance(e, sqlite3.ProgrammingError):
            return DatastoreError(f"sqlite datastore {self.path}: {e}")
        return DatastoreUnavailable(f"sqlite datastore {self.path}: {e}")

    def _check_open(self) -> None:
        if self._closed:
            raise DatastoreError(f"sqlite datastore {self.path} is closed")

    def _write(self, fn: Callable[[_Tx], T]) -> T:
        """Run `fn` in one BEGIN IMMEDIATE transaction, after reaping expired leases.

        `fn` must raise (Conflict, NotFound, ...) before it changes anything: on a tortie error the
        transaction still commits so that the lease reaping done first is kept.
        """
        with self._lock:
            self._check_open()
            conn = self._conn
            try:
                self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            except sqlite3.Error as e:
                raise self._translate(e) from e
            outcome: TortieError | None = None
            try:
                tx = _Tx(conn, self._clock(), self._keep_events)
                tx.reap()
                try:
                    result = fn(tx)
                except TortieError as e:
                    outcome = e
                tx.finish()
                conn.execute("COMMIT")
            except BaseException as e:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise self._translate(e) from e
                raise
            changed = tx.revision != tx.start_revision
        if changed and self._poller is not None:
            self._poller.wake()
        if outcome is not None:
            raise outcome
        return result

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one read transaction (a consistent snapshot)."""
        self._reap_if_due(_READ_REAP_INTERVAL_S)
        with self._lock:
            self._check_open()
            conn = self._conn
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as e:
                raise self._translate(e) from e

    @property
    def busy_timeout(self) -> float:
        return self._busy_timeout

    def _reap_if_due(self, interval: float) -> None:
        """Reap expired leases if one exists; checks at most once per `interval` seconds."""
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            if now - self._last_read_reap < interval:
                return
            self._last_read_reap = now
            try:
                due = self._conn.execute(
                    "SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1", (self._clock(),)
                ).fetchone()
            except sqlite3.Error as e:
                raise self._translate(e) from e
        if due is not None:
            try:
                self._write(lambda tx: None)
            except DatastoreUnavailable as e:  # best effort: the next write or poll reaps it
                log.debug("lease reaping deferred path=%s error=%s", self.path, e)

    # ----- reads -----

    def get(self, key: str) -> KV | None:
        def read(conn: sqlite3.Connection) -> KV | None:
            row = conn.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()
            return _kv(row) if row is not None else None

        return self._read(read)

    def list(self, prefix: str) -> tuple[builtins.list[KV], int]:
        def read(conn: sqlite3.Connection) -> tuple[builtins.list[_KVRow], int]:
            revision = conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()[0]
            end = prefix_end(prefix)
            if end is None:
                rows = conn.execute(
                    f"SELECT {_KV_COLUMNS} FROM kv WHERE key >= ? ORDER BY key", (prefix,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_KV_COLUMNS} FROM kv WHERE key >= ? AND key < ? ORDER BY key", (prefix, end)
                ).fetchall()
            return rows, revision

        rows, revision = self._read(read)  # decoded outside the lock: writers need not wait for it
        decode = _bulk_decoder() if len(rows) >= _BULK_DECODE_MIN else decode_value
        return [_kv(r, decode) for r in rows if r[0].startswith(prefix)], revision

    def current_revision(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()[0])

        return self._read(read)

    # ----- writes -----

    def commit(self, ops: Sequence[TxnOp]) -> builtins.list[KV]:
        checked = check_ops(ops)

        def op(tx: _Tx) -> builtins.list[KV]:
            olds: builtins.list[_KVRow | None] = []
            for o in checked:  # every condition first: all or nothing
                old = tx.row(o.key)
                refused = violation(o, None if old is None else old[2])
                if refused is not None:
                    raise refused
                if o.lease is not None and not tx.lease_exists(o.lease):
                    raise lease_gone(o.lease)
                olds.append(old)
            if not checked:
                return []
            tx.next_revision()
            out: builtins.list[KV] = []
            for o, old in zip(checked, olds, strict=True):
                if o.text is None:
                    assert old is not None
                    tx.delete(old)
                    out.append(_kv(old))
                else:
                    out.append(tx.write(o.key, o.text, o.lease, old))
            return out

        return self._write(op)

    def compact(self, revision: int) -> None:
        """Forget the event history before `revision` (watches from earlier revisions get RESYNC)."""

        def op(tx: _Tx) -> None:
            tx.compact_to(min(revision, tx.revision + 1) - 1)

        self._write(op)

    # ----- leases -----

    def grant_lease(self, ttl: float) -> int:
        if ttl <= 0:
            raise UserError(f"lease TTL must be positive, got {ttl}")

        def op(tx: _Tx) -> int:
            cur = tx.conn.execute("INSERT INTO leases (ttl, expires_at) VALUES (?, ?)", (ttl, tx.now + ttl))
            lease_id = cur.lastrowid
            assert lease_id is not None
            return lease_id

        return self._write(op)

    def refresh_lease(self, lease: int) -> None:
        def op(tx: _Tx) -> None:
            cur = tx.conn.execute("UPDATE leases SET expires_at = ? + ttl WHERE id = ?", (tx.now, lease))
            if cur.rowcount == 0:
                raise lease_gone(lease)

        self._write(op)

    def revoke_lease(self, lease: int) -> None:
        def op(tx: _Tx) -> None:
            if not tx.lease_exists(lease):
                raise lease_gone(lease)
            tx.expire_lease(lease)

        self._write(op)

    # ----- watches -----

    def watch(self, prefix: str, after_revision: int) -> Watch:
        with self._lock:
            self._check_open()
            if self._poller is None:
                self._poller = Poller(self, self._connect(), self._poll_interval)
                self._poller.start()
            poller = self._poller
        queue = QueueWatch(on_close=lambda: poller.remove(queue))
        poller.add(queue, WatchCursor(prefix, after_revision))
        return queue

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()
