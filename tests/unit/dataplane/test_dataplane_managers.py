"""Dataplane managers against the FakeKernel: endpoints (route targets, interface sysctls, status)
and blocks (blackhole targets) feeding one route table, host sysctls. Each test drives on_update /
link events / resync, applies in the loop's order (sources, table, endpoints) and checks kernel state."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from tortie.common.errors import DataplaneError, KernelError
from tortie.common.ipfamily import FAMILIES, V4, Family
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.routes import Route
from tortie.dataplane.managers.block_routes import BlockRoutesManager
from tortie.dataplane.managers.endpoints import EndpointManager
from tortie.dataplane.managers.host_sysctls import HostSysctlsManager
from tortie.dataplane.managers.manager_api import ApplyIncomplete
from tortie.dataplane.messages import (
    HostBlockRemove,
    HostBlockUpdate,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.routetable import RouteTable
from tortie.testing.kernel_fake import FakeKernel

OTHER_PROTO = 3


def wep(name: str, iface: str, *v4: str, v6: tuple[str, ...] = ()) -> WorkloadEndpointUpdate:
    return WorkloadEndpointUpdate(
        id=WorkloadEndpointId("ns", name), interface_name=iface, ipv4_nets=tuple(v4), ipv6_nets=v6
    )


def rm(name: str) -> WorkloadEndpointRemove:
    return WorkloadEndpointRemove(WorkloadEndpointId("ns", name))


class Harness:
    """The agent's routing managers, wired and applied as the loop does."""

    def __init__(
        self,
        kernel: FakeKernel | None = None,
        *,
        interface_prefixes: Iterable[str] | None = None,
        families: tuple[Family, ...] = FAMILIES,
    ) -> None:
        self.kernel = kernel if kernel is not None else FakeKernel()
        self.states: list[tuple[str, str | None]] = []
        self.table = RouteTable(self.kernel, self.kernel, interface_prefixes=interface_prefixes,
                                families=families)
        self.blocks = BlockRoutesManager(self.table)
        self.mgr = EndpointManager(
            self.table,
            self.kernel,
            status_callback=lambda eid, state, _ep: self.states.append((eid.name, state)),
        )
        self.kernel.start_monitor(self.on_link_event)

    def on_link_event(self, event: LinkEvent) -> None:
        self.table.on_link_event(event)
        self.mgr.on_link_event(event)

    @property
    def needs_apply(self) -> bool:
        return self.table.needs_apply or self.mgr.needs_apply

    def apply(self) -> list[DataplaneError]:
        """One apply round in the loop's order; the errors raised, as the loop collects them."""
        errors: list[DataplaneError] = []
        for manager in (self.table, self.mgr):
            if manager.needs_apply:
                try:
                    manager.apply()
                except DataplaneError as exc:
                    errors.append(exc)
        return errors

    def ours(self) -> list[Route]:
        return self.kernel.list_routes()

    def settle(self) -> None:
        assert self.apply() == []
        assert not self.needs_apply


IFACE_SYSCTLS = {
    "net/ipv4/conf/{}/proxy_arp": "1",
    "net/ipv4/neigh/{}/proxy_delay": "0",
    "net/ipv4/conf/{}/forwarding": "1",
    "net/ipv4/conf/{}/rp_filter": "2",
    "net/ipv6/conf/{}/proxy_ndp": "1",
    "net/ipv6/conf/{}/forwarding": "1",
    "net/ipv6/conf/{}/accept_ra": "0",
}


def assert_iface_sysctls(kernel: FakeKernel, iface: str) -> None:
    assert {k.format(iface): kernel.sysctl(k.format(iface)) for k in IFACE_SYSCTLS} == {
        k.format(iface): v for k, v in IFACE_SYSCTLS.items()
    }


# -- endpoint routes ----------------------------------------------------------------------------------


