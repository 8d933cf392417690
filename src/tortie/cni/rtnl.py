"""A minimal rtnetlink (NETLINK_ROUTE) client: just what CNI plumbing needs, with stdlib imports only.

Why not pyroute2: importing it costs ~100 ms, the whole ADD budget of a CNI plugin. This module speaks
the kernel's netlink wire format directly (rtnetlink(7), netlink(7)) over one `AF_NETLINK` socket:

    nlmsghdr  = len:u32 type:u16 flags:u16 seq:u32 pid:u32                      (16 bytes)
    ifinfomsg = family:u8 pad:u8 type:u16 index:i32 flags:u32 change:u32        (16 bytes)
    ifaddrmsg = family:u8 prefixlen:u8 flags:u8 scope:u8 index:u32              (8 bytes)
    rtmsg     = family dst_len src_len tos table protocol scope type:u8 flags:u32   (12 bytes)
    rtattr    = len:u16 type:u16 payload, padded to 4 bytes; nested attributes are rtattrs in payload

Inputs: requests built by the helpers below. Outputs: decoded `Link`, `Addr`, `Route` records.
Invariants: every request asks for an ACK, so each call returns only after the kernel has applied it or
raised `NetlinkError` carrying the errno. A socket belongs to the network namespace of the thread that
created it (netlink(7)); to work in another namespace, create the `Rtnl` while inside it (see `netns`).
"""

from __future__ import annotations

# The C module directly: socket.py's enum wrapping of every constant costs ~4 ms of start-up, and
# a CNI plugin pays its imports on every call.
import _socket as socket
import errno as _errno
import ipaddress
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

# netlink message types and flags (linux/netlink.h, linux/rtnetlink.h)
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

# link attributes (linux/if_link.h)
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFF_UP = 0x1

# address attributes (linux/if_addr.h)
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_NODAD = 0x02
IFA_F_TENTATIVE = 0x40
IFA_F_PERMANENT = 0x80

