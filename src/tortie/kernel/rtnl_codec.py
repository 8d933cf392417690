"""rtnetlink (rtnetlink(7)) message codecs: links, addresses, routes, neighbours and FDB entries.

Pure functions, no socket: `*_request` builds the body of a request (the fixed header of the object
type, then attributes; see `netlink` for the framing), `decode_*` turns the body of a reply into a
record. `tortie.kernel.rtnl.Rtnl` sends them. Fixed headers (kernel ABI):

    ifinfomsg  family:u8 pad:u8 type:u16 index:i32 flags:u32 change:u32                   16 bytes
    ifaddrmsg  family:u8 prefixlen:u8 flags:u8 scope:u8 index:u32                          8 bytes
    rtmsg      family dst_len src_len tos table protocol scope type (u8 each) flags:u32   12 bytes
    ndmsg      family:u8 pad:u8 pad:u16 ifindex:i32 state:u16 flags:u8 type:u8           12 bytes

Records are NamedTuples holding `ipaddress` objects, with `ifindex` as the kernel names it (values;
cheaper to define than dataclasses, which matters to the CNI plugin's start-up). Neighbours and FDB
entries share one record, as they share one message: an ARP/NDP entry is (AF_INET/AF_INET6, ifindex,
dst = the neighbour's IP, mac = its MAC); an FDB entry of a VXLAN device is (AF_BRIDGE, ifindex,
mac = a remote MAC, dst = the remote VTEP's IP).

Dump requests are valid under NETLINK_GET_STRICT_CHK: their headers carry only what the kernel
accepts as a filter (route: table, protocol; address: index; neighbour/FDB: NDA_IFINDEX).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from tortie.common.ipfamily import V4, V6, IPAddress, IPInterface, IPNetwork, family_of, family_of_af
from tortie.kernel.netlink import (
    attr,
    attr_be16,
    attr_str,
    attr_u8,
    attr_u32,
    get_be16,
    get_str,
    get_u32,
    nest,
    parse_attrs,
)

AF_UNSPEC, AF_INET, AF_BRIDGE, AF_INET6 = 0, 2, 7, 10

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWNSID, RTM_GETNSID = 88, 90
RTMGRP_LINK = 0x1
RTMGRP_NEIGH = 0x4
RTMGRP_IPV4_ROUTE = 0x40  # RTNLGRP_IPV4_ROUTE (7) as a bind() group bit
RTMGRP_IPV6_ROUTE = 0x400  # RTNLGRP_IPV6_ROUTE (11)

# links (linux/if_link.h, linux/if.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_QDISC, IFLA_MASTER = 1, 3, 4, 5, 6, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_EXT_MASK, IFLA_LINK_NETNSID = 16, 18, 28, 29, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING = 1, 3, 4, 7
IFLA_VXLAN_PORT, IFLA_VXLAN_LOCAL6 = 15, 17
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP = 0x1
OPER_STATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

# addresses (linux/if_addr.h)
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD, IFA_F_TENTATIVE, IFA_F_PERMANENT = 0x02, 0x40, 0x80

# routes (linux/rtnetlink.h)
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15
RT_TABLE_UNSPEC, RT_TABLE_MAIN = 0, 254
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, RT_SCOPE_NOWHERE = 0, 253, 254, 255
RTN_UNICAST, RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT = 1, 6, 7, 8
RTPROT_BOOT = 3
RTNH_F_ONLINK = 0x4  # rtm_flags: the gateway is on the link even without a covering route (VXLAN)

# neighbours (linux/neighbour.h)
NDA_DST, NDA_LLADDR, NDA_VNI, NDA_IFINDEX = 1, 2, 7, 8
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NTF_SELF = 0x2

_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")

_VXLAN_LOCAL = {V4: IFLA_VXLAN_LOCAL, V6: IFLA_VXLAN_LOCAL6}


def format_mac(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return bytes(int(p, 16) for p in parts)


# -- links ----------------------------------------------------------------------------------------------
class VxlanInfo(NamedTuple):
    vni: int
    port: int | None  # UDP destination port
    local: IPAddress | None  # source address of the tunnel
    link: int | None  # ifindex of the underlying device
    learning: bool


class Link(NamedTuple):
    """One network interface as the kernel reports it."""

    ifindex: int
    name: str
    flags: int
    oper_state: str
    mtu: int | None = None
    mac: str | None = None
    kind: str | None = None  # IFLA_INFO_KIND: "veth", "vxlan", "bridge", ...
    peer_index: int | None = None  # IFLA_LINK: a veth's peer ifindex (in the peer's namespace)
    link_netnsid: int | None = None
    master: int | None = None
    vxlan: VxlanInfo | None = None
    qdisc: str | None = None  # IFLA_QDISC: "noop" until the kernel activated transmission (linkwatch)

    @property
    def up(self) -> bool:
        """Administratively up (IFF_UP)."""
        return bool(self.flags & IFF_UP)


def link_request(
    index: int = 0,
    *,
    name: str | None = None,
    up: bool | None = None,
    mtu: int | None = None,
    mac: str | None = None,
    netns_fd: int | None = None,
    master: int | None = None,
    linkinfo: bytes = b"",
) -> bytes:
    """RTM_NEWLINK / RTM_DELLINK / RTM_GETLINK body: by index, or by `name` with index 0."""
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    body = _IFINFOMSG.pack(AF_UNSPEC, 0, index, flags, change)
    if name is not None:
        body += attr_str(IFLA_IFNAME, name)
    if mtu:
        body += attr_u32(IFLA_MTU, mtu)
    if mac:
        body += attr(IFLA_ADDRESS, parse_mac(mac))
    if netns_fd is not None:
        body += attr_u32(IFLA_NET_NS_FD, netns_fd)
    if master is not None:
        body += attr_u32(IFLA_MASTER, master)
    return body + linkinfo


# network namespace ids (linux/net_namespace.h): a namespace's id as seen from the socket's namespace
NETNSA_NSID, NETNSA_FD = 1, 3
NETNSA_NSID_NOT_ASSIGNED = -1


def nsid_query(netns_fd: int) -> bytes:
    """RTM_GETNSID body: the id, in the socket's namespace, of the namespace open as `netns_fd`
    (struct rtgenmsg, padded to 4 bytes, then NETNSA_FD)."""
    return bytes(4) + attr_u32(NETNSA_FD, netns_fd)


def decode_nsid(body: bytes) -> int | None:
    """The NETNSA_NSID of an RTM_NEWNSID answer; None when none is assigned (the kernel assigns an
    id when it first has to name the namespace to this one, e.g. for a veth peer moved there)."""
    raw = get_u32(parse_attrs(body, 4).get(NETNSA_NSID))
    if raw is None:
        return None
    nsid = raw - (1 << 32) if raw >= 1 << 31 else raw
    return None if nsid == NETNSA_NSID_NOT_ASSIGNED else nsid


def link_query(name: str | None = None) -> bytes:
    """RTM_GETLINK body for one link by name, or (no name) for a dump; statistics are skipped."""
    return link_request(name=name) + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)


def veth_linkinfo(
    peer_name: str, *, peer_netns_fd: int | None = None, mtu: int | None = None, peer_mac: str | None = None
) -> bytes:
    """IFLA_LINKINFO of a veth pair; the peer is created in `peer_netns_fd` when given."""
    peer = link_request(name=peer_name, mtu=mtu, mac=peer_mac, netns_fd=peer_netns_fd)
    return nest(
        IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "veth"), nest(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))
    )


def vxlan_linkinfo(
    vni: int,
    *,
    port: int = 4789,
    local: IPAddress | None = None,
    link: int | None = None,
    learning: bool = False,
) -> bytes:
    """IFLA_LINKINFO of a VXLAN device (no remote/group: entries come from the FDB)."""
    data = attr_u32(IFLA_VXLAN_ID, vni) + attr_be16(IFLA_VXLAN_PORT, port)
    data += attr_u8(IFLA_VXLAN_LEARNING, 1 if learning else 0)
    if local is not None:
        data += attr(_VXLAN_LOCAL[family_of(local)], local.packed)
    if link is not None:
        data += attr_u32(IFLA_VXLAN_LINK, link)
    return nest(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "vxlan"), nest(IFLA_INFO_DATA, data))


def _vxlan_info(data: bytes) -> VxlanInfo:
    attrs = parse_attrs(data)
    local = attrs.get(IFLA_VXLAN_LOCAL) or attrs.get(IFLA_VXLAN_LOCAL6)
    learning = attrs.get(IFLA_VXLAN_LEARNING)
    return VxlanInfo(
        vni=get_u32(attrs.get(IFLA_VXLAN_ID)) or 0,
        port=get_be16(attrs.get(IFLA_VXLAN_PORT)),
        local=ipaddress.ip_address(local) if local else None,
        link=get_u32(attrs.get(IFLA_VXLAN_LINK)),
        learning=bool(learning and learning[0]),
    )


def decode_link(body: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    attrs = parse_attrs(body, _IFINFOMSG.size)
    kind: str | None = None
    vxlan: VxlanInfo | None = None
    linkinfo = attrs.get(IFLA_LINKINFO)
    if linkinfo is not None:
        info = parse_attrs(linkinfo)
        kind = get_str(info.get(IFLA_INFO_KIND))
        if kind == "vxlan" and IFLA_INFO_DATA in info:
            vxlan = _vxlan_info(info[IFLA_INFO_DATA])
    oper = attrs.get(IFLA_OPERSTATE)
    mac = attrs.get(IFLA_ADDRESS)
    return Link(
        ifindex=index,
        name=get_str(attrs.get(IFLA_IFNAME)) or "",
        flags=flags,
        oper_state=OPER_STATES[oper[0]] if oper and oper[0] < len(OPER_STATES) else "UNKNOWN",
        mtu=get_u32(attrs.get(IFLA_MTU)),
        mac=format_mac(mac) if mac else None,
        kind=kind,
        peer_index=get_u32(attrs.get(IFLA_LINK)),
        link_netnsid=get_u32(attrs.get(IFLA_LINK_NETNSID)),
        master=get_u32(attrs.get(IFLA_MASTER)),
        vxlan=vxlan,
        qdisc=get_str(attrs.get(IFLA_QDISC)),
    )


# -- addresses ------------------------------------------------------------------------------------------
class Address(NamedTuple):
    ifindex: int
    address: IPInterface
    scope: int
    flags: int


def addr_request(index: int, iface: IPInterface, *, flags: int = 0, scope: int = RT_SCOPE_UNIVERSE) -> bytes:
    """RTM_NEWADDR / RTM_DELADDR body (IFA_F_* flags above 0xff travel in IFA_FLAGS)."""
    packed = iface.ip.packed
    body = _IFADDRMSG.pack(family_of(iface).af, iface.network.prefixlen, flags & 0xFF, scope, index)
    body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    if flags:
        body += attr_u32(IFA_FLAGS, flags)
    return body


def addr_dump_request(family: int = AF_UNSPEC, index: int = 0) -> bytes:
    return _IFADDRMSG.pack(family, 0, 0, 0, index)


def decode_addr(body: bytes) -> Address | None:
    """None for a record that is not an IPv4/IPv6 address (other families are not decoded)."""
    _family, plen, flags, scope, index = _IFADDRMSG.unpack_from(body)
    attrs = parse_attrs(body, _IFADDRMSG.size)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None or len(raw) not in (4, 16):
        return None
    flags = get_u32(attrs.get(IFA_FLAGS)) or flags
    return Address(index, ipaddress.ip_interface((raw, plen)), scope, flags)


# -- routes ---------------------------------------------------------------------------------------------
class Route(NamedTuple):
    family: int
    dst: IPNetwork
    table: int
    protocol: int
    scope: int
    type: int
    oif: int | None
    gateway: IPAddress | None
    priority: int | None = None
    multipath: bool = False
    onlink: bool = False


def route_request(
    dst: IPNetwork,
    *,
    table: int = RT_TABLE_MAIN,
    protocol: int = RTPROT_BOOT,
    scope: int = RT_SCOPE_UNIVERSE,
    type: int = RTN_UNICAST,
    oif: int | None = None,
    gateway: IPAddress | None = None,
    priority: int | None = None,
    onlink: bool = False,
) -> bytes:
    """RTM_NEWROUTE / RTM_DELROUTE body. Tables above 255 travel in RTA_TABLE (always sent)."""
    header_table = table if table < 256 else RT_TABLE_UNSPEC
    flags = RTNH_F_ONLINK if onlink else 0
    body = _RTMSG.pack(family_of(dst).af, dst.prefixlen, 0, 0, header_table, protocol, scope, type, flags)
    body += attr(RTA_DST, dst.network_address.packed) + attr_u32(RTA_TABLE, table)
    if oif is not None:
        body += attr_u32(RTA_OIF, oif)
    if gateway is not None:
        body += attr(RTA_GATEWAY, gateway.packed)
    if priority is not None:
        body += attr_u32(RTA_PRIORITY, priority)
    return body


def route_dump_request(family: int, table: int = RT_TABLE_MAIN, protocol: int = 0) -> bytes:
    """RTM_GETROUTE dump of one family and table (and protocol when not 0)."""
    header_table = table if table < 256 else RT_TABLE_UNSPEC
    return _RTMSG.pack(family, 0, 0, 0, header_table, protocol, 0, 0, 0) + attr_u32(RTA_TABLE, table)


def decode_route(body: bytes) -> Route:
    family, dst_len, _src_len, _tos, table, protocol, scope, rtype, flags = _RTMSG.unpack_from(body)
    attrs = parse_attrs(body, _RTMSG.size)
    raw_dst = attrs.get(RTA_DST)
    if raw_dst is None:  # a default route
        raw_dst = family_of_af(family).unspecified.packed
    gateway = attrs.get(RTA_GATEWAY)
    return Route(
        family=family,
        dst=ipaddress.ip_network((raw_dst, dst_len), strict=False),
        table=get_u32(attrs.get(RTA_TABLE)) or table,
        protocol=protocol,
        scope=scope,
        type=rtype,
        oif=get_u32(attrs.get(RTA_OIF)),
        gateway=ipaddress.ip_address(gateway) if gateway else None,
        priority=get_u32(attrs.get(RTA_PRIORITY)),
        multipath=RTA_MULTIPATH in attrs,
        onlink=bool(flags & RTNH_F_ONLINK),
    )


# -- neighbours and FDB entries -------------------------------------------------------------------------
class Neighbour(NamedTuple):
    family: int  # AF_INET / AF_INET6: ARP / NDP entry; AF_BRIDGE: FDB entry
    ifindex: int
    dst: IPAddress | None
    mac: str | None
    state: int
    flags: int
    vni: int | None = None


def neigh_request(
    family: int,
    index: int,
    *,
    dst: IPAddress | None = None,
    mac: str | None = None,
    state: int = NUD_PERMANENT,
    flags: int = 0,
    type: int = RTN_UNICAST,
) -> bytes:
    """RTM_NEWNEIGH / RTM_DELNEIGH body."""
    body = _NDMSG.pack(family, index, state, flags, type)
    if dst is not None:
        body += attr(NDA_DST, dst.packed)
    if mac is not None:
        body += attr(NDA_LLADDR, parse_mac(mac))
    return body


def neigh_dump_request(family: int, index: int | None = None) -> bytes:
    """RTM_GETNEIGH dump of one family (AF_BRIDGE: the FDB), of one interface when `index` is given."""
    body = _NDMSG.pack(family, 0, 0, 0, 0)
    return body + attr_u32(NDA_IFINDEX, index) if index is not None else body


def decode_neighbour(body: bytes) -> Neighbour:
    family, index, state, flags, _type = _NDMSG.unpack_from(body)
    attrs = parse_attrs(body, _NDMSG.size)
    dst = attrs.get(NDA_DST)
    mac = attrs.get(NDA_LLADDR)
    return Neighbour(
        family=family,
        ifindex=index,
        dst=ipaddress.ip_address(dst) if dst else None,
        mac=format_mac(mac) if mac else None,
        state=state,
        flags=flags,
        vni=get_u32(attrs.get(NDA_VNI)),
    )
