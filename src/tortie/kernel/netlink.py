"""Netlink (netlink(7)): the one place that frames messages and runs the request/ACK/dump exchange.

Every netlink family tortie speaks (NETLINK_ROUTE for links, addresses, routes, neighbours and FDB;
NETLINK_NETFILTER for nftables set elements) goes through `NetlinkSocket`. Wire format (kernel ABI):

    nlmsghdr  len:u32 type:u16 flags:u16 seq:u32 pid:u32                 16 bytes, then the body
    nlattr    len:u16 type:u16 payload, padded to 4 bytes; a nest is an attribute whose payload is
              attributes (type | NLA_F_NESTED)
    error     NLMSG_ERROR: code:i32 (0 = ACK, -errno), the request's header (all of it unless
              capped), then with NLM_F_ACK_TLVS the extended-ack attributes (NLMSGERR_ATTR_MSG text)

Inputs: message bodies built by the codecs (`rtnl_codec`, `nfnetlink`). Outputs: the data messages
of a reply as `(type, body)` pairs. Invariants:

* A socket belongs to the network namespace of the thread that created it, for life, whichever
  thread uses it later (see `netns`). One exchange at a time per socket (a lock): any thread may call.
* Every request carries NLM_F_ACK, so a call returns only after the kernel applied it, or raises
  `NetlinkError` (tortie.common.errors) with the errno and the kernel's own text. Nothing else
  escapes: socket failures and timeouts become `KernelError` / `NetlinkError` too.
* Replies are matched by sequence number; what is left of an earlier, abandoned exchange is skipped.
* A dump the kernel flags as interrupted (NLM_F_DUMP_INTR: the table changed meanwhile) is retried.
* `NETLINK_CAP_ACK` keeps error replies small and `NETLINK_EXT_ACK` adds the kernel's message
  ("Nexthop device is not up"); `NETLINK_GET_STRICT_CHK` (Linux >= 4.20) lets dumps be filtered by
  the kernel (`strict` says whether it was accepted).

Stdlib only, and only cheap modules (`_socket`, not `socket`: its enum wrapping of every constant
costs ~4 ms), because the CNI plugin imports this on every call.
"""

from __future__ import annotations

import _socket
import _thread
import contextlib
import errno as _errno
import os
import struct
from collections.abc import Iterable, Iterator

from tortie.common.errors import KernelError, NetlinkError

NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_REPLACE = 0x100  # in a request
NLM_F_CAPPED = 0x100  # in an error reply: the request is echoed as its header only
NLM_F_EXCL = 0x200
NLM_F_ACK_TLVS = 0x200  # in an error reply: extended-ack attributes follow
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
NLMSGERR_ATTR_MSG = 1

HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_BE16 = struct.Struct(">H")
_BE32 = struct.Struct(">I")

_MAX_SEQ = 0x7FFFFFFF
_RECV_BUFFER = 1 << 18  # > the 32 KiB a dump datagram can be
_TIMEOUT_S = 10.0
_DUMP_ATTEMPTS = 5

Message = tuple[int, bytes]
"""One data message of a reply: (nlmsg type, body after the header)."""


