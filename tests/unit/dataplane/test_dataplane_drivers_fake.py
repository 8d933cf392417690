"""The driver conformance suites against `FakeKernel`, plus the fake's own test controls."""

from __future__ import annotations

import pytest

from tortie.common.errors import KernelError
from tortie.dataplane.drivers.links import Link, LinkEvent, diff_links
from tortie.dataplane.drivers.routes import Route
from tortie.testing.dataplane_conformance import (
    DriverEnv,
    LinkDriverConformance,
    RouteDriverConformance,
    SysctlDriverConformance,
    fake_env,
)
from tortie.testing.kernel_fake import FakeKernel
from tortie.testing.shaping_conformance import FakeDevices, ShapingDriverConformance, ShapingEnv
from tortie.testing.shaping_fake import FakeShaping
from tortie.testing.vxlan_conformance import FakeUplinks, VxlanDriverConformance, VxlanEnv


@pytest.fixture
def env() -> DriverEnv:
    return fake_env()


class TestFakeRoutes(RouteDriverConformance):
    pass


class TestFakeLinks(LinkDriverConformance):
    pass


class TestFakeSysctls(SysctlDriverConformance):
    pass


@pytest.fixture
def vx() -> VxlanEnv:
    kernel = FakeKernel()
    return VxlanEnv(driver=kernel, bench=FakeUplinks(kernel))


class TestFakeVxlan(VxlanDriverConformance):
    pass


def test_injected_failure_has_no_side_effect_and_is_counted() -> None:
    kernel = FakeKernel()
    kernel.add_link("tort1")
    kernel.fail("replace_route", times=2, key="10.0.0.1/32")
    for _ in range(2):
        with pytest.raises(KernelError):
            kernel.replace_route(Route("10.0.0.1/32", ifname="tort1"))
    kernel.replace_route(Route("10.0.0.2/32", ifname="tort1"))  # other key: unaffected
    kernel.replace_route(Route("10.0.0.1/32", ifname="tort1"))  # failures used up
    assert kernel.mutations == ["replace 10.0.0.2/32 dev tort1", "replace 10.0.0.1/32 dev tort1"]


def test_carrier_loss_keeps_routes_but_reports_down() -> None:
    kernel = FakeKernel()
    events: list[LinkEvent] = []
    kernel.start_monitor(events.append)
    kernel.add_link("tort1")
    kernel.replace_route(Route("10.0.0.1/32", ifname="tort1"))
    kernel.set_carrier("tort1", False)
    assert [e.kind for e in events] == ["added", "down"]
    assert kernel.list_routes() == [Route("10.0.0.1/32", ifname="tort1")]


def test_diff_links_reports_rename_as_remove_then_add() -> None:
    a = Link("tort1", 5, True, "UP")
    b = Link("tort2", 5, True, "UP")
    c = Link("tort3", 6, False, "DOWN")
    events = diff_links({5: a}, {5: b, 6: c})
    assert events == [LinkEvent("removed", a), LinkEvent("added", b), LinkEvent("added", c)]
    assert diff_links({6: c}, {6: Link("tort3", 6, True, "UP")})[0].kind == "up"
    assert diff_links({5: a}, {5: a}) == []


def test_route_value_validation() -> None:
    assert Route("10.0.0.1", ifname="x").dst == "10.0.0.1/32"
    with pytest.raises(ValueError):
        Route("10.0.0.1/24", ifname="x")  # host bits set
    with pytest.raises(ValueError):
        Route("10.0.0.0/24")  # unicast without a device or gateway
    with pytest.raises(ValueError):
        Route("10.0.0.0/24", kind="blackhole", ifname="x")


@pytest.fixture
def sh() -> ShapingEnv:
    kernel = FakeKernel()
    return ShapingEnv(driver=FakeShaping(kernel), bench=FakeDevices(kernel))


class TestFakeShaping(ShapingDriverConformance):
    pass
