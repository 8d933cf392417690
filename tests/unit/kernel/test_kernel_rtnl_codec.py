"""rtnetlink bodies and records (`tortie.kernel.rtnl_codec`): what a request carries, and that the
decoders read back what the encoders wrote (the kernel replies in the same format). The kernel's own
agreement is tested in tests/integration/test_kernel_rtnl.py."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tortie.common.ipfamily import family_of
from tortie.kernel import rtnl_codec as c
from tortie.kernel.netlink import attr_u32, parse_attrs

RTMSG = struct.Struct("=BBBBBBBBI")
NDMSG = struct.Struct("=BxxxiHBB")

v4_networks = st.builds(
    lambda n, plen: ipaddress.IPv4Network((n, plen), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
interfaces = st.one_of(
    st.builds(lambda a, p: ipaddress.IPv4Interface((a, p)), st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda a, p: ipaddress.IPv6Interface((a, p)), st.ip_addresses(v=6), st.integers(0, 128)),
)
v6_networks = st.builds(
    lambda n, plen: ipaddress.IPv6Network((n, plen), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)


def test_mac_text() -> None:
    assert c.format_mac(c.parse_mac("EE:ee:0:1:02:ff")) == "ee:ee:00:01:02:ff"
    with pytest.raises(ValueError):
        c.parse_mac("ee:ee")


def test_a_veth_request_names_both_ends_and_puts_the_peer_in_its_namespace() -> None:
    info = c.veth_linkinfo("eth0", peer_netns_fd=7, mtu=1400, peer_mac="02:00:00:00:00:01")
    body = c.link_request(name="tortabc", mtu=1400, mac="ee:ee:ee:ee:ee:ee", linkinfo=info)
    link = c.decode_link(body)
    assert (link.name, link.mtu, link.mac, link.kind) == ("tortabc", 1400, "ee:ee:ee:ee:ee:ee", "veth")
    linkinfo = parse_attrs(parse_attrs(body, 16)[c.IFLA_LINKINFO])
    peer_body = parse_attrs(linkinfo[c.IFLA_INFO_DATA])[c.VETH_INFO_PEER]
    peer = c.decode_link(peer_body)
    assert (peer.name, peer.mtu, peer.mac) == ("eth0", 1400, "02:00:00:00:00:01")
    assert struct.unpack("=I", parse_attrs(peer_body, 16)[c.IFLA_NET_NS_FD])[0] == 7


@given(
    st.integers(1, 2**24 - 1),
    st.integers(1, 65535),
    st.one_of(st.none(), st.ip_addresses()),
    st.one_of(st.none(), st.integers(1, 2**31 - 1)),
    st.booleans(),
)
def test_vxlan_link_info_round_trips(
    vni: int,
    port: int,
    local: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    link: int | None,
    learning: bool,
) -> None:
    info = c.vxlan_linkinfo(vni, port=port, local=local, link=link, learning=learning)
    decoded = c.decode_link(c.link_request(name="vx", linkinfo=info))
    assert decoded.kind == "vxlan"
    assert decoded.vxlan == c.VxlanInfo(vni, port, local, link, learning)


def test_link_up_down_and_the_header_flags() -> None:
    up = c.decode_link(c.link_request(5, up=True))
    assert up.ifindex == 5 and up.up and up.oper_state == "UNKNOWN"
    assert struct.unpack_from("=BxHiII", c.link_request(5, up=False))[3:] == (0, c.IFF_UP)  # flags, change
    assert struct.unpack_from("=BxHiII", c.link_request(5))[3:] == (0, 0)  # up untouched
    query = parse_attrs(c.link_query("eth0"), 16)
    assert query[c.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", query[c.IFLA_EXT_MASK])[0] == c.RTEXT_FILTER_SKIP_STATS


@given(interfaces, st.integers(1, 2**31 - 1), st.booleans())
def test_addresses_round_trip(
    iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface, index: int, nodad: bool
) -> None:
    flags = c.IFA_F_NODAD if nodad else 0
    decoded = c.decode_addr(c.addr_request(index, iface, flags=flags))
    assert decoded == c.Address(index, iface, c.RT_SCOPE_UNIVERSE, flags)


@given(
    st.one_of(v4_networks, v6_networks),
    st.integers(1, 2**32 - 1),
    st.integers(0, 255),
    st.sampled_from([c.RT_SCOPE_UNIVERSE, c.RT_SCOPE_LINK, c.RT_SCOPE_NOWHERE]),
    st.sampled_from([c.RTN_UNICAST, c.RTN_BLACKHOLE, c.RTN_UNREACHABLE]),
    st.one_of(st.none(), st.integers(1, 2**31 - 1)),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    st.booleans(),
)
def test_routes_round_trip(
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network,
    table: int,
    protocol: int,
    scope: int,
    rtype: int,
    oif: int | None,
    with_gateway: bool,
    priority: int | None,
    onlink: bool,
) -> None:
    gateway = dst.network_address if with_gateway else None
    body = c.route_request(
        dst,
        table=table,
        protocol=protocol,
        scope=scope,
        type=rtype,
        oif=oif,
        gateway=gateway,
        priority=priority,
        onlink=onlink,
    )
    family = family_of(dst).af
    expected = c.Route(family, dst, table, protocol, scope, rtype, oif, gateway, priority, onlink=onlink)
    assert c.decode_route(body) == expected
    header_table = RTMSG.unpack_from(body)[4]
    assert header_table == (table if table < 256 else c.RT_TABLE_UNSPEC)  # big tables only in RTA_TABLE


def test_a_default_route_has_no_destination_attribute_from_the_kernel() -> None:
    body = RTMSG.pack(c.AF_INET6, 0, 0, 0, 254, 3, 0, 1, 0) + attr_u32(c.RTA_OIF, 4)
    route = c.decode_route(body)
    assert route.dst == ipaddress.ip_network("::/0") and route.oif == 4 and route.gateway is None


def test_route_dumps_carry_only_the_strict_filters() -> None:
    body = c.route_dump_request(c.AF_INET6, 1000, 77)
    family, dst_len, src_len, tos, table, protocol, scope, rtype, flags = RTMSG.unpack_from(body)
    assert (family, table, protocol) == (c.AF_INET6, c.RT_TABLE_UNSPEC, 77)
    assert (dst_len, src_len, tos, scope, rtype, flags) == (0, 0, 0, 0, 0, 0)
    assert parse_attrs(body, RTMSG.size) == {c.RTA_TABLE: struct.pack("=I", 1000)}


@given(st.ip_addresses(), st.integers(1, 2**31 - 1), st.binary(min_size=6, max_size=6))
def test_neighbours_and_fdb_entries_round_trip(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, index: int, raw_mac: bytes
) -> None:
    mac = c.format_mac(raw_mac)
    family = family_of(ip).af
    neighbour = c.decode_neighbour(c.neigh_request(family, index, dst=ip, mac=mac))
    assert neighbour == c.Neighbour(family, index, ip, mac, c.NUD_PERMANENT, 0)
    state = c.NUD_PERMANENT | c.NUD_NOARP
    fdb = c.neigh_request(c.AF_BRIDGE, index, dst=ip, mac=mac, state=state, flags=c.NTF_SELF, type=0)
    assert c.decode_neighbour(fdb) == c.Neighbour(c.AF_BRIDGE, index, ip, mac, state, c.NTF_SELF)


def test_neighbour_dumps_filter_by_attribute_not_by_header() -> None:
    body = c.neigh_dump_request(c.AF_BRIDGE, 9)
    assert NDMSG.unpack_from(body) == (c.AF_BRIDGE, 0, 0, 0, 0)  # strict checking wants a zero header
    assert parse_attrs(body, NDMSG.size) == {c.NDA_IFINDEX: struct.pack("=I", 9)}
    assert c.neigh_dump_request(c.AF_INET) == NDMSG.pack(c.AF_INET, 0, 0, 0, 0)


def test_namespace_id_query_and_answer() -> None:
    body = c.nsid_query(7)
    assert body[:4] == bytes(4) and parse_attrs(body, 4) == {c.NETNSA_FD: (7).to_bytes(4, "little")}
    assert c.decode_nsid(bytes(4) + attr_u32(c.NETNSA_NSID, 3)) == 3
    assert c.decode_nsid(bytes(4) + attr_u32(c.NETNSA_NSID, 0xFFFFFFFF)) is None  # NETNSA_NSID_NOT_ASSIGNED
    assert c.decode_nsid(bytes(4)) is None
