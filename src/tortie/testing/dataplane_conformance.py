"""One conformance suite for the dataplane drivers, run against `FakeKernel` and the real kernel.

Usage: subclass `RouteDriverConformance`, `LinkDriverConformance` and/or `SysctlDriverConformance`
in a test module and provide a pytest fixture `env` returning a `DriverEnv`: the three drivers
under test plus a `KernelBench`, the test's own hands on the same kernel (create/remove
interfaces, change their state, add somebody else's routes). `FakeBench` wraps a `FakeKernel`;
`RealBench` drives a throwaway namespace with iproute2.

What the suites pin down is exactly what the managers rely on (see tortie.testing.kernel_fake): route
ownership by protocol, replace semantics by (table, dst), idempotent delete, routes flushed with
an interface going administratively down or away, link state and events, sysctl read/write/missing.
Real-kernel events arrive asynchronously: assertions about them poll with `wait_for`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pytest

from tortie.common.errors import KernelError, LinkNotFound
from tortie.dataplane.drivers.links import Link, LinkDriver, LinkEvent
from tortie.dataplane.drivers.routes import MAIN_TABLE, Route, RouteDriver
from tortie.dataplane.drivers.sysctl import SysctlDriver
from tortie.testing.kernel_fake import FakeKernel
from tortie.testing.netns import ip

OTHER_PROTOCOL = 4  # "static": somebody else's routes


class KernelBench(Protocol):
    """The test's direct control of the kernel the drivers talk to."""

    def add_link(self, name: str) -> object:
        """Create interface `name`, administratively up; operationally up soon after (the kernel
        updates the operational state asynchronously, in its linkwatch work)."""
        ...

    def set_admin(self, name: str, up: bool) -> None: ...

    def remove_link(self, name: str) -> None: ...

    def add_route(self, route: Route, protocol: int) -> None:
        """Install `route` as another program would, with `protocol`."""
        ...

    def dsts_with_protocol(self, protocol: int, table: int = MAIN_TABLE) -> set[str]: ...


@dataclass
class DriverEnv:
    routes: RouteDriver
    links: LinkDriver
    sysctls: SysctlDriver
    bench: KernelBench


