"""`tortie.kernel` against the real kernel, in throwaway namespaces: links (veth across namespaces,
vxlan), addresses, routes, neighbours and FDB entries, IPv4 and IPv6, errors, namespaces and sysctls.
Everything written is read back with iproute2 (an independent implementation), and what iproute2
writes is read back with ours."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tortie.common.errors import KernelError, NetlinkError, NetnsNotFound
from tortie.dataplane.drivers.routes import NetlinkRouteDriver, Route
from tortie.kernel import rtnl_codec as c
from tortie.kernel.netns import NetnsWorker, entered, open_netns, run_in_netns, same_netns
from tortie.kernel.rtnl import Rtnl
from tortie.kernel.sysctl import Sysctls, read_sysctl
from tortie.testing.dataplane_conformance import RealBench
from tortie.testing.netns import ip, throwaway_netns, unique_name

pytestmark = pytest.mark.root

net = ipaddress.ip_network
addr = ipaddress.ip_address


@pytest.fixture
def netns() -> Iterator[str]:
    with throwaway_netns("rtnl") as name:
        yield name


@pytest.fixture
def rtnl(netns: str) -> Iterator[Rtnl]:
    worker = NetnsWorker(netns)
    client = worker.call(Rtnl)
    try:
        yield client
    finally:
        client.close()
        worker.close()


def ip_json(netns: str, *args: str) -> Any:
    return json.loads(ip("-n", netns, "-j", *args).stdout or "[]")


def bridge_json(netns: str, *args: str) -> Any:
    out = subprocess.run(["bridge", "-n", netns, "-j", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout or "[]")


def ifindex(netns: str, name: str) -> int:
    return int(ip_json(netns, "link", "show", name)[0]["ifindex"])


# -- links ------------------------------------------------------------------------------------------------
def test_a_veth_peer_is_created_directly_in_another_namespace(netns: str, rtnl: Rtnl) -> None:
    with throwaway_netns("rtnlpeer") as other:
        fd = open_netns(other)
        try:
            rtnl.add_veth("tortv0", "eth0", peer_netns_fd=fd, mtu=1400, mac="ee:ee:ee:ee:ee:ee")
        finally:
            os.close(fd)
        host = rtnl.get_link("tortv0")
        assert host is not None and (host.kind, host.mtu, host.mac, host.up) == (
            "veth",
            1400,
            "ee:ee:ee:ee:ee:ee",
            False,
        )
        assert host.qdisc == "noop"  # a down device transmits nothing until the kernel activates it
        (peer,) = ip_json(other, "link", "show", "eth0")
        assert peer["mtu"] == 1400 and host.peer_index == peer["ifindex"] and host.link_netnsid is not None
        rtnl.set_link(host.ifindex, up=True, mtu=1300, name="tortv1")
        (shown,) = ip_json(netns, "link", "show", "tortv1")
        assert shown["mtu"] == 1300 and "UP" in shown["flags"]
        assert rtnl.delete_link(host.ifindex) is True and rtnl.delete_link(host.ifindex) is False
        assert ip_json(other, "link", "show") and not [
            i for i in ip_json(other, "link", "show") if i["ifname"] == "eth0"
        ]


def test_a_veth_peer_namespace_is_told_by_its_id(netns: str, rtnl: Rtnl) -> None:
    """RTM_GETNSID gives a namespace the id its veth peers are reported with (IFLA_LINK_NETNSID); a
    namespace no link of ours reaches has none; `ip netns list-id` agrees."""
    with throwaway_netns("rtnlpa") as peer_ns, throwaway_netns("rtnlpb") as other:
        fds = [open_netns(peer_ns), open_netns(other)]
        try:
            rtnl.add_veth("tortv2", "eth0", peer_netns_fd=fds[0], mtu=1500)
            link = rtnl.get_link("tortv2")
            assert link is not None and link.link_netnsid is not None
            assert rtnl.nsid_of(fds[0]) == link.link_netnsid
            assert rtnl.nsid_of(fds[1]) is None
        finally:
            for fd in fds:
                os.close(fd)
        listed = ip("-n", netns, "netns", "list-id").stdout
        assert f"nsid {link.link_netnsid} " in listed + " "


def test_link_lookup_by_name_and_dump(netns: str, rtnl: Rtnl) -> None:
    RealBench(netns).add_link("tortk1")
    found = rtnl.get_link("tortk1")
    assert found is not None and found.ifindex == ifindex(netns, "tortk1") and found.up
    assert rtnl.get_link("tortnothere") is None
    assert {link.name for link in rtnl.links()} >= {"lo", "tortk1"}


def test_a_vxlan_device_has_its_vni_port_local_address_and_no_learning(netns: str, rtnl: Rtnl) -> None:
    RealBench(netns).add_link("tortu0")
    ip("-n", netns, "addr", "add", "192.0.2.1/24", "dev", "tortu0")
    under = ifindex(netns, "tortu0")
    rtnl.add_vxlan("vxlan.t", 4096, port=4789, local=addr("192.0.2.1"), link=under, mtu=1450)
    link = rtnl.get_link("vxlan.t")
    assert link is not None and link.kind == "vxlan" and link.mtu == 1450
    assert link.vxlan == c.VxlanInfo(4096, 4789, addr("192.0.2.1"), under, False)
    (shown,) = ip_json(netns, "-d", "link", "show", "vxlan.t")
    data = shown["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data["local"], data["learning"]) == (4096, 4789, "192.0.2.1", False)
    rtnl.add_vxlan("vxlan6.t", 4097, local=addr("fd00:2::1"), learning=True)
    six = rtnl.get_link("vxlan6.t")
    assert six is not None and six.vxlan == c.VxlanInfo(4097, 4789, addr("fd00:2::1"), None, True)
    with pytest.raises(NetlinkError) as taken:
        rtnl.add_vxlan("vxlan.t", 4098)
    assert taken.value.errno == errno.EEXIST


# -- addresses ----------------------------------------------------------------------------------------------
def test_addresses_of_both_families(netns: str, rtnl: Rtnl) -> None:
    RealBench(netns).add_link("tortk2")
    index = ifindex(netns, "tortk2")
    v4, v6 = ipaddress.ip_interface("10.8.5.1/24"), ipaddress.ip_interface("fd00:8::5/64")
    rtnl.add_addr(index, v4)
    rtnl.add_addr(index, v6, nodad=True)
    shown = {(a["local"], a["prefixlen"]) for a in ip_json(netns, "addr", "show", "tortk2")[0]["addr_info"]}
    assert {("10.8.5.1", 24), ("fd00:8::5", 64)} <= shown
    ours = {a.address: a for a in rtnl.addrs(index)}
    assert {v4, v6} <= set(ours) and ours[v6].flags & c.IFA_F_NODAD and not ours[v6].flags & c.IFA_F_TENTATIVE
    assert all(a.address.version == 6 for a in rtnl.addrs(index, c.AF_INET6))
    with pytest.raises(NetlinkError) as dup:
        rtnl.add_addr(index, v4)
    assert dup.value.errno == errno.EEXIST
    assert rtnl.delete_addr(index, v4) is True and rtnl.delete_addr(index, v4) is False
    assert v4 not in {a.address for a in rtnl.addrs(index)}


# -- routes -------------------------------------------------------------------------------------------------
def test_route_dump_is_filtered_by_the_kernel(netns: str, rtnl: Rtnl) -> None:
    bench = RealBench(netns)
    bench.add_link("tortk0")
    for n in range(20):
        bench.add_route(Route(f"10.8.0.{n}/32", ifname="tortk0"), 4)
        bench.add_route(Route(f"10.8.1.{n}/32", ifname="tortk0", table=100), 77)
    bench.add_route(Route("10.8.2.1/32", ifname="tortk0"), 77)
    bench.add_route(Route("fd00:8::1/128", ifname="tortk0"), 77)
    assert rtnl.strict, "this kernel supports NETLINK_GET_STRICT_CHK (>= 4.20)"
    main = rtnl.routes(c.AF_INET, 254, 77)
    assert [(r.dst, r.protocol, r.table, r.scope) for r in main] == [
        (net("10.8.2.1/32"), 77, 254, c.RT_SCOPE_LINK)
    ]
    assert main[0].oif == ifindex(netns, "tortk0")
    assert len(rtnl.routes(c.AF_INET, 100, 77)) == 20
    assert [r.dst for r in rtnl.routes(c.AF_INET6, 254, 77)] == [net("fd00:8::1/128")]
    assert rtnl.routes(c.AF_INET, 4242, 77) == []  # a table that does not exist
    assert len(rtnl.routes(c.AF_INET, 254)) >= 21  # protocol 0: every protocol


def test_routes_of_both_families_written_replaced_and_deleted(netns: str, rtnl: Rtnl) -> None:
    RealBench(netns).add_link("tortk3")
    index = ifindex(netns, "tortk3")
    ip("-n", netns, "addr", "add", "10.8.6.1/24", "dev", "tortk3")
    ip("-n", netns, "addr", "add", "fd00:6::1/64", "dev", "tortk3", "nodad")
    rtnl.add_route(net("10.9.0.0/16"), oif=index, gateway=addr("10.8.6.2"), protocol=77)
    rtnl.add_route(net("fd00:9::/64"), oif=index, gateway=addr("fd00:6::2"), protocol=77)
    rtnl.add_route(net("10.10.0.0/24"), type=c.RTN_BLACKHOLE, protocol=77, table=1000)
    rtnl.add_route(net("0.0.0.0/0"), oif=index, gateway=addr("10.8.6.254"), protocol=77)
    four = ip_json(netns, "-4", "route", "show", "proto", "77")
    assert {(r["dst"], r.get("gateway")) for r in four} == {
        ("10.9.0.0/16", "10.8.6.2"),
        ("default", "10.8.6.254"),
    }
    (six,) = ip_json(netns, "-6", "route", "show", "proto", "77")
    assert (six["dst"], six["gateway"], six["dev"]) == ("fd00:9::/64", "fd00:6::2", "tortk3")
    (hole,) = ip_json(netns, "route", "show", "table", "1000")
    assert (hole["type"], hole["dst"]) == ("blackhole", "10.10.0.0/24")
    with pytest.raises(NetlinkError) as taken:
        rtnl.add_route(net("10.9.0.0/16"), oif=index, protocol=77, scope=c.RT_SCOPE_LINK)
    assert taken.value.errno == errno.EEXIST
    rtnl.add_route(net("10.9.0.0/16"), oif=index, protocol=77, scope=c.RT_SCOPE_LINK, replace=True)
    (replaced,) = [r for r in rtnl.routes(c.AF_INET, 254, 77) if r.dst == net("10.9.0.0/16")]
    assert replaced.gateway is None and replaced.scope == c.RT_SCOPE_LINK
    default = [r for r in rtnl.routes(c.AF_INET, 254, 77) if r.dst.prefixlen == 0]
    assert default and default[0].gateway == addr("10.8.6.254")
    # a delete matches on protocol: somebody else's protocol leaves the route alone
    assert rtnl.delete_route(net("fd00:9::/64"), protocol=4) is False
    assert rtnl.delete_route(net("fd00:9::/64"), protocol=77) is True
    assert (
        rtnl.delete_route(
            net("10.10.0.0/24"), protocol=77, table=1000, type=c.RTN_BLACKHOLE, scope=c.RT_SCOPE_NOWHERE
        )
        is True
    )
    assert rtnl.routes(c.AF_INET6, 254, 77) == [] and rtnl.routes(c.AF_INET, 1000, 77) == []


def test_an_onlink_gateway_needs_no_route_to_it(netns: str, rtnl: Rtnl) -> None:
    """The VXLAN shape: a remote workload block via the remote VTEP's tunnel address, on the device."""
    rtnl.add_vxlan("vxlan.r", 4096)
    index = ifindex(netns, "vxlan.r")
    ip("-n", netns, "link", "set", "vxlan.r", "up")
    with pytest.raises(NetlinkError) as unreachable:
        rtnl.add_route(net("10.65.1.0/26"), oif=index, gateway=addr("10.65.1.0"), protocol=77)
    assert unreachable.value.errno == errno.ENETUNREACH
    rtnl.add_route(net("10.65.1.0/26"), oif=index, gateway=addr("10.65.1.0"), protocol=77, onlink=True)
    (shown,) = ip_json(netns, "route", "show", "proto", "77")
    assert (shown["dst"], shown["gateway"], shown["flags"]) == ("10.65.1.0/26", "10.65.1.0", ["onlink"])
    (route,) = rtnl.routes(c.AF_INET, 254, 77)
    assert route.onlink and route.gateway == addr("10.65.1.0")


