"""nftables set and map element changes as raw nfnetlink batches (the policy manager's fast path).

Why: libnftables 1.0.6 (Debian 12) fills its cache before any element command, and for element
commands that cache holds the elements of every interval set in every table, so one label change
in a table of 1,700 sets cost ~100 ms in libnftables while the kernel work is microseconds. The
kernel needs no such cache: an element change is one NFT_MSG_NEWSETELEM / DELSETELEM message.

Input: a table name and `ElementOp`s (add or delete; set name; the set's `SetLayout`; elements in
the libnftables JSON forms `tortie.dataplane.nft.ir` emits). Output: ONE batch on a
NETLINK_NETFILTER socket (BATCH_BEGIN, one message per op in the given order, BATCH_END) that the
kernel commits or aborts as a whole, exactly like a libnftables transaction. `ElementSocket.apply`
returns once the kernel committed, or raises `NetlinkError` (errno, kernel text) and nothing changed.

Wire format (linux/netfilter/nfnetlink.h, nf_tables.h; cross-checked with `nft --debug=netlink`);
every message body starts with nfgenmsg family:u8 version:u8 res_id:be16:

    batch begin/end: type 0x10/0x11, nfgenmsg(AF_UNSPEC, 0, NFNL_SUBSYS_NFTABLES)
    element message: type (NFNL_SUBSYS_NFTABLES << 8) | NEWSETELEM (12) or DELSETELEM (14),
        nfgenmsg(NFPROTO_INET, 0, 0), LIST_TABLE str, LIST_SET str, LIST_ELEMENTS nest of LIST_ELEM nests:
        KEY nest(DATA_VALUE bytes), [FLAGS be32], [DATA nest(DATA_VERDICT nest(CODE be32, CHAIN str))],
        [USERDATA (nft's element flags)]
    keys: ipv4_addr 4 bytes, ipv6_addr 16, ifname 16 (NUL padded), inet_proto 1, inet_service 2 (big
        endian); in a concatenation every part is padded to 4 bytes.
    interval sets (non-concatenated, the rbtree): a range [lo, hi] is a start element `lo` and an end
        element `hi + 1` flagged INTERVAL_END; a range reaching the top of the address space has no
        end element and carries nft's "open interval" element flag in its user data (as nft does,
        so `nft list` prints it as a prefix). Adjacent ranges share a key (end of one, start of the
        next) and the kernel tells them apart by the flag, so deleting one never touches the other.

`generation()` asks for the ruleset generation id (NFT_MSG_GETGEN), which every committed
transaction increments: the policy manager compares it with the one its own last batch left, to
skip reading back a table nobody else touched.

Notifications: a socket bound to NFNLGRP_NFTABLES (`NFTABLES_GROUP`, what `nft monitor` reads)
receives one message per object every committed transaction created or deleted (table, chain,
rule, set, element, object, flowtable), then NFT_MSG_NEWGEN. `decode_notification` reads each as
`NftNotification(msg, table, generation)`: for every object message attribute 1 is the table name,
and the nfgenmsg res_id is the low 16 bits of the generation the transaction committed (the kernel
bumps its generation before it sends them), so a process can tell its own transactions' messages
from anyone else's by the generation its commit produced.

Invariants: only the ACK of the last element message is requested; errors are always reported
(before that ACK, in message order), so `apply` reads until that ACK or the first error (see
`NetlinkSocket.batch`). A batch larger than the socket's send buffer is refused before sending
(`NetlinkError` EMSGSIZE; `fits` says so beforehand).
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tortie.common.errors import NetlinkError
from tortie.kernel.netlink import (
    NETLINK_NETFILTER,
    NLM_F_ACK,
    NLM_F_CREATE,
    NetlinkSocket,
    align,
    attr,
    attr_str,
    get_be32,
    nest,
    parse_attrs,
)

NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFNLGRP_NFTABLES = 7
NFTABLES_GROUP = 1 << (NFNLGRP_NFTABLES - 1)  # as a bind() group bit
NFT_MSG_NEWTABLE = 0
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14
NFT_MSG_NEWGEN = 15
NFT_MSG_GETGEN = 16
NFT_MSG_TRACE = 17
NFTA_GEN_ID = 1
AF_UNSPEC = 0
NFPROTO_INET = 1

NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_DATA = 2
NFTA_SET_ELEM_FLAGS = 3
NFTA_SET_ELEM_USERDATA = 6
NFT_SET_ELEM_INTERVAL_END = 1
NFTA_DATA_VALUE = 1
NFTA_DATA_VERDICT = 2
NFTA_VERDICT_CODE = 1
NFTA_VERDICT_CHAIN = 2

# nft's per-element user data: TLV type NFTNL_UDATA_SET_ELEM_FLAGS, value NFTNL_SET_ELEM_F_INTERVAL_OPEN
_OPEN_INTERVAL_UDATA = bytes((1, 4)) + struct.pack("=I", 1)

VERDICT_CODES = {"accept": 1, "drop": 0, "continue": -1, "return": -5, "jump": -3, "goto": -4}
KEY_SIZES = {"ipv4_addr": 4, "ipv6_addr": 16, "ifname": 16, "inet_proto": 1, "inet_service": 2}
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136, "icmp": 1, "icmpv6": 58}

_NFGEN = struct.Struct("=BBH")
_BE32 = struct.Struct(">I")
_BE32S = struct.Struct(">i")

_BUFFER = 8 << 20


class UnsupportedElement(ValueError):
    """An element or set type this encoder does not handle (the caller uses libnftables instead)."""


@dataclass(frozen=True)
class SetLayout:
    """What the encoder needs to know about a set: its key parts, interval flag, verdict data."""

    key: tuple[str, ...]
    interval: bool = False
    verdict_map: bool = False

    @staticmethod
    def of(type_: Any, flags: Iterable[str] = (), data: Any = None) -> SetLayout | None:
        """From a set's JSON description; None when some part of it is not supported."""
        parts = tuple(type_) if isinstance(type_, list | tuple) else (type_,)
        if not parts or not all(isinstance(p, str) and p in KEY_SIZES for p in parts):
            return None
        interval = "interval" in flags
        if interval and (len(parts) > 1 or parts[0] not in ("ipv4_addr", "ipv6_addr")):
            return None  # concatenated ranges live in another set backend; not needed by tortie
        if data is not None and data != "verdict":
            return None
        return SetLayout(parts, interval, data == "verdict")


