"""Conntrack over ctnetlink (NETLINK_NETFILTER, subsystem CTNETLINK): events and counter dumps.

The flow logger learns from the kernel's connection tracker which connections exist, when they
start and end and how many packets and bytes each carried (`net.netfilter.nf_conntrack_acct=1`
makes the kernel count; the counters come with dumps and with destroy events). Nothing here
touches packets: the kernel already tracks every connection.

    ConntrackEvents()       a socket subscribed to NEW and DESTROY events (non-blocking; `read`)
    dump_flows(sock)        every entry of the namespace's table (both families), with counters
    decode_flow(kind, body) one ctnetlink message -> `CtFlow` (None when it is not a flow of ours)

Wire format (linux/netfilter/nfnetlink_conntrack.h), after nfgenmsg (family u8, version u8,
res_id be16):

    CTA_TUPLE_ORIG (1) / CTA_TUPLE_REPLY (2): nest of CTA_TUPLE_IP (1: V4_SRC 1, V4_DST 2, V6_SRC 3,
        V6_DST 4) and CTA_TUPLE_PROTO (2: NUM 1 u8, SRC_PORT 2 be16, DST_PORT 3 be16, ICMP_ID 4 be16,
        ICMP_TYPE 5 u8, ICMP_CODE 6 u8, ICMPV6_ID 7, ICMPV6_TYPE 8, ICMPV6_CODE 9)
    CTA_COUNTERS_ORIG (9) / CTA_COUNTERS_REPLY (10): nest of PACKETS (1) be64, BYTES (2) be64
    CTA_ID (12) be32, CTA_STATUS (3) be32
    message types: (1 << 8) | IPCTNL_MSG_CT_NEW (0) for entries and new/update events,
                   (1 << 8) | IPCTNL_MSG_CT_DELETE (2) for destroy events; dump: CT_GET (1) + NLM_F_DUMP
    multicast groups: NFNLGRP_CONNTRACK_NEW 1, _UPDATE 2, _DESTROY 3 (bind mask bit group-1)

Tuples are `FlowTuple(protocol, src, dst, sport, dport)` with text addresses (either family): for
ICMP and ICMPv6 `sport` is the echo identifier and `dport` is type * 256 + code, the same key
`tortie.kernel.nflog` gives the packet that started the connection.
"""

from __future__ import annotations

import _socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from tortie.kernel.netlink import NETLINK_NETFILTER, NLA_TYPE_MASK, NetlinkSocket, get_be16, get_be32

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_DESTROY = 3

CTA_TUPLE_ORIG = 1
CTA_ID = 12
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
_ICMP_ATTRS = {1: (4, 5, 6), 58: (7, 8, 9)}  # protocol -> (id, type, code) attribute numbers
CTA_COUNTERS_PACKETS = 1
CTA_COUNTERS_BYTES = 2

_NFGENMSG = struct.Struct("=BBH")
_ATTR = struct.Struct("=HH")
_BE64 = struct.Struct(">Q")
_AF_INET, _AF_INET6 = 2, 10


class FlowTuple(NamedTuple):
    """A connection's original direction: protocol, addresses, ports (see the module docstring)."""

    protocol: int
    src: str
    dst: str
    sport: int
    dport: int