def test_kernel_errors_carry_errno_and_the_kernels_message(rtnl: Rtnl) -> None:
    with pytest.raises(NetlinkError) as err:
        rtnl.add_route(net("10.8.3.1/32"), oif=999_999, scope=c.RT_SCOPE_LINK, protocol=77)
    assert err.value.errno == errno.ENODEV and "add route 10.8.3.1/32" in str(err.value)


def test_a_route_via_a_down_device_is_refused_with_the_kernels_reason(netns: str, rtnl: Rtnl) -> None:
    bench = RealBench(netns)
    bench.add_link("tortk4")
    bench.set_admin("tortk4", False)
    with pytest.raises(NetlinkError) as err:
        rtnl.add_route(net("10.8.7.1/32"), oif=ifindex(netns, "tortk4"), scope=c.RT_SCOPE_LINK, protocol=77)
    assert err.value.errno == errno.ENETDOWN
    assert "(" in err.value.reason, "the kernel's extended-ack message is attached"


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


# -- neighbours and FDB -------------------------------------------------------------------------------------
def test_static_neighbours_of_both_families(netns: str, rtnl: Rtnl) -> None:
    RealBench(netns).add_link("tortk5")
    index = ifindex(netns, "tortk5")
    rtnl.set_neighbour(index, addr("10.8.8.2"), "66:55:44:33:22:11")
    rtnl.set_neighbour(index, addr("10.8.8.2"), "66:55:44:33:22:12")  # replaced, not an error
    rtnl.set_neighbour(index, addr("fd00:8::2"), "66:55:44:33:22:13")
    shown = {
        (n["dst"], n["lladdr"], tuple(n["state"])) for n in ip_json(netns, "neigh", "show", "dev", "tortk5")
    }
    assert ("10.8.8.2", "66:55:44:33:22:12", ("PERMANENT",)) in shown
    assert ("fd00:8::2", "66:55:44:33:22:13", ("PERMANENT",)) in shown
    (four,) = rtnl.neighbours(c.AF_INET, index)
    assert (four.dst, four.mac, four.state) == (addr("10.8.8.2"), "66:55:44:33:22:12", c.NUD_PERMANENT)
    assert addr("fd00:8::2") in {n.dst for n in rtnl.neighbours(c.AF_INET6, index)}
    ip("-n", netns, "neigh", "add", "10.8.8.3", "lladdr", "02:00:00:00:00:03", "dev", "tortk5")
    assert {n.dst for n in rtnl.neighbours(c.AF_INET)} == {addr("10.8.8.2"), addr("10.8.8.3")}
    assert rtnl.delete_neighbour(index, addr("10.8.8.2")) is True
    assert rtnl.delete_neighbour(index, addr("10.8.8.2")) is False
    assert {n.dst for n in rtnl.neighbours(c.AF_INET, index)} == {addr("10.8.8.3")}


