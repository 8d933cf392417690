"""One conformance suite for `VxlanDriver`, run against `FakeKernel` and a real namespace.

Usage: subclass `VxlanDriverConformance` and provide a fixture `vx` returning a `VxlanEnv`: the
driver under test and an `UplinkBench` that creates the host interface the tunnel rides on (the
fake adds a link with an address and MTU; the real bench a veth pair with both ends in a throwaway
namespace). What it pins down is what the VXLAN manager relies on: device parameters read back as
written (VNI, port, local, parent, MAC, MTU, learning off), in-place MTU/MAC/up changes, the tunnel
address, permanent neighbours (listed; replace semantics), FDB remotes per MAC (append, delete,
family must match the underlay), idempotent delete, `NotVxlan` for a foreign interface of that name,
and the host interfaces with their MTU and addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pytest

from tortie.common.errors import KernelError, LinkNotFound
from tortie.common.ipfamily import V4, V6
from tortie.dataplane.drivers.vxlan import NotVxlan, VxlanDriver, VxlanSpec
from tortie.testing.kernel_fake import FakeKernel
from tortie.testing.netns import ip

MAC_A = "66:0a:0b:0c:0d:01"
MAC_B = "66:0a:0b:0c:0d:02"


class UplinkBench(Protocol):
    def add_uplink(self, name: str, addresses: tuple[str, ...], mtu: int) -> None: ...

    def add_other(self, name: str) -> None:
        """An interface of another kind (a veth) under `name`."""
        ...


@dataclass
class VxlanEnv:
    driver: VxlanDriver
    bench: UplinkBench


class FakeUplinks:
    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    def add_uplink(self, name: str, addresses: tuple[str, ...], mtu: int) -> None:
        self.kernel.add_link(name, mtu=mtu, addresses=addresses)

    def add_other(self, name: str) -> None:
        self.kernel.add_link(name)


class RealUplinks:
    def __init__(self, netns: str) -> None:
        self.netns = netns

    def add_uplink(self, name: str, addresses: tuple[str, ...], mtu: int) -> None:
        ip("-n", self.netns, "link", "add", name, "mtu", str(mtu), "type", "veth", "peer", "name",
           f"{name}-pr")
        for address in addresses:
            ip("-n", self.netns, "addr", "add", address, "dev", name, *(("nodad",) if ":" in address else ()))
        ip("-n", self.netns, "link", "set", f"{name}-pr", "up")
        ip("-n", self.netns, "link", "set", name, "up")

    def add_other(self, name: str) -> None:
        ip("-n", self.netns, "link", "add", name, "type", "veth", "peer", "name", f"{name[:10]}-pr")


def _spec(name: str = "vxlan.calico", **changes: object) -> VxlanSpec:
    values: dict[str, object] = {"name": name, "vni": 4096, "port": 4789, "local": "10.99.0.1",
                                 "parent": "up0", "mac": MAC_A, "mtu": 1450}
    values.update(changes)
    return VxlanSpec(**values)  # type: ignore[arg-type]


class VxlanDriverConformance:
    """VXLAN driver behaviour (fixture `vx: VxlanEnv`)."""

    def test_device_reads_back_as_created_then_changes_in_place(self, vx: VxlanEnv) -> None:
        vx.bench.add_uplink("up0", ("10.99.0.1/24",), 1500)
        assert vx.driver.device("vxlan.calico") is None
        vx.driver.create(_spec())
        state = vx.driver.device("vxlan.calico")
        assert state is not None and state.spec == _spec() and not state.admin_up and not state.learning
        assert state.same_tunnel(_spec(mtu=1400, mac=MAC_B))
        assert not state.same_tunnel(_spec(vni=4097)) and not state.same_tunnel(_spec(port=4790))
        vx.driver.update("vxlan.calico", mtu=1400, mac=MAC_B, up=True)
        state = vx.driver.device("vxlan.calico")
        assert state is not None and (state.spec.mtu, state.spec.mac, state.admin_up) == (1400, MAC_B, True)
        vx.driver.add_address("vxlan.calico", "10.244.0.1/32")
        state = vx.driver.device("vxlan.calico")
        assert state is not None and state.addresses == {"10.244.0.1/32"}
        vx.driver.delete_address("vxlan.calico", "10.244.0.1/32")
        vx.driver.delete("vxlan.calico")
        vx.driver.delete("vxlan.calico")
        assert vx.driver.device("vxlan.calico") is None

    def test_neighbours_and_fdb(self, vx: VxlanEnv) -> None:
        vx.bench.add_uplink("up0", ("10.99.0.1/24",), 1500)
        vx.driver.create(_spec())
        vx.driver.update("vxlan.calico", up=True)
        vx.driver.set_neighbour("vxlan.calico", "10.244.1.1", MAC_A)
        vx.driver.set_neighbour("vxlan.calico", "10.244.2.1", MAC_B)
        vx.driver.set_neighbour("vxlan.calico", "10.244.2.1", MAC_A)  # replace
        assert vx.driver.neighbours("vxlan.calico", V4) == {"10.244.1.1": MAC_A, "10.244.2.1": MAC_A}
        vx.driver.delete_neighbour("vxlan.calico", "10.244.1.1")
        assert vx.driver.neighbours("vxlan.calico", V4) == {"10.244.2.1": MAC_A}
        vx.driver.append_fdb("vxlan.calico", MAC_A, "10.99.0.2")
        vx.driver.append_fdb("vxlan.calico", MAC_B, "10.99.0.3")
        vx.driver.append_fdb("vxlan.calico", MAC_B, "10.99.0.3")  # already there: no change
        assert vx.driver.fdb("vxlan.calico") == {(MAC_A, "10.99.0.2"), (MAC_B, "10.99.0.3")}
        vx.driver.delete_fdb("vxlan.calico", MAC_A, "10.99.0.2")
        assert vx.driver.fdb("vxlan.calico") == {(MAC_B, "10.99.0.3")}
        with pytest.raises(KernelError):
            vx.driver.append_fdb("vxlan.calico", MAC_A, "fd00:99::2")  # not the underlay's family
        vx.driver.delete("vxlan.calico")
        with pytest.raises(LinkNotFound):
            vx.driver.fdb("vxlan.calico")

    def test_ipv6_device(self, vx: VxlanEnv) -> None:
        vx.bench.add_uplink("up0", ("fd00:99::1/64",), 1500)
        spec = _spec("vxlan-v6.calico", local="fd00:99::1", mtu=1430)
        vx.driver.create(spec)
        vx.driver.update("vxlan-v6.calico", up=True)
        vx.driver.add_address("vxlan-v6.calico", "fd00:244::1/128")
        state = vx.driver.device("vxlan-v6.calico")
        assert state is not None and state.spec == spec and "fd00:244::1/128" in state.addresses
        vx.driver.set_neighbour("vxlan-v6.calico", "fd00:244:0:1::1", MAC_B)
        assert vx.driver.neighbours("vxlan-v6.calico", V6) == {"fd00:244:0:1::1": MAC_B}
        vx.driver.append_fdb("vxlan-v6.calico", MAC_B, "fd00:99::2")
        assert vx.driver.fdb("vxlan-v6.calico") == {(MAC_B, "fd00:99::2")}

    def test_foreign_interface_and_missing_parent(self, vx: VxlanEnv) -> None:
        vx.bench.add_other("vxlan.calico")
        with pytest.raises(NotVxlan):
            vx.driver.device("vxlan.calico")
        with pytest.raises(LinkNotFound):
            vx.driver.create(_spec("vxlan-v6.calico", parent="nosuchlink"))

    def test_host_interfaces_carry_mtu_and_addresses(self, vx: VxlanEnv) -> None:
        vx.bench.add_uplink("up1", ("10.98.0.5/24", "fd00:98::5/64"), 9000)
        found = {i.name: i for i in vx.driver.host_interfaces()}
        up1 = found["up1"]
        assert up1.mtu == 9000 and up1.holds("10.98.0.5") and up1.holds("fd00:98::5")
        assert "10.98.0.5/24" in up1.addresses and not up1.holds("10.98.0.6")