@dataclass(frozen=True)
class ElementOp:
    add: bool
    set_name: str
    layout: SetLayout
    elements: tuple[Any, ...]


# -- encoding -------------------------------------------------------------------------------------------
def _part_bytes(kind: str, value: Any) -> bytes:
    if kind in ("ipv4_addr", "ipv6_addr"):
        if not isinstance(value, str):
            raise UnsupportedElement(f"{kind} element {value!r}")
        addr = ipaddress.ip_address(value)
        if addr.version != (4 if kind == "ipv4_addr" else 6):
            raise UnsupportedElement(f"{value!r} is not an {kind}")
        return addr.packed
    if kind == "ifname":
        raw = str(value).encode()
        if len(raw) >= 16:
            raise UnsupportedElement(f"interface name {value!r} is too long")
        return raw + b"\0" * (16 - len(raw))
    if kind == "inet_proto":
        number = PROTOCOL_NUMBERS.get(value, value) if isinstance(value, str) else value
        if not isinstance(number, int) or not 0 <= number <= 255:
            raise UnsupportedElement(f"protocol {value!r}")
        return bytes((number,))
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:  # inet_service
        raise UnsupportedElement(f"port {value!r}")
    return value.to_bytes(2, "big")


def key_bytes(layout: SetLayout, value: Any) -> bytes:
    """The key of a non-interval element (a concatenation pads each part to 4 bytes)."""
    if len(layout.key) == 1:
        return _part_bytes(layout.key[0], value)
    if not isinstance(value, dict) or not isinstance(value.get("concat"), list):
        raise UnsupportedElement(f"expected a concatenation, got {value!r}")
    parts = value["concat"]
    if len(parts) != len(layout.key):
        raise UnsupportedElement(f"concatenation {value!r} does not match {layout.key}")
    out = b""
    for kind, part in zip(layout.key, parts, strict=True):
        raw = _part_bytes(kind, part)
        out += raw + b"\0" * (align(len(raw)) - len(raw))
    return out