def test_fdb_entries_of_a_vxlan_device(netns: str, rtnl: Rtnl) -> None:
    rtnl.add_vxlan("vxlan.f", 4100)
    index = ifindex(netns, "vxlan.f")
    flood = "00:00:00:00:00:00"
    rtnl.append_fdb(index, flood, addr("192.0.2.2"))
    rtnl.append_fdb(index, flood, addr("192.0.2.3"))  # appended beside the first: flooding to both
    rtnl.append_fdb(index, flood, addr("192.0.2.3"))  # the same remote again: nothing changes
    rtnl.append_fdb(index, "66:55:44:33:22:11", addr("192.0.2.4"))
    shown = {(e["mac"], e["dst"]) for e in bridge_json(netns, "fdb", "show", "dev", "vxlan.f") if "dst" in e}
    expected = {(flood, "192.0.2.2"), (flood, "192.0.2.3"), ("66:55:44:33:22:11", "192.0.2.4")}
    assert shown == expected
    assert {(e.mac, str(e.dst)) for e in rtnl.fdb(index)} == expected
    assert all(e.family == c.AF_BRIDGE and e.flags & c.NTF_SELF for e in rtnl.fdb(index))
    assert rtnl.delete_fdb(index, flood, addr("192.0.2.2")) is True
    assert {str(e.dst) for e in rtnl.fdb(index) if e.mac == flood} == {"192.0.2.3"}
    assert rtnl.delete_fdb(index, "66:55:44:33:22:11", addr("192.0.2.4")) is True
    assert rtnl.delete_fdb(index, "66:55:44:33:22:11", addr("192.0.2.4")) is False  # no entry for the MAC
    # an IPv6 underlay: a VXLAN device with an IPv6 local address takes IPv6 remotes
    rtnl.add_vxlan("vxlan6.f", 4101, local=addr("fd00:2::1"))
    index6 = ifindex(netns, "vxlan6.f")
    rtnl.append_fdb(index6, "66:55:44:33:22:11", addr("fd00:2::3"))
    (entry,) = [e for e in bridge_json(netns, "fdb", "show", "dev", "vxlan6.f") if "dst" in e]
    assert (entry["mac"], entry["dst"]) == ("66:55:44:33:22:11", "fd00:2::3")
    assert [(e.mac, e.dst) for e in rtnl.fdb(index6)] == [("66:55:44:33:22:11", addr("fd00:2::3"))]


