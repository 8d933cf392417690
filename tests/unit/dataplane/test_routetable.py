"""RouteTable over the FakeKernel: the conformance suite, plus what only a fake can show (failure
injection, synchronous link events, the exact write sequence) and the table's own bookkeeping."""

from __future__ import annotations

import pytest

from tortie.common.errors import KernelError
from tortie.common.ipfamily import V4, V6
from tortie.dataplane.drivers.kernel_watch import KernelChanges, RouteChange
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.routes import Route
from tortie.dataplane.managers.manager_api import ApplyIncomplete
from tortie.dataplane.routetable import RouteClass, RouteTable, RouteTarget
from tortie.testing.dataplane_conformance import DriverEnv, fake_env
from tortie.testing.kernel_fake import FakeKernel
from tortie.testing.routetable_conformance import RouteTableConformance, blackhole, via

EP_A = ("endpoint", "ns", "a")
EP_B = ("endpoint", "ns", "b")


@pytest.fixture
def env() -> DriverEnv:
    return fake_env()


class TestFakeRouteTable(RouteTableConformance):
    pass


def table_on(kernel: FakeKernel, **kwargs: object) -> RouteTable:
    table = RouteTable(kernel, kernel, **kwargs)  # type: ignore[arg-type]
    kernel.start_monitor(table.on_link_event)
    return table


def test_targets_carry_their_family_and_canonical_cidr() -> None:
    target = RouteTarget.via("FD00::0001/128", "tort1", RouteClass.LOCAL_WORKLOAD)
    assert (target.cidr, target.family) == ("fd00::1/128", V6)
    assert RouteTarget.blackhole("10.0.0.0/26", RouteClass.IPAM_BLOCK_DROP).family == V4
    gw = RouteTarget.via("fd00:1::/122", "tort1", RouteClass.LOCAL_WORKLOAD, gateway="FD00::0002")
    assert gw.gateway == "fd00::2"
    with pytest.raises(ValueError):
        RouteTarget.via("10.0.0.1/24", "tort1", RouteClass.LOCAL_WORKLOAD)  # host bits set
    with pytest.raises(ValueError):
        RouteTarget("10.0.0.0/26", RouteClass.LOCAL_WORKLOAD)  # unicast without a device
    with pytest.raises(ValueError):
        RouteTarget("10.0.0.0/26", RouteClass.IPAM_BLOCK_DROP, "blackhole", ifname="tort1")
    with pytest.raises(ValueError):
        RouteTarget.via("10.0.1.0/26", "tort1", RouteClass.LOCAL_WORKLOAD, gateway="fd00::2")


def test_a_source_names_a_cidr_once() -> None:
    table = table_on(FakeKernel())
    with pytest.raises(ValueError, match="two targets"):
        table.set_targets(EP_A, [via("10.0.0.1/32", "tort1"), via("10.0.0.1/32", "tort2")])
    assert not table.stats()["endpoint_routes"] and table.programmed("10.0.0.1/32") is None


def test_same_class_tie_goes_to_the_lowest_source_that_is_usable() -> None:
    kernel = FakeKernel()
    kernel.add_link("tort1")
    kernel.add_link("tort2")
    table = table_on(kernel)
    table.set_targets(EP_B, [via("10.0.0.2/32", "tort2")])
    table.set_targets(EP_A, [via("10.0.0.2/32", "tort1")])
    table.apply()
    assert kernel.list_routes() == [Route("10.0.0.2/32", ifname="tort1")]
    kernel.set_admin("tort1", False)  # a is no longer usable: b takes the address
    table.apply()
    assert kernel.list_routes() == [Route("10.0.0.2/32", ifname="tort2")]
    kernel.set_admin("tort1", True)
    table.apply()
    assert kernel.list_routes() == [Route("10.0.0.2/32", ifname="tort1")]


