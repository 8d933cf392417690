"""rtnetlink on a raw socket: the requests the link and route drivers make, encoded and decoded here.

Why not pyroute2 on this path: it parses every attribute of every message into objects (a dump of
255 links took ~80 ms, one `link_lookup` ~0.7 ms, far more on a loaded host), creates cyclic garbage
the collector must walk, and wants each socket used from the thread that made it. The drivers need
five requests, whose wire format is fixed by the kernel ABI (netlink(7), rtnetlink(7)):

    nlmsghdr   len:u32 type:u16 flags:u16 seq:u32 pid:u32                          16 bytes
    ifinfomsg  family:u8 pad:u8 type:u16 index:i32 flags:u32 change:u32            16 bytes
    rtmsg      family dst_len src_len tos table protocol scope type (u8 each) flags:u32   12 bytes
    rtattr     len:u16 type:u16 payload, padded to 4 bytes

Inputs: `RtnlSocket()` opens a NETLINK_ROUTE socket in the network namespace of the calling thread
(netlink sockets keep that namespace for life, whichever thread later uses them). Outputs:
`dump_links()` -> `LinkRecord`s, `get_link(name)` -> `LinkRecord | None`, `dump_routes(family,
table, protocol)` -> `RouteRecord`s, `new_route(...)` / `del_route(...)` (acknowledged).

Invariants: one request at a time per socket (a lock; any thread may call). Every modifying request
asks for an ACK, so a call returns only after the kernel applied it, or raises `OSError` with the
kernel's errno (and its extended-ack message when it gave one). Replies are matched by sequence
number; stale messages of an abandoned request are skipped. Route dumps ask the kernel to filter
by table and protocol (`NETLINK_GET_STRICT_CHK`, Linux >= 4.20, as `ip route show proto N` does);
without strict checking the kernel sends everything and the caller's filter still applies.
A dump the kernel flags as interrupted (`NLM_F_DUMP_INTR`: the table changed meanwhile) is retried.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_ACK_TLVS = 0x200  # in an ack: extended-ack attributes follow
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300

IFLA_IFNAME = 3
IFLA_OPERSTATE = 16
IFLA_EXT_MASK = 29
RTEXT_FILTER_SKIP_STATS = 1 << 3

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_MULTIPATH = 9
RTA_TABLE = 15
NLMSGERR_ATTR_MSG = 1

RT_TABLE_UNSPEC = 0

OPER_STATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")

_RECV_BUFFER = 1 << 18
_SOCKET_BUFFER = 1 << 20
_TIMEOUT_S = 10.0
_DUMP_ATTEMPTS = 5


@dataclass(frozen=True)
class LinkRecord:
    index: int
    name: str
    flags: int
    oper_state: str


@dataclass(frozen=True)
class RouteRecord:
    family: int
    dst: str
    dst_len: int
    table: int
    protocol: int
    scope: int
    type: int
    oif: int | None
    gateway: str | None
    multipath: bool


def _align(length: int) -> int:
    return (length + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def u32_attr(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def parse_attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    """Top-level attributes of a message body from `offset` to `end` (the last of a type wins)."""
    found: dict[int, bytes] = {}
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        found[kind & 0x3FFF] = data[offset + _RTATTR.size : offset + length]  # strip NESTED/BYTEORDER bits
        offset += _align(length)
    return found


def _address(family: int, raw: bytes) -> str:
    return socket.inet_ntop(family, raw)


def decode_link(data: bytes, offset: int, end: int) -> LinkRecord:
    _family, _type, index, flags, _change = _IFINFO.unpack_from(data, offset)
    attrs = parse_attrs(data, offset + _IFINFO.size, end)
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
    oper_raw = attrs.get(IFLA_OPERSTATE)
    oper = OPER_STATES[oper_raw[0]] if oper_raw and oper_raw[0] < len(OPER_STATES) else "UNKNOWN"
    return LinkRecord(index=index, name=name, flags=flags, oper_state=oper)


def decode_route(data: bytes, offset: int, end: int) -> RouteRecord:
    family, dst_len, _src_len, _tos, table, protocol, scope, rtype, _flags = _RTMSG.unpack_from(data, offset)
    attrs = parse_attrs(data, offset + _RTMSG.size, end)
    table_attr = attrs.get(RTA_TABLE)
    if table_attr is not None and len(table_attr) >= 4:
        table = _U32.unpack_from(table_attr)[0]
    raw_dst = attrs.get(RTA_DST)
    if raw_dst is not None:
        dst = _address(family, raw_dst)
    else:
        dst = "::" if family == socket.AF_INET6 else "0.0.0.0"
    oif_attr = attrs.get(RTA_OIF)
    gateway_attr = attrs.get(RTA_GATEWAY)
    return RouteRecord(
        family=family,
        dst=dst,
        dst_len=dst_len,
        table=table,
        protocol=protocol,
        scope=scope,
        type=rtype,
        oif=_U32.unpack_from(oif_attr)[0] if oif_attr is not None and len(oif_attr) >= 4 else None,
        gateway=_address(family, gateway_attr) if gateway_attr is not None else None,
        multipath=RTA_MULTIPATH in attrs,
    )


def route_body(
    *,
    family: int,
    dst: str,
    table: int,
    protocol: int,
    scope: int,
    rtype: int,
    oif: int | None = None,
    gateway: str | None = None,
) -> bytes:
    """An rtmsg plus attributes for RTM_NEWROUTE / RTM_DELROUTE (`dst` is a CIDR)."""
    net = ipaddress.ip_network(dst, strict=False)
    header_table = table if table < 256 else RT_TABLE_UNSPEC
    body = _RTMSG.pack(family, net.prefixlen, 0, 0, header_table, protocol, scope, rtype, 0)
    body += attr(RTA_DST, net.network_address.packed) + u32_attr(RTA_TABLE, table)
    if oif is not None:
        body += u32_attr(RTA_OIF, oif)
    if gateway is not None:
        body += attr(RTA_GATEWAY, ipaddress.ip_address(gateway).packed)
    return body


def _error_text(data: bytes, offset: int, end: int, flags: int) -> str | None:
    """The kernel's extended-ack message in an error ack, if any."""
    if not flags & NLM_F_ACK_TLVS:
        return None
    inner = offset + 4  # after the error code: the request's header (capped ack: header only)
    if inner + _HDR.size > end:
        return None
    inner_len = _HDR.unpack_from(data, inner)[0]
    start = inner + (_HDR.size if flags & 0x100 else _align(inner_len))  # 0x100: NLM_F_CAPPED
    message = parse_attrs(data, start, end).get(NLMSGERR_ATTR_MSG)
    return message.split(b"\0", 1)[0].decode("utf-8", "replace") if message else None


