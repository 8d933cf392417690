"""The etcd watch stream behind `EtcdDatastore.watch`: one thread per watch, resumed across failures.

Input: a `WatchTransport` (endpoint choice, failover, opening a stream: `GatewayWatchTransport` posts
`/v3/watch` to the JSON gateway; `tortie.datastore._etcd_grpc.GrpcWatchSource` opens gRPC Watch calls,
also through `etcd grpc-proxy`), a key range and the revision after which to start. Output: a
`QueueWatch` the consumer reads. Both transports yield `WatchReply` records, so the logic is shared.

Invariants: the stream asks for `start_revision = last delivered + 1`; the cursor only advances after
a whole watch response was queued, and etcd never splits one revision across two responses, so a
re-opened stream (next endpoint after a failure, same endpoint after `idle_reconnect` seconds of
silence) neither loses nor repeats an event. Watches ask for progress notifications: an empty reply
(not `created`) with header revision R says every change up to R was sent, so the cursor moves to R
and a quiet watch does not fall behind compaction while its prefix is unchanged. A cancel carrying
`compact_revision` becomes one RESYNC (the contract's "list again"). If no endpoint accepts the watch
for `budget` seconds, the consumer gets `DatastoreUnavailable`. `close()` closes the stream so the
blocked read returns at once.

Also holds the small JSON helpers the gateway needs (base64 fields, int64-as-string fields, errors).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import urllib3.exceptions

from tortie.common.errors import DatastoreError, DatastoreUnavailable
from tortie.datastore._codec import decode_stored
from tortie.datastore._watchbase import QueueWatch
from tortie.datastore.api import EventType, JSONObject, WatchEvent

log = logging.getLogger(__name__)

GRPC_UNAUTHENTICATED = 16


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(data: str) -> bytes:
    return base64.b64decode(data)


def int_field(d: dict[str, Any], name: str) -> int:
    """etcd's JSON carries int64 as strings and omits zero values."""
    return int(d.get(name, 0) or 0)


def error_of(resp: requests.Response) -> tuple[int, str]:
    """(gRPC code, message) of a gateway error answer."""
    try:
        data = resp.json()
    except ValueError:
        return 0, f"HTTP {resp.status_code}: {resp.text[:200]}"
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict):  # streamed RPCs wrap the error
            return int(inner.get("grpc_code", 0)), str(inner.get("message", ""))
        return int(data.get("code", 0)), str(data.get("message") or data.get("error") or "")
    return 0, f"HTTP {resp.status_code}"


def is_idle_timeout(e: BaseException) -> bool:
    if isinstance(e, requests.exceptions.ReadTimeout):
        return True
    if isinstance(e, requests.exceptions.ConnectionError):
        reason: object = e.args[0] if e.args else None
        if isinstance(reason, urllib3.exceptions.MaxRetryError):
            reason = reason.reason
        return isinstance(reason, urllib3.exceptions.ReadTimeoutError)
    return False


@dataclass
class WatchReply:
    """One watch response, whatever the transport."""

    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    header_revision: int = 0
    events: list[WatchEvent] = field(default_factory=list)


class StreamLost(Exception):
    """A watch stream could not be opened or broke. `idle`: only the idle timeout expired (re-open on the
    same endpoint); `unauthenticated`: the token was refused (drop it, authenticate again)."""

    def __init__(self, message: str, *, idle: bool = False, unauthenticated: bool = False) -> None:
        super().__init__(message)
        self.idle = idle
        self.unauthenticated = unauthenticated


class WatchStream(Protocol):
    def replies(self) -> Iterator[WatchReply]: ...

    def close(self) -> None: ...


class WatchTransport(Protocol):
    """Where watch streams come from: endpoints with round-robin failover."""

    def pick(self) -> int: ...

    def advance(self, failed: int) -> None: ...

    def name(self, idx: int) -> str: ...

    def drop_token(self) -> None: ...

    def open(self, idx: int, key: bytes, range_end: bytes, start_revision: int) -> WatchStream: ...


class GatewayStreamOpener(Protocol):
    """What the gateway transport needs from the datastore (EtcdDatastore implements it)."""

    def _pick(self) -> int: ...

    def _advance(self, failed: int) -> None: ...

    def _endpoint_name(self, idx: int) -> str: ...

    def _drop_token(self) -> None: ...

    def _open_stream(self, idx: int, body: dict[str, Any]) -> requests.Response: ...


class GatewayWatchStream:
    """A `/v3/watch` response stream read as JSON lines."""

    def __init__(self, resp: requests.Response) -> None:
        self._resp = resp

    def replies(self) -> Iterator[WatchReply]:
        try:
            for line in self._resp.iter_lines():
                if not line:
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    raise StreamLost(str(msg["error"]))
                yield _reply_from_json(msg.get("result") or {})
        except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError, OSError) as e:
            raise StreamLost(str(e), idle=is_idle_timeout(e)) from e

    def close(self) -> None:
        shutdown = getattr(self._resp.raw, "shutdown", None)
        with contextlib.suppress(Exception):
            if shutdown is not None:
                shutdown()
            self._resp.close()