def test_interface_after_endpoint() -> None:
    h = Harness()
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.settle()
    assert h.ours() == []
    assert h.states == [("a", "down")]
    h.kernel.add_link("tort1")
    assert h.needs_apply
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1")]
    assert_iface_sysctls(h.kernel, "tort1")
    assert h.states[-1] == ("a", "up")


def test_interface_before_endpoint_and_ipv6() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.settle()
    assert h.kernel.mutations == []
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32", v6=("fd00:65::2/128",)))
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1"), Route("fd00:65::2/128", ifname="tort1")]
    assert_iface_sysctls(h.kernel, "tort1")


def test_flapping_interface_gets_routes_back() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.settle()
    h.kernel.set_admin("tort1", False)  # the kernel flushes routes through it
    h.settle()
    assert h.ours() == []
    assert h.states[-1] == ("a", "down")
    h.kernel.set_admin("tort1", True)
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1")]
    # carrier loss: the kernel keeps the route, we withdraw it while the interface is not up
    h.kernel.set_carrier("tort1", False)
    h.settle()
    assert h.ours() == []
    h.kernel.set_carrier("tort1", True)
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1")]
    assert h.states[-1] == ("a", "up")


def test_recreated_interface_gets_routes_and_sysctls_again() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.settle()
    h.kernel.remove_link("tort1")
    h.settle()
    h.kernel.add_link("tort1")
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1")]
    assert_iface_sysctls(h.kernel, "tort1")


def test_endpoint_removal_and_update_write_only_the_difference() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32", "10.65.0.3/32"))
    h.settle()
    h.kernel.mutations.clear()
    h.mgr.on_update(wep("a", "tort1", "10.65.0.3/32", "10.65.0.4/32"))
    h.settle()
    assert h.kernel.mutations == ["delete 10.65.0.2/32 dev tort1", "replace 10.65.0.4/32 dev tort1"]
    h.kernel.mutations.clear()
    h.mgr.on_update(wep("a", "tort1", "10.65.0.3/32", "10.65.0.4/32"))  # identical: nothing to do
    assert not h.needs_apply
    h.mgr.on_update(rm("a"))
    h.settle()
    assert h.ours() == []
    assert h.kernel.mutations == ["delete 10.65.0.3/32 dev tort1", "delete 10.65.0.4/32 dev tort1"]
    assert h.states[-1] == ("a", None)


def test_endpoint_moving_to_another_interface() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.kernel.add_link("tort2")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.settle()
    h.mgr.on_update(wep("a", "tort2", "10.65.0.2/32"))
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort2")]
    assert_iface_sysctls(h.kernel, "tort2")


def test_address_claimed_twice_goes_to_first_up_endpoint() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.kernel.add_link("tort2")
    h.mgr.on_update(wep("b", "tort2", "10.65.0.2/32"))
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1")]
    h.mgr.on_update(rm("a"))
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort2")]


def test_unprefixed_interfaces_are_never_touched() -> None:
    h = Harness(interface_prefixes=("tort", "tap"))
    h.kernel.add_link("eth5")
    h.kernel.add_link("tap0")
    h.mgr.on_update(wep("a", "eth5", "10.65.0.2/32"))
    h.mgr.on_update(wep("b", "tap0", "10.65.0.3/32"))
    h.settle()
    assert h.ours() == [Route("10.65.0.3/32", ifname="tap0")]
    assert h.kernel.sysctl("net/ipv4/conf/eth5/proxy_arp") == "0"
    assert not any("eth5" in m for m in h.kernel.mutations)