def test_link_events_reprogram_withdraw_and_forget() -> None:
    kernel = FakeKernel()
    table = table_on(kernel)
    table.set_targets(EP_A, [via("10.0.0.2/32", "tort1")])
    table.apply()
    version = table.version
    kernel.add_link("tort1")
    assert table.needs_apply and table.version > version
    table.apply()
    assert kernel.list_routes() == [Route("10.0.0.2/32", ifname="tort1")]
    kernel.set_carrier("tort1", False)  # the kernel keeps the route: we withdraw it
    table.apply()
    assert kernel.list_routes() == []
    kernel.set_carrier("tort1", True)
    table.apply()
    kernel.remove_link("tort1")  # the kernel deletes the route: nothing to write
    kernel.mutations.clear()
    table.apply()
    assert kernel.mutations == [] and table.programmed("10.0.0.2/32") is None
    kernel.add_link("eth0")  # not ours: no work
    assert not table.needs_apply


def test_owned_devices_beyond_the_prefixes_and_gateway_targets() -> None:
    kernel = FakeKernel()
    kernel.add_link("tunnel0")
    kernel.add_link("eth1")
    kernel.replace_route(Route("10.0.9.0/26", ifname="tunnel0"))  # ours on the tunnel, stale
    kernel.replace_route(Route("10.0.8.0/26", ifname="eth1"))  # ours on a device we do not own
    table = table_on(kernel, devices=("tunnel0",))
    table.set_targets(("remote", "h2"), [RouteTarget.via("10.0.1.0/26", "tunnel0", RouteClass.LOCAL_WORKLOAD,
                                                        gateway="10.0.0.2")])
    table.set_targets(("remote", "h3"), [via("10.0.2.0/26", "eth1")])  # never written: not ours
    table.apply()
    assert kernel.list_routes() == [
        Route("10.0.1.0/26", ifname="tunnel0", gateway="10.0.0.2"),
        Route("10.0.8.0/26", ifname="eth1"),
    ]


def test_onlink_is_part_of_the_route_and_devices_can_be_owned_later() -> None:
    kernel = FakeKernel()
    kernel.add_link("vxlan.calico")
    kernel.add_link("eth0")
    kernel.replace_route(Route("10.0.1.0/26", ifname="vxlan.calico", gateway="10.0.1.1"))  # no onlink
    kernel.replace_route(Route("10.0.3.0/26", ifname="eth0", gateway="172.31.0.12"))  # ours, stale
    table = table_on(kernel, devices=("vxlan.calico",))
    vxlan = RouteTarget.via("10.0.1.0/26", "vxlan.calico", RouteClass.REMOTE_BLOCK_VXLAN,
                            gateway="10.0.1.1", onlink=True)
    table.set_targets(("vxlan", "10.0.1.0/26"), [vxlan])
    native = RouteTarget.via("10.0.2.0/26", "eth0", RouteClass.REMOTE_BLOCK_NATIVE, gateway="172.31.0.12")
    table.set_targets(("native", "10.0.2.0/26"), [native])
    table.apply()  # eth0 is not ours yet: the native target waits, the stale route stays
    assert kernel.list_routes() == [
        Route("10.0.1.0/26", ifname="vxlan.calico", gateway="10.0.1.1", onlink=True),
        Route("10.0.3.0/26", ifname="eth0", gateway="172.31.0.12"),
    ]
    table.own_devices(["eth0"])
    assert table.needs_apply
    table.apply()
    assert kernel.list_routes() == [
        Route("10.0.1.0/26", ifname="vxlan.calico", gateway="10.0.1.1", onlink=True),
        Route("10.0.2.0/26", ifname="eth0", gateway="172.31.0.12"),
    ]
    assert table.stats()["vxlan_block_routes"] == 1 and table.stats()["native_block_routes"] == 1
    with pytest.raises(ValueError):
        RouteTarget.via("10.0.4.0/26", "vxlan.calico", RouteClass.REMOTE_BLOCK_VXLAN, onlink=True)