# -- namespaces and sysctls ---------------------------------------------------------------------------------
def test_namespaces_are_entered_and_left_and_never_created(netns: str) -> None:
    home = os.stat("/proc/thread-self/ns/net").st_ino
    inside = run_in_netns(netns, lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    assert inside != home and os.stat("/proc/thread-self/ns/net").st_ino == home
    fd = open_netns(f"/run/netns/{netns}")
    try:
        assert not same_netns(fd)
        with entered(fd):
            assert same_netns(fd)
            assert [link.name for link in Rtnl().links()] == ["lo"]
    finally:
        os.close(fd)
    missing = unique_name("rtnlmissing")
    with pytest.raises(NetnsNotFound):
        run_in_netns(missing, lambda: None)
    with pytest.raises(NetnsNotFound):
        NetnsWorker(missing)
    with pytest.raises(NetnsNotFound):
        run_in_netns("/proc/self/status", lambda: None)  # a file that is not a namespace
    assert not os.path.exists(f"/run/netns/{missing}")


def test_sysctls_follow_the_namespace(netns: str) -> None:
    sysctls = Sysctls(netns)
    try:
        sysctls.write_sysctl("net/ipv4/ip_forward", "1")
        assert sysctls.read_sysctl("net/ipv4/ip_forward") == "1"
        assert run_in_netns(netns, read_sysctl, "net/ipv4/ip_forward") == "1"
        assert sysctls.read_sysctl("net/ipv4/conf/nothere/forwarding") is None
        with pytest.raises(KernelError) as err:
            sysctls.write_sysctl("net/ipv4/conf/nothere/forwarding", "1")
        assert err.value.errno == errno.ENOENT
    finally:
        sysctls.close()
