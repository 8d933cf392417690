"""etcd watches over gRPC: the transport that lets tortie's watches go through `etcd grpc-proxy`.

Why: `etcd grpc-proxy` coalesces identical watches (thousands of agents watching `/calico/` become one
watch on the etcd cluster) but speaks only gRPC — it does not serve the HTTP/JSON gateway the rest of
the etcd client uses (checked against Debian's etcd 3.4: `/v3/kv/range` on the proxy is a 404). So a
watch can use this transport instead, to the etcd members themselves (they serve gRPC on the client
port) or to proxies (`watch_endpoints=`); reads and writes keep using the gateway.

Input: endpoints (`host:port`), TLS material, a token provider. Output: `GrpcWatchSource`, a
`tortie.datastore._etcd_watch.StreamSource` whose streams yield `WatchReply` records, so the watch
thread's resume/RESYNC logic is the same for both transports.

The messages (etcd `api/etcdserverpb/rpc.proto`, `api/mvccpb/kv.proto`) are encoded and decoded here
by hand — only the fields tortie uses — so no generated code or protobuf runtime is needed:

    WatchRequest        { create_request = 1 }
    WatchCreateRequest  { key = 1, range_end = 2, start_revision = 3, progress_notify = 4, prev_kv = 6 }
    WatchResponse       { header = 1, watch_id = 2, created = 3, canceled = 4, compact_revision = 5,
                          cancel_reason = 6, events = 11 }
    ResponseHeader      { revision = 3 }
    Event               { type = 1 (PUT 0, DELETE 1), kv = 2, prev_kv = 3 }
    KeyValue            { key = 1, create_revision = 2, mod_revision = 3, value = 5, lease = 6 }

The request stream stays open (half-closing it makes grpc-proxy end the watch); `close()` cancels the
call. `grpcio` is imported on first use only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tortie.common.errors import DatastoreError
from tortie.datastore._codec import decode_stored
from tortie.datastore._etcd_watch import StreamLost, WatchReply
from tortie.datastore.api import EventType, JSONObject, WatchEvent

_WATCH_METHOD = "/etcdserverpb.Watch/Watch"
_UNAUTHENTICATED = 16


# ----- protobuf wire format (varints and length-delimited fields only) -----

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negative numbers
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, wire_type: int, payload: bytes | int) -> bytes:
    tag = _varint((number << 3) | wire_type)
    if wire_type == 0:
        assert isinstance(payload, int)
        return tag + _varint(payload)
    assert isinstance(payload, bytes)
    return tag + _varint(len(payload)) + payload


def encode_watch_create(key: bytes, range_end: bytes, start_revision: int, *, prev_kv: bool,
                        progress_notify: bool = True) -> bytes:
    create = _field(1, 2, key) + _field(2, 2, range_end)
    if start_revision:
        create += _field(3, 0, start_revision)
    if progress_notify:
        create += _field(4, 0, 1)
    if prev_kv:
        create += _field(6, 0, 1)
    return _field(1, 2, create)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    """(value, index after it) of the base-128 varint at `data[i]`."""
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, int or bytes) for each field of one message; unknown wire types raise."""
    i, n = 0, len(data)
    while i < n:
        tag, i = _read_varint(data, i)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0 or wire_type == 2:
            value, i = _read_varint(data, i)
            if wire_type == 0:
                yield number, value - (1 << 64) if value >= 1 << 63 else value
            else:
                yield number, data[i : i + value]
                i += value
        elif wire_type == 1:
            i += 8
        elif wire_type == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")


def _int(fields: dict[int, int | bytes], number: int) -> int:
    v = fields.get(number, 0)
    return v if isinstance(v, int) else 0


def _bytes(fields: dict[int, int | bytes], number: int) -> bytes | None:
    v = fields.get(number)
    return v if isinstance(v, bytes) else None


def _key_value(data: bytes) -> tuple[bytes, bytes, int]:
    """(key, value, mod revision) of an mvccpb.KeyValue (absent fields: empty, 0)."""
    kv = dict(_fields(data))
    return _bytes(kv, 1) or b"", _bytes(kv, 5) or b"", _int(kv, 3)


