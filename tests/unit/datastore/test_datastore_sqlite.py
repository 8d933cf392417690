"""SqliteDatastore specifics: file creation, cross-instance watches, compaction, lease reaping, locking."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tortie.common.errors import DatastoreUnavailable, LeaseExpired
from tortie.datastore.api import EventType
from tortie.datastore.sqlite import SqliteDatastore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_creates_parent_dir_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ds.db"
    ds = SqliteDatastore(path)
    ds.close()
    assert path.stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "kv", "events", "leases"} <= tables
    conn.close()


def test_wal_and_shm_files_are_private_too(tmp_path: Path) -> None:
    path = tmp_path / "ds.db"
    ds = SqliteDatastore(path)
    try:
        ds.create("/k", {"v": 1})  # the first write creates the log and the shared-memory index
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    finally:
        ds.close()
    assert modes["ds.db-wal"] == 0o600 and modes["ds.db-shm"] == 0o600 and modes["ds.db"] == 0o600


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_world_writable_database_is_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "ds.db"
    ds = SqliteDatastore(path)
    ds.create("/k", {"v": 1})
    victim = Path(f"{path}{suffix}")
    victim.chmod(0o666)
    try:
        with pytest.raises(DatastoreUnavailable) as err:
            SqliteDatastore(path)
        message = str(err.value)
        assert "world-writable" in message and str(victim) in message and "chmod 600" in message
        victim.chmod(0o644)  # readable by others is allowed: only writable files are refused
        SqliteDatastore(path).close()
    finally:
        ds.close()


def test_unwritable_location_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatastoreUnavailable) as err:
        SqliteDatastore(blocker / "ds.db")
    assert str(blocker) in str(err.value)


def test_watch_sees_writes_of_another_connection(tmp_path: Path) -> None:
    reader = SqliteDatastore(tmp_path / "ds.db")
    writer = SqliteDatastore(tmp_path / "ds.db")
    try:
        watch = reader.watch("/", reader.current_revision())
        kv = writer.create("/k", {"v": 1})
        ev = watch.get(timeout=2.0)
        assert ev is not None and ev.key == "/k" and ev.revision == kv.mod_revision
    finally:
        reader.close()
        writer.close()


def test_another_store_opened_in_this_process_keeps_its_watches_alive(tmp_path: Path) -> None:
    """Opening a second store on the same file in this process (the node service's CNI service does)
    must not drop this process's locks: otherwise a process that closes its connection afterwards
    deletes the -wal and -shm files under us, and our watch never sees another write."""
    path = tmp_path / "ds.db"
    ds = SqliteDatastore(path)
    try:
        ds.create("/a", {"v": 0})
        watch = ds.watch("/", ds.current_revision())
        SqliteDatastore(path).close()
        writer = "import sys; from tortie.datastore.sqlite import SqliteDatastore as S; " \
                 "d = S(sys.argv[1]); d.create(sys.argv[2], {'v': 1}); d.close()"
        for key in ("/b", "/c"):  # the first one closes cleanly; the second one writes after it
            subprocess.run([sys.executable, "-c", writer, str(path), key], check=True, timeout=60)
        assert os.path.exists(f"{path}-wal")
        keys = []
        for _ in range(2):
            ev = watch.get(timeout=10.0)
            assert ev is not None, keys
            keys.append(ev.key)
        assert keys == ["/b", "/c"]
    finally:
        ds.close()


def test_event_log_is_compacted_automatically(tmp_path: Path) -> None:
    ds = SqliteDatastore(tmp_path / "ds.db", keep_events=20)
    try:
        for i in range(100):
            ds.put("/k", {"i": i})
        conn = sqlite3.connect(tmp_path / "ds.db")
        count = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        conn.close()
        assert 20 <= count <= 23
        stale = ds.watch("/", 0)
        ev = stale.get(timeout=2.0)
        assert ev is not None and ev.type is EventType.RESYNC and ev.revision > 70
        recent = ds.watch("/", 90)
        events = [recent.get(timeout=2.0) for _ in range(10)]
        assert [e.revision for e in events if e is not None] == list(range(91, 101))
    finally:
        ds.close()


def test_expired_lease_is_reaped_by_another_process_write(tmp_path: Path) -> None:
    clock = FakeClock()
    owner = SqliteDatastore(tmp_path / "ds.db", clock=clock)
    other = SqliteDatastore(tmp_path / "ds.db", clock=clock)
    try:
        lease = owner.grant_lease(5)
        owner.create("/owned", {"v": 1}, lease=lease)
        watch = owner.watch("/", owner.current_revision())
        owner.close()  # the owner is gone: nobody refreshes
        clock.now += 6
        other.put("/unrelated", {})
        assert other.get("/owned") is None
        with pytest.raises(LeaseExpired):
            other.refresh_lease(lease)
        assert watch.get(timeout=0.5) is None  # the owner's watch ended with its datastore
    finally:
        other.close()


def test_expired_lease_is_reaped_with_no_writes(tmp_path: Path) -> None:
    clock = FakeClock()
    ds = SqliteDatastore(tmp_path / "ds.db", clock=clock)
    try:
        lease = ds.grant_lease(5)
        ds.create("/a", {"v": 1}, lease=lease)
        watch = ds.watch("/", ds.current_revision())
        clock.now += 6  # the watch poller notices
        ev = watch.get(timeout=10.0)  # the idle poller looks every second
        assert ev is not None and (ev.type, ev.key) == (EventType.DELETE, "/a")
    finally:
        ds.close()


def test_reads_do_not_return_expired_keys(tmp_path: Path) -> None:
    clock = FakeClock()
    ds = SqliteDatastore(tmp_path / "ds.db", clock=clock)
    try:
        lease = ds.grant_lease(5)
        ds.create("/a", {}, lease=lease)
        clock.now += 6
        time.sleep(0.06)  # past the read-path check interval
        assert ds.get("/a") is None
        assert ds.list("/")[0] == []
    finally:
        ds.close()


def test_lock_held_too_long_is_unavailable(tmp_path: Path) -> None:
    ds = SqliteDatastore(tmp_path / "ds.db", busy_timeout=0.2)
    blocker = sqlite3.connect(tmp_path / "ds.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatastoreUnavailable) as err:
            ds.create("/k", {})
        assert "locked" in str(err.value)
        assert ds.get("/k") is None  # reads still work under WAL
        blocker.execute("ROLLBACK")
        ds.create("/k", {})
    finally:
        blocker.close()
        ds.close()


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    ds = SqliteDatastore(tmp_path / "ds.db")
    ds.close()
    with pytest.raises(Exception, match="closed"):
        ds.get("/k")
