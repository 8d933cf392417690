"""The route table's behaviour against a kernel, run over `FakeKernel` and over a real namespace.

Usage: subclass `RouteTableConformance` in a test module that provides the `env` fixture of
`tortie.testing.dataplane_conformance` (`DriverEnv`: drivers plus a `KernelBench`). The table is
driven through its public API only (targets, `resync()`, `apply()`); link state reaches it through
its read-back, so the real kernel's asynchronous link events do not race the assertions.

What it pins down: targets of both kinds and both families programmed with our protocol; adoption
(wanted routes untouched, only ours-and-unwanted removed, foreign protocols and ours on foreign
devices left alone); minimal writes; class arbitration on a shared CIDR; a target waiting for its
device to exist and be up; drift repaired by a resync; tables kept apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tortie.common.ipfamily import FAMILIES, V4, Family
from tortie.dataplane.drivers.routes import MAIN_TABLE, Route, RouteDriver
from tortie.dataplane.routetable import RouteClass, RouteTable, RouteTarget
from tortie.testing.dataplane_conformance import OTHER_PROTOCOL, DriverEnv, wait_for

WORKLOAD = RouteClass.LOCAL_WORKLOAD
BLOCK = RouteClass.IPAM_BLOCK_DROP


@dataclass
class RecordingRoutes:
    """A `RouteDriver` passing every call on to `inner` and logging the writes."""

    inner: RouteDriver
    writes: list[str] = field(default_factory=list)

    @property
    def protocol(self) -> int:
        return self.inner.protocol

    def list_routes(self, table: int = MAIN_TABLE) -> list[Route]:
        return self.inner.list_routes(table)

    def replace_route(self, route: Route) -> None:
        self.inner.replace_route(route)
        self.writes.append(f"replace {route}")

    def delete_route(self, route: Route) -> None:
        self.inner.delete_route(route)
        self.writes.append(f"delete {route}")

    def close(self) -> None:
        self.inner.close()


def add_up_link(env: DriverEnv, name: str) -> None:
    """Create `name` and wait until the kernel reports it up (veths come up asynchronously)."""
    env.bench.add_link(name)
    wait_for(lambda: any(link.name == name and link.is_up for link in env.links.list_links()),
             what=f"{name} up")


def table_of(
    env: DriverEnv, *, table: int = MAIN_TABLE, families: tuple[Family, ...] = FAMILIES
) -> tuple[RouteTable, RecordingRoutes]:
    routes = RecordingRoutes(env.routes)
    return RouteTable(routes, env.links, table=table, families=families), routes


def via(cidr: str, ifname: str, route_class: RouteClass = WORKLOAD) -> RouteTarget:
    return RouteTarget.via(cidr, ifname, route_class)


def blackhole(cidr: str) -> RouteTarget:
    return RouteTarget.blackhole(cidr, BLOCK)


class RouteTableConformance:
    """Route table behaviour (fixture `env: DriverEnv`)."""

    def test_programs_both_kinds_and_families(self, env: DriverEnv) -> None:
        add_up_link(env, "tortt0")
        table, _ = table_of(env)
        table.set_targets(("endpoint", "ns", "a"), [via("10.8.0.1/32", "tortt0"),
                                                    via("fd00:8::1/128", "tortt0")])
        table.set_targets(("block", "10.8.0.0/26"), [blackhole("10.8.0.0/26")])
        table.set_targets(("block", "fd00:8::/122"), [blackhole("fd00:8::/122")])
        table.apply()
        assert env.routes.list_routes() == sorted([
            Route("10.8.0.1/32", ifname="tortt0"), Route("fd00:8::1/128", ifname="tortt0"),
            Route("10.8.0.0/26", kind="blackhole"), Route("fd00:8::/122", kind="blackhole"),
        ])
        assert env.bench.dsts_with_protocol(env.routes.protocol) == {
            "10.8.0.1/32", "fd00:8::1/128", "10.8.0.0/26", "fd00:8::/122"}
        assert table.stats() == {"endpoint_routes": 2, "floating_ip_routes": 0, "native_block_routes": 0,
                                 "vxlan_block_routes": 0,
                                 "block_routes": 2}
        assert not table.needs_apply

    def test_adoption_keeps_wanted_and_sweeps_only_ours_unwanted(self, env: DriverEnv) -> None:
        add_up_link(env, "tortt1")
        add_up_link(env, "othert1")
        env.routes.replace_route(Route("10.8.1.1/32", ifname="tortt1"))  # ours, still wanted
        env.routes.replace_route(Route("10.8.1.2/32", ifname="tortt1"))  # ours, stale
        env.routes.replace_route(Route("10.8.1.64/26", kind="blackhole"))  # ours, stale
        env.routes.replace_route(Route("10.8.1.3/32", ifname="othert1"))  # ours, not our device
        env.bench.add_route(Route("10.8.1.4/32", ifname="tortt1"), OTHER_PROTOCOL)  # not ours
        table, recorded = table_of(env)
        table.set_targets(("endpoint", "ns", "a"), [via("10.8.1.1/32", "tortt1")])
        table.apply()
        assert sorted(recorded.writes) == ["delete 10.8.1.2/32 dev tortt1", "delete blackhole 10.8.1.64/26"]
        assert env.routes.list_routes() == [
            Route("10.8.1.1/32", ifname="tortt1"), Route("10.8.1.3/32", ifname="othert1")]
        assert "10.8.1.4/32" in env.bench.dsts_with_protocol(OTHER_PROTOCOL)

    def test_changes_write_only_the_difference(self, env: DriverEnv) -> None:
        add_up_link(env, "tortt2")
        table, recorded = table_of(env)
        source = ("endpoint", "ns", "a")
        table.set_targets(source, [via("10.8.2.1/32", "tortt2"), via("10.8.2.2/32", "tortt2")])
        table.apply()
        recorded.writes.clear()
        table.set_targets(source, [via("10.8.2.2/32", "tortt2"), via("10.8.2.3/32", "tortt2")])
        table.apply()
        assert recorded.writes == ["delete 10.8.2.1/32 dev tortt2", "replace 10.8.2.3/32 dev tortt2"]
        recorded.writes.clear()
        table.set_targets(source, [via("10.8.2.3/32", "tortt2"), via("10.8.2.2/32", "tortt2")])
        assert not table.needs_apply  # the same targets in another order: nothing to do
        table.resync()
        table.apply()
        assert recorded.writes == []  # a read-back that finds everything in place writes nothing

    def test_lowest_class_wins_a_shared_cidr(self, env: DriverEnv) -> None:
        add_up_link(env, "tortt3")
        table, _ = table_of(env)
        table.set_targets(("block", "10.8.3.5/32"), [blackhole("10.8.3.5/32")])
        table.set_targets(("endpoint", "ns", "a"), [via("10.8.3.5/32", "tortt3")])
        table.apply()
        assert env.routes.list_routes() == [Route("10.8.3.5/32", ifname="tortt3")]
        table.clear(("endpoint", "ns", "a"))
        table.apply()
        assert env.routes.list_routes() == [Route("10.8.3.5/32", kind="blackhole")]

    def test_target_waits_for_its_device(self, env: DriverEnv) -> None:
        table, _ = table_of(env)
        table.set_targets(("endpoint", "ns", "a"), [via("10.8.4.1/32", "tortt4")])
        table.apply()
        assert env.routes.list_routes() == []
        add_up_link(env, "tortt4")
        table.resync()
        table.apply()
        assert env.routes.list_routes() == [Route("10.8.4.1/32", ifname="tortt4")]
        env.bench.set_admin("tortt4", False)  # the kernel flushes the route
        table.resync()
        table.apply()
        assert env.routes.list_routes() == []
        env.bench.set_admin("tortt4", True)
        wait_for(lambda: any(link.name == "tortt4" and link.is_up for link in env.links.list_links()),
                 what="tortt4 up again")
        table.resync()
        table.apply()
        assert env.routes.list_routes() == [Route("10.8.4.1/32", ifname="tortt4")]

    def test_resync_repairs_drift(self, env: DriverEnv) -> None:
        add_up_link(env, "tortt5")
        table, _ = table_of(env)
        table.set_targets(("endpoint", "ns", "a"), [via("10.8.5.1/32", "tortt5")])
        table.set_targets(("block", "10.8.5.0/26"), [blackhole("10.8.5.0/26")])
        table.apply()
        env.routes.delete_route(Route("10.8.5.1/32", ifname="tortt5"))  # behind the table's back
        env.routes.replace_route(Route("10.8.5.0/26", ifname="tortt5"))  # ours, but the wrong kind
        assert not table.needs_apply  # drift is invisible until the read-back
        table.resync()
        table.apply()
        assert env.routes.list_routes() == [
            Route("10.8.5.0/26", kind="blackhole"), Route("10.8.5.1/32", ifname="tortt5")]

    def test_disabled_family_is_neither_written_nor_kept(self, env: DriverEnv) -> None:
        add_up_link(env, "tortt6")
        env.routes.replace_route(Route("fd00:8:6::/122", kind="blackhole"))  # ours, from before
        table, _ = table_of(env, families=(V4,))
        table.set_targets(("endpoint", "ns", "a"), [via("10.8.6.1/32", "tortt6"),
                                                    via("fd00:8:6::1/128", "tortt6")])
        table.apply()
        assert env.routes.list_routes() == [Route("10.8.6.1/32", ifname="tortt6")]

    def test_tables_are_kept_apart(self, env: DriverEnv) -> None:
        add_up_link(env, "tortt7")
        env.routes.replace_route(Route("10.8.7.9/32", ifname="tortt7"))  # main table: not table 100's
        table, _ = table_of(env, table=100)
        table.set_targets(("endpoint", "ns", "a"), [via("10.8.7.1/32", "tortt7")])
        table.apply()
        assert env.routes.list_routes(100) == [Route("10.8.7.1/32", ifname="tortt7", table=100)]
        assert env.routes.list_routes() == [Route("10.8.7.9/32", ifname="tortt7")]
