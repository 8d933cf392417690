"""One behavioural test suite for every `Datastore` backend (memory, sqlite, etcd).

Use: subclass `DatastoreConformance` in a test module (its name must start with `Test`) and provide a
`backend` fixture returning a `Backend`: how to open clients on one store, how to compact it, and a
key prefix private to the test. Every test writes only under that prefix, so a shared etcd works.

    @pytest.fixture(params=["memory", "sqlite"])
    def backend(request, tmp_path) -> Iterator[Backend]: ...

    class TestDatastoreConformance(DatastoreConformance):
        pass

The tests assert behaviour, never speed: "a watcher sees a write promptly" uses a generous bound
(`PROMPT_S`); the 100 ms figure is measured by bench/datastore.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tortie.common.errors import AlreadyExists, Conflict, LeaseExpired, NotFound, UserError
from tortie.datastore.api import KV, Datastore, EventType, TxnOp, Watch, WatchEvent

PROMPT_S = 2.0


@dataclass
class Backend:
    """How the suite reaches one store.

    open: a new client on the same store (for memory, the same object is fine).
    compact: forget history before a revision (the backend's own compaction).
    lease_ttl: the shortest TTL the backend honours as given (etcd raises short TTLs to ~2 s).
    write_raw: store text under a key as another tool would, returning the revision
        (`tortie.testing.bad_records`); the bad-record suite needs it.
    """

    name: str
    open: Callable[[], Datastore]
    compact: Callable[[Datastore, int], None]
    lease_ttl: float = 1.0
    write_raw: Callable[[str, str], int] | None = None
    prefix: str = field(default_factory=lambda: f"/conformance/{uuid.uuid4().hex[:12]}/")


def drain(watch: Watch, count: int, timeout: float = PROMPT_S * 5) -> list[WatchEvent]:
    """Take `count` events from `watch`, failing the test if they do not arrive within `timeout`."""
    events: list[WatchEvent] = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"watch delivered {len(events)} of {count} events: {events}")
        ev = watch.get(timeout=left)
        if ev is not None:
            events.append(ev)
    return events


def assert_quiet(watch: Watch, wait: float = 0.3) -> None:
    ev = watch.get(timeout=wait)
    assert ev is None, f"unexpected extra event {ev}"


class DatastoreConformance:
    """The suite; see the module docstring."""

    @pytest.fixture
    def ds(self, backend: Backend) -> Iterator[Datastore]:
        store = backend.open()
        yield store

    @pytest.fixture
    def p(self, backend: Backend) -> str:
        return backend.prefix

    # ----- basic key/value -----

    def test_is_a_datastore(self, ds: Datastore) -> None:
        assert isinstance(ds, Datastore)

    def test_get_missing_is_none(self, ds: Datastore, p: str) -> None:
        assert ds.get(p + "nothing") is None

    def test_create_then_get(self, ds: Datastore, p: str) -> None:
        kv = ds.create(p + "a", {"x": 1})
        assert kv.key == p + "a" and kv.value == {"x": 1}
        assert kv.mod_revision == kv.create_revision > 0
        assert kv.lease is None
        assert ds.get(p + "a") == kv

    def test_create_existing_raises(self, ds: Datastore, p: str) -> None:
        first = ds.create(p + "a", {"v": 1})
        with pytest.raises(AlreadyExists) as err:
            ds.create(p + "a", {"v": 2})
        assert p + "a" in str(err.value)
        assert ds.get(p + "a") == first

    def test_list_is_ordered_and_prefix_isolated(self, ds: Datastore, p: str) -> None:
        for name in ["b", "a", "c/d", "ab", "c"]:
            ds.create(p + "dir/" + name, {"n": name})
        ds.create(p + "dirx/a", {"n": "other"})
        ds.create(p + "dir", {"n": "parent"})
        kvs, revision = ds.list(p + "dir/")
        assert [kv.key for kv in kvs] == [p + "dir/" + n for n in ["a", "ab", "b", "c", "c/d"]]
        assert revision >= max(kv.mod_revision for kv in kvs)
        assert revision == ds.current_revision()
        assert ds.list(p + "nothing/") == ([], revision)
        everything, _ = ds.list(p)
        assert len(everything) == 7

    def test_update_cas(self, ds: Datastore, p: str) -> None:
        created = ds.create(p + "k", {"v": 1})
        updated = ds.update(p + "k", {"v": 2}, expected_revision=created.mod_revision)
        assert updated.value == {"v": 2}
        assert updated.mod_revision > created.mod_revision
        assert updated.create_revision == created.create_revision
        with pytest.raises(Conflict) as err:
            ds.update(p + "k", {"v": 3}, expected_revision=created.mod_revision)
        assert p + "k" in str(err.value)
        assert ds.get(p + "k") == updated
        unconditional = ds.update(p + "k", {"v": 4})
        assert unconditional.mod_revision > updated.mod_revision

    def test_update_missing_raises_not_found(self, ds: Datastore, p: str) -> None:
        with pytest.raises(NotFound):
            ds.update(p + "missing", {"v": 1})
        with pytest.raises(NotFound):
            ds.update(p + "missing", {"v": 1}, expected_revision=1)
        with pytest.raises(NotFound):
            ds.update(p + "missing", {"v": 1}, expected_revision=0)
        assert ds.get(p + "missing") is None

    def test_put_creates_and_replaces(self, ds: Datastore, p: str) -> None:
        first = ds.put(p + "k", {"v": 1})
        assert first.create_revision == first.mod_revision
        second = ds.put(p + "k", {"v": 2})
        assert second.create_revision == first.create_revision
        assert second.mod_revision > first.mod_revision
        assert ds.get(p + "k") == second

    def test_delete(self, ds: Datastore, p: str) -> None:
        kv = ds.create(p + "k", {"v": 1})
        deleted = ds.delete(p + "k")
        assert deleted.key == kv.key and deleted.value == kv.value and deleted.mod_revision == kv.mod_revision
        assert ds.get(p + "k") is None
        with pytest.raises(NotFound):
            ds.delete(p + "k")

    def test_delete_cas(self, ds: Datastore, p: str) -> None:
        kv = ds.create(p + "k", {"v": 1})
        newer = ds.update(p + "k", {"v": 2})
        with pytest.raises(Conflict):
            ds.delete(p + "k", expected_revision=kv.mod_revision)
        assert ds.get(p + "k") == newer
        ds.delete(p + "k", expected_revision=newer.mod_revision)
        assert ds.get(p + "k") is None
        with pytest.raises(NotFound):
            ds.delete(p + "k", expected_revision=newer.mod_revision)

    def test_values_round_trip(self, ds: Datastore, p: str) -> None:
        value: dict[str, Any] = {
            "unicode": "żółw / 亀 / 🐢 / \u00e9\u0301",
            "nested": {"list": [1, 2.5, "three", None, True, False, {"deep": []}], "empty": {}},
            "big": 2**53 + 1,
            "negative": -7,
        }
        key = p + "üñí/κλειδί"
        ds.create(key, value)
        got = ds.get(key)
        assert got is not None and got.value == value
        kvs, _ = ds.list(p + "üñí/")
        assert [kv.key for kv in kvs] == [key]
        empty = ds.create(p + "empty", {})
        assert empty.value == {}

    def test_returned_values_are_not_shared(self, ds: Datastore, p: str) -> None:
        value: dict[str, Any] = {"list": [1]}
        kv = ds.create(p + "k", value)
        value["list"].append(2)
        kv.value["list"].append(3)
        got = ds.get(p + "k")
        assert got is not None and got.value == {"list": [1]}

    def test_non_json_values_are_rejected(self, ds: Datastore, p: str) -> None:
        with pytest.raises(UserError):
            ds.create(p + "k", {"x": object()})
        with pytest.raises(UserError):
            ds.put(p + "k", {"x": float("nan")})
        assert ds.get(p + "k") is None

    # ----- revisions -----

    def test_revisions_strictly_increase(self, ds: Datastore, p: str) -> None:
        start = ds.current_revision()
        revs = [ds.create(p + f"k{i}", {"i": i}).mod_revision for i in range(5)]
        revs.append(ds.update(p + "k0", {"i": 9}).mod_revision)
        revs.append(ds.put(p + "k1", {"i": 9}).mod_revision)
        ds.delete(p + "k2")
        revs.append(ds.current_revision())
        assert start < revs[0]
        assert revs == sorted(revs) and len(set(revs)) == len(revs)

    def test_revisions_are_store_wide(self, backend: Backend, p: str) -> None:
        a, b = backend.open(), backend.open()
        ra = a.create(p + "a", {}).mod_revision
        assert b.current_revision() >= ra
        rb = b.create(p + "b", {}).mod_revision
        assert rb > ra
        assert a.current_revision() >= rb
        got = a.get(p + "b")
        assert got is not None and got.mod_revision == rb

    # ----- transactions -----

    def test_commit_is_atomic_with_one_revision(self, ds: Datastore, p: str) -> None:
        old = ds.create(p + "old", {"v": 0})
        gone = ds.create(p + "gone", {"v": 0})
        before = ds.current_revision()
        watch = ds.watch(p, before)
        try:
            kvs = ds.commit(
                [
                    TxnOp("create", p + "new", {"v": 1}),
                    TxnOp("update", p + "old", {"v": 2}, expected_revision=old.mod_revision),
                    TxnOp("delete", p + "gone", expected_revision=gone.mod_revision),
                    TxnOp("put", p + "any", {"v": 3}),
                ]
            )
            assert [kv.key for kv in kvs] == [p + "new", p + "old", p + "gone", p + "any"]
            revision = kvs[0].mod_revision
            assert revision > before
            assert [kvs[0].mod_revision, kvs[1].mod_revision, kvs[3].mod_revision] == [revision] * 3
            assert kvs[1].create_revision == old.create_revision
            assert kvs[2].value == {"v": 0}
            assert ds.current_revision() == revision
            events = drain(watch, 4)
            assert [(e.type, e.key, e.revision) for e in events] == [
                (EventType.PUT, p + "new", revision),
                (EventType.PUT, p + "old", revision),
                (EventType.DELETE, p + "gone", revision),
                (EventType.PUT, p + "any", revision),
            ]
        finally:
            watch.close()

    def test_commit_failure_writes_nothing(self, ds: Datastore, p: str) -> None:
        old = ds.create(p + "old", {"v": 0})
        ds.update(p + "old", {"v": 1})
        before = ds.current_revision()
        with pytest.raises(Conflict) as err:
            ds.commit(
                [
                    TxnOp("create", p + "new", {"v": 1}),
                    TxnOp("update", p + "old", {"v": 2}, expected_revision=old.mod_revision),
                ]
            )
        assert p + "old" in str(err.value)
        with pytest.raises(AlreadyExists):
            ds.commit([TxnOp("put", p + "x", {}), TxnOp("create", p + "old", {})])
        with pytest.raises(NotFound):
            ds.commit([TxnOp("put", p + "x", {}), TxnOp("delete", p + "absent")])
        assert ds.get(p + "new") is None and ds.get(p + "x") is None
        assert ds.current_revision() == before
        assert ds.commit([]) == []
        with pytest.raises(UserError):
            ds.commit([TxnOp("put", p + "x", {}), TxnOp("put", p + "x", {})])

    # ----- watches -----

    def test_watch_sees_write_promptly(self, ds: Datastore, p: str) -> None:
        watch = ds.watch(p, ds.current_revision())
        try:
            kv = ds.create(p + "k", {"v": 1})
            ev = watch.get(timeout=PROMPT_S)
            assert ev == WatchEvent(EventType.PUT, p + "k", {"v": 1}, kv.mod_revision, None)
        finally:
            watch.close()

    def test_watch_reports_prev_value_and_deletes(self, ds: Datastore, p: str) -> None:
        watch = ds.watch(p, ds.current_revision())
        try:
            ds.create(p + "k", {"v": 1})
            ds.update(p + "k", {"v": 2})
            deleted = ds.delete(p + "k")
            events = drain(watch, 3)
            assert [e.type for e in events] == [EventType.PUT, EventType.PUT, EventType.DELETE]
            assert events[1].prev_value == {"v": 1} and events[1].value == {"v": 2}
            assert events[2].value is None and events[2].prev_value == {"v": 2}
            assert events[2].revision > deleted.mod_revision
            assert events[2].revision == ds.current_revision()
        finally:
            watch.close()

    def test_watch_is_prefix_scoped(self, ds: Datastore, p: str) -> None:
        watch = ds.watch(p + "in/", ds.current_revision())
        try:
            ds.create(p + "out/a", {})
            ds.create(p + "in", {})
            ds.create(p + "in/a", {})
            events = drain(watch, 1)
            assert events[0].key == p + "in/a"
            assert_quiet(watch)
        finally:
            watch.close()

    def test_watch_replays_history(self, ds: Datastore, p: str) -> None:
        start = ds.current_revision()
        created = [ds.create(p + f"k{i}", {"i": i}) for i in range(5)]
        ds.delete(p + "k0")
        watch = ds.watch(p, created[1].mod_revision)
        try:
            events = drain(watch, 4)
            assert [(e.type, e.key) for e in events] == [
                (EventType.PUT, p + "k2"), (EventType.PUT, p + "k3"), (EventType.PUT, p + "k4"),
                (EventType.DELETE, p + "k0"),
            ]
            assert_quiet(watch)
        finally:
            watch.close()
        full = ds.watch(p, start)
        try:
            assert [e.key for e in drain(full, 6)] == [p + f"k{i}" for i in range(5)] + [p + "k0"]
        finally:
            full.close()

    def test_list_then_watch_has_no_gap_and_no_duplicate(
        self, ds: Datastore, backend: Backend, p: str
    ) -> None:
        writer_ds = backend.open()
        stop = threading.Event()
        written: list[int] = []

        def writer() -> None:
            i = 0
            while not stop.is_set() and i < 400:
                written.append(writer_ds.put(p + f"k{i % 7}", {"i": i}).mod_revision)
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            time.sleep(0.05)
            kvs, revision = ds.list(p)
            view = {kv.key: kv for kv in kvs}
            watch = ds.watch(p, revision)
            time.sleep(0.1)
        finally:
            stop.set()
            t.join()
        try:
            final, final_rev = ds.list(p)
            expected = len([r for r in written if r > revision])
            events = drain(watch, expected)
            assert_quiet(watch)
            revs = [e.revision for e in events]
            assert revs == sorted(set(revs)) and all(r > revision for r in revs)
            for e in events:
                assert e.value is not None
                view[e.key] = KV(e.key, e.value, e.revision, 0)
            assert {k: v.value for k, v in view.items()} == {kv.key: kv.value for kv in final}
            assert (revs[-1] if revs else revision) <= final_rev
        finally:
            watch.close()

    def test_watch_get_times_out_and_close_ends_it(self, ds: Datastore, p: str) -> None:
        watch = ds.watch(p, ds.current_revision())
        assert watch.get(timeout=0.05) is None
        watch.close()
        ds.create(p + "k", {})
        assert watch.get(timeout=0.2) is None
        assert list(watch) == []

    def test_watch_iteration_ends_on_close_from_another_thread(self, ds: Datastore, p: str) -> None:
        watch = ds.watch(p, ds.current_revision())
        seen: list[WatchEvent] = []
        t = threading.Thread(target=lambda: seen.extend(watch))
        t.start()
        ds.create(p + "k", {})
        deadline = time.monotonic() + PROMPT_S * 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        watch.close()
        t.join(timeout=PROMPT_S * 5)
        assert not t.is_alive()
        assert [e.key for e in seen] == [p + "k"]

    def test_watch_from_compacted_revision_resyncs(self, ds: Datastore, backend: Backend, p: str) -> None:
        early = ds.create(p + "a", {}).mod_revision
        ds.update(p + "a", {"v": 1})
        ds.create(p + "b", {})
        now = ds.current_revision()
        backend.compact(ds, now)
        watch = ds.watch(p, early)
        try:
            ev = watch.get(timeout=PROMPT_S * 5)
            assert ev is not None and ev.type is EventType.RESYNC
            assert ev.key == "" and ev.value is None
            assert early < ev.revision <= now + 1
            ds.create(p + "c", {})
            assert watch.get(timeout=0.3) is None
        finally:
            watch.close()
        fresh = ds.watch(p, now)  # from the compaction point itself: still available
        try:
            kv = ds.create(p + "d", {})
            events = drain(fresh, 2)
            assert [e.key for e in events] == [p + "c", p + "d"]
            assert events[1].revision == kv.mod_revision
        finally:
            fresh.close()

    # ----- leases -----

    def test_lease_expiry_deletes_keys_with_events(self, ds: Datastore, backend: Backend, p: str) -> None:
        lease = ds.grant_lease(backend.lease_ttl)
        a = ds.create(p + "a", {"v": 1}, lease=lease)
        ds.put(p + "b", {"v": 2}, lease=lease)
        ds.create(p + "keep", {})
        assert a.lease == lease
        got = ds.get(p + "a")
        assert got is not None and got.lease == lease
        watch = ds.watch(p, ds.current_revision())
        try:
            events = drain(watch, 2, timeout=backend.lease_ttl + 15)
            assert {(e.type, e.key) for e in events} == {
                (EventType.DELETE, p + "a"),
                (EventType.DELETE, p + "b"),
            }
            assert events[0].revision <= events[1].revision
            assert {e.key: e.prev_value for e in events} == {p + "a": {"v": 1}, p + "b": {"v": 2}}
        finally:
            watch.close()
        assert ds.get(p + "a") is None and ds.get(p + "b") is None
        assert ds.get(p + "keep") is not None
        with pytest.raises(LeaseExpired):
            ds.refresh_lease(lease)
        with pytest.raises(LeaseExpired):
            ds.create(p + "c", {}, lease=lease)

    def test_lease_refresh_keeps_keys(self, ds: Datastore, backend: Backend, p: str) -> None:
        lease = ds.grant_lease(backend.lease_ttl)
        ds.create(p + "a", {}, lease=lease)
        deadline = time.monotonic() + backend.lease_ttl * 2.5
        while time.monotonic() < deadline:
            ds.refresh_lease(lease)
            assert ds.get(p + "a") is not None
            time.sleep(backend.lease_ttl / 4)
        ds.refresh_lease(lease)
        assert ds.get(p + "a") is not None

    def test_lease_revoke_deletes_keys(self, ds: Datastore, p: str, backend: Backend) -> None:
        lease = ds.grant_lease(60)
        ds.create(p + "a", {}, lease=lease)
        ds.create(p + "b", {})
        watch = ds.watch(p, ds.current_revision())
        try:
            ds.revoke_lease(lease)
            assert ds.get(p + "a") is None and ds.get(p + "b") is not None
            events = drain(watch, 1)
            assert (events[0].type, events[0].key) == (EventType.DELETE, p + "a")
            assert_quiet(watch)
        finally:
            watch.close()
        with pytest.raises(LeaseExpired):
            ds.refresh_lease(lease)
        with pytest.raises(LeaseExpired):
            ds.revoke_lease(lease)
        with pytest.raises(LeaseExpired):
            ds.put(p + "c", {}, lease=lease)

    def test_write_without_lease_detaches_it(self, ds: Datastore, p: str) -> None:
        lease = ds.grant_lease(60)
        ds.create(p + "a", {}, lease=lease)
        kv = ds.put(p + "a", {"v": 2})
        assert kv.lease is None
        ds.revoke_lease(lease)
        assert ds.get(p + "a") is not None

    # ----- concurrency -----

    def test_concurrent_cas_increments_are_exact(self, backend: Backend, p: str) -> None:
        setup = backend.open()
        setup.create(p + "counter", {"n": 0})
        successes: list[int] = []
        lock = threading.Lock()

        def worker() -> None:
            ds = backend.open()
            for _ in range(25):
                kv = ds.get(p + "counter")
                assert kv is not None
                try:
                    ds.update(p + "counter", {"n": kv.value["n"] + 1}, expected_revision=kv.mod_revision)
                except Conflict:
                    continue
                with lock:
                    successes.append(1)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = setup.get(p + "counter")
        assert final is not None
        assert final.value["n"] == len(successes) > 0
