"""Set and map element changes as raw nfnetlink batches: the fast path of `NftablesDriver`.

Why: libnftables 1.0.6 (Debian 12) fills its cache before any element command, and for element
commands that cache holds the elements of every interval set in every table, so one label change
in a table of 1,700 sets cost ~100 ms in libnftables while the kernel work is microseconds. The
kernel needs no such cache: an element change is one NFT_MSG_NEWSETELEM / DELSETELEM message.

Input: a table name and `ElementOp`s (add or delete; set name; the set's `SetLayout`; elements in
the libnftables JSON forms `tortie.dataplane.nft.ir` emits). Output: ONE batch on a
NETLINK_NETFILTER socket (BATCH_BEGIN, one message per op in the given order, BATCH_END) that the
kernel commits or aborts as a whole, exactly like a libnftables transaction. `ElementSocket.apply`
returns once the kernel committed, or raises `OSError(errno, text)` and nothing changed.

Wire format (linux/netfilter/nfnetlink.h, nf_tables.h; cross-checked with `nft --debug=netlink`):

    nlmsghdr  len:u32 type:u16 flags:u16 seq:u32 pid:u32; then nfgenmsg family:u8 version:u8 res_id:be16
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

Invariants: only the ACK of the last element message is requested; errors are always reported
(before that ACK, in message order), so `apply` reads until that ACK or the first error. Replies of
other sequence numbers (what was left of an aborted batch) are skipped. A batch larger than the
socket's send buffer is refused (`fits` says so beforehand).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NLMSGERR_ATTR_MSG = 1

NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14
NFT_MSG_NEWGEN = 15
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
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

_HDR = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")
_BE32 = struct.Struct(">I")
_BE32S = struct.Struct(">i")
_I32 = struct.Struct("=i")

_BUFFER = 8 << 20
_RECV_BUFFER = 1 << 16
_TIMEOUT_S = 10.0


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
def _align(n: int) -> int:
    return (n + 3) & ~3


def _nla(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def _nest(kind: int, payload: bytes) -> bytes:
    return _nla(kind | NLA_F_NESTED, payload)


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
        out += raw + b"\0" * (_align(len(raw)) - len(raw))
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
    inner = _nla(NFTA_VERDICT_CODE, _BE32S.pack(VERDICT_CODES[kind]))
    if kind in ("jump", "goto"):
        target = body.get("target") if isinstance(body, dict) else None
        if not isinstance(target, str) or not target:
            raise UnsupportedElement(f"verdict {value!r}")
        inner += _nla(NFTA_VERDICT_CHAIN, target.encode() + b"\0")
    return _nest(NFTA_SET_ELEM_DATA, _nest(NFTA_DATA_VERDICT, inner))


def _element(key: bytes, *, end: bool = False, extra: bytes = b"") -> bytes:
    body = _nest(NFTA_SET_ELEM_KEY, _nla(NFTA_DATA_VALUE, key))
    if end:
        body += _nla(NFTA_SET_ELEM_FLAGS, _BE32.pack(NFT_SET_ELEM_INTERVAL_END))
    return _nest(NFTA_LIST_ELEM, body + extra)


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
            extra = _nla(NFTA_SET_ELEM_USERDATA, _OPEN_INTERVAL_UDATA) if open_ended and op.add else b""
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


def _message(kind: int, flags: int, seq: int, family: int, res_id: int, body: bytes) -> bytes:
    payload = _NFGEN.pack(family, 0, socket.htons(res_id)) + body
    return _HDR.pack(_HDR.size + len(payload), kind, flags | NLM_F_REQUEST, seq, 0) + payload


def encode_batch(table: str, ops: Sequence[ElementOp], first_seq: int) -> tuple[bytes, int]:
    """The whole batch, and the sequence number of its last element message (the one acked).
    Sequence numbers: begin = first_seq, op i = first_seq + 1 + i, end = first_seq + 1 + len(ops)."""
    if not ops:
        raise ValueError("an element batch needs at least one op")
    parts = [_message(NFNL_MSG_BATCH_BEGIN, 0, first_seq, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b"")]
    table_attr = _nla(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
    last = first_seq
    for i, op in enumerate(ops):
        last = first_seq + 1 + i
        kind = (NFNL_SUBSYS_NFTABLES << 8) | (NFT_MSG_NEWSETELEM if op.add else NFT_MSG_DELSETELEM)
        flags = (NLM_F_CREATE if op.add else 0) | (NLM_F_ACK if i == len(ops) - 1 else 0)
        body = (
            table_attr
            + _nla(NFTA_SET_ELEM_LIST_SET, op.set_name.encode() + b"\0")
            + _nest(NFTA_SET_ELEM_LIST_ELEMENTS, encode_elements(op))
        )
        parts.append(_message(kind, flags, last, NFPROTO_INET, 0, body))
    parts.append(_message(NFNL_MSG_BATCH_END, 0, last + 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b""))
    return b"".join(parts), last


# -- the socket -----------------------------------------------------------------------------------------
def _error_text(data: bytes, body_at: int, end: int, flags: int) -> str | None:
    """The extended-ack message of an error reply, if the kernel gave one."""
    if not flags & NLM_F_ACK_TLVS:
        return None
    inner = body_at + 4
    if inner + _HDR.size > end:
        return None
    inner_len = _HDR.unpack_from(data, inner)[0]
    offset = inner + (_HDR.size if flags & NLM_F_CAPPED else _align(inner_len))
    while offset + _NLA.size <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size:
            break
        if kind & 0x3FFF == NLMSGERR_ATTR_MSG:
            return data[offset + _NLA.size : offset + length].split(b"\0", 1)[0].decode("utf-8", "replace")
        offset += _align(length)
    return None


class ElementSocket:
    """A NETLINK_NETFILTER socket in the network namespace of the thread that creates it."""

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
        try:
            for forced, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, forced, _BUFFER)
                except OSError:  # without CAP_NET_ADMIN: as much as the system allows
                    sock.setsockopt(socket.SOL_SOCKET, plain, _BUFFER)
            sock.bind((0, 0))
            sock.settimeout(_TIMEOUT_S)
            for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):
                    sock.setsockopt(SOL_NETLINK, option, 1)
            self._send_limit = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 64
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._lock = threading.Lock()
        self._seq = 0
        self._buffer = bytearray(_RECV_BUFFER)

    def close(self) -> None:
        self._sock.close()

    def fits(self, size: int) -> bool:
        return size <= self._send_limit

    def generation(self) -> int:
        """The ruleset generation of the namespace (every committed nftables transaction, by anyone,
        increments it)."""
        with self._lock:
            seq = self._seq + 1 if self._seq < 0x7FFF0000 else 1
            self._seq = seq
            kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
            self._sock.send(_message(kind, NLM_F_ACK, seq, socket.AF_UNSPEC, 0, b""))
            found: int | None = None
            view = memoryview(self._buffer)
            while True:
                try:
                    size = self._sock.recv_into(view)
                except TimeoutError:
                    raise OSError(errno.ETIMEDOUT, "no answer from the kernel to GETGEN") from None
                data = bytes(view[:size])
                offset = 0
                while offset + _HDR.size <= size:
                    length, msg_kind, _flags, msg_seq, _pid = _HDR.unpack_from(data, offset)
                    if length < _HDR.size:
                        break
                    body_at, end = offset + _HDR.size, min(offset + length, size)
                    offset += _align(length)
                    if msg_seq != seq:
                        continue
                    if msg_kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN:
                        attr_at = body_at + _NFGEN.size
                        while attr_at + _NLA.size <= end:
                            attr_len, attr_kind = _NLA.unpack_from(data, attr_at)
                            if attr_len < _NLA.size:
                                break
                            if attr_kind & 0x3FFF == NFTA_GEN_ID and attr_len >= 8:
                                found = _BE32.unpack_from(data, attr_at + _NLA.size)[0]
                            attr_at += _align(attr_len)
                    elif msg_kind == NLMSG_ERROR:
                        code = -_I32.unpack_from(data, body_at)[0]
                        if code != 0:
                            raise OSError(code, os.strerror(code))
                        if found is None:
                            raise OSError(errno.EPROTO, "GETGEN answered without a generation")
                        return found

    def apply(self, table: str, ops: Sequence[ElementOp]) -> None:
        """Send one batch and wait for the kernel's verdict (raises OSError; nothing changed then).
        Raises UnsupportedElement before sending anything when an element cannot be encoded, and
        OSError(EMSGSIZE) when the batch does not fit the socket."""
        with self._lock:
            first = self._seq + 1 if self._seq < 0x7FFF0000 else 1
            payload, last = encode_batch(table, ops, first)
            if not self.fits(len(payload)):
                raise OSError(errno.EMSGSIZE, f"element batch of {len(payload)} bytes: over the send buffer")
            self._seq = last + 1
            self._sock.send(payload)
            self._await(first, last)

    def _await(self, first: int, last: int) -> None:
        view = memoryview(self._buffer)
        while True:
            try:
                size = self._sock.recv_into(view)
            except TimeoutError:
                raise OSError(errno.ETIMEDOUT, "no answer from the kernel to an element batch") from None
            data = bytes(view[:size])
            offset = 0
            while offset + _HDR.size <= size:
                length, kind, msg_flags, seq, _pid = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    break
                end = min(offset + length, size)
                body_at = offset + _HDR.size
                offset += _align(length)
                if kind != NLMSG_ERROR or not first <= seq <= last + 1:
                    continue  # a late reply to an earlier batch (skipped by its sequence number)
                code = -_I32.unpack_from(data, body_at)[0]
                if code != 0:  # the batch was aborted; its other replies are skipped next time
                    text = _error_text(data, body_at, end, msg_flags)
                    raise OSError(code, os.strerror(code) + (f" ({text})" if text else ""))
                if seq == last:
                    return