def _event(data: bytes) -> WatchEvent:
    ev = dict(_fields(data))
    kind, prev = _int(ev, 1), _bytes(ev, 3)
    key, value, revision = _key_value(_bytes(ev, 2) or b"")
    prev_value: JSONObject | None = None
    if prev is not None:
        _, prev_text, _ = _key_value(prev)
        if prev_text:
            decoded, problem = decode_stored(prev_text)
            prev_value = None if problem else decoded
    name = key.decode("utf-8", "replace")
    if kind == 1:
        return WatchEvent(EventType.DELETE, name, None, revision, prev_value)
    new, problem = decode_stored(value)
    return WatchEvent(EventType.PUT, name, new, revision, prev_value, problem)


def decode_watch_response(data: bytes) -> WatchReply:
    reply = WatchReply()
    for number, v in _fields(data):
        if number == 1 and isinstance(v, bytes):
            for n, hv in _fields(v):
                if n == 3 and isinstance(hv, int):
                    reply.header_revision = hv
        elif number == 3:
            reply.created = bool(v)
        elif number == 4:
            reply.canceled = bool(v)
        elif number == 5 and isinstance(v, int):
            reply.compact_revision = v
        elif number == 6 and isinstance(v, bytes):
            reply.cancel_reason = v.decode("utf-8", "replace")
        elif number == 11 and isinstance(v, bytes):
            reply.events.append(_event(v))
    return reply


# ----- the transport -----

class GrpcWatchStream:
    """One open Watch call; `replies()` raises `StreamLost` when the call fails."""

    def __init__(self, call: Any, stop: threading.Event, grpc: Any) -> None:
        self._call = call
        self._stop = stop
        self._grpc = grpc

    def replies(self) -> Iterator[WatchReply]:
        try:
            yield from self._call
        except self._grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            raise StreamLost(
                f"{code.name if code else 'error'}: {e.details() if hasattr(e, 'details') else e}",
                unauthenticated=code is not None and code.value[0] == _UNAUTHENTICATED,
            ) from e

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._call.cancel()


class GrpcWatchSource:
    """Opens watch streams over gRPC on `endpoints`, failing over round-robin (a `StreamSource`)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ca_cert: str | None,
        cert: str | None,
        key: str | None,
        token: Callable[[], str | None],
        drop_token: Callable[[], None],
    ) -> None:
        import grpc  # type: ignore[import-untyped]  # a compiled extension: imported when watches need it

        self._grpc = grpc
        self._names = list(endpoints)
        self._token = token
        self._drop = drop_token
        # A connection of its own per datastore object (gRPC would share one per target in a process):
        # a client's watches then fail over independently of other clients in the same process.
        options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000),
                   ("grpc.max_receive_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1)]
        if ca_cert or cert:
            def read(path: str | None) -> bytes | None:
                if path is None:
                    return None
                with open(path, "rb") as fh:
                    return fh.read()

            creds = grpc.ssl_channel_credentials(read(ca_cert), read(key), read(cert))
            self._channels = [grpc.secure_channel(e, creds, options=options) for e in self._names]
        else:
            self._channels = [grpc.insecure_channel(e, options=options) for e in self._names]
        self._methods = [
            ch.stream_stream(
                _WATCH_METHOD, request_serializer=bytes, response_deserializer=decode_watch_response
            )
            for ch in self._channels
        ]
        self._lock = threading.Lock()
        self._current = 0

    def pick(self) -> int:
        with self._lock:
            return self._current

    def advance(self, failed: int) -> None:
        with self._lock:
            if self._current == failed:
                self._current = (failed + 1) % len(self._names)

    def name(self, idx: int) -> str:
        return f"grpc://{self._names[idx]}"

    def drop_token(self) -> None:
        self._drop()

    def open(self, idx: int, key: bytes, range_end: bytes, start_revision: int) -> GrpcWatchStream:
        stop = threading.Event()
        request = encode_watch_create(key, range_end, start_revision, prev_kv=True)

        def requests() -> Iterator[bytes]:
            yield request
            stop.wait()  # keep the request side open: a half-close ends the watch on grpc-proxy

        metadata = [("hasleader", "true")]
        try:
            token = self._token()
        except DatastoreError as e:
            raise StreamLost(str(e)) from e
        if token:
            metadata.append(("token", token))
        # No wait_for_ready: a member that cannot be reached fails the call at once (UNAVAILABLE),
        # which the watch thread turns into a move to the next endpoint.
        call = self._methods[idx](requests(), metadata=metadata)
        return GrpcWatchStream(call, stop, self._grpc)

    def close(self) -> None:
        for ch in self._channels:
            with contextlib.suppress(Exception):
                ch.close()