# -- framing --------------------------------------------------------------------------------------------
def align(length: int) -> int:
    return (length + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute: header, payload, padding to 4 bytes."""
    length = _ATTR.size + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (align(length) - length)


def nest(kind: int, *attrs: bytes) -> bytes:
    """A nested attribute holding `attrs` (flagged NLA_F_NESTED, as the kernel's strict parsers want)."""
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u8(kind: int, value: int) -> bytes:
    return attr(kind, bytes((value,)))


def attr_u16(kind: int, value: int) -> bytes:
    return attr(kind, _U16.pack(value))


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def attr_be16(kind: int, value: int) -> bytes:
    return attr(kind, _BE16.pack(value))


def attr_be32(kind: int, value: int) -> bytes:
    return attr(kind, _BE32.pack(value))


def parse_attrs(data: bytes, offset: int = 0, end: int | None = None) -> dict[int, bytes]:
    """The attributes in data[offset:end] by type (flag bits masked off; the last of a type wins).
    A truncated or malformed tail is ignored."""
    stop = len(data) if end is None else end
    found: dict[int, bytes] = {}
    while offset + _ATTR.size <= stop:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + _ATTR.size : offset + length]
        offset += align(length)
    return found


def get_u32(data: bytes | None) -> int | None:
    return _U32.unpack_from(data)[0] if data is not None and len(data) >= 4 else None


def get_u16(data: bytes | None) -> int | None:
    return _U16.unpack_from(data)[0] if data is not None and len(data) >= 2 else None


def get_be16(data: bytes | None) -> int | None:
    return _BE16.unpack_from(data)[0] if data is not None and len(data) >= 2 else None


def get_be32(data: bytes | None) -> int | None:
    return _BE32.unpack_from(data)[0] if data is not None and len(data) >= 4 else None


def get_str(data: bytes | None) -> str | None:
    return data.split(b"\0", 1)[0].decode("utf-8", "replace") if data is not None else None


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """One request message (NLM_F_REQUEST is always set)."""
    return HEADER.pack(HEADER.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body


def error_text(data: bytes, body_at: int, end: int, flags: int) -> str | None:
    """The extended-ack message of the error reply whose body starts at `body_at`, if any."""
    if not flags & NLM_F_ACK_TLVS:
        return None
    inner = body_at + 4  # after the error code: the request's header (and body unless capped)
    if inner + HEADER.size > end:
        return None
    inner_len = HEADER.unpack_from(data, inner)[0]
    start = inner + (HEADER.size if flags & NLM_F_CAPPED else align(inner_len))
    return get_str(parse_attrs(data, start, end).get(NLMSGERR_ATTR_MSG))


def reason(code: int, text: str | None) -> str:
    return os.strerror(code) + (f" ({text})" if text else "")


def _messages(data: bytes, size: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, sequence number, body start, body end) of each message in one datagram of
    `size` bytes; a truncated or malformed header ends the walk."""
    offset = 0
    while offset + HEADER.size <= size:
        length, kind, flags, seq, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            return
        yield kind, flags, seq, offset + HEADER.size, min(offset + length, size)
        offset += align(length)


class _Interrupted(Exception):
    """A dump the kernel flagged as inconsistent."""


# -- the socket -----------------------------------------------------------------------------------------
class NetlinkSocket:
    """One netlink socket of `protocol`; see the module docstring.

    `groups` subscribes to multicast groups (a notification socket: read it with `discard_pending`
    after `select` on `fileno()`; it is non-blocking). `buffer` sizes both socket buffers, beyond the
    system's limits when the process may (SO_*BUFFORCE, CAP_NET_ADMIN)."""

    def __init__(
        self, protocol: int, *, groups: int = 0, buffer: int = 1 << 20, strict: bool = False
    ) -> None:
        try:
            sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, protocol)
        except OSError as exc:
            raise KernelError(f"cannot open a netlink socket: {exc.strerror}", exc.errno) from None
        self.strict = False
        try:
            for forced, plain in ((SO_SNDBUFFORCE, _socket.SO_SNDBUF), (SO_RCVBUFFORCE, _socket.SO_RCVBUF)):
                try:
                    sock.setsockopt(_socket.SOL_SOCKET, forced, buffer)
                except OSError:  # not privileged: as much as the system allows
                    sock.setsockopt(_socket.SOL_SOCKET, plain, buffer)
            sock.bind((0, groups))
            for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):  # older kernels: full acks, no messages
                    sock.setsockopt(SOL_NETLINK, option, 1)
            if strict:
                with contextlib.suppress(OSError):
                    sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
                    self.strict = True
            if groups:
                sock.setblocking(False)
            else:
                sock.settimeout(_TIMEOUT_S)
            self.send_limit = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF) - 64
        except OSError as exc:
            sock.close()
            raise KernelError(f"cannot set up a netlink socket: {exc.strerror}", exc.errno) from None
        self._sock = sock
        self._lock = _thread.allocate_lock()
        self._seq = 0
        self._buffer = bytearray(_RECV_BUFFER)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> NetlinkSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- exchanges ------------------------------------------------------------------------------------
    def request(self, kind: int, flags: int, body: bytes, what: str) -> list[Message]:
        """Send one request (with NLM_F_ACK) and return the data messages that came before its ACK."""
        with self._lock:
            seq = self._reserve(1)
            self._send(message(kind, flags | NLM_F_ACK, seq, body), what)
            return self._receive(seq, seq, seq, what)

    def delete(self, kind: int, body: bytes, what: str, gone: tuple[int, ...]) -> bool:
        """A delete request: True when it deleted, False when the kernel answered one of the `gone`
        error numbers (the object was not there); other refusals raise `NetlinkError`."""
        try:
            self.request(kind, 0, body, what)
        except NetlinkError as exc:
            if exc.errno in gone:
                return False
            raise
        return True

    def dump(self, kind: int, body: bytes, what: str) -> list[Message]:
        """A dump request: every message up to NLMSG_DONE (retried when the kernel interrupts it)."""
        for attempt in range(_DUMP_ATTEMPTS):
            with self._lock:
                seq = self._reserve(1)
                self._send(message(kind, NLM_F_DUMP, seq, body), what)
                try:
                    return self._receive(seq, seq, seq, what)
                except _Interrupted:
                    if attempt == _DUMP_ATTEMPTS - 1:
                        raise NetlinkError(
                            what, _errno.EAGAIN, "dump kept being interrupted by concurrent changes"
                        ) from None
        raise AssertionError("unreachable")

    def batch(self, parts: Iterable[tuple[int, int, bytes]], acked: int, what: str) -> None:
        """Send several messages in one datagram (an nfnetlink batch) and wait for the kernel's verdict.

        `parts` are (type, flags, body) in order; message i gets sequence number first + i. Exactly one
        of them, at index `acked`, asks for an ACK (the caller puts NLM_F_ACK in its flags): the call
        returns at that ACK, or raises at the first error the kernel reports for any of them.
        Raises `NetlinkError(EMSGSIZE)` before sending when the batch does not fit the send buffer."""
        items = list(parts)
        with self._lock:
            first = self._reserve(len(items))
            payload = b"".join(
                message(kind, flags, first + i, body) for i, (kind, flags, body) in enumerate(items)
            )
            if len(payload) > self.send_limit:
                raise NetlinkError(
                    what, _errno.EMSGSIZE, f"a batch of {len(payload)} bytes is over the send buffer"
                )
            self._send(payload, what)
            self._receive(first, first + len(items) - 1, first + acked, what)

    def discard_pending(self) -> None:
        """Read and drop every queued notification (a subscribed socket); lost ones (ENOBUFS on
        overflow) are ignored: callers re-read the state rather than trusting notifications."""
        while True:
            try:
                self._sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == _errno.ENOBUFS:
                    continue
                raise KernelError(f"reading netlink notifications: {exc.strerror}", exc.errno) from None

    def set_blocking(self, blocking: bool) -> None:
        """Non-blocking: `receive` returns what is queued (a socket fed by the kernel: NFLOG)."""
        if blocking:
            self._sock.settimeout(_TIMEOUT_S)
        else:
            self._sock.setblocking(False)

    def receive(self, max_datagrams: int = 64) -> tuple[list[Message], int]:
        """What the kernel queued for this socket (events of subscribed groups, log packets), read
        without blocking: the data messages of up to `max_datagrams` datagrams, and how many times
        the kernel reported that messages were lost because the socket buffer was full (ENOBUFS).
        Error and done messages are skipped; nothing here waits for an ACK."""
        found: list[Message] = []
        lost = 0
        view = memoryview(self._buffer)
        for _ in range(max_datagrams):
            try:
                size = self._sock.recv_into(view)
            except (BlockingIOError, TimeoutError):
                break
            except OSError as exc:
                if exc.errno == _errno.ENOBUFS:
                    lost += 1
                    continue
                raise KernelError(f"reading netlink messages: {exc.strerror}", exc.errno) from None
            data = bytes(view[:size])
            for kind, _flags, _seq, body_at, end in _messages(data, size):
                if kind not in (NLMSG_ERROR, NLMSG_DONE):
                    found.append((kind, data[body_at:end]))
        return found, lost

    # -- internals ------------------------------------------------------------------------------------
    def _reserve(self, count: int) -> int:
        """The first of `count` fresh sequence numbers (wrapping well before the u32 limit)."""
        first = self._seq + 1
        if first + count - 1 > _MAX_SEQ:
            first = 1
        self._seq = first + count - 1
        return first

    def _send(self, payload: bytes, what: str) -> None:
        try:
            self._sock.send(payload)
        except OSError as exc:
            raise NetlinkError(what, exc.errno or _errno.EIO, exc.strerror or str(exc)) from None

    def _receive(self, first: int, last: int, final: int, what: str) -> list[Message]:
        """Collect the replies to sequence numbers first..last until the ACK or NLMSG_DONE of `final`;
        raise at the first error reply among them."""
        found: list[Message] = []
        interrupted = False
        view = memoryview(self._buffer)
        while True:
            try:
                size = self._sock.recv_into(view)
            except TimeoutError:
                raise NetlinkError(what, _errno.ETIMEDOUT, "no reply from the kernel") from None
            except OSError as exc:
                raise NetlinkError(what, exc.errno or _errno.EIO, exc.strerror or str(exc)) from None
            data = bytes(view[:size])
            for kind, flags, seq, body_at, end in _messages(data, size):
                if not first <= seq <= last:
                    continue  # a late reply to an earlier, abandoned exchange
                if flags & NLM_F_DUMP_INTR:
                    interrupted = True
                if kind == NLMSG_ERROR:
                    code = -_I32.unpack_from(data, body_at)[0]
                    if code > 0:
                        raise NetlinkError(what, code, reason(code, error_text(data, body_at, end, flags)))
                    if seq == final:
                        return found
                    continue
                if kind == NLMSG_DONE:
                    if end - body_at >= 4:
                        code = -_I32.unpack_from(data, body_at)[0]
                        if code > 0:
                            raise NetlinkError(what, code, reason(code, None))
                    if interrupted:
                        raise _Interrupted()
                    if seq == final:
                        return found
                    continue
                found.append((kind, data[body_at:end]))