class GatewayWatchTransport:
    """Watch streams through etcd's JSON gateway, on the datastore's own endpoints."""

    def __init__(self, ds: GatewayStreamOpener) -> None:
        self._ds = ds

    def pick(self) -> int:
        return self._ds._pick()

    def advance(self, failed: int) -> None:
        self._ds._advance(failed)

    def name(self, idx: int) -> str:
        return self._ds._endpoint_name(idx)

    def drop_token(self) -> None:
        self._ds._drop_token()

    def open(self, idx: int, key: bytes, range_end: bytes, start_revision: int) -> WatchStream:
        create = {"key": b64(key), "range_end": b64(range_end), "start_revision": start_revision,
                  "prev_kv": True, "progress_notify": True}
        body = {"create_request": create}
        try:
            resp = self._ds._open_stream(idx, body)
        except (requests.RequestException, DatastoreError) as e:
            raise StreamLost(str(e)) from e
        if resp.status_code != 200:
            code, message = error_of(resp)
            resp.close()
            raise StreamLost(message, unauthenticated=code == GRPC_UNAUTHENTICATED)
        return GatewayWatchStream(resp)


def _reply_from_json(result: dict[str, Any]) -> WatchReply:
    return WatchReply(
        created=bool(result.get("created")),
        canceled=bool(result.get("canceled")),
        compact_revision=int_field(result, "compact_revision"),
        cancel_reason=str(result.get("cancel_reason", "")),
        header_revision=int_field(result.get("header") or {}, "revision"),
        events=[_event_from(ev) for ev in result.get("events") or []],
    )


class EtcdWatch(threading.Thread):
    """Feeds one QueueWatch from etcd watch streams, resuming after failures."""

    def __init__(
        self, transport: WatchTransport, key_range: tuple[bytes, bytes], after_revision: int, budget: float,
        on_close: Callable[[EtcdWatch], None],
    ) -> None:
        super().__init__(name=f"tortie-etcd-watch:{key_range[0]!r}", daemon=True)
        self._t = transport
        self._key, self._end = key_range
        self._budget = budget
        self._next = after_revision + 1
        self._stream: WatchStream | None = None
        self._stream_lock = threading.Lock()
        self._last_error = ""
        self._on_close = on_close
        self.queue = QueueWatch(on_close=self._interrupt)

    def _interrupt(self) -> None:
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        self._on_close(self)

    def run(self) -> None:
        failing_since: float | None = None
        backoff = 0.05
        while self.queue.active:
            try:
                idx = self._t.pick()
            except DatastoreError as e:
                self.queue.fail(e)
                return
            outcome = self._stream_once(idx)
            if outcome == "done":
                return
            if outcome == "ok":
                failing_since, backoff = None, 0.05
                continue
            self._t.advance(idx)
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > self._budget:
                self.queue.fail(
                    DatastoreUnavailable(
                        f"no etcd endpoint accepted the watch for {self._budget:g}s; "
                        f"last error: {self._last_error}"
                    )
                )
                return
            time.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    def _lost(self, idx: int, what: str, e: StreamLost) -> str:
        if e.unauthenticated:
            self._t.drop_token()
        self._last_error = f"{self._t.name(idx)}: {e}"
        log.info("etcd watch %s endpoint=%s error=%s", what, self._t.name(idx), e)
        return "failed"

    def _stream_once(self, idx: int) -> str:
        """One watch stream: "done" (watch over), "ok" (reopen here), or "failed" (try the next member)."""
        try:
            stream = self._t.open(idx, self._key, self._end, self._next)
        except StreamLost as e:
            return self._lost(idx, "connect failed", e)
        with self._stream_lock:
            self._stream = stream
        if not self.queue.active:
            stream.close()
            return "done"
        try:
            created = False
            for reply in stream.replies():
                if reply.canceled:
                    if reply.compact_revision:
                        self.queue.push(WatchEvent(EventType.RESYNC, "", None, reply.compact_revision))
                        return "done"
                    log.info("etcd watch canceled endpoint=%s reason=%s", self._t.name(idx),
                             reply.cancel_reason)
                    return "failed"
                if reply.created:
                    created = True
                    continue
                for ev in reply.events:
                    if not self.queue.push(ev):
                        return "done"
                if reply.events:
                    self._next = reply.events[-1].revision + 1
                elif created and reply.header_revision >= self._next:  # a progress notification
                    self._next = reply.header_revision + 1
            return "ok" if created else "failed"
        except StreamLost as e:
            if not self.queue.active:
                return "done"
            if e.idle:
                return "ok"
            return self._lost(idx, "stream lost", e)
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()


def _event_from(ev: dict[str, Any]) -> WatchEvent:
    kv = ev["kv"]
    key = unb64(kv["key"]).decode("utf-8", "replace")
    revision = int_field(kv, "mod_revision")
    prev = ev.get("prev_kv")
    prev_value: JSONObject | None = None
    if prev and prev.get("value"):
        decoded, prev_problem = decode_stored(unb64(prev["value"]))
        prev_value = None if prev_problem else decoded
    if ev.get("type") == "DELETE":
        return WatchEvent(EventType.DELETE, key, None, revision, prev_value)
    value, problem = decode_stored(unb64(kv.get("value", "")))
    return WatchEvent(EventType.PUT, key, value, revision, prev_value, problem)
