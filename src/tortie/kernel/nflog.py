"""NFLOG (nfnetlink_log): the packets nft `log group N` statements copy to user space.

The policy table logs the packet that a rule decided (the first packet of a connection for Allow
and Pass rules, rate-limited packets for Deny) to a group with a prefix naming the rule; the flow
logger reads them here. Logging never holds a packet: the kernel copies the start of it into a
batch and goes on; with nobody bound to the group, or a full socket buffer, the copy is dropped.

    NflogListener(groups, copy_range=128)   bind the groups (CONFIG: BIND, copy mode PACKET,
                                            queue threshold, flush timeout), then read non-blocking
    decode_packet(body) -> LogPacket        prefix, group, interfaces, the tuple of the packet

Wire format (linux/netfilter/nfnetlink_log.h), after nfgenmsg (family u8, version u8, res_id be16 =
the group):

    config (type (4 << 8) | 1): NFULA_CFG_CMD 1 {command u8}, NFULA_CFG_MODE 2 {copy_range be32,
        copy_mode u8, pad u8}, NFULA_CFG_TIMEOUT 4 be32 (1/100 s), NFULA_CFG_QTHRESH 5 be32
    packet (type (4 << 8) | 0): NFULA_PACKET_HDR 1 {hw_protocol be16, hook u8, pad},
        NFULA_IFINDEX_INDEV 4 be32, NFULA_IFINDEX_OUTDEV 5 be32, NFULA_PAYLOAD 9 (the IP packet from
        its network header, at most copy_range bytes), NFULA_PREFIX 10 (NUL-terminated)

The tuple comes from the copied headers: IPv4 (header length from IHL) or IPv6 (hop-by-hop, routing
and destination options headers skipped; a fragment or any other header ends the walk), then the
ports of TCP, UDP, UDP-Lite and SCTP, or ICMP's / ICMPv6's identifier, type and code (the same key
as `tortie.kernel.conntrack.FlowTuple`). `length` is the packet's own length from its IP header.
"""

from __future__ import annotations

import _socket
import struct
from dataclasses import dataclass

from tortie.kernel.conntrack import FlowTuple
from tortie.kernel.netlink import (
    NETLINK_NETFILTER,
    NLM_F_ACK,
    NetlinkSocket,
    attr,
    get_be32,
    get_str,
    parse_attrs,
)

NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = (NFNL_SUBSYS_ULOG << 8) | 0
NFULNL_MSG_CONFIG = (NFNL_SUBSYS_ULOG << 8) | 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_IFINDEX_INDEV = 4
NFULA_IFINDEX_OUTDEV = 5
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10

_NFGENMSG = struct.Struct("=BBH")
_BE16X2 = struct.Struct(">HH")
_AF_INET, _AF_INET6 = 2, 10
_PORT_PROTOCOLS = frozenset({6, 17, 132, 136})
_V6_SKIP = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options


@dataclass(frozen=True, slots=True)
class LogPacket:
    group: int
    prefix: str
    tuple: FlowTuple
    length: int
    indev: int = 0
    outdev: int = 0


def packet_tuple(packet: bytes) -> tuple[FlowTuple, int] | None:
    """(tuple, IP length) of a packet that starts at its IP header; None when it cannot be read."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        length = _BE16X2.unpack_from(packet, 2)[0]
        proto = packet[9]
        src = _socket.inet_ntop(_AF_INET, packet[12:16])
        dst = _socket.inet_ntop(_AF_INET, packet[16:20])
        l4 = ihl
    elif version == 6:
        if len(packet) < 40:
            return None
        length = _BE16X2.unpack_from(packet, 4)[0] + 40
        proto = packet[6]
        src = _socket.inet_ntop(_AF_INET6, packet[8:24])
        dst = _socket.inet_ntop(_AF_INET6, packet[24:40])
        l4 = 40
        while proto in _V6_SKIP and l4 + 8 <= len(packet):
            proto, l4 = packet[l4], l4 + (packet[l4 + 1] + 1) * 8
    else:
        return None
    sport = dport = 0
    if proto in _PORT_PROTOCOLS and l4 + 4 <= len(packet):
        sport, dport = _BE16X2.unpack_from(packet, l4)
    elif proto in (1, 58) and l4 + 8 <= len(packet):
        dport = packet[l4] * 256 + packet[l4 + 1]
        sport = _BE16X2.unpack_from(packet, l4 + 4)[0]
    return FlowTuple(proto, src, dst, sport, dport), length


def decode_packet(body: bytes) -> LogPacket | None:
    """One NFULNL_MSG_PACKET body -> LogPacket (None when it carries no readable IP packet)."""
    if len(body) < _NFGENMSG.size:
        return None
    group = _BE16X2.unpack_from(body, 2)[0]
    attrs = parse_attrs(body, _NFGENMSG.size)
    payload = attrs.get(NFULA_PAYLOAD)
    if payload is None:
        return None
    found = packet_tuple(payload)
    if found is None:
        return None
    flow_tuple, length = found
    return LogPacket(
        group,
        get_str(attrs.get(NFULA_PREFIX)) or "",
        flow_tuple,
        length,
        get_be32(attrs.get(NFULA_IFINDEX_INDEV)) or 0,
        get_be32(attrs.get(NFULA_IFINDEX_OUTDEV)) or 0,
    )


def _config(group: int, *attrs: bytes) -> bytes:
    return _NFGENMSG.pack(0, 0, _socket.htons(group)) + b"".join(attrs)


class NflogListener:
    """Bound to `groups` in the namespace it is created in; `read` returns what is queued.

    `copy_range`: bytes of each packet copied (the headers are enough); `flush_centis`: the kernel
    sends a partial batch after this many 1/100 s; `queue_threshold`: or once it holds this many
    packets. Binding fails (`NetlinkError` EBUSY) when another process holds a group."""

    def __init__(
        self,
        groups: tuple[int, ...],
        *,
        copy_range: int = 128,
        flush_centis: int = 10,
        queue_threshold: int = 64,
        buffer: int = 8 << 20,
    ) -> None:
        self.sock = NetlinkSocket(NETLINK_NETFILTER, buffer=buffer)
        try:
            for group in groups:
                self.sock.request(
                    NFULNL_MSG_CONFIG,
                    NLM_F_ACK,
                    _config(
                        group,
                        attr(NFULA_CFG_CMD, bytes((NFULNL_CFG_CMD_BIND,))),
                        attr(NFULA_CFG_MODE, struct.pack(">IBB", copy_range, NFULNL_COPY_PACKET, 0)),
                        attr(NFULA_CFG_TIMEOUT, struct.pack(">I", flush_centis)),
                        attr(NFULA_CFG_QTHRESH, struct.pack(">I", queue_threshold)),
                    ),
                    f"bind NFLOG group {group}",
                )
        except Exception:
            self.sock.close()
            raise
        self.sock.set_blocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, max_datagrams: int = 64) -> tuple[list[LogPacket], int]:
        messages, lost = self.sock.receive(max_datagrams)
        packets = [
            p for p in (decode_packet(body) for kind, body in messages if kind == NFULNL_MSG_PACKET)
            if p is not None
        ]
        return packets, lost

    def close(self) -> None:
        self.sock.close()
