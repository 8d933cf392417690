"""Status write-back: liveness report with a lease, endpoint status coalescing and stale cleanup."""

from __future__ import annotations

import time

from tortie.agent.status import DOWN, UP, EndpointStatusId, StatusReporter, last_reported_key, status_key
from tortie.dataplane.messages import WorkloadEndpointId, WorkloadEndpointUpdate
from tortie.datastore.memory import MemoryDatastore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reporter(ds: MemoryDatastore, clock: Clock, **kw: object) -> StatusReporter:
    return StatusReporter(ds, "h1", wall_clock=clock, monotonic=clock, **kw)  # type: ignore[arg-type]


def test_status_keys_follow_felix_layout() -> None:
    assert status_key("h1") == "/calico/felix/v2/no-region/host/h1/status"
    assert last_reported_key("h1", "r1") == "/calico/felix/v2/region-r1/host/h1/last_reported_status"
    msg = WorkloadEndpointUpdate(WorkloadEndpointId("ns", "h1-openstack-vm1-port1"), "tap1",
                                 orchestrator="openstack", workload="vm/1", endpoint="port1")
    assert EndpointStatusId.of(msg).key("h1") == \
        "/calico/felix/v2/no-region/host/h1/workload/openstack/vm%2F1/endpoint/port1"
    bare = WorkloadEndpointUpdate(WorkloadEndpointId("ns", "w"), "tortw")
    assert EndpointStatusId.of(bare) == EndpointStatusId("unknown", "ns/w", "w")


def test_liveness_report_is_leased_and_repeated() -> None:
    clock = Clock()
    ds = MemoryDatastore(clock=clock)
    rep = _reporter(ds, clock, reporting_interval=30.0, reporting_ttl=90.0)
    rep.tick()
    first = ds.get(status_key("h1"))
    assert first is not None and first.value["first_update"] is True and first.lease is not None
    assert ds.get(last_reported_key("h1")) is not None
    clock.now += 10
    rep.tick()  # not due yet
    assert ds.get(status_key("h1")).mod_revision == first.mod_revision  # type: ignore[union-attr]
    clock.now += 25
    rep.tick()
    second = ds.get(status_key("h1"))
    assert second is not None and second.value["first_update"] is False and second.value["uptime"] == 35.0
    clock.now += 91  # the agent stopped reporting: the lease expires and the key goes
    assert ds.get(status_key("h1")) is None
    assert ds.get(last_reported_key("h1")) is not None
    rep.tick()  # back: a new lease
    assert ds.get(status_key("h1")) is not None


def test_endpoint_status_coalesces_and_deletes() -> None:
    clock = Clock()
    ds = MemoryDatastore(clock=clock)
    rep = _reporter(ds, clock, reporting_interval=0.0, endpoint_reporting=True, endpoint_delay=1.0)
    a, b = EndpointStatusId("cni", "a", "eth0"), EndpointStatusId("cni", "b", "eth0")
    rep.set_endpoint_status(a, DOWN)
    rep.set_endpoint_status(a, UP)
    rep.set_endpoint_status(b, UP)
    rev = ds.current_revision()
    rep.tick()
    assert ds.get(a.key("h1")).value == {"status": UP}  # type: ignore[union-attr]
    assert ds.current_revision() == rev + 2  # one write per endpoint, the flap coalesced
    rep.set_endpoint_status(b, None)
    rep.tick()  # within the delay: nothing yet
    assert ds.get(b.key("h1")) is not None
    clock.now += 1.5
    rep.tick()
    assert ds.get(b.key("h1")) is None
    assert ds.get(status_key("h1")) is None  # liveness reporting disabled


def test_stale_endpoint_status_is_removed_after_sync() -> None:
    clock = Clock()
    ds = MemoryDatastore(clock=clock)
    stale = EndpointStatusId("cni", "gone", "eth0")
    keep = EndpointStatusId("cni", "here", "eth0")
    ds.put(stale.key("h1"), {"status": UP})
    ds.put(keep.key("h1"), {"status": UP})
    ds.put(stale.key("h2"), {"status": UP})  # another host's: untouched
    rep = _reporter(ds, clock, reporting_interval=0.0, endpoint_reporting=True)
    rep.sync_endpoint_status([keep])
    rep.tick()
    assert ds.get(stale.key("h1")) is None
    assert ds.get(keep.key("h1")) is not None
    assert ds.get(stale.key("h2")) is not None


def test_endpoint_reporting_disabled_writes_nothing() -> None:
    clock = Clock()
    ds = MemoryDatastore(clock=clock)
    rep = _reporter(ds, clock, reporting_interval=0.0)
    rep.set_endpoint_status(EndpointStatusId("cni", "a", "eth0"), UP)
    rep.sync_endpoint_status([])
    rep.tick()
    assert ds.list("/calico/felix/")[0] == []


def test_the_reporting_thread_writes_queued_changes_without_a_poll() -> None:
    # Real clocks: the thread sleeps until something is due or a setter wakes it.
    ds = MemoryDatastore()
    rep = StatusReporter(ds, "h1", reporting_interval=0.0, endpoint_reporting=True, endpoint_delay=0.05)
    a = EndpointStatusId("cni", "a", "eth0")
    assert rep._sleep(0.2) is None  # nothing queued, no liveness report: sleep until woken
    rep.start()
    try:
        for status in (UP, DOWN, None):
            rep.set_endpoint_status(a, status)
            want = None if status is None else {"status": status}
            deadline = time.monotonic() + 10
            while (None if (kv := ds.get(a.key("h1"))) is None else kv.value) != want:
                assert time.monotonic() < deadline, f"status {status} not written"
                time.sleep(0.01)
    finally:
        rep.stop()
    assert rep._thread is not None and not rep._thread.is_alive()  # stop() woke and ended it