def test_adoption_removes_only_our_unwanted_routes() -> None:
    kernel = FakeKernel()
    for name in ("tort1", "tort2", "eth1"):
        kernel.add_link(name)
    kernel.replace_route(Route("10.65.0.2/32", ifname="tort1"))  # ours, still wanted
    kernel.replace_route(Route("10.65.0.9/32", ifname="tort2"))  # ours, stale
    kernel.replace_route(Route("10.99.0.1/32", ifname="eth1"))  # ours but not on a workload iface
    kernel.replace_route(Route("10.65.0.0/26", kind="blackhole"))  # a block's, still wanted
    kernel.add_route(Route("10.65.0.8/32", ifname="tort2"), OTHER_PROTO)  # somebody else's
    kernel.mutations.clear()
    h = Harness(kernel)
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.blocks.on_update(HostBlockUpdate("10.65.0.0/26"))
    h.settle()
    route_writes = [m for m in kernel.mutations if m.startswith(("replace", "delete"))]
    assert route_writes == ["delete 10.65.0.9/32 dev tort2"]
    assert {(r.route.dst, r.protocol) for r in kernel.routes()} == {
        ("10.65.0.2/32", kernel.protocol),
        ("10.99.0.1/32", kernel.protocol),
        ("10.65.0.0/26", kernel.protocol),
        ("10.65.0.8/32", OTHER_PROTO),
    }


def test_resync_repairs_drift() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.settle()
    h.kernel.drop_route("10.65.0.2/32")
    h.kernel.set_sysctl("net/ipv4/conf/tort1/proxy_arp", "0")
    assert not h.needs_apply  # drift is invisible until the periodic read-back
    h.table.resync()
    h.mgr.resync()
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1")]
    assert h.kernel.sysctl("net/ipv4/conf/tort1/proxy_arp") == "1"


def test_failures_stay_dirty_and_are_retried() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32", "10.65.0.3/32"))
    h.kernel.fail("replace_route", key="10.65.0.2/32")
    h.kernel.fail("write_sysctl", key="net/ipv4/conf/tort1/proxy_arp")
    failed = h.apply()
    assert all(isinstance(exc, ApplyIncomplete) for exc in failed)
    assert [len(exc.failures) for exc in failed if isinstance(exc, ApplyIncomplete)] == [1, 1]
    assert h.ours() == [Route("10.65.0.3/32", ifname="tort1")]  # the rest was done
    assert h.states[-1] == ("a", "down")  # not every address is routed yet
    assert h.needs_apply
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1"), Route("10.65.0.3/32", ifname="tort1")]
    assert_iface_sysctls(h.kernel, "tort1")


def test_failed_read_back_keeps_full_resync_pending() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.kernel.fail("list_routes")
    failed = h.apply()
    assert len(failed) == 1 and isinstance(failed[0], KernelError)
    assert h.ours() == [] and h.kernel.sysctl("net/ipv4/conf/tort1/proxy_arp") == "0"
    assert h.mgr.needs_apply  # nothing decided before the table knows the links
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1")]


def test_host_without_ipv6_skips_ipv6_sysctls() -> None:
    h = Harness(FakeKernel(ipv6=False))
    h.kernel.add_link("tort1")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.settle()
    assert h.kernel.sysctl("net/ipv4/conf/tort1/proxy_arp") == "1"


def test_ipv6_disabled_routes_and_reports_ipv4_only() -> None:
    h = Harness(families=(V4,))
    h.kernel.add_link("tort1")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32", v6=("fd00:65::2/128",)))
    h.settle()
    assert h.ours() == [Route("10.65.0.2/32", ifname="tort1")]
    assert h.kernel.sysctl("net/ipv6/conf/tort1/proxy_ndp") == "0"  # IPv6 sysctls left alone
    assert h.states[-1] == ("a", "up")


def test_stats() -> None:
    h = Harness()
    h.kernel.add_link("tort1")
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32", v6=("fd00::2/128",)))
    h.mgr.on_update(wep("b", "tort9", "10.65.0.3/32"))
    h.settle()
    assert h.mgr.stats() == {"local_endpoints": 2}
    assert h.table.stats() == {"endpoint_routes": 2, "floating_ip_routes": 0, "native_block_routes": 0,
                                 "vxlan_block_routes": 0,
                               "block_routes": 0}


# -- block routes -----------------------------------------------------------------------------------


