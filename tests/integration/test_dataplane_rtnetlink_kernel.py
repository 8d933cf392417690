"""The raw rtnetlink requests and the route driver's index resolution against the real kernel."""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterator

import pytest

from tortie.dataplane.drivers.netns_worker import NetnsWorker
from tortie.dataplane.drivers.routes import NetlinkRouteDriver, Route
from tortie.dataplane.drivers.rtnetlink import RtnlSocket, route_body
from tortie.testing.dataplane_conformance import RealBench
from tortie.testing.netns import ip, throwaway_netns

pytestmark = pytest.mark.root


@pytest.fixture
def netns() -> Iterator[str]:
    with throwaway_netns("rtnl") as name:
        yield name


@pytest.fixture
def rtnl(netns: str) -> Iterator[RtnlSocket]:
    worker = NetnsWorker(netns)
    sock = worker.call(RtnlSocket)
    try:
        yield sock
    finally:
        sock.close()
        worker.close()


def ifindex(netns: str, name: str) -> int:
    return int(json.loads(ip("-n", netns, "-j", "link", "show", name).stdout)[0]["ifindex"])


def test_route_dump_is_filtered_by_the_kernel(netns: str, rtnl: RtnlSocket) -> None:
    bench = RealBench(netns)
    bench.add_link("tortk0")
    for n in range(20):
        bench.add_route(Route(f"10.8.0.{n}/32", ifname="tortk0"), 4)
        bench.add_route(Route(f"10.8.1.{n}/32", ifname="tortk0", table=100), 77)
    bench.add_route(Route("10.8.2.1/32", ifname="tortk0"), 77)
    bench.add_route(Route("fd00:8::1/128", ifname="tortk0"), 77)
    assert rtnl.strict, "this kernel supports NETLINK_GET_STRICT_CHK (>= 4.20)"
    # dump_routes itself does not filter: what comes back is what the kernel chose to send
    main = rtnl.dump_routes(socket.AF_INET, 254, 77)
    assert [(r.dst, r.dst_len, r.protocol, r.table) for r in main] == [("10.8.2.1", 32, 77, 254)]
    assert main[0].oif == ifindex(netns, "tortk0")
    assert len(rtnl.dump_routes(socket.AF_INET, 100, 77)) == 20
    assert [r.dst for r in rtnl.dump_routes(socket.AF_INET6, 254, 77)] == ["fd00:8::1"]
    assert rtnl.dump_routes(socket.AF_INET, 4242, 77) == []  # a table that does not exist


def test_link_lookup_by_name(netns: str, rtnl: RtnlSocket) -> None:
    RealBench(netns).add_link("tortk1")
    found = rtnl.get_link("tortk1")
    assert found is not None and found.index == ifindex(netns, "tortk1") and found.flags & 1
    assert rtnl.get_link("tortnothere") is None
    assert {link.name for link in rtnl.dump_links()} >= {"lo", "tortk1"}


def test_kernel_errors_carry_errno(rtnl: RtnlSocket) -> None:
    with pytest.raises(OSError) as err:
        rtnl.new_route(route_body(family=socket.AF_INET, dst="10.8.3.1/32", table=254, protocol=77, scope=253,
                                  rtype=1, oif=999_999))
    assert err.value.errno == errno.ENODEV


def test_recreated_interface_gets_routes_through_its_new_index(netns: str) -> None:
    bench = RealBench(netns)
    routes = NetlinkRouteDriver(netns)
    try:
        bench.add_link("tortk2")
        routes.replace_route(Route("10.8.4.1/32", ifname="tortk2"))
        old = ifindex(netns, "tortk2")
        bench.remove_link("tortk2")
        bench.add_link("tortk2")
        assert ifindex(netns, "tortk2") != old
        routes.replace_route(Route("10.8.4.1/32", ifname="tortk2"))
        assert routes.list_routes() == [Route("10.8.4.1/32", ifname="tortk2")]
        out = ip("-n", netns, "route", "show", "proto", "77").stdout
        assert "10.8.4.1 dev tortk2 scope link" in out
    finally:
        routes.close()
