"""MemoryDatastore specifics: leases on an injected clock, compaction bookkeeping."""

from __future__ import annotations

import pytest

from tortie.common.errors import LeaseExpired, UserError
from tortie.datastore.api import EventType
from tortie.datastore.memory import MemoryDatastore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lease_follows_the_injected_clock() -> None:
    clock = FakeClock()
    ds = MemoryDatastore(clock=clock)
    lease = ds.grant_lease(10)
    ds.create("/a", {"v": 1}, lease=lease)
    ds.create("/b", {"v": 2}, lease=lease)
    watch = ds.watch("/", ds.current_revision())
    clock.now += 9
    ds.refresh_lease(lease)
    clock.now += 9
    assert ds.get("/a") is not None
    assert watch.get(timeout=0.1) is None
    clock.now += 2
    ev = watch.get(timeout=1.0)  # waiting on the watch reaps, no other call needed
    assert ev is not None and (ev.type, ev.key, ev.prev_value) == (EventType.DELETE, "/a", {"v": 1})
    ev2 = watch.get(timeout=1.0)
    assert ev2 is not None and ev2.key == "/b" and ev2.revision == ev.revision
    assert ds.get("/a") is None
    with pytest.raises(LeaseExpired):
        ds.refresh_lease(lease)


def test_expiry_with_no_keys_uses_no_revision() -> None:
    clock = FakeClock()
    ds = MemoryDatastore(clock=clock)
    ds.create("/x", {})
    rev = ds.current_revision()
    ds.grant_lease(1)
    clock.now += 5
    assert ds.current_revision() == rev


def test_bad_ttl_rejected() -> None:
    with pytest.raises(UserError):
        MemoryDatastore().grant_lease(0)


def test_compaction_is_idempotent_and_bounded() -> None:
    ds = MemoryDatastore()
    for i in range(5):
        ds.put("/k", {"i": i})
    ds.compact(3)
    ds.compact(2)  # older: no effect
    ds.compact(100)  # future: clamps to the current revision + 1
    resync = ds.watch("/", 4)
    ev = resync.get(timeout=0.1)
    assert ev is not None and ev.type is EventType.RESYNC and ev.revision == 6
    ok = ds.watch("/", 5)
    ds.put("/k", {"i": 9})
    ev = ok.get(timeout=0.1)
    assert ev is not None and ev.revision == 6


def test_close_ends_watches() -> None:
    ds = MemoryDatastore()
    watch = ds.watch("/", 0)
    ds.close()
    assert list(watch) == []