@dataclass(frozen=True, slots=True)
class CtFlow:
    """One conntrack entry or event: its id, original tuple and counters (0 when not counted)."""

    id: int
    tuple: FlowTuple
    packets_orig: int = 0
    bytes_orig: int = 0
    packets_reply: int = 0
    bytes_reply: int = 0
    destroyed: bool = False


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of the attributes in data[offset:end]."""
    while offset + 4 <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, offset + 4, offset + length
        offset += (length + 3) & ~3


def _tuple(data: bytes, start: int, end: int) -> FlowTuple | None:
    src = dst = ""
    proto = sport = dport = -1
    icmp_type = icmp_code = 0
    for kind, a, b in _attrs(data, start, end):
        if kind == CTA_TUPLE_IP:
            for ip_kind, c, d in _attrs(data, a, b):
                if ip_kind in (1, 2):
                    text = _socket.inet_ntop(_AF_INET, data[c:d])
                elif ip_kind in (3, 4):
                    text = _socket.inet_ntop(_AF_INET6, data[c:d])
                else:
                    continue
                if ip_kind in (1, 3):
                    src = text
                else:
                    dst = text
        elif kind == CTA_TUPLE_PROTO:
            fields = {k: data[c:d] for k, c, d in _attrs(data, a, b)}
            proto = fields[CTA_PROTO_NUM][0] if CTA_PROTO_NUM in fields else -1
            icmp = _ICMP_ATTRS.get(proto)
            if icmp is not None:
                sport = get_be16(fields.get(icmp[0])) or 0
                icmp_type = fields[icmp[1]][0] if icmp[1] in fields else 0
                icmp_code = fields[icmp[2]][0] if icmp[2] in fields else 0
                dport = icmp_type * 256 + icmp_code
            else:
                sport = get_be16(fields.get(CTA_PROTO_SRC_PORT)) or 0
                dport = get_be16(fields.get(CTA_PROTO_DST_PORT)) or 0
    if not src or not dst or proto < 0:
        return None
    return FlowTuple(proto, src, dst, sport, dport)


def _counters(data: bytes, start: int, end: int) -> tuple[int, int]:
    packets = octets = 0
    for kind, a, b in _attrs(data, start, end):
        if kind == CTA_COUNTERS_PACKETS and b - a == 8:
            packets = _BE64.unpack_from(data, a)[0]
        elif kind == CTA_COUNTERS_BYTES and b - a == 8:
            octets = _BE64.unpack_from(data, a)[0]
    return packets, octets


def decode_flow(kind: int, body: bytes) -> CtFlow | None:
    """A ctnetlink entry or event (`kind`: CT_NEW or CT_DELETE) -> CtFlow; None for other messages
    or an entry without a complete original tuple."""
    if kind not in (CT_NEW, CT_DELETE) or len(body) < _NFGENMSG.size:
        return None
    flow_tuple: FlowTuple | None = None
    ct_id = 0
    po = bo = pr = br = 0
    for attr_kind, a, b in _attrs(body, _NFGENMSG.size, len(body)):
        if attr_kind == CTA_TUPLE_ORIG:
            flow_tuple = _tuple(body, a, b)
        elif attr_kind == CTA_ID:
            ct_id = get_be32(body[a:b]) or 0
        elif attr_kind == CTA_COUNTERS_ORIG:
            po, bo = _counters(body, a, b)
        elif attr_kind == CTA_COUNTERS_REPLY:
            pr, br = _counters(body, a, b)
    if flow_tuple is None:
        return None
    return CtFlow(ct_id, flow_tuple, po, bo, pr, br, kind == CT_DELETE)


def conntrack_socket() -> NetlinkSocket:
    """A socket for requests (dumps) in the calling thread's network namespace."""
    return NetlinkSocket(NETLINK_NETFILTER, buffer=4 << 20)


class ConntrackEvents:
    """NEW and DESTROY events (or the `groups` given) of the socket's namespace (non-blocking reads).

    A full socket buffer loses events (the kernel reports it: `lost`); callers treat events as
    hints and the periodic dump as the truth."""

    def __init__(
        self,
        groups: tuple[int, ...] = (NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY),
        buffer: int = 8 << 20,
    ) -> None:
        mask = sum(1 << (g - 1) for g in set(groups))
        self.sock = NetlinkSocket(NETLINK_NETFILTER, groups=mask, buffer=buffer)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, max_datagrams: int = 64) -> tuple[list[CtFlow], int]:
        messages, lost = self.sock.receive(max_datagrams)
        flows = [f for f in (decode_flow(kind, body) for kind, body in messages) if f is not None]
        return flows, lost

    def close(self) -> None:
        self.sock.close()


def dump_flows(sock: NetlinkSocket) -> list[CtFlow]:
    """Every conntrack entry of the socket's namespace, both families, with counters."""
    body = _NFGENMSG.pack(0, 0, 0)  # AF_UNSPEC: every family
    messages = sock.dump(CT_GET, body, "dump conntrack")
    return [f for f in (decode_flow(kind, b) for kind, b in messages) if f is not None]


def flush_table(sock: NetlinkSocket) -> None:
    """Delete every conntrack entry of the socket's namespace (each one sends a DESTROY event)."""
    sock.request(CT_DELETE, 0, _NFGENMSG.pack(0, 0, 0), "flush conntrack")
