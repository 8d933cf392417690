"""Managers + route table + real drivers + DataplaneLoop programming lab hosts (messages fed by hand,
no calc).

Two hosts, a workload on each, plumbed without the host side: the loop must add the /32 routes,
the interface sysctls, the block blackholes and the host sysctls; with static inter-host routes the
workloads then reach each other. Also: interface before/after endpoint, flapping interface, drift
repair by the periodic resync and on the kernel's own route events (with the periodic refresh out of
reach), adoption on restart that keeps working routes untouched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.dataplane.drivers.kernel_watch import KernelChanges, NeighbourGone, NetlinkKernelWatch
from tortie.dataplane.drivers.links import NetlinkLinkDriver
from tortie.dataplane.drivers.routes import TORTIE_ROUTE_PROTOCOL, NetlinkRouteDriver, Route
from tortie.dataplane.drivers.sysctl import ProcSysctlDriver
from tortie.dataplane.loop import DataplaneLoop
from tortie.dataplane.managers.block_routes import BlockRoutesManager
from tortie.dataplane.managers.endpoints import EndpointManager
from tortie.dataplane.managers.host_sysctls import HostSysctlsManager
from tortie.dataplane.messages import (
    ENCAP_MESSAGE_TYPES,
    POLICY_MESSAGE_TYPES,
    ConfigUpdate,
    HostBlockUpdate,
    InSync,
    Message,
    WorkloadEndpointId,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.routetable import RouteTable
from tortie.lab import Lab, host_interface_name
from tortie.testing.dataplane_conformance import wait_for
from tortie.testing.netns import unique_name

pytestmark = pytest.mark.root


class RecordingRoutes(NetlinkRouteDriver):
    """The real route driver, remembering every write (to prove adoption left a route alone)."""

    def __init__(self, netns: str) -> None:
        super().__init__(netns)
        self.writes: list[str] = []

    def replace_route(self, route: Route) -> None:
        self.writes.append(f"replace {route}")
        super().replace_route(route)

    def delete_route(self, route: Route) -> None:
        self.writes.append(f"delete {route}")
        super().delete_route(route)


class HostAgent:
    """The dataplane half of an agent for one lab host."""

    def __init__(self, lab: Lab, host: str, refresh_interval: float = 90.0, watch: bool = False) -> None:
        netns = lab.netns(host)
        self.watch = NetlinkKernelWatch(netns, nftables=False) if watch else None
        self.routes = RecordingRoutes(netns)
        self.links = NetlinkLinkDriver(netns)
        self.sysctls = ProcSysctlDriver(netns)
        table = RouteTable(self.routes, self.links)
        self.loop = DataplaneLoop(
            [
                HostSysctlsManager(self.sysctls),
                BlockRoutesManager(table),
                table,
                EndpointManager(table, self.sysctls),
            ],
            unhandled=(*POLICY_MESSAGE_TYPES, *ENCAP_MESSAGE_TYPES, ConfigUpdate),
            link_driver=self.links,
            kernel_watch=self.watch,
            refresh_interval=refresh_interval,
            retry_initial=0.01,
        )
        self.loop.start()

    def send(self, *msgs: Message) -> None:
        self.loop.send_many(msgs)

    def close(self) -> None:
        self.loop.stop()
        self.loop.wait(timeout=5.0)
        for driver in (self.routes, self.links, self.sysctls):
            driver.close()
        if self.watch is not None:
            self.watch.close()  # before the lab deletes the namespace (worker threads pin it)


def wep(lab: Lab, name: str) -> WorkloadEndpointUpdate:
    record = lab.workload(name)
    return WorkloadEndpointUpdate(
        WorkloadEndpointId("default", name), record.host_ifname, tuple(f"{ip}/32" for ip in record.ips)
    )


def our_routes(lab: Lab, host: str) -> str:
    return lab.exec(host, ["ip", "-4", "route", "show", "proto", str(TORTIE_ROUTE_PROTOCOL)]).stdout


def sysctl(lab: Lab, host: str, key: str) -> str:
    return lab.exec(host, ["cat", f"/proc/sys/{key}"]).stdout.strip()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    built = Lab.create(unique_name("dpl"), tmp_path / "lab", hosts=2)
    try:
        built.add_workload("w1", "h1", "10.65.0.2")
        built.add_workload("w2", "h2", "10.65.1.2")
        built.exec("h1", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])  # the agent must turn it on
        yield built
    finally:
        built.down()


@pytest.fixture
def agents(lab: Lab) -> Iterator[dict[str, HostAgent]]:
    started: dict[str, HostAgent] = {}
    try:
        for host in ("h1", "h2"):
            started[host] = HostAgent(lab, host, refresh_interval=0.5 if host == "h1" else 90.0)
        yield started
    finally:
        for agent in started.values():
            agent.close()


def test_two_hosts_programmed_and_workloads_reach_each_other(lab: Lab, agents: dict[str, HostAgent]) -> None:
    agents["h1"].send(wep(lab, "w1"), HostBlockUpdate("10.65.0.0/26"))
    agents["h2"].send(wep(lab, "w2"), HostBlockUpdate("10.65.1.0/26"))
    assert our_routes(lab, "h1") == ""  # nothing before InSync
    for agent in agents.values():
        agent.send(InSync())
    hif1 = lab.workload("w1").host_ifname
    hif2 = lab.workload("w2").host_ifname
    # (the veths may turn operationally up only after the first apply: the kernel's linkwatch is
    # asynchronous, and the link event then brings the route)
    wait_for(lambda: f"10.65.0.2 dev {hif1} scope link" in our_routes(lab, "h1"), what="route on h1")
    wait_for(lambda: f"10.65.1.2 dev {hif2} scope link" in our_routes(lab, "h2"), what="route on h2")
    routes = our_routes(lab, "h1")
    assert "blackhole 10.65.0.0/26" in routes
    assert sysctl(lab, "h1", "net/ipv4/ip_forward") == "1"
    assert sysctl(lab, "h1", f"net/ipv4/conf/{hif1}/proxy_arp") == "1"
    assert sysctl(lab, "h1", f"net/ipv4/neigh/{hif1}/proxy_delay") == "0"
    assert sysctl(lab, "h1", f"net/ipv4/conf/{hif1}/rp_filter") == "2"
    assert sysctl(lab, "h1", f"net/ipv6/conf/{hif1}/proxy_ndp") == "1"
    lab.add_static_route("h1", "10.65.1.0/26", lab.host_ip("h2"))
    lab.add_static_route("h2", "10.65.0.0/26", lab.host_ip("h1"))
    assert lab.ping("w1", "10.65.1.2")
    assert lab.ping("w2", "10.65.0.2")
    # the /32 wins inside the block; an unallocated address of it hits the blackhole (the kernel
    # answers a route lookup that ends in a blackhole with EINVAL)
    assert f"dev {hif1}" in lab.exec("h1", ["ip", "route", "get", "10.65.0.2"]).stdout
    lookup = lab.exec("h1", ["ip", "route", "get", "10.65.0.9"], check=False)
    assert lookup.returncode != 0 and "Invalid argument" in lookup.stderr


def test_interface_before_and_after_endpoint_and_flapping(lab: Lab, agents: dict[str, HostAgent]) -> None:
    agent = agents["h1"]
    agent.send(wep(lab, "w1"), InSync())  # interface existed before the endpoint
    hif1 = lab.workload("w1").host_ifname
    wait_for(lambda: f"10.65.0.2 dev {hif1}" in our_routes(lab, "h1"), what="route for w1")
    # endpoint before interface: the name the workload's interface will have, announced first
    w3_iface = host_interface_name("tort", lab.name, "w3")
    agent.send(WorkloadEndpointUpdate(WorkloadEndpointId("default", "w3"), w3_iface, ("10.65.0.3/32",)))
    wait_for(lambda: agent.loop.status().applies >= 2, what="apply without the interface")
    assert "10.65.0.3" not in our_routes(lab, "h1")
    assert lab.add_workload("w3", "h1", "10.65.0.3").host_ifname == w3_iface
    wait_for(lambda: f"10.65.0.3 dev {w3_iface}" in our_routes(lab, "h1"), what="route for w3")
    assert lab.ping("h1", "10.65.0.3")
    # flapping interface: the kernel flushes the route on down; the agent restores it on up
    lab.exec("h1", ["ip", "link", "set", hif1, "down"])
    wait_for(lambda: "10.65.0.2 " not in our_routes(lab, "h1"), what="route gone with the interface")
    lab.exec("h1", ["ip", "link", "set", hif1, "up"])
    wait_for(lambda: f"10.65.0.2 dev {hif1}" in our_routes(lab, "h1"), what="route back after flap")
    assert lab.ping("h1", "10.65.0.2")


def test_drift_is_repaired_by_periodic_resync(lab: Lab, agents: dict[str, HostAgent]) -> None:
    agent = agents["h1"]  # refresh_interval 0.5 s
    agent.send(wep(lab, "w1"), InSync())
    hif1 = lab.workload("w1").host_ifname
    wait_for(lambda: f"10.65.0.2 dev {hif1}" in our_routes(lab, "h1"), what="route for w1")
    lab.exec("h1", ["ip", "route", "del", "10.65.0.2/32"])
    lab.exec("h1", ["sysctl", "-qw", f"net.ipv4.conf.{hif1}.proxy_arp=0"])
    wait_for(lambda: f"10.65.0.2 dev {hif1}" in our_routes(lab, "h1"), what="route repaired")
    wait_for(lambda: sysctl(lab, "h1", f"net/ipv4/conf/{hif1}/proxy_arp") == "1", what="sysctl repaired")


def test_drift_is_repaired_on_the_route_event(lab: Lab) -> None:
    """The periodic refresh is an hour away: only the kernel's route notifications can bring the
    routes back. Our own writes come back as notifications too and must not be answered."""
    agent = HostAgent(lab, "h1", refresh_interval=3600.0, watch=True)
    try:
        hif1 = lab.workload("w1").host_ifname
        agent.send(wep(lab, "w1"), HostBlockUpdate("10.65.0.0/26"), InSync())
        wait_for(lambda: f"10.65.0.2 dev {hif1}" in our_routes(lab, "h1"), what="route for w1")
        wait_for(lambda: "blackhole 10.65.0.0/26" in our_routes(lab, "h1"), what="block blackhole")
        programmed = len(agent.routes.writes)

        lab.exec("h1", ["ip", "route", "del", "10.65.0.2/32"])
        wait_for(lambda: f"10.65.0.2 dev {hif1}" in our_routes(lab, "h1"), timeout=10.0,
                 what="deleted workload route restored by the event")
        lab.exec("h1", ["ip", "route", "del", "blackhole", "10.65.0.0/26"])
        wait_for(lambda: "blackhole 10.65.0.0/26" in our_routes(lab, "h1"), timeout=10.0,
                 what="deleted block blackhole restored by the event")
        lab.exec("h1", ["ip", "route", "replace", "10.65.0.2/32", "dev", "lo", "proto", "static"])
        wait_for(lambda: f"10.65.0.2 dev {hif1}" in our_routes(lab, "h1"), timeout=10.0,
                 what="workload route taken over by another protocol restored")
        assert agent.loop.status().applies < 50

        # Someone else's routes, beside ours, are none of our business; our own writes (three
        # repairs) each came back as a notification and none was answered with another write.
        lab.exec("h1", ["ip", "route", "add", "10.99.0.0/24", "dev", "lo", "proto", "static"])
        lab.exec("h1", ["ip", "route", "add", "10.65.0.2/32", "dev", "lo", "metric", "50", "proto", "static"])
        time.sleep(0.5)
        assert agent.routes.writes[programmed:] == [
            f"replace 10.65.0.2/32 dev {hif1}",
            "replace blackhole 10.65.0.0/26",
            f"replace 10.65.0.2/32 dev {hif1}",
        ]
    finally:
        agent.close()


def test_restart_adopts_without_touching_wanted_routes(lab: Lab) -> None:
    hif1 = lab.workload("w1").host_ifname
    first = HostAgent(lab, "h1")
    try:
        first.send(wep(lab, "w1"), HostBlockUpdate("10.65.0.0/26"), InSync())
        wait_for(lambda: f"10.65.0.2 dev {hif1}" in our_routes(lab, "h1"), what="first agent programmed")
    finally:
        first.close()
    proto = str(TORTIE_ROUTE_PROTOCOL)
    lab.exec("h1", ["ip", "route", "add", "10.65.0.7/32", "dev", hif1, "scope", "link", "proto", proto])
    lab.exec("h1", ["ip", "route", "add", "10.65.0.8/32", "dev", hif1, "scope", "link", "proto", "static"])
    lab.exec("h1", ["ip", "route", "add", "blackhole", "10.65.2.0/26", "proto", proto])
    second = HostAgent(lab, "h1")
    try:
        second.send(wep(lab, "w1"), HostBlockUpdate("10.65.0.0/26"), InSync())
        wait_for(lambda: second.loop.status().programmed, what="second agent programmed")
        assert sorted(second.routes.writes) == [
            "delete 10.65.0.7/32 dev " + hif1,
            "delete blackhole 10.65.2.0/26",
        ]
    finally:
        second.close()
    routes = lab.exec("h1", ["ip", "-4", "route"]).stdout
    assert f"10.65.0.2 dev {hif1}" in routes and "blackhole 10.65.0.0/26" in routes
    assert "10.65.0.8 " in routes and "10.65.0.7 " not in routes and "10.65.2.0/26" not in routes


def test_kernel_watch_reports_routes_neighbours_fdb_and_nftables(lab: Lab) -> None:
    """The watch itself on the real kernel: what each kind of change looks like when it arrives."""
    seen: list[KernelChanges] = []
    watch = NetlinkKernelWatch(lab.netns("h1"))
    watch.start(seen.append)
    try:
        lab.exec("h1", ["ip", "link", "add", "vxw0", "type", "vxlan", "id", "42", "dstport", "4789",
                        "dev", "eth0", "nolearning"])
        lab.exec("h1", ["ip", "link", "set", "vxw0", "up"])
        index = int(lab.exec("h1", ["cat", "/sys/class/net/vxw0/ifindex"]).stdout)
        lab.exec("h1", ["ip", "neigh", "add", "10.9.9.9", "lladdr", "02:00:00:00:00:01", "dev", "vxw0",
                        "nud", "permanent"])
        lab.exec("h1", ["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxw0", "dst", "172.31.0.99"])
        lab.exec("h1", ["ip", "route", "add", "blackhole", "10.9.0.0/24", "proto", "77"])
        lab.exec("h1", ["nft", "add", "table", "inet", "drift-probe"])
        lab.exec("h1", ["ip", "neigh", "del", "10.9.9.9", "dev", "vxw0"])
        lab.exec("h1", ["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vxw0", "dst", "172.31.0.99"])
        lab.exec("h1", ["ip", "route", "del", "blackhole", "10.9.0.0/24", "proto", "77"])
        lab.exec("h1", ["nft", "delete", "table", "inet", "drift-probe"])

        def arrived() -> bool:
            gone = {n for c in seen for n in c.neighbours}
            routes = {(r.deleted, r.dst, r.protocol, r.kind) for c in seen for r in c.routes}
            generations = {g for c in seen for g in c.nft.get("drift-probe", frozenset())}
            added_and_deleted = {(deleted, "10.9.0.0/24", 77, "blackhole") for deleted in (False, True)}
            return ({NeighbourGone(2, index), NeighbourGone(7, index)} <= gone
                    and added_and_deleted <= routes and len(generations) == 2)  # add and delete

        wait_for(arrived, timeout=10.0, what="every change reported")
        assert not any(c.routes_lost or c.nft_lost for c in seen)
    finally:
        watch.stop()
        lab.exec("h1", ["ip", "link", "del", "vxw0"], check=False)
