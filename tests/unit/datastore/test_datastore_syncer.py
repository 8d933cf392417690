"""The Syncer over the memory backend, with a wrapper that injects outages and compaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tortie.common.errors import DatastoreUnavailable
from tortie.datastore.api import KV, TxnOp, Watch, WatchEvent
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.syncer import Delete, InSync, Status, Syncer, SyncEvent, Update


class _FlakyWatch:
    def __init__(self, store: FlakyStore, inner: Watch) -> None:
        self._store, self._inner = store, inner

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._store.broken:
                raise DatastoreUnavailable("injected outage")
            ev = self._inner.get(timeout=0.02)
            if ev is not None or (deadline is not None and time.monotonic() >= deadline):
                return ev

    def close(self) -> None:
        self._inner.close()

    def __iter__(self) -> Iterator[WatchEvent]:
        while True:
            ev = self.get(None)
            if ev is None:
                return
            yield ev


class FlakyStore:
    """Delegates to a MemoryDatastore; `broken` makes list/watch fail; `before_watch` runs a hook."""

    def __init__(self) -> None:
        self.inner = MemoryDatastore()
        self.broken = False
        self.before_watch: Callable[[], None] | None = None

    def list(self, prefix: str) -> tuple[list[KV], int]:
        if self.broken:
            raise DatastoreUnavailable("injected outage")
        return self.inner.list(prefix)

    def watch(self, prefix: str, after_revision: int) -> Watch:
        hook, self.before_watch = self.before_watch, None
        if hook is not None:
            hook()
        return _FlakyWatch(self, self.inner.watch(prefix, after_revision))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Recorder:
    def __init__(self) -> None:
        self.events: list[SyncEvent] = []
        self.lock = threading.Lock()

    def __call__(self, ev: SyncEvent) -> None:
        with self.lock:
            self.events.append(ev)

    def take(self) -> list[SyncEvent]:
        with self.lock:
            out, self.events = self.events, []
        return out

    def wait_for(self, pred: Callable[[list[SyncEvent]], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred(self.events):
                    return
            time.sleep(0.01)
        pytest.fail(f"condition not met; events: {self.events}")


def _seed(ds: MemoryDatastore) -> dict[str, KV]:
    return {k: ds.create(k, {"k": k}) for k in ["/a/1", "/a/2", "/b/1", "/c/ignored"]}


def test_lists_then_streams_changes() -> None:
    ds = MemoryDatastore()
    kvs = _seed(ds)
    rec = Recorder()
    syncer = Syncer(ds, ["/a/", "/b/"], rec)
    syncer.run_once_until_in_sync()
    assert rec.take() == [
        Update("/a/1", {"k": "/a/1"}, kvs["/a/1"].mod_revision),
        Update("/a/2", {"k": "/a/2"}, kvs["/a/2"].mod_revision),
        Update("/b/1", {"k": "/b/1"}, kvs["/b/1"].mod_revision),
        InSync(),
    ]
    assert syncer.in_sync
    new = ds.create("/b/2", {"n": 1})
    ds.delete("/a/1")
    ds.create("/c/other", {})
    while syncer.poll(0.2) and len(rec.events) < 2:
        pass
    # one watch per prefix: order is per key (and per prefix), not across prefixes
    got = sorted(rec.take(), key=lambda e: e.revision if isinstance(e, (Update, Delete)) else 0)
    assert got == [Update("/b/2", {"n": 1}, new.mod_revision), Delete("/a/1", new.mod_revision + 1)]
    syncer.stop()


def test_resync_after_compaction_sends_only_differences() -> None:
    store = FlakyStore()
    kvs = _seed(store.inner)
    rec = Recorder()

    def change_and_compact() -> None:  # runs between the list and the watch
        store.inner.delete("/a/1")
        store.inner.update("/a/2", {"changed": True})
        store.inner.create("/a/3", {})
        store.inner.compact(store.inner.current_revision())

    store.before_watch = change_and_compact
    syncer = Syncer(store, ["/a/"], rec)
    syncer.run_once_until_in_sync()
    assert rec.take() == [Update("/a/1", {"k": "/a/1"}, kvs["/a/1"].mod_revision),
                          Update("/a/2", {"k": "/a/2"}, kvs["/a/2"].mod_revision), InSync()]
    syncer.poll(2.0)
    rev = store.inner.current_revision()
    events = rec.take()
    a2 = store.inner.get("/a/2")
    a3 = store.inner.get("/a/3")
    assert a2 is not None and a3 is not None
    assert events == [
        Update("/a/2", {"changed": True}, a2.mod_revision),
        Update("/a/3", {}, a3.mod_revision),
        Delete("/a/1", rev),
        InSync(),
    ]
    syncer.stop()


def test_outage_reports_status_and_diffs_without_spurious_deletes() -> None:
    store = FlakyStore()
    _seed(store.inner)
    rec = Recorder()
    syncer = Syncer(store, ["/a/", "/b/"], rec, backoff_initial=0.01, backoff_max=0.05)
    syncer.start()
    try:
        rec.wait_for(lambda evs: InSync() in evs)
        rec.take()
        store.broken = True
        rec.wait_for(lambda evs: Status("disconnected") in evs)
        assert not syncer.in_sync
        store.inner.delete("/a/1")
        b1 = store.inner.update("/b/1", {"v": 2})
        time.sleep(0.1)  # several failed re-lists
        store.broken = False
        rec.wait_for(lambda evs: InSync() in evs)
        rev = store.inner.current_revision()
        assert rec.take() == [
            Status("disconnected"),
            Status("reconnected"),
            Update("/b/1", {"v": 2}, b1.mod_revision),
            Delete("/a/1", rev),
            InSync(),
        ]
        a3 = store.inner.create("/a/3", {})
        rec.wait_for(lambda evs: len(evs) == 1)
        assert rec.take() == [Update("/a/3", {}, a3.mod_revision)]
    finally:
        syncer.stop()
    assert syncer.failure is None


def test_sink_failure_stops_the_thread() -> None:
    ds = MemoryDatastore()
    ds.create("/a/1", {})

    def sink(ev: SyncEvent) -> None:
        raise RuntimeError("consumer bug")

    syncer = Syncer(ds, ["/a/"], sink)
    syncer.start()
    deadline = time.monotonic() + 5
    while syncer.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(syncer.failure, RuntimeError)
    assert not syncer.alive()  # ended without being asked: a consumer's health must say so
    syncer.stop()


def test_bad_records_are_absent_logged_once_and_the_rest_flows(caplog: pytest.LogCaptureFixture) -> None:
    ds = MemoryDatastore()
    good = ds.create("/a/1", {"v": 1})
    ds.create("/a/2", {"v": 2})
    bad_rev = ds.put_raw("/a/3", "not json").mod_revision
    rec = Recorder()
    syncer = Syncer(ds, ["/a/"], rec)
    caplog.set_level("WARNING", logger="tortie.datastore.syncer")
    syncer.run_once_until_in_sync()
    events = rec.take()
    assert [e.key for e in events if isinstance(e, Update)] == ["/a/1", "/a/2"] and events[-1] == InSync()
    assert syncer.bad_records == {"/a/3": bad_rev}
    # a good record turned bad: a Delete (treated as absent); watched events after it still flow
    torn = ds.put_raw("/a/1", '{"v": ').mod_revision
    later = ds.create("/a/4", {"v": 4})
    rec_events: list[SyncEvent] = []
    while len(rec_events) < 2 and syncer.poll(1.0):
        rec_events += rec.take()
    assert rec_events == [Delete("/a/1", torn), Update("/a/4", {"v": 4}, later.mod_revision)]
    # a re-list (outage, compaction) does not log the same bad records again, nor resend anything
    syncer.run_once_until_in_sync()
    assert rec.take() == [InSync()]
    logged = [r.getMessage() for r in caplog.records if "bad record" in r.getMessage()]
    assert len(logged) == 2 and "key=/a/3" in logged[0] and "key=/a/1" in logged[1], logged
    # repaired: an ordinary Update
    fixed = ds.put("/a/1", {"v": 1})
    while not rec.events and syncer.poll(1.0):
        pass
    assert rec.take() == [Update("/a/1", {"v": 1}, fixed.mod_revision)]
    assert good.mod_revision < fixed.mod_revision
    assert syncer.bad_records == {"/a/3": bad_rev}
    ds.delete("/a/3")
    while syncer.bad_records and syncer.poll(1.0):
        pass
    assert syncer.bad_records == {} and rec.take() == []  # never sent, so no Delete either
    syncer.stop()


def test_overlapping_prefixes_rejected() -> None:
    with pytest.raises(ValueError):
        Syncer(MemoryDatastore(), ["/a/", "/a/b/"], lambda ev: None)


def test_commit_events_reach_the_consumer() -> None:
    ds = MemoryDatastore()
    rec = Recorder()
    syncer = Syncer(ds, ["/x/"], rec)
    syncer.run_once_until_in_sync()
    rec.take()
    kvs = ds.commit([TxnOp("create", "/x/1", {}), TxnOp("create", "/x/2", {})])
    while syncer.poll(0.2) and len(rec.events) < 2:
        pass
    assert rec.take() == [Update("/x/1", {}, kvs[0].mod_revision), Update("/x/2", {}, kvs[1].mod_revision)]
    syncer.stop()
