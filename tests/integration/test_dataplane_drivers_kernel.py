"""The driver conformance suites, and the route table's over those drivers, against the real kernel
in a throwaway network namespace."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tortie.common.errors import NetnsNotFound
from tortie.dataplane.drivers.links import LinkEvent, NetlinkLinkDriver
from tortie.dataplane.drivers.routes import NetlinkRouteDriver
from tortie.dataplane.drivers.shaping import NetlinkShapingDriver
from tortie.dataplane.drivers.sysctl import ProcSysctlDriver
from tortie.dataplane.drivers.vxlan import NetlinkVxlanDriver
from tortie.testing.dataplane_conformance import (
    DriverEnv,
    LinkDriverConformance,
    RealBench,
    RouteDriverConformance,
    SysctlDriverConformance,
    wait_for,
)
from tortie.testing.netns import ip, throwaway_netns, unique_name
from tortie.testing.routetable_conformance import RouteTableConformance
from tortie.testing.shaping_conformance import RealDevices, ShapingDriverConformance, ShapingEnv
from tortie.testing.vxlan_conformance import RealUplinks, VxlanDriverConformance, VxlanEnv

pytestmark = pytest.mark.root


@pytest.fixture
def env() -> Iterator[DriverEnv]:
    with throwaway_netns("dpc") as netns:
        routes = NetlinkRouteDriver(netns)
        links = NetlinkLinkDriver(netns)
        sysctls = ProcSysctlDriver(netns)
        try:
            yield DriverEnv(routes=routes, links=links, sysctls=sysctls, bench=RealBench(netns))
        finally:
            routes.close()
            links.close()
            sysctls.close()


class TestKernelRoutes(RouteDriverConformance):
    pass


class TestKernelLinks(LinkDriverConformance):
    pass


class TestKernelSysctls(SysctlDriverConformance):
    pass


@pytest.fixture
def vx() -> Iterator[VxlanEnv]:
    with throwaway_netns("vxc") as netns:
        driver = NetlinkVxlanDriver(netns)
        try:
            yield VxlanEnv(driver=driver, bench=RealUplinks(netns))
        finally:
            driver.close()


class TestKernelVxlan(VxlanDriverConformance):
    pass


class TestKernelRouteTable(RouteTableConformance):
    pass


def test_missing_namespace_is_an_error_not_created() -> None:
    name = unique_name("dpmissing")
    with pytest.raises(NetnsNotFound):
        NetlinkRouteDriver(name)
    with pytest.raises(NetnsNotFound):
        ProcSysctlDriver(name)
    import os

    assert not os.path.exists(f"/run/netns/{name}")


@pytest.fixture
def sh() -> Iterator[ShapingEnv]:
    with throwaway_netns("shc") as netns:
        driver = NetlinkShapingDriver(netns)
        try:
            yield ShapingEnv(driver=driver, bench=RealDevices(netns))
        finally:
            driver.close()


class TestKernelShaping(ShapingDriverConformance):
    pass


def test_this_kernel_has_every_part_of_tc_shaping_and_the_probe_leaves_nothing() -> None:
    from tortie.kernel.tc import probe_shaping

    before = ip("-o", "link", "show").stdout.count("tqprobe")
    assert probe_shaping() == {"tbf": None, "ifb": None, "ingress": None, "u32 mirred": None}
    assert ip("-o", "link", "show").stdout.count("tqprobe") == before == 0


def test_link_monitor_follows_notifications_of_the_named_links_only() -> None:
    """Beside many interfaces, the monitor reports exactly what happened to the one that changed
    (it folds the kernel's notifications into its snapshot rather than re-listing), a rename as
    removed + added, and its snapshot stays the kernel's truth."""
    with throwaway_netns("dplm") as netns:
        links = NetlinkLinkDriver(netns)
        bench = RealBench(netns)
        for i in range(30):
            bench.add_link(f"tortm{i}")
        # settled first: the kernel reports a veth's carrier late (linkwatch), which would be an event
        wait_for(lambda: sum(link.is_up for link in links.list_links()) >= 60, timeout=30, what="veths up")
        events: list[LinkEvent] = []
        lock = threading.Lock()

        def record(event: LinkEvent) -> None:
            with lock:
                events.append(event)

        def seen() -> list[tuple[str, str]]:
            with lock:
                return [(e.kind, e.link.name) for e in events]

        links.start_monitor(record)
        try:
            bench.add_link("tortn")
            wait_for(lambda: ("added", "tortn") in seen(), timeout=30, what="tortn added")
            ip("-n", netns, "link", "set", "tortn", "down")
            ip("-n", netns, "link", "set", "tortn", "name", "tortr")
            wait_for(lambda: ("added", "tortr") in seen(), timeout=30, what="tortr added")
            bench.remove_link("tortr")
            wait_for(lambda: ("removed", "tortr") in seen(), timeout=30, what="tortr removed")
        finally:
            links.stop_monitor()
            links.close()
        names = {name for _, name in seen()}
        assert names <= {"tortn", "tortr", bench.peer("tortn"), bench.peer("tortr")}, seen()
        mine = [item for item in seen() if item[1] in ("tortn", "tortr")]
        assert mine[0] == ("added", "tortn") and ("removed", "tortn") in mine
        steps = (("removed", "tortn"), ("added", "tortr"), ("removed", "tortr"))
        order = [mine.index(item) for item in steps]
        assert order == sorted(order), mine
