"""DataplaneLoop with real managers over the FakeKernel and a fake clock: in-sync gating, batching,
retry with backoff, persistent failure, periodic drift repair, link events, observer hooks."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tortie.dataplane.drivers.kernel_watch import KernelCallback, KernelChanges, RouteChange
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.routes import Route
from tortie.dataplane.loop import DataplaneFailed, DataplaneLoop, DataplaneObserver
from tortie.dataplane.managers.block_routes import BlockRoutesManager
from tortie.dataplane.managers.endpoints import EndpointManager
from tortie.dataplane.managers.host_sysctls import HostSysctlsManager
from tortie.dataplane.managers.manager_api import Manager
from tortie.dataplane.messages import (
    ENCAP_MESSAGE_TYPES,
    MESSAGE_TYPES,
    POLICY_MESSAGE_TYPES,
    ConfigUpdate,
    HostBlockRemove,
    HostBlockUpdate,
    InSync,
    Message,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.routetable import RouteTable
from tortie.testing.dataplane_conformance import wait_for
from tortie.testing.kernel_fake import FakeKernel


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Recorder(DataplaneObserver):
    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []
        self.applies: list[tuple[str, bool]] = []
        self.resyncs: list[str] = []
        self.first: list[float] = []
        self.programmed: list[float] = []
        self.stats: list[Mapping[str, int]] = []

    def on_batch(self, messages: int, link_events: int) -> None:
        self.batches.append((messages, link_events))

    def on_apply(self, manager: str, seconds: float, error: BaseException | None) -> None:
        self.applies.append((manager, error is None))

    def on_first_apply(self, seconds: float) -> None:
        self.first.append(seconds)

    def on_programmed(self, latency: float) -> None:
        self.programmed.append(latency)

    def on_resync(self, manager: str) -> None:
        self.resyncs.append(manager)

    def on_stats(self, stats: Mapping[str, int]) -> None:
        self.stats.append(stats)


# what a loop without policy and VXLAN managers leaves unhandled
ROUTING_ONLY = (*POLICY_MESSAGE_TYPES, *ENCAP_MESSAGE_TYPES, ConfigUpdate)
ENDPOINTS_ONLY = tuple(
    t for t in MESSAGE_TYPES if t not in (WorkloadEndpointUpdate, WorkloadEndpointRemove, InSync)
)


def wep(name: str, iface: str, ip: str) -> WorkloadEndpointUpdate:
    return WorkloadEndpointUpdate(WorkloadEndpointId("ns", name), iface, ipv4_nets=(ip,))


def routing(kernel: FakeKernel, *, blocks: bool = True) -> list[Manager]:
    """The agent's routing managers in the agent's order: sources, their route table, endpoints."""
    table = RouteTable(kernel, kernel)
    sources: list[Manager] = [BlockRoutesManager(table)] if blocks else []
    return [*sources, table, EndpointManager(table, kernel)]


class Rig:
    def __init__(self, **kwargs: object) -> None:
        self.kernel = FakeKernel()
        self.clock = FakeClock()
        self.observer = Recorder()
        self.loop = DataplaneLoop(
            [HostSysctlsManager(self.kernel), *routing(self.kernel)],
            unhandled=ROUTING_ONLY,
            link_driver=self.kernel,
            clock=self.clock,
            observer=self.observer,
            **kwargs,  # type: ignore[arg-type]
        )
        self.loop.start_link_monitor()

    def feed(self, *msgs: Message) -> None:
        self.loop.send_many(msgs)
        self.loop.step()


def test_nothing_touches_the_kernel_before_in_sync() -> None:
    rig = Rig()
    rig.kernel.add_link("tort1")
    rig.feed(wep("a", "tort1", "10.65.0.2/32"), HostBlockUpdate("10.65.0.0/26"))
    rig.loop.step()
    assert rig.kernel.mutations == []
    assert rig.observer.applies == []
    assert not rig.loop.status().programmed
    rig.feed(InSync())
    assert rig.kernel.list_routes() == [
        Route("10.65.0.0/26", kind="blackhole"),
        Route("10.65.0.2/32", ifname="tort1"),
    ]
    assert rig.kernel.sysctl("net/ipv4/ip_forward") == "1"
    status = rig.loop.status()
    assert status.in_sync and status.programmed and status.failing_since is None
    assert len(rig.observer.first) == 1


def test_messages_are_drained_and_applied_as_one_batch() -> None:
    rig = Rig()
    rig.kernel.add_link("tort1")
    rig.feed(InSync())
    applies_before = rig.loop.status().applies
    rig.loop.send_many([wep(f"w{i}", "tort1", f"10.65.0.{i}/32") for i in range(2, 7)])
    rig.loop.send(HostBlockUpdate("10.65.0.0/26"))
    rig.loop.step()
    assert rig.observer.batches[-1] == (6, 0)
    assert rig.loop.status().applies == applies_before + 1
    assert len(rig.kernel.list_routes()) == 6
    assert rig.observer.stats[-1]["endpoint_routes"] == 5
    assert len(rig.observer.programmed) == 1


def test_failed_apply_is_retried_with_backoff() -> None:
    rig = Rig(retry_initial=0.1, retry_max=0.4)
    rig.kernel.add_link("tort1")
    rig.feed(InSync())
    rig.kernel.fail("replace_route", times=3)
    rig.feed(wep("a", "tort1", "10.65.0.2/32"))
    assert rig.loop.status().failing_since == rig.clock.now
    applies = rig.loop.status().applies
    rig.loop.step()  # within the backoff: no attempt
    assert rig.loop.status().applies == applies
    rig.clock.now += 0.1
    rig.loop.step()  # 2nd attempt fails, backoff doubles to 0.2
    assert rig.loop.status().applies == applies + 1
    rig.clock.now += 0.1
    rig.loop.step()
    assert rig.loop.status().applies == applies + 1
    rig.clock.now += 0.1
    rig.loop.step()  # 3rd attempt fails
    assert rig.kernel.list_routes() == []
    assert rig.loop.next_deadline() == pytest.approx(rig.clock.now + 0.4)
    rig.clock.now += 0.4
    rig.loop.step()  # 4th attempt: the injected failures are used up
    assert rig.kernel.list_routes() == [Route("10.65.0.2/32", ifname="tort1")]
    assert rig.loop.status().failing_since is None
    assert ("route_table", False) in rig.observer.applies
    assert rig.observer.applies[-2:] == [("route_table", True), ("endpoints", True)]


def test_persistent_failure_raises() -> None:
    rig = Rig(retry_initial=1.0, retry_max=1.0, fail_after=5.0)
    rig.kernel.add_link("tort1")
    rig.kernel.fail("list_links", times=None)
    rig.feed(InSync())
    for _ in range(4):
        rig.clock.now += 1.0
        rig.loop.step()
    rig.clock.now += 1.0
    with pytest.raises(DataplaneFailed):
        rig.loop.step()
    assert rig.loop.status().fatal is not None


def test_periodic_resync_repairs_drift() -> None:
    rig = Rig(refresh_interval=90.0, refresh_overrides={"host_sysctls": None})
    rig.kernel.add_link("tort1")
    rig.feed(wep("a", "tort1", "10.65.0.2/32"), InSync())
    rig.kernel.drop_route("10.65.0.2/32")
    rig.kernel.set_sysctl("net/ipv4/ip_forward", "0")
    rig.clock.now += 89.0
    rig.loop.step()
    assert rig.kernel.list_routes() == []
    assert rig.loop.next_deadline() == pytest.approx(rig.clock.now + 1.0)
    rig.clock.now += 1.0
    rig.loop.step()
    assert rig.kernel.list_routes() == [Route("10.65.0.2/32", ifname="tort1")]
    assert sorted(rig.observer.resyncs) == ["block_routes", "endpoints", "route_table"]
    assert rig.kernel.sysctl("net/ipv4/ip_forward") == "0"  # its refresh was disabled


class ScriptedWatch:
    """A kernel watch the test speaks for (the real one is proved against the kernel in
    tests/integration/test_dataplane_lab.py and test_policy_drift.py)."""

    def __init__(self) -> None:
        self.callback: KernelCallback | None = None

    def start(self, callback: KernelCallback) -> None:
        self.callback = callback

    def stop(self) -> None:
        self.callback = None


def test_kernel_changes_repair_drift_without_waiting_for_the_refresh() -> None:
    watch = ScriptedWatch()
    rig = Rig(refresh_interval=3600.0, kernel_watch=watch)
    rig.kernel.add_link("tort1")
    rig.feed(wep("a", "tort1", "10.65.0.2/32"), InSync())
    index = next(link.index for link in rig.kernel.list_links() if link.name == "tort1")
    rig.kernel.drop_route("10.65.0.2/32")
    assert watch.callback is not None
    watch.callback(KernelChanges((RouteChange(True, "10.65.0.2/32", 254, 77, "unicast", index),)))
    rig.loop.step()
    assert rig.observer.batches[-1] == (0, 1)
    assert rig.kernel.list_routes() == [Route("10.65.0.2/32", ifname="tort1")]
    assert rig.observer.resyncs == []
    rig.loop.stop_link_monitor()
    assert watch.callback is None


def test_echoes_of_our_own_writes_do_not_count_as_waiting_to_be_programmed() -> None:
    watch = ScriptedWatch()
    rig = Rig(kernel_watch=watch)
    rig.kernel.add_link("tort1")
    rig.feed(wep("a", "tort1", "10.65.0.2/32"), InSync())
    index = next(link.index for link in rig.kernel.list_links() if link.name == "tort1")
    assert watch.callback is not None
    watch.callback(KernelChanges((RouteChange(False, "10.65.0.2/32", 254, 77, "unicast", index),)))
    rig.loop.step()  # our own route coming back: nothing to apply
    rig.clock.now += 60.0
    rig.feed(wep("b", "tort1", "10.65.0.3/32"))
    assert rig.observer.programmed == [0.0]  # from b's message, not from the echo a minute earlier


def test_link_events_trigger_programming() -> None:
    rig = Rig()
    rig.feed(wep("a", "tort1", "10.65.0.2/32"), InSync())
    assert rig.kernel.list_routes() == []
    rig.kernel.add_link("tort1")  # the monitor callback enqueues the event
    rig.loop.step()
    assert rig.observer.batches[-1] == (0, 1)
    assert rig.kernel.list_routes() == [Route("10.65.0.2/32", ifname="tort1")]


def test_a_manager_bug_on_one_message_does_not_stop_the_others() -> None:
    rig = Rig()
    rig.kernel.add_link("tort1")
    bad = WorkloadEndpointUpdate(WorkloadEndpointId("ns", "bad"), "tort1", ipv4_nets=("1.2.3.4/24", "x"))
    rig.feed(bad, wep("a", "tort1", "10.65.0.2/32"), InSync())
    assert rig.kernel.list_routes() == [Route("10.65.0.2/32", ifname="tort1")]
    assert rig.loop.status().failing_since is None


def test_threaded_loop_programs_and_stops() -> None:
    kernel = FakeKernel()
    loop = DataplaneLoop(routing(kernel, blocks=False), unhandled=ENDPOINTS_ONLY, link_driver=kernel)
    loop.start()
    try:
        loop.send_many([wep("a", "tort1", "10.65.0.2/32"), InSync()])
        wait_for(lambda: loop.status().programmed, what="first apply")
        kernel.add_link("tort1")
        wait_for(lambda: kernel.list_routes() == [Route("10.65.0.2/32", ifname="tort1")], what="route")
    finally:
        loop.stop()
    loop.wait(timeout=5.0)


def test_threaded_loop_reports_persistent_failure() -> None:
    kernel = FakeKernel()
    kernel.fail("list_links", times=None)
    fatal: list[DataplaneFailed] = []
    loop = DataplaneLoop(routing(kernel, blocks=False), unhandled=ENDPOINTS_ONLY, fail_after=0.0,
                         on_fatal=fatal.append)
    loop.start()
    loop.send(InSync())
    with pytest.raises(DataplaneFailed):
        loop.wait(timeout=5.0)
    assert len(fatal) == 1 and loop.status().fatal is not None


class Counting:
    """A minimal manager recording what it is given."""

    def __init__(self, name: str, handles: frozenset[type]) -> None:
        self.name = name
        self.handles = handles
        self.seen: list[object] = []

    def on_update(self, msg: Message) -> None:
        self.seen.append(msg)

    def on_link_event(self, event: LinkEvent) -> None:
        self.seen.append(event)

    def resync(self) -> None:
        pass

    @property
    def needs_apply(self) -> bool:
        return False

    def apply(self) -> None:
        pass

    def stats(self) -> Mapping[str, int]:
        return {}


def test_each_message_goes_only_to_the_managers_that_declare_it() -> None:
    kernel = FakeKernel()
    blocks = Counting("blocks", frozenset({HostBlockUpdate, HostBlockRemove}))
    endpoints = Counting("endpoints", frozenset({WorkloadEndpointUpdate, WorkloadEndpointRemove, LinkEvent}))
    both = Counting("both", frozenset({HostBlockUpdate, WorkloadEndpointUpdate}))
    loop = DataplaneLoop([blocks, endpoints, both], unhandled=ROUTING_ONLY, link_driver=kernel)
    loop.start_link_monitor()
    update, block = wep("a", "tort1", "10.65.0.2/32"), HostBlockUpdate("10.65.0.0/26")
    loop.send_many([update, block, ConfigUpdate({}), InSync()])
    kernel.add_link("tort1")
    loop.step()
    assert blocks.seen == [block]
    assert [type(x) for x in endpoints.seen] == [WorkloadEndpointUpdate, LinkEvent]
    assert both.seen == [update, block]


def test_wiring_errors_are_refused_at_construction() -> None:
    def loop(*managers: Counting, unhandled: tuple[type, ...] = ROUTING_ONLY) -> DataplaneLoop:
        return DataplaneLoop(list(managers), unhandled=unhandled)

    complete = Counting("all", frozenset({HostBlockUpdate, HostBlockRemove, WorkloadEndpointUpdate,
                                          WorkloadEndpointRemove}))
    loop(complete)  # every message type has a consumer or is declared unhandled
    with pytest.raises(ValueError, match="no dataplane manager handles HostBlockRemove"):
        loop(Counting("part", frozenset({HostBlockUpdate, WorkloadEndpointUpdate, WorkloadEndpointRemove})))
    with pytest.raises(ValueError, match="not a dataplane message type"):
        loop(complete, Counting("odd", frozenset({Route})))
    with pytest.raises(ValueError, match="not a dataplane message type"):
        loop(complete, Counting("insync", frozenset({InSync})))  # InSync is the loop's own
    with pytest.raises(ValueError, match="declared unhandled but manager all handles it"):
        loop(complete, unhandled=(*ROUTING_ONLY, HostBlockUpdate))
    with pytest.raises(ValueError, match="unique"):
        loop(complete, Counting("all", frozenset()))


def test_an_object_outside_the_contract_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    rig.kernel.add_link("tort1")
    rig.loop.send_many([Route("10.0.0.0/8", kind="blackhole"), wep("a", "tort1", "10.65.0.2/32"),
                        InSync()])  # type: ignore[list-item]
    rig.loop.step()
    assert rig.kernel.list_routes() == [Route("10.65.0.2/32", ifname="tort1")]
    assert "not a dataplane message" in caplog.text
