"""The driver conformance suites, and the route table's over those drivers, against the real kernel
in a throwaway network namespace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tortie.common.errors import NetnsNotFound
from tortie.dataplane.drivers.links import NetlinkLinkDriver
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
