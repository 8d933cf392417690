"""The sqlite watch poller's wake-up on log writes (inotify) and its polling fallback; bulk decoding.

Cross-instance tests stand in for cross-process ones: two `SqliteDatastore` objects on one file have
separate connections, and a write through one never wakes the other's poller directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.datastore import _sqlite_poller
from tortie.datastore._sqlite_poller import WalWatch
from tortie.datastore.api import EventType, Watch, WatchEvent
from tortie.datastore.sqlite import SqliteDatastore

DEADLINE_S = 10.0


def next_event(watch: Watch) -> WatchEvent:
    event = watch.get(timeout=DEADLINE_S)
    assert event is not None, "no event delivered"
    return event


def wait_until(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[SqliteDatastore, SqliteDatastore]]:
    # The watcher polls only every 60 s: an event arriving sooner was delivered because the write
    # to the log woke the poller.
    watcher = SqliteDatastore(tmp_path / "ds.db", poll_interval=60.0)
    writer = SqliteDatastore(tmp_path / "ds.db")
    try:
        yield watcher, writer
    finally:
        writer.close()
        watcher.close()


def test_wal_watch_reports_commits_of_another_connection_only_for_its_file(tmp_path: Path) -> None:
    ds = SqliteDatastore(tmp_path / "ds.db")
    wal = WalWatch(str(tmp_path / "ds.db"))
    try:
        wal.drain()
        (tmp_path / "unrelated").write_text("x")
        assert wal.drain() is False
        other = SqliteDatastore(tmp_path / "ds.db")
        other.put("/k", {"v": 1})
        other.close()
        assert wal.drain() is True
        assert wal.drain() is False  # drained
    finally:
        wal.close()
        ds.close()


def test_write_by_another_instance_wakes_the_watch(pair: tuple[SqliteDatastore, SqliteDatastore]) -> None:
    watcher, writer = pair
    watch = watcher.watch("/a/", watcher.current_revision())
    try:
        for n in range(20):
            writer.put(f"/a/{n}", {"n": n})
            event = next_event(watch)
            assert (event.type, event.key, event.value) == (EventType.PUT, f"/a/{n}", {"n": n})
    finally:
        watch.close()


def test_without_inotify_polling_still_delivers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(_path: str) -> WalWatch:
        raise OSError(38, "inotify unavailable here")

    monkeypatch.setattr(_sqlite_poller, "WalWatch", unavailable)
    watcher = SqliteDatastore(tmp_path / "ds.db", poll_interval=0.01)
    writer = SqliteDatastore(tmp_path / "ds.db")
    watch = watcher.watch("/a/", watcher.current_revision())
    try:
        writer.put("/a/1", {"n": 1})
        writer.delete("/a/1")
        assert [(e.type, e.key) for e in (next_event(watch), next_event(watch))] == [
            (EventType.PUT, "/a/1"),
            (EventType.DELETE, "/a/1"),
        ]
    finally:
        watch.close()
        writer.close()
        watcher.close()


def test_log_recreated_after_last_connection_closed_is_still_seen(tmp_path: Path) -> None:
    wal = WalWatch(str(tmp_path / "ds.db"))
    try:
        first = SqliteDatastore(tmp_path / "ds.db")
        first.put("/k", {"v": 1})
        first.close()  # the last connection: sqlite checkpoints and deletes the log
        wal.drain()
        second = SqliteDatastore(tmp_path / "ds.db")
        second.put("/k", {"v": 2})
        second.close()
        assert wal.drain() is True
    finally:
        wal.close()


def test_close_stops_the_poller_and_later_writes_are_harmless(tmp_path: Path) -> None:
    watcher = SqliteDatastore(tmp_path / "ds.db")
    watch = watcher.watch("/a/", 0)
    poller = watcher._poller
    assert poller is not None
    watcher.close()
    assert not poller.is_alive()
    poller.wake()  # a writer racing with close: no error, no write to a reused descriptor
    assert watch.get(timeout=0.1) is None


def test_big_listing_decodes_exactly_like_small_ones(tmp_path: Path) -> None:
    ds = SqliteDatastore(tmp_path / "ds.db")
    try:
        values = [
            {"n": n, "big": 2**80 + n, "neg": -(2**63) - n - 1, "f": 0.1 * n, "s": "é\u00e9✓",
             "nested": {"l": [1, None, True]}}
            for n in range(300)
        ]
        for n, value in enumerate(values):
            ds.put(f"/v/{n:04d}", value)
        listed, _ = ds.list("/v/")
        assert [kv.value for kv in listed] == [json.loads(json.dumps(v)) for v in values]
        assert listed[5].value["big"] == 2**80 + 5
        small, _ = ds.list("/v/0001")
        assert small[0].value == values[1]
    finally:
        ds.close()


def test_a_commit_inotify_missed_makes_the_poller_look_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A filesystem where inotify is silent: the watch exists but never reports a log write.
    monkeypatch.setattr(WalWatch, "drain", lambda self: False)
    watcher = SqliteDatastore(tmp_path / "ds.db")
    writer = SqliteDatastore(tmp_path / "ds.db")
    watch = watcher.watch("/a/", watcher.current_revision())
    try:
        wait_until(lambda: watcher._poller is not None and not any(
            s.fresh for s in watcher._poller._watches.values()), "the watch's first look")
        writer.put("/a/0", {"n": 0})  # found by the 1 s timed look: inotify missed it
        assert next_event(watch).key == "/a/0"
        assert "inotify missed a commit" in caplog.text
        started = time.monotonic()
        for n in range(1, 6):
            writer.put(f"/a/{n}", {"n": n})
            assert next_event(watch).key == f"/a/{n}"
        # five commits found by 50 ms looks, not 1 s ones (generous bound for a loaded machine)
        assert time.monotonic() - started < 4.0
    finally:
        watch.close()
        writer.close()
        watcher.close()