def interval_bounds(layout: SetLayout, value: Any) -> tuple[int, int]:
    """[lo, hi] (inclusive) of an interval set element: an address, a prefix or a range."""
    version = 4 if layout.key[0] == "ipv4_addr" else 6
    try:
        if isinstance(value, str):
            addr = ipaddress.ip_address(value)
            lo = hi = int(addr)
            got = addr.version
        elif isinstance(value, dict) and "prefix" in value:
            net = ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}", strict=False)
            lo, hi, got = int(net.network_address), int(net.broadcast_address), net.version
        elif isinstance(value, dict) and "range" in value:
            first, last = (ipaddress.ip_address(v) for v in value["range"])
            lo, hi, got = int(first), int(last), first.version
            if last.version != got or hi < lo:
                raise UnsupportedElement(f"range {value!r}")
        else:
            raise UnsupportedElement(f"interval element {value!r}")
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, UnsupportedElement):
            raise
        raise UnsupportedElement(f"interval element {value!r}: {exc}") from None
    if got != version:
        raise UnsupportedElement(f"{value!r} is not an {layout.key[0]}")
    return lo, hi


def _verdict(value: Any) -> bytes:
    if not isinstance(value, dict) or len(value) != 1:
        raise UnsupportedElement(f"verdict {value!r}")
    ((kind, body),) = value.items()
    if kind not in VERDICT_CODES:
        raise UnsupportedElement(f"verdict {value!r}")
    inner = attr(NFTA_VERDICT_CODE, _BE32S.pack(VERDICT_CODES[kind]))
    if kind in ("jump", "goto"):
        target = body.get("target") if isinstance(body, dict) else None
        if not isinstance(target, str) or not target:
            raise UnsupportedElement(f"verdict {value!r}")
        inner += attr(NFTA_VERDICT_CHAIN, target.encode() + b"\0")
    return nest(NFTA_SET_ELEM_DATA, nest(NFTA_DATA_VERDICT, inner))


def _element(key: bytes, *, end: bool = False, extra: bytes = b"") -> bytes:
    body = nest(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, key))
    if end:
        body += attr(NFTA_SET_ELEM_FLAGS, _BE32.pack(NFT_SET_ELEM_INTERVAL_END))
    return nest(NFTA_LIST_ELEM, body + extra)


def encode_elements(op: ElementOp) -> bytes:
    """The LIST_ELEM nests of one op (two per interval element unless it is open-ended)."""
    layout = op.layout
    out: list[bytes] = []
    for value in op.elements:
        if layout.interval:
            lo, hi = interval_bounds(layout, value)
            size = KEY_SIZES[layout.key[0]]
            top = (1 << (8 * size)) - 1
            open_ended = hi == top
            extra = attr(NFTA_SET_ELEM_USERDATA, _OPEN_INTERVAL_UDATA) if open_ended and op.add else b""
            out.append(_element(lo.to_bytes(size, "big"), extra=extra))
            if not open_ended:
                out.append(_element((hi + 1).to_bytes(size, "big"), end=True))
        elif layout.verdict_map:
            if op.add:
                if not isinstance(value, list | tuple) or len(value) != 2:
                    raise UnsupportedElement(f"map element {value!r}")
                out.append(_element(key_bytes(layout, value[0]), extra=_verdict(value[1])))
            else:
                key = value[0] if isinstance(value, list | tuple) else value
                out.append(_element(key_bytes(layout, key)))
        else:
            out.append(_element(key_bytes(layout, value)))
    return b"".join(out)


def nfgenmsg(family: int, res_id: int = 0) -> bytes:
    """The header of every nfnetlink message body (res_id is big endian)."""
    return bytes((family, 0)) + res_id.to_bytes(2, "big")