class FakeBench:
    """`KernelBench` over a `FakeKernel`."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    def add_link(self, name: str) -> object:
        return self.kernel.add_link(name)

    def set_admin(self, name: str, up: bool) -> None:
        self.kernel.set_admin(name, up)

    def remove_link(self, name: str) -> None:
        self.kernel.remove_link(name)

    def add_route(self, route: Route, protocol: int) -> None:
        self.kernel.add_route(route, protocol)

    def dsts_with_protocol(self, protocol: int, table: int = MAIN_TABLE) -> set[str]:
        return {held.route.dst for held in self.kernel.routes(table) if held.protocol == protocol}


def fake_env(kernel: FakeKernel | None = None) -> DriverEnv:
    kernel = kernel if kernel is not None else FakeKernel()
    return DriverEnv(routes=kernel, links=kernel, sysctls=kernel, bench=FakeBench(kernel))


class RealBench:
    """`KernelBench` over a real namespace: interfaces are veth pairs with both ends inside it."""

    def __init__(self, netns: str) -> None:
        self.netns = netns

    @staticmethod
    def peer(name: str) -> str:
        return f"{name[:11]}-pr"

    def add_link(self, name: str) -> object:
        ip("-n", self.netns, "link", "add", name, "type", "veth", "peer", "name", self.peer(name))
        ip("-n", self.netns, "link", "set", self.peer(name), "up")
        ip("-n", self.netns, "link", "set", name, "up")
        return None

    def set_admin(self, name: str, up: bool) -> None:
        ip("-n", self.netns, "link", "set", name, "up" if up else "down")

    def remove_link(self, name: str) -> None:
        ip("-n", self.netns, "link", "del", name)

    def add_route(self, route: Route, protocol: int) -> None:
        family = "-6" if ":" in route.dst else "-4"
        args = ["-n", self.netns, family, "route", "replace"]
        args += [route.dst] if route.kind == "unicast" else [route.kind, route.dst]
        if route.ifname:
            args += ["dev", route.ifname]
        ip(*args, "table", str(route.table), "proto", str(protocol))

    def dsts_with_protocol(self, protocol: int, table: int = MAIN_TABLE) -> set[str]:
        found: set[str] = set()
        for family in ("-4", "-6"):
            show = ["-n", self.netns, family, "-o", "route", "show", "table", str(table)]
            out = ip(*show, "proto", str(protocol))
            for line in out.stdout.splitlines():
                words = line.split()
                dst = words[1] if words[0] in ("blackhole", "unreachable", "prohibit") else words[0]
                if "/" not in dst:
                    dst += "/128" if family == "-6" else "/32"
                found.add(dst)
        return found


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll `condition` until true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


class RouteDriverConformance:
    """Route driver behaviour (fixture `env: DriverEnv`)."""

    def test_lists_only_own_protocol(self, env: DriverEnv) -> None:
        env.bench.add_link("tortc0")
        env.bench.add_route(Route("10.9.0.1/32", ifname="tortc0"), OTHER_PROTOCOL)
        assert env.routes.list_routes() == []
        env.routes.replace_route(Route("10.9.0.2/32", ifname="tortc0"))
        assert env.routes.list_routes() == [Route("10.9.0.2/32", ifname="tortc0")]

    def test_unicast_and_blackhole_both_families(self, env: DriverEnv) -> None:
        env.bench.add_link("tortc1")
        wanted = [
            Route("10.9.1.1/32", ifname="tortc1"),
            Route("fd00:9::1/128", ifname="tortc1"),
            Route("10.9.64.0/26", kind="blackhole"),
            Route("fd00:9:1::/122", kind="blackhole"),
        ]
        for route in wanted:
            env.routes.replace_route(route)
        assert env.routes.list_routes() == sorted(wanted)
        assert env.bench.dsts_with_protocol(env.routes.protocol) == {r.dst for r in wanted}

    def test_replace_is_idempotent_and_moves_interface(self, env: DriverEnv) -> None:
        env.bench.add_link("tortc2")
        env.bench.add_link("tortc3")
        env.routes.replace_route(Route("10.9.2.1/32", ifname="tortc2"))
        env.routes.replace_route(Route("10.9.2.1/32", ifname="tortc2"))
        assert env.routes.list_routes() == [Route("10.9.2.1/32", ifname="tortc2")]
        env.routes.replace_route(Route("10.9.2.1/32", ifname="tortc3"))
        assert env.routes.list_routes() == [Route("10.9.2.1/32", ifname="tortc3")]

    def test_replace_takes_over_foreign_route_with_same_key(self, env: DriverEnv) -> None:
        env.bench.add_link("tortc4")
        env.bench.add_route(Route("10.9.4.1/32", ifname="tortc4"), OTHER_PROTOCOL)
        env.routes.replace_route(Route("10.9.4.1/32", ifname="tortc4"))
        assert env.routes.list_routes() == [Route("10.9.4.1/32", ifname="tortc4")]
        assert "10.9.4.1/32" not in env.bench.dsts_with_protocol(OTHER_PROTOCOL)

    def test_delete_is_idempotent_and_spares_foreign_routes(self, env: DriverEnv) -> None:
        env.bench.add_link("tortc5")
        ours = Route("10.9.5.1/32", ifname="tortc5")
        env.routes.replace_route(ours)
        env.routes.delete_route(ours)
        env.routes.delete_route(ours)
        assert env.routes.list_routes() == []
        env.bench.add_route(Route("10.9.5.2/32", ifname="tortc5"), OTHER_PROTOCOL)
        env.routes.delete_route(Route("10.9.5.2/32", ifname="tortc5"))
        assert "10.9.5.2/32" in env.bench.dsts_with_protocol(OTHER_PROTOCOL)
        env.routes.replace_route(Route("10.9.5.3/32", kind="blackhole"))
        env.routes.delete_route(Route("10.9.5.3/32", ifname="tortc5"))  # wrong kind: not a match
        assert env.routes.list_routes() == [Route("10.9.5.3/32", kind="blackhole")]

    def test_other_table_is_separate(self, env: DriverEnv) -> None:
        env.bench.add_link("tortc6")
        env.routes.replace_route(Route("10.9.6.1/32", ifname="tortc6", table=100))
        assert env.routes.list_routes() == []
        assert env.routes.list_routes(100) == [Route("10.9.6.1/32", ifname="tortc6", table=100)]

    def test_onlink_gateway_round_trips(self, env: DriverEnv) -> None:
        # A VXLAN route: the gateway (a remote tunnel address) is covered by no route of this host.
        env.bench.add_link("tortcb")
        onlink = Route("10.9.10.0/26", ifname="tortcb", gateway="10.99.0.1", onlink=True)
        env.routes.replace_route(onlink)
        env.routes.replace_route(Route("fd00:9:a::/122", ifname="tortcb", gateway="fd00:99::1", onlink=True))
        assert env.routes.list_routes() == sorted(
            [onlink, Route("fd00:9:a::/122", ifname="tortcb", gateway="fd00:99::1", onlink=True)])
        env.routes.delete_route(onlink)
        assert [r.dst for r in env.routes.list_routes()] == ["fd00:9:a::/122"]

    def test_missing_interface_is_link_not_found(self, env: DriverEnv) -> None:
        with pytest.raises(LinkNotFound):
            env.routes.replace_route(Route("10.9.7.1/32", ifname="tortmissing"))

    def test_admin_down_interface_rejects_route(self, env: DriverEnv) -> None:
        env.bench.add_link("tortc8")
        env.bench.set_admin("tortc8", False)
        with pytest.raises(KernelError):
            env.routes.replace_route(Route("10.9.8.1/32", ifname="tortc8"))

    def test_admin_down_and_removal_flush_routes(self, env: DriverEnv) -> None:
        env.bench.add_link("tortc9")
        env.bench.add_link("tortca")
        env.routes.replace_route(Route("10.9.9.1/32", ifname="tortc9"))
        env.routes.replace_route(Route("fd00:9:9::1/128", ifname="tortc9"))
        env.routes.replace_route(Route("10.9.9.2/32", ifname="tortca"))
        env.routes.replace_route(Route("10.9.9.0/24", kind="blackhole"))
        env.bench.set_admin("tortc9", False)
        assert env.routes.list_routes() == [
            Route("10.9.9.0/24", kind="blackhole"),
            Route("10.9.9.2/32", ifname="tortca"),
        ]
        env.bench.remove_link("tortca")
        assert env.routes.list_routes() == [Route("10.9.9.0/24", kind="blackhole")]


class LinkDriverConformance:
    """Link driver behaviour (fixture `env: DriverEnv`)."""

    def _find(self, env: DriverEnv, name: str) -> Link | None:
        return next((link for link in env.links.list_links() if link.name == name), None)

    def _is_up(self, env: DriverEnv, name: str) -> bool:
        link = self._find(env, name)
        return link is not None and link.is_up

    def test_list_links_reports_state(self, env: DriverEnv) -> None:
        env.bench.add_link("tortl0")
        link = self._find(env, "tortl0")
        assert link is not None and link.index > 0 and link.admin_up
        # the kernel sets the operational state asynchronously (linkwatch), so poll for it
        wait_for(lambda: self._is_up(env, "tortl0"), what="tortl0 operationally up")
        env.bench.set_admin("tortl0", False)
        link = self._find(env, "tortl0")
        assert link is not None and not link.admin_up and not link.is_up
        env.bench.remove_link("tortl0")
        assert self._find(env, "tortl0") is None

    def test_monitor_reports_add_down_up_remove(self, env: DriverEnv) -> None:
        events: list[LinkEvent] = []
        lock = threading.Lock()

        def record(event: LinkEvent) -> None:
            if event.link.name == "tortl1":
                with lock:
                    events.append(event)

        def kinds() -> list[str]:
            with lock:
                return [event.kind for event in events]

        env.links.start_monitor(record)
        try:
            env.bench.add_link("tortl1")
            wait_for(lambda: "added" in kinds() and events[-1].link.is_up, what="added+up tortl1")
            env.bench.set_admin("tortl1", False)
            wait_for(lambda: kinds()[-1:] == ["down"], what="down event")
            env.bench.set_admin("tortl1", True)
            wait_for(lambda: kinds()[-1:] == ["up"], what="up event")
            env.bench.remove_link("tortl1")
            wait_for(lambda: kinds()[-1:] == ["removed"], what="removed event")
        finally:
            env.links.stop_monitor()
        assert kinds()[0] == "added"
        assert "removed" not in kinds()[:-1]


class SysctlDriverConformance:
    """Sysctl driver behaviour (fixture `env: DriverEnv`); writes only namespace-local keys."""

    def test_write_then_read(self, env: DriverEnv) -> None:
        env.sysctls.write_sysctl("net/ipv4/ip_forward", "1")
        assert env.sysctls.read_sysctl("net/ipv4/ip_forward") == "1"
        env.sysctls.write_sysctl("net/ipv4/ip_forward", "0")
        assert env.sysctls.read_sysctl("net/ipv4/ip_forward") == "0"

    def test_per_interface_keys_follow_the_interface(self, env: DriverEnv) -> None:
        key = "net/ipv4/neigh/torts0/proxy_delay"
        assert env.sysctls.read_sysctl(key) is None
        env.bench.add_link("torts0")
        assert env.sysctls.read_sysctl(key) == "80"
        env.sysctls.write_sysctl(key, "0")
        env.sysctls.write_sysctl("net/ipv4/conf/torts0/proxy_arp", "1")
        assert env.sysctls.read_sysctl(key) == "0"
        assert env.sysctls.read_sysctl("net/ipv4/conf/torts0/proxy_arp") == "1"
        env.bench.remove_link("torts0")
        assert env.sysctls.read_sysctl(key) is None

    def test_missing_key_and_bad_value_raise(self, env: DriverEnv) -> None:
        with pytest.raises(KernelError):
            env.sysctls.write_sysctl("net/ipv4/conf/tortnope/proxy_arp", "1")
        with pytest.raises(KernelError):
            env.sysctls.write_sysctl("net/ipv4/ip_forward", "not-a-number")

    def test_rejects_path_escapes(self, env: DriverEnv) -> None:
        with pytest.raises(ValueError):
            env.sysctls.read_sysctl("../etc/passwd")
        with pytest.raises(ValueError):
            env.sysctls.read_sysctl("/net/ipv4/ip_forward")