def test_block_blackholes_and_adoption() -> None:
    kernel = FakeKernel()
    kernel.add_link("tort1")
    kernel.replace_route(Route("10.65.1.0/26", kind="blackhole"))  # ours, stale
    kernel.replace_route(Route("10.65.0.2/32", ifname="tort1"))  # ours, endpoint class
    kernel.add_route(Route("10.66.0.0/26", kind="blackhole"), OTHER_PROTO)  # not ours
    h = Harness(kernel)
    h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32"))
    h.blocks.on_update(HostBlockUpdate("10.65.0.0/26"))
    h.blocks.on_update(HostBlockUpdate("fd00:65::/122"))
    h.blocks.on_update(HostBlockUpdate("10.65.0.7/32"))  # host prefix: skipped
    assert not h.blocks.needs_apply  # a route source: the table does the kernel work
    h.settle()
    assert kernel.list_routes() == [
        Route("10.65.0.0/26", kind="blackhole"),
        Route("10.65.0.2/32", ifname="tort1"),
        Route("fd00:65::/122", kind="blackhole"),
    ]
    assert ("10.66.0.0/26", OTHER_PROTO) in {(r.route.dst, r.protocol) for r in kernel.routes()}
    h.blocks.on_update(HostBlockRemove("fd00:65::/122"))
    kernel.fail("delete_route")
    failed = h.apply()
    assert len(failed) == 1 and isinstance(failed[0], ApplyIncomplete)
    assert h.table.needs_apply
    h.settle()
    assert h.table.stats() == {"endpoint_routes": 1, "floating_ip_routes": 0, "native_block_routes": 0,
                                 "vxlan_block_routes": 0,
                               "block_routes": 1}
    assert Route("fd00:65::/122", kind="blackhole") not in kernel.list_routes()


def test_block_drift_repair() -> None:
    h = Harness()
    h.blocks.on_update(HostBlockUpdate("10.65.0.0/26"))
    h.settle()
    h.kernel.drop_route("10.65.0.0/26")
    h.blocks.resync()
    h.table.resync()
    h.settle()
    assert h.kernel.list_routes() == [Route("10.65.0.0/26", kind="blackhole")]


# -- host sysctls -----------------------------------------------------------------------------------


def test_host_sysctls_set_once_and_repaired() -> None:
    kernel = FakeKernel()
    mgr = HostSysctlsManager(kernel)
    mgr.apply()
    assert kernel.sysctl("net/ipv4/ip_forward") == "1"
    assert kernel.sysctl("net/ipv6/conf/all/forwarding") == "1"
    assert mgr.settings() == {"net/ipv4/ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"}
    assert not mgr.needs_apply
    writes = len(kernel.mutations)
    mgr.resync()
    mgr.apply()
    assert len(kernel.mutations) == writes  # nothing changed, nothing written
    kernel.set_sysctl("net/ipv4/ip_forward", "0")
    mgr.resync()
    mgr.apply()
    assert kernel.sysctl("net/ipv4/ip_forward") == "1"


def test_host_sysctls_failure_and_missing_ipv6() -> None:
    kernel = FakeKernel(ipv6=False)
    mgr = HostSysctlsManager(kernel)
    kernel.fail("write_sysctl")
    with pytest.raises(ApplyIncomplete):
        mgr.apply()
    assert mgr.needs_apply
    mgr.apply()
    assert mgr.settings() == {"net/ipv4/ip_forward": "1"}
    assert HostSysctlsManager(kernel, {}).needs_apply  # nothing to set is still one (empty) apply


def test_a_malformed_message_is_refused_whole() -> None:
    """Calc validates endpoint addresses (tests/calc: non-host and unparseable networks never reach
    the dataplane); a message that breaks the contract anyway is refused without partial effects."""
    h = Harness()
    h.kernel.add_link("tort1")
    with pytest.raises(ValueError):
        h.mgr.on_update(wep("a", "tort1", "10.65.0.2/32", "bogus"))
    h.settle()
    assert h.ours() == [] and h.mgr.stats() == {"local_endpoints": 0}