class DumpInterrupted(Exception):
    """The kernel flagged the dump as inconsistent (its table changed meanwhile)."""


class RtnlSocket:
    """One NETLINK_ROUTE socket for requests (no multicast groups); see the module docstring."""

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            sock.bind((0, 0))
            sock.settimeout(_TIMEOUT_S)
            for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):  # older kernels: full acks, no messages
                    sock.setsockopt(SOL_NETLINK, option, 1)
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
                self.strict = True
            except OSError:
                self.strict = False
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._lock = threading.Lock()
        self._seq = 0
        self._buffer = bytearray(_RECV_BUFFER)

    def close(self) -> None:
        self._sock.close()

    # -- one exchange -------------------------------------------------------------------------------

    def _exchange(self, msg_type: int, flags: int, body: bytes) -> list[tuple[int, bytes, int, int]]:
        """Send one request; return its data messages as (type, datagram, body offset, end).

        Returns at the ack (NLMSG_ERROR 0) or at NLMSG_DONE of a dump; raises OSError for an error
        ack and DumpInterrupted for an inconsistent dump.
        """
        with self._lock:
            self._seq = self._seq + 1 if self._seq < 0xFFFFFFFF else 1
            seq = self._seq
            self._sock.send(_HDR.pack(_HDR.size + len(body), msg_type, flags | NLM_F_REQUEST, seq, 0) + body)
            found: list[tuple[int, bytes, int, int]] = []
            interrupted = False
            view = memoryview(self._buffer)
            while True:
                try:
                    size = self._sock.recv_into(view)
                except TimeoutError:
                    raise OSError(errno.ETIMEDOUT, "no reply from the kernel") from None
                data = bytes(view[:size])
                offset = 0
                while offset + _HDR.size <= size:
                    length, kind, msg_flags, msg_seq, _pid = _HDR.unpack_from(data, offset)
                    if length < _HDR.size:
                        break
                    end = min(offset + length, size)
                    body_at = offset + _HDR.size
                    offset += _align(length)
                    if msg_seq != seq:
                        continue  # a reply to an earlier, abandoned request
                    if msg_flags & NLM_F_DUMP_INTR:
                        interrupted = True
                    if kind == NLMSG_ERROR:
                        code = -_I32.unpack_from(data, body_at)[0]
                        if code == 0:
                            return found
                        text = _error_text(data, body_at, end, msg_flags)
                        raise OSError(code, os.strerror(code) + (f" ({text})" if text else ""))
                    if kind == NLMSG_DONE:
                        if end - body_at >= 4:
                            code = -_I32.unpack_from(data, body_at)[0]
                            if code > 0:
                                raise OSError(code, os.strerror(code))
                        if interrupted:
                            raise DumpInterrupted()
                        return found
                    found.append((kind, data, body_at, end))

    def _dump(self, msg_type: int, body: bytes) -> list[tuple[int, bytes, int, int]]:
        for _ in range(_DUMP_ATTEMPTS - 1):
            try:
                return self._exchange(msg_type, NLM_F_DUMP, body)
            except DumpInterrupted:
                continue
        try:
            return self._exchange(msg_type, NLM_F_DUMP, body)
        except DumpInterrupted:
            raise OSError(errno.EAGAIN, "dump kept being interrupted by concurrent changes") from None

    # -- links --------------------------------------------------------------------------------------

    def dump_links(self) -> list[LinkRecord]:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + u32_attr(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [decode_link(data, start, end) for kind, data, start, end in self._dump(RTM_GETLINK, body)
                if kind == RTM_NEWLINK]

    def get_link(self, name: str) -> LinkRecord | None:
        """The interface called `name`, or None when there is none."""
        body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, name.encode() + b"\0")
                + u32_attr(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))
        try:
            replies = self._exchange(RTM_GETLINK, NLM_F_ACK, body)
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        for kind, data, start, end in replies:
            if kind == RTM_NEWLINK:
                return decode_link(data, start, end)
        return None

    # -- routes -------------------------------------------------------------------------------------

    def dump_routes(self, family: int, table: int, protocol: int) -> list[RouteRecord]:
        """Routes of `family` in `table` with `protocol` (filtered by the kernel when it can)."""
        body = _RTMSG.pack(family, 0, 0, 0, table if table < 256 else RT_TABLE_UNSPEC, protocol, 0, 0, 0)
        body += u32_attr(RTA_TABLE, table)
        try:
            messages = self._dump(RTM_GETROUTE, body)
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # strict dump of a table that does not exist (yet)
                return []
            raise
        return [decode_route(data, start, end) for kind, data, start, end in messages if kind == RTM_NEWROUTE]

    def new_route(self, body: bytes) -> None:
        """RTM_NEWROUTE with create + replace (the `ip route replace` semantics)."""
        self._exchange(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, body)

    def del_route(self, body: bytes) -> None:
        self._exchange(RTM_DELROUTE, NLM_F_ACK, body)