# route attributes and values
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_NLMSGERR = struct.Struct("=i")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetlinkError(OSError):
    """The kernel rejected a request; `errno` is the positive error number (e.g. errno.EEXIST)."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}")


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr (header + payload + padding)."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def parse_attrs(buf: bytes | memoryview) -> dict[int, bytes]:
    """Attributes of one message or nest, by type (the nested flag bit is masked off; last one wins)."""
    out: dict[int, bytes] = {}
    view = memoryview(buf)
    off = 0
    while off + _RTATTR.size <= len(view):
        length, kind = _RTATTR.unpack_from(view, off)
        if length < _RTATTR.size:
            break
        out[kind & 0x3FFF] = bytes(view[off + _RTATTR.size : off + length])
        off += _align(length)
    return out


def _u32(data: bytes | None) -> int | None:
    return struct.unpack("=I", data[:4])[0] if data and len(data) >= 4 else None


def _text(data: bytes | None) -> str | None:
    return data.split(b"\0", 1)[0].decode(errors="replace") if data is not None else None


def format_mac(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return bytes(int(p, 16) for p in parts)


@dataclass(frozen=True)
class Link:
    """One network interface as the kernel reports it."""

    index: int
    name: str
    flags: int
    mtu: int | None
    mac: str | None
    kind: str | None
    peer_index: int | None  # IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace)
    link_netnsid: int | None

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


@dataclass(frozen=True)
class Addr:
    index: int
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    scope: int
    flags: int


@dataclass(frozen=True)
class Route:
    family: int
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    oif: int | None
    gateway: IPAddress | None
    scope: int
    protocol: int
    table: int
    type: int = RTN_UNICAST
    extra: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


class Rtnl:
    """One NETLINK_ROUTE socket in the network namespace that was current when it was created."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _send(self, msg_type: int, flags: int, body: bytes) -> int:
        self._seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags | NLM_F_REQUEST, self._seq, 0)
        self._sock.sendto(header + body, (0, 0))
        return self._seq

    def _replies(self, seq: int, what: str) -> Iterator[tuple[int, bytes]]:
        """Yield (type, payload) of the replies to `seq` until ACK / DONE; raise NetlinkError on error."""
        while True:
            data = self._sock.recv(1 << 20)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    return
                payload = data[off + _NLMSGHDR.size : off + length]
                off += _align(length)
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    (code,) = _NLMSGERR.unpack_from(payload, 0)
                    if code == 0:
                        return
                    raise NetlinkError(-code, what)
                yield mtype, payload

    def request(self, msg_type: int, flags: int, body: bytes, what: str) -> None:
        """Send one change request and wait for its ACK."""
        seq = self._send(msg_type, flags | NLM_F_ACK, body)
        for _ in self._replies(seq, what):
            pass

    def dump(self, msg_type: int, body: bytes, what: str) -> list[bytes]:
        seq = self._send(msg_type, NLM_F_DUMP, body)
        return [payload for _t, payload in self._replies(seq, what)]

    # ------------------------------------------------------------------ links

    @staticmethod
    def _decode_link(payload: bytes) -> Link:
        _fam, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload, 0)
        attrs = parse_attrs(memoryview(payload)[_IFINFOMSG.size :])
        kind = None
        if IFLA_LINKINFO in attrs:
            kind = _text(parse_attrs(attrs[IFLA_LINKINFO]).get(IFLA_INFO_KIND))
        mac = attrs.get(IFLA_ADDRESS)
        return Link(
            index=index,
            name=_text(attrs.get(IFLA_IFNAME)) or "",
            flags=flags,
            mtu=_u32(attrs.get(IFLA_MTU)),
            mac=format_mac(mac) if mac else None,
            kind=kind,
            peer_index=_u32(attrs.get(IFLA_LINK)),
            link_netnsid=_u32(attrs.get(IFLA_LINK_NETNSID)),
        )

    def get_link(self, name: str) -> Link | None:
        """The interface called `name`, or None when there is none."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
        seq = self._send(RTM_GETLINK, 0, body)
        try:
            for _t, payload in self._replies(seq, f"get link {name}"):
                return self._decode_link(payload)
        except NetlinkError as e:
            if e.errno in (_errno.ENODEV, _errno.ENOENT):
                return None
            raise
        return None

    def links(self) -> list[Link]:
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        return [self._decode_link(p) for p in self.dump(RTM_GETLINK, body, "list links")]

    def add_veth(
        self,
        name: str,
        peer_name: str,
        *,
        peer_netns_fd: int | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        peer_mac: str | None = None,
    ) -> None:
        """Create a veth pair `name` <-> `peer_name`; the peer is created directly in the namespace
        given by `peer_netns_fd` (so its name only has to be free there). Both ends start down."""
        peer_attrs = attr_str(IFLA_IFNAME, peer_name)
        if peer_netns_fd is not None:
            peer_attrs += attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
        if mtu:
            peer_attrs += attr_u32(IFLA_MTU, mtu)
        if peer_mac:
            peer_attrs += attr(IFLA_ADDRESS, parse_mac(peer_mac))
        peer = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + peer_attrs
        linkinfo = attr(IFLA_INFO_KIND, b"veth") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
        if mtu:
            body += attr_u32(IFLA_MTU, mtu)
        if mac:
            body += attr(IFLA_ADDRESS, parse_mac(mac))
        body += attr(IFLA_LINKINFO, linkinfo)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create veth {name}/{peer_name}")

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        mac: str | None = None,
        mtu: int | None = None,
        name: str | None = None,
    ) -> None:
        flags = change = 0
        if up is not None:
            change = IFF_UP
            flags = IFF_UP if up else 0
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)
        if mac:
            body += attr(IFLA_ADDRESS, parse_mac(mac))
        if mtu:
            body += attr_u32(IFLA_MTU, mtu)
        if name:
            body += attr_str(IFLA_IFNAME, name)
        self.request(RTM_NEWLINK, 0, body, f"set link {index}")

    def delete_link(self, index: int) -> bool:
        """Delete an interface; False if it was already gone."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        try:
            self.request(RTM_DELLINK, 0, body, f"delete link {index}")
        except NetlinkError as e:
            if e.errno in (_errno.ENODEV, _errno.ENOENT):
                return False
            raise
        return True

    # ------------------------------------------------------------------ addresses

    def add_addr(
        self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface, *, nodad: bool = False
    ) -> None:
        family = _family(iface.version)
        packed = iface.ip.packed
        body = _IFADDRMSG.pack(family, iface.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
        if nodad:
            body += attr_u32(IFA_FLAGS, IFA_F_NODAD)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add address {iface} to link {index}")

    def addrs(self, index: int | None = None) -> list[Addr]:
        out: list[Addr] = []
        for payload in self.dump(
            RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), "list addresses"
        ):
            _family, plen, flags, scope, idx = _IFADDRMSG.unpack_from(payload, 0)
            if index is not None and idx != index:
                continue
            attrs = parse_attrs(memoryview(payload)[_IFADDRMSG.size :])
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is None:
                continue
            if IFA_FLAGS in attrs:
                flags = _u32(attrs[IFA_FLAGS]) or flags
            ip = ipaddress.ip_address(raw)
            out.append(Addr(idx, ipaddress.ip_interface(f"{ip}/{plen}"), scope, flags))
        return out

    # ------------------------------------------------------------------ routes

    def _route_body(
        self,
        dst: ipaddress.IPv4Network | ipaddress.IPv6Network,
        *,
        oif: int | None,
        gateway: IPAddress | None,
        scope: int,
        protocol: int,
        table: int = RT_TABLE_MAIN,
    ) -> bytes:
        family = _family(dst.version)
        body = _RTMSG.pack(
            family, dst.prefixlen, 0, 0, table if table < 256 else 0, protocol, scope, RTN_UNICAST, 0
        )
        if dst.prefixlen:
            body += attr(RTA_DST, dst.network_address.packed)
        if oif is not None:
            body += attr_u32(RTA_OIF, oif)
        if gateway is not None:
            body += attr(RTA_GATEWAY, gateway.packed)
        if table >= 256:
            body += attr_u32(RTA_TABLE, table)
        return body

    def add_route(
        self,
        dst: ipaddress.IPv4Network | ipaddress.IPv6Network,
        *,
        oif: int | None = None,
        gateway: IPAddress | None = None,
        scope: int = RT_SCOPE_UNIVERSE,
        protocol: int = 3,
        replace: bool = False,
    ) -> None:
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        body = self._route_body(dst, oif=oif, gateway=gateway, scope=scope, protocol=protocol)
        self.request(RTM_NEWROUTE, flags, body, f"add route {dst}")

    def delete_route(
        self,
        dst: ipaddress.IPv4Network | ipaddress.IPv6Network,
        *,
        oif: int | None = None,
        scope: int = RT_SCOPE_UNIVERSE,
        protocol: int = 0,
    ) -> bool:
        """Delete a route (the kernel matches on scope: pass the route's scope). False if absent."""
        body = self._route_body(dst, oif=oif, gateway=None, scope=scope, protocol=protocol)
        try:
            self.request(RTM_DELROUTE, 0, body, f"delete route {dst}")
        except NetlinkError as e:
            if e.errno in (_errno.ESRCH, _errno.ENOENT, _errno.ENODEV):
                return False
            raise
        return True

    def routes(self, version: int, table: int = RT_TABLE_MAIN) -> list[Route]:
        family = _family(version)
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        out: list[Route] = []
        for payload in self.dump(RTM_GETROUTE, body, "list routes"):
            fam, dst_len, _sl, _tos, tbl, proto, scope, rtype, _fl = _RTMSG.unpack_from(payload, 0)
            attrs = parse_attrs(memoryview(payload)[_RTMSG.size :])
            rt_table = _u32(attrs.get(RTA_TABLE)) or tbl
            if rt_table != table or fam != family:
                continue
            raw_dst = attrs.get(RTA_DST)
            base = (
                ipaddress.ip_address(raw_dst)
                if raw_dst
                else ipaddress.ip_address("0.0.0.0" if version == 4 else "::")
            )
            gw = attrs.get(RTA_GATEWAY)
            out.append(
                Route(
                    family=fam,
                    dst=ipaddress.ip_network(f"{base}/{dst_len}", strict=False),
                    oif=_u32(attrs.get(RTA_OIF)),
                    gateway=ipaddress.ip_address(gw) if gw else None,
                    scope=scope,
                    protocol=proto,
                    table=rt_table,
                    type=rtype,
                    extra=attrs,
                )
            )
        return out