def test_failures_stay_dirty_and_are_retried() -> None:
    kernel = FakeKernel()
    kernel.add_link("tort1")
    table = table_on(kernel)
    table.set_targets(EP_A, [via("10.0.0.2/32", "tort1"), via("10.0.0.3/32", "tort1")])
    table.set_targets(("block", "10.0.0.0/26"), [blackhole("10.0.0.0/26")])
    kernel.fail("replace_route", key="10.0.0.2/32")
    with pytest.raises(ApplyIncomplete) as failed:
        table.apply()
    assert len(failed.value.failures) == 1
    assert kernel.list_routes() == [
        Route("10.0.0.0/26", kind="blackhole"), Route("10.0.0.3/32", ifname="tort1")]
    assert table.needs_apply
    kernel.mutations.clear()
    table.apply()
    assert kernel.mutations == ["replace 10.0.0.2/32 dev tort1"]
    table.clear(("block", "10.0.0.0/26"))
    kernel.fail("delete_route")
    with pytest.raises(ApplyIncomplete):
        table.apply()
    table.apply()
    assert Route("10.0.0.0/26", kind="blackhole") not in kernel.list_routes()
    assert table.stats()["endpoint_routes"] == 2 and table.stats()["block_routes"] == 0


def test_failed_read_back_keeps_full_resync_pending() -> None:
    kernel = FakeKernel()
    kernel.add_link("tort1")
    table = table_on(kernel)
    table.set_targets(EP_A, [via("10.0.0.2/32", "tort1")])
    kernel.fail("list_routes")
    with pytest.raises(KernelError):
        table.apply()
    assert kernel.list_routes() == [] and not table.links_known and table.needs_apply
    table.apply()
    assert kernel.list_routes() == [Route("10.0.0.2/32", ifname="tort1")]


def test_takes_no_messages() -> None:
    table = table_on(FakeKernel())
    assert table.handles == frozenset({LinkEvent, KernelChanges})
    with pytest.raises(TypeError):
        table.on_update(object())  # type: ignore[arg-type]


def _changed(dst: str, *, deleted: bool = False, protocol: int = 77, kind: str = "unicast",
             ifindex: int | None = None, priority: int | None = None) -> KernelChanges:
    return KernelChanges((RouteChange(deleted, dst, 254, protocol, kind, ifindex,  # type: ignore[arg-type]
                                      priority=priority),))


def test_kernel_events_repair_others_changes_and_ignore_our_own() -> None:
    kernel = FakeKernel()
    kernel.add_link("tort1")
    table = table_on(kernel)
    table.set_targets(EP_A, [via("10.0.0.1/32", "tort1")])
    table.set_targets(("block", "10.0.0.0/26"), [blackhole("10.0.0.0/26")])
    table.apply()
    index = next(link.index for link in kernel.list_links() if link.name == "tort1")
    kernel.mutations.clear()
    # our own writes coming back, routes of others beside ours, other tables: nothing to do
    table.on_kernel_changes(_changed("10.0.0.1/32", ifindex=index))
    table.on_kernel_changes(_changed("10.0.0.0/26", kind="blackhole"))
    table.on_kernel_changes(_changed("10.0.0.1/32", protocol=4, ifindex=1, priority=50))
    table.on_kernel_changes(_changed("10.0.0.9/32", deleted=True, ifindex=index))
    table.on_kernel_changes(_changed("10.0.0.1/32", deleted=True, protocol=12, ifindex=index))
    table.on_kernel_changes(KernelChanges((RouteChange(True, "10.0.0.1/32", 100, 77, "unicast", index),)))
    assert not table.needs_apply
    # someone deleted ours, took its key with another protocol, or rewrote it with ours
    kernel.drop_route("10.0.0.1/32")
    table.on_kernel_changes(_changed("10.0.0.1/32", deleted=True, ifindex=index))
    assert table.needs_apply and table.programmed("10.0.0.1/32") is None
    table.apply()
    assert kernel.mutations == ["replace 10.0.0.1/32 dev tort1"]
    table.on_kernel_changes(_changed("10.0.0.0/26", protocol=4, kind="unicast", ifindex=1))
    table.on_kernel_changes(_changed("10.0.0.1/32", ifindex=index + 1))
    table.apply()
    assert kernel.mutations[1:] == ["replace blackhole 10.0.0.0/26", "replace 10.0.0.1/32 dev tort1"]
    # lost notifications: a full read-back
    table.on_kernel_changes(KernelChanges(routes_lost=True))
    assert table.needs_apply