def batch_messages(table: str, ops: Sequence[ElementOp]) -> list[tuple[int, int, bytes]]:
    """The batch as (type, flags, body): BATCH_BEGIN, one message per op, BATCH_END. Only the last op
    asks for an ACK; it is at index len(ops)."""
    if not ops:
        raise ValueError("an element batch needs at least one op")
    frame = nfgenmsg(AF_UNSPEC, NFNL_SUBSYS_NFTABLES)
    parts = [(NFNL_MSG_BATCH_BEGIN, 0, frame)]
    table_attr = attr_str(NFTA_SET_ELEM_LIST_TABLE, table)
    for i, op in enumerate(ops):
        kind = (NFNL_SUBSYS_NFTABLES << 8) | (NFT_MSG_NEWSETELEM if op.add else NFT_MSG_DELSETELEM)
        flags = (NLM_F_CREATE if op.add else 0) | (NLM_F_ACK if i == len(ops) - 1 else 0)
        body = (
            nfgenmsg(NFPROTO_INET)
            + table_attr
            + attr_str(NFTA_SET_ELEM_LIST_SET, op.set_name)
            + nest(NFTA_SET_ELEM_LIST_ELEMENTS, encode_elements(op))
        )
        parts.append((kind, flags, body))
    parts.append((NFNL_MSG_BATCH_END, 0, frame))
    return parts


class ElementSocket:
    """A NETLINK_NETFILTER socket in the network namespace of the thread that creates it."""

    def __init__(self) -> None:
        self.sock = NetlinkSocket(NETLINK_NETFILTER, buffer=_BUFFER)

    def close(self) -> None:
        self.sock.close()

    def fits(self, size: int) -> bool:
        return size <= self.sock.send_limit

    def generation(self) -> int:
        """The ruleset generation of the namespace (every committed nftables transaction, by anyone,
        increments it)."""
        what = "get the nftables generation"
        kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
        for msg_kind, body in self.sock.request(kind, 0, nfgenmsg(AF_UNSPEC), what):
            if msg_kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN:
                found = get_be32(parse_attrs(body, _NFGEN.size).get(NFTA_GEN_ID))
                if found is not None:
                    return found
        raise NetlinkError(what, errno.EPROTO, "GETGEN answered without a generation")

    def apply(self, table: str, ops: Sequence[ElementOp]) -> None:
        """Send one batch and wait for the kernel's verdict (`NetlinkError`: nothing changed).
        Raises UnsupportedElement before sending anything when an element cannot be encoded, and
        NetlinkError(EMSGSIZE) when the batch does not fit the socket."""
        self.sock.batch(batch_messages(table, ops), len(ops), f"element batch on table {table}")


@dataclass(frozen=True)
class NftNotification:
    """One nftables notification: `msg` (NFT_MSG_*), the `table` it concerns (None for NEWGEN and
    TRACE) and `generation`: the low 16 bits of the committed generation (NEWGEN: all 32 bits)."""

    msg: int
    table: str | None
    generation: int


def decode_notification(kind: int, body: bytes) -> NftNotification | None:
    """An NFNLGRP_NFTABLES message as an `NftNotification` (None: not an nftables message)."""
    if kind >> 8 != NFNL_SUBSYS_NFTABLES or len(body) < _NFGEN.size:
        return None
    msg = kind & 0xFF
    res_id = int.from_bytes(body[2:4], "big")
    attrs = parse_attrs(body, _NFGEN.size)
    if msg == NFT_MSG_NEWGEN:
        generation = get_be32(attrs.get(NFTA_GEN_ID))
        return NftNotification(msg, None, generation if generation is not None else res_id)
    if msg == NFT_MSG_TRACE:
        return NftNotification(msg, None, res_id)
    raw = attrs.get(1)  # NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE,SET_ELEM_LIST_TABLE,...}
    table = raw.rstrip(b"\0").decode(errors="replace") if raw is not None else None
    return NftNotification(msg, table, res_id)

