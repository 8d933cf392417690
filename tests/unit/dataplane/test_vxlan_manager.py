"""The MTU decision (pure), the MTU manager and the VXLAN manager against the FakeKernel, applied in
the loop's order (MTU, VXLAN, route table) with the fake's link events routed as the loop does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tortie.common.ipfamily import V4, V6
from tortie.dataplane.drivers.kernel_watch import KernelChanges, NeighbourGone
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.routes import Route
from tortie.dataplane.drivers.vxlan import HostInterface, VxlanSpec
from tortie.dataplane.managers.host_mtu import HostMtuManager, read_status
from tortie.dataplane.managers.manager_api import ApplyIncomplete
from tortie.dataplane.managers.vxlan import VxlanManager
from tortie.dataplane.messages import (
    EncapUpdate,
    RemoteBlockRouteRemove,
    RemoteBlockRouteUpdate,
    VtepRemove,
    VtepUpdate,
)
from tortie.dataplane.mtu import MtuSettings, decide
from tortie.dataplane.routetable import RouteTable
from tortie.testing.kernel_fake import FakeKernel

MAC_A, MAC_B, MAC_C = "66:00:00:00:00:0a", "66:00:00:00:00:0b", "66:00:00:00:00:0c"
ME = VtepUpdate("h1", V4, "172.31.0.11", "10.244.0.1", MAC_A, local=True)
PEER = VtepUpdate("h2", V4, "172.31.0.12", "10.244.1.1", MAC_B)
FAR = VtepUpdate("h3", V4, "172.31.1.13", "10.244.2.1", MAC_C)
ENCAP = EncapUpdate((V4,), ("172.31.0.11/24",))
SETTINGS = MtuSettings(ignore=("tort", "vxlan.calico", "vxlan-v6.calico"))


class Bed:
    def __init__(self, tmp: Path, kernel: FakeKernel | None = None, *, vni: int = 4096,
                 settings: MtuSettings = SETTINGS) -> None:
        self.kernel = kernel or FakeKernel()
        if self.kernel.link("eth0") is None:
            self.kernel.add_link("eth0", mtu=1500, addresses=("172.31.0.11/24", "fd00:31::b/64"))
        self.mtu_file = str(tmp / "mtu")
        self.mtu = HostMtuManager(self.kernel, settings, mtu_file=self.mtu_file)
        self.table = RouteTable(self.kernel, self.kernel, devices=("vxlan.calico", "vxlan-v6.calico"))
        self.vxlan = VxlanManager(self.kernel, self.table, self.mtu, vni=vni)
        self.events: list[LinkEvent] = []
        self.kernel.start_monitor(self.events.append)

    def send(self, *msgs: object) -> None:
        for manager in (self.mtu, self.vxlan):
            for msg in msgs:
                if type(msg) in manager.handles:
                    manager.on_update(msg)  # type: ignore[arg-type]

    def settle(self, rounds: int = 4) -> None:
        for _ in range(rounds):
            events, self.events[:] = list(self.events), []
            for event in events:
                for manager in (self.mtu, self.vxlan, self.table):
                    manager.on_link_event(event)
            for manager in (self.mtu, self.vxlan, self.table):
                if manager.needs_apply:
                    manager.apply()


def routes(kernel: FakeKernel) -> list[Route]:
    return kernel.list_routes()


def test_device_neighbours_fdb_routes_and_mtu_file(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    bed.send(ENCAP, ME, PEER, FAR,
             RemoteBlockRouteUpdate("10.244.1.0/26", "h2", "vxlan", "10.244.1.1"),
             RemoteBlockRouteUpdate("10.244.2.0/26", "h3", "vxlan", "10.244.2.1"))
    bed.settle()
    state = bed.kernel.device("vxlan.calico")
    assert state is not None
    assert state.spec == VxlanSpec("vxlan.calico", 4096, 4789, "172.31.0.11", "eth0", MAC_A, 1450)
    assert state.admin_up and state.addresses == {"10.244.0.1/32"}
    assert bed.kernel.neighbours("vxlan.calico", V4) == {"10.244.1.1": MAC_B, "10.244.2.1": MAC_C}
    assert bed.kernel.fdb("vxlan.calico") == {(MAC_B, "172.31.0.12"), (MAC_C, "172.31.1.13")}
    assert routes(bed.kernel) == [
        Route("10.244.1.0/26", ifname="vxlan.calico", gateway="10.244.1.1", onlink=True),
        Route("10.244.2.0/26", ifname="vxlan.calico", gateway="10.244.2.1", onlink=True),
    ]
    assert Path(bed.mtu_file).read_text() == "1450\n"
    status = read_status(bed.mtu_file)
    assert status is not None and status["mtu"] == 1450
    assert "eth0 MTU 1500 - 50 (IPv4 VXLAN overhead)" in str(status["reason"])
    # a remote host goes: its neighbour, FDB entry and routes go with it
    bed.send(RemoteBlockRouteRemove("10.244.2.0/26"), VtepRemove("h3", V4))
    bed.settle()
    assert bed.kernel.neighbours("vxlan.calico", V4) == {"10.244.1.1": MAC_B}
    assert bed.kernel.fdb("vxlan.calico") == {(MAC_B, "172.31.0.12")}
    assert [r.dst for r in routes(bed.kernel)] == ["10.244.1.0/26"]


def test_restart_adopts_without_writes_and_repairs_drift(tmp_path: Path) -> None:
    first = Bed(tmp_path)
    msgs = (ENCAP, ME, PEER, RemoteBlockRouteUpdate("10.244.1.0/26", "h2", "vxlan", "10.244.1.1"))
    first.send(*msgs)
    first.settle()
    first.kernel.stop_monitor()
    kernel = first.kernel
    kernel.mutations.clear()
    second = Bed(tmp_path, kernel)
    second.send(*msgs)
    second.settle()
    assert kernel.mutations == []  # the device, neighbours, FDB, routes and MTU file are adopted
    kernel.drop_fdb("vxlan.calico", MAC_B, "172.31.0.12")
    kernel.drop_neighbour("vxlan.calico", "10.244.1.1")
    kernel.drop_route("10.244.1.0/26")
    second.vxlan.resync()
    second.table.resync()
    second.settle()
    assert kernel.fdb("vxlan.calico") == {(MAC_B, "172.31.0.12")}
    assert kernel.neighbours("vxlan.calico", V4) == {"10.244.1.1": MAC_B}
    assert [r.dst for r in routes(kernel)] == ["10.244.1.0/26"]


def test_wrong_tunnel_parameters_recreate_and_no_vxlan_removes(tmp_path: Path) -> None:
    first = Bed(tmp_path, vni=5000)
    first.send(ENCAP, ME, PEER)
    first.settle()
    first.kernel.stop_monitor()
    second = Bed(tmp_path, first.kernel)
    second.send(ENCAP, ME, PEER)
    second.settle()
    state = second.kernel.device("vxlan.calico")
    assert state is not None and state.spec.vni == 4096
    assert second.kernel.fdb("vxlan.calico") == {(MAC_B, "172.31.0.12")}
    second.send(EncapUpdate((), ("172.31.0.11/24",)))
    second.settle()
    assert second.kernel.device("vxlan.calico") is None
    assert Path(second.mtu_file).read_text() == "1500\n"


def test_foreign_interface_with_the_devices_name_is_replaced(tmp_path: Path) -> None:
    kernel = FakeKernel()
    kernel.add_link("vxlan.calico")
    bed = Bed(tmp_path, kernel)
    bed.send(ENCAP, ME)
    bed.settle()
    state = kernel.device("vxlan.calico")
    assert state is not None and state.spec.vni == 4096


def test_cross_subnet_native_routes_use_the_uplink(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    bed.send(ENCAP, ME, PEER, RemoteBlockRouteUpdate("10.244.1.0/26", "h2", "none", "172.31.0.12"))
    bed.settle()
    assert routes(bed.kernel) == [Route("10.244.1.0/26", ifname="eth0", gateway="172.31.0.12")]
    bed.send(RemoteBlockRouteUpdate("10.244.1.0/26", "h2", "vxlan", "10.244.1.1"))
    bed.settle()
    assert routes(bed.kernel) == [Route("10.244.1.0/26", ifname="vxlan.calico", gateway="10.244.1.1",
                                        onlink=True)]


def test_ipv6_device_and_configured_mtus(tmp_path: Path) -> None:
    bed = Bed(tmp_path, settings=MtuSettings(vxlan_mtu=1400, ignore=SETTINGS.ignore))
    me6 = VtepUpdate("h1", V6, "fd00:31::b", "fd00:244::1", MAC_A, local=True)
    peer6 = VtepUpdate("h2", V6, "fd00:31::c", "fd00:244:0:1::1", MAC_B)
    bed.send(EncapUpdate((V4, V6), ("172.31.0.11/24", "fd00:31::b/64")), ME, PEER, me6, peer6,
             RemoteBlockRouteUpdate("fd00:244:0:1::/122", "h2", "vxlan", "fd00:244:0:1::1"))
    bed.settle()
    v4, v6 = bed.kernel.device("vxlan.calico"), bed.kernel.device("vxlan-v6.calico")
    assert v4 is not None and v6 is not None
    assert (v4.spec.mtu, v6.spec.mtu, v6.spec.local) == (1400, 1430, "fd00:31::b")
    assert v6.addresses == {"fd00:244::1/128"}
    assert bed.kernel.fdb("vxlan-v6.calico") == {(MAC_B, "fd00:31::c")}
    assert Path(bed.mtu_file).read_text() == "1400\n"
    assert Route("fd00:244:0:1::/122", ifname="vxlan-v6.calico", gateway="fd00:244:0:1::1",
                 onlink=True) in routes(bed.kernel)


def test_failures_stay_dirty(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    bed.kernel.fail("append_fdb")
    bed.send(ENCAP, ME, PEER)
    with pytest.raises(ApplyIncomplete):
        bed.settle()
    assert bed.vxlan.needs_apply
    bed.settle()
    assert bed.kernel.fdb("vxlan.calico") == {(MAC_B, "172.31.0.12")}


def _iface(name: str, mtu: int, *addresses: str, up: bool = True) -> HostInterface:
    return HostInterface(name, 2, mtu, up, None, addresses)


def test_mtu_decisions() -> None:
    eth = [_iface("lo", 65536, "127.0.0.1/8"), _iface("eth0", 9000, "172.31.0.11/24", "fd00::b/64"),
           _iface("ens5", 1500)]
    plain = decide(eth, ["172.31.0.11/24"], [], MtuSettings())
    assert (plain.workload_mtu, plain.device_mtu) == (9000, {})
    assert "eth0 MTU 9000" in plain.reason and "holding this host's address 172.31.0.11" in plain.reason
    both = decide(eth, ["172.31.0.11/24", "fd00::b/64"], [V4, V6], MtuSettings())
    assert (both.workload_mtu, both.device_mtu) == (8930, {V4: 8950, V6: 8930})
    pattern = decide(eth, ["172.31.0.11/24"], [V4], MtuSettings(iface_pattern="^(eth|ens)"))
    assert (pattern.workload_mtu, pattern.uplinks[V4].name) == (1450, "ens5")
    small = decide([_iface("eth0", 1340, "fd00::b/64")], ["fd00::b/64"], [V6], MtuSettings())
    assert small.device_mtu == {} and any("below IPv6's minimum" in p for p in small.problems)
    nothing = decide([], [], [], MtuSettings())
    assert nothing.workload_mtu == 1500 and nothing.problems
    json.dumps(both.to_json())


def test_neighbour_and_fdb_deleted_on_our_device_are_repaired_on_the_event(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    bed.send(ENCAP, ME, PEER)
    bed.settle()
    device = bed.table.link("vxlan.calico")
    assert device is not None and not bed.vxlan.needs_apply
    bed.vxlan.on_kernel_changes(KernelChanges(neighbours=(NeighbourGone(2, device.index + 100),)))
    assert not bed.vxlan.needs_apply  # another interface's neighbour (ARP cache expiry): none of ours
    bed.kernel.drop_fdb("vxlan.calico", MAC_B, "172.31.0.12")
    bed.kernel.drop_neighbour("vxlan.calico", "10.244.1.1")
    bed.vxlan.on_kernel_changes(KernelChanges(neighbours=(NeighbourGone(7, device.index),)))
    assert bed.vxlan.needs_apply
    bed.settle()
    assert bed.kernel.fdb("vxlan.calico") == {(MAC_B, "172.31.0.12")}
    assert bed.kernel.neighbours("vxlan.calico", V4) == {"10.244.1.1": MAC_B}
