"""One conformance suite for `ShapingDriver`, run against `FakeShaping` and a real namespace.

Usage: subclass `ShapingDriverConformance` and provide a fixture `sh` returning a `ShapingEnv`: the
driver under test and a bench that creates a veth-like device by name and MTU (the fake adds a
FakeKernel link; the real bench a veth pair in a throwaway namespace). What it pins down is what the
QoS manager relies on: a root tbf reads back with its rate, peak rate and limit (burst None),
replaces in place and clears; a peak rate not above the rate is refused; a redirect reads back with
its target's name, replaces its target, and goes with the ingress qdisc; ifb devices are created up
with their MTU, listed by prefix, deleted idempotently; a missing device is `LinkNotFound` except
for clears and deletes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pytest

from tortie.common.errors import KernelError, LinkNotFound
from tortie.dataplane.drivers.shaping import ShapingDriver
from tortie.kernel.tc_codec import TbfParams
from tortie.testing.kernel_fake import FakeKernel
from tortie.testing.netns import ip


class DeviceBench(Protocol):
    def add_device(self, name: str, mtu: int) -> None: ...


@dataclass
class ShapingEnv:
    driver: ShapingDriver
    bench: DeviceBench


class FakeDevices:
    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    def add_device(self, name: str, mtu: int) -> None:
        self.kernel.add_link(name, mtu=mtu)


class RealDevices:
    def __init__(self, netns: str) -> None:
        self.netns = netns

    def add_device(self, name: str, mtu: int) -> None:
        ip("-n", self.netns, "link", "add", name, "mtu", str(mtu), "type", "veth", "peer", "name", f"{name}p")
        ip("-n", self.netns, "link", "set", f"{name}p", "up")
        ip("-n", self.netns, "link", "set", name, "up")


TBF = TbfParams(rate=1_250_000, burst=64_000, limit=1_250_000 // 40 + 64_000)
TBF_PEAK = TbfParams(rate=1_250_000, burst=64_000, limit=95_250, peakrate=2_500_000, minburst=1514)
TBF_64BIT = TbfParams(rate=10**10, burst=10**6, limit=2**32 - 1)


class ShapingDriverConformance:
    """Shaping driver behaviour (fixture `sh: ShapingEnv`)."""

    def test_root_tbf_reads_back_replaces_and_clears(self, sh: ShapingEnv) -> None:
        sh.bench.add_device("tq0", 1500)
        state = sh.driver.shaping("tq0")
        assert state is not None and state.tbf is None and not state.ingress and state.mtu == 1500
        sh.driver.set_tbf("tq0", TBF)
        state = sh.driver.shaping("tq0")
        assert state is not None and state.tbf == TBF._replace(burst=None)
        sh.driver.set_tbf("tq0", TBF_PEAK)
        state = sh.driver.shaping("tq0")
        assert state is not None and state.tbf == TbfParams(1_250_000, None, 95_250, 2_500_000)
        sh.driver.set_tbf("tq0", TBF_64BIT)
        state = sh.driver.shaping("tq0")
        assert state is not None and state.tbf == TBF_64BIT._replace(burst=None)
        with pytest.raises(KernelError):
            sh.driver.set_tbf("tq0", TBF._replace(peakrate=TBF.rate, minburst=1514))
        assert set(sh.driver.shaped()) == {"tq0"}
        sh.driver.clear_tbf("tq0")
        sh.driver.clear_tbf("tq0")
        assert sh.driver.shaped() == {}
        state = sh.driver.shaping("tq0")
        assert state is not None and state.tbf is None

    def test_redirect_to_an_ifb_device(self, sh: ShapingEnv) -> None:
        sh.bench.add_device("tq0", 1400)
        sh.driver.add_ifb("tqosa", 1400)
        sh.driver.add_ifb("tqosb", 1400)
        assert sh.driver.ifb_devices("tqos") == {"tqosa", "tqosb"}
        ifb = sh.driver.shaping("tqosa")
        assert ifb is not None and ifb.mtu == 1400
        sh.driver.set_redirect("tq0", "tqosa")
        state = sh.driver.shaping("tq0")
        assert state is not None and state.ingress and state.redirect == "tqosa"
        sh.driver.set_redirect("tq0", "tqosb")
        state = sh.driver.shaping("tq0")
        assert state is not None and state.redirect == "tqosb"
        sh.driver.set_tbf("tqosb", TBF)
        assert set(sh.driver.shaped()) == {"tq0", "tqosb"}
        sh.driver.clear_ingress("tq0")
        sh.driver.clear_ingress("tq0")
        state = sh.driver.shaping("tq0")
        assert state is not None and not state.ingress and state.redirect is None
        sh.driver.delete_device("tqosa")
        sh.driver.delete_device("tqosa")
        assert sh.driver.ifb_devices("tqos") == {"tqosb"}
        with pytest.raises(KernelError):
            sh.driver.add_ifb("tqosb", 1400)

    def test_missing_devices(self, sh: ShapingEnv) -> None:
        assert sh.driver.shaping("nosuch") is None
        with pytest.raises(LinkNotFound):
            sh.driver.set_tbf("nosuch", TBF)
        sh.bench.add_device("tq0", 1500)
        with pytest.raises(LinkNotFound):
            sh.driver.set_redirect("tq0", "nosuch")
        sh.driver.clear_tbf("nosuch")
        sh.driver.clear_ingress("nosuch")
        sh.driver.delete_device("nosuch")
