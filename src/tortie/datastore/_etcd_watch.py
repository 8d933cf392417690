"""The etcd watch stream behind `EtcdDatastore.watch`: one thread per watch, resumed across failures.

Input: a `StreamSource` (the datastore: endpoint choice, failover, opening `/v3/watch` streams), a key
range and the revision after which to start. Output: a `QueueWatch` the consumer reads.

Invariants: the stream asks for `start_revision = last delivered + 1`; the cursor only advances after
a whole watch response was queued, and etcd never splits one revision across two responses, so a
re-opened stream (next endpoint after a failure, same endpoint after `idle_reconnect` seconds of
silence) neither loses nor repeats an event. A cancel carrying `compact_revision` becomes one RESYNC.
If no endpoint accepts the watch for `budget` seconds, the consumer gets `DatastoreUnavailable`.
`close()` shuts the socket down so the blocked read returns at once.

Also holds the small JSON helpers the gateway needs (base64 fields, int64-as-string fields, errors).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
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


class StreamSource(Protocol):
    """What a watch needs from its datastore (EtcdDatastore implements it)."""

    def _pick(self) -> int: ...

    def _advance(self, failed: int) -> None: ...

    def _open_stream(self, idx: int, body: dict[str, Any]) -> requests.Response: ...

    def _endpoint_name(self, idx: int) -> str: ...

    def _drop_token(self) -> None: ...

    def _forget_watch(self, w: EtcdWatch) -> None: ...


class EtcdWatch(threading.Thread):
    """Feeds one QueueWatch from etcd watch streams, resuming after failures."""

    def __init__(
        self, source: StreamSource, key_range: tuple[bytes, bytes], after_revision: int, budget: float
    ) -> None:
        super().__init__(name=f"tortie-etcd-watch:{key_range[0]!r}", daemon=True)
        self._ds = source
        self._key, self._end = key_range
        self._budget = budget
        self._next = after_revision + 1
        self._resp: requests.Response | None = None
        self._resp_lock = threading.Lock()
        self._last_error = ""
        self.queue = QueueWatch(on_close=self._interrupt)

    def _interrupt(self) -> None:
        with self._resp_lock:
            resp = self._resp
        if resp is not None:
            shutdown = getattr(resp.raw, "shutdown", None)
            with contextlib.suppress(Exception):
                if shutdown is not None:
                    shutdown()
                resp.close()
        self._ds._forget_watch(self)

    def run(self) -> None:
        failing_since: float | None = None
        backoff = 0.05
        while self.queue.active:
            try:
                idx = self._ds._pick()
            except DatastoreError as e:
                self.queue.fail(e)
                return
            outcome = self._stream_once(idx)
            if outcome == "done":
                return
            if outcome == "ok":
                failing_since, backoff = None, 0.05
                continue
            if outcome == "failed":
                self._ds._advance(idx)
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

    def _stream_once(self, idx: int) -> str:
        """One watch stream: "done" (watch over), "ok" (reopen here), or "failed" (try the next member)."""
        body = {
            "create_request": {
                "key": b64(self._key),
                "range_end": b64(self._end),
                "start_revision": self._next,
                "prev_kv": True,
            }
        }
        try:
            resp = self._ds._open_stream(idx, body)
        except (requests.RequestException, DatastoreError) as e:
            self._last_error = f"{self._ds._endpoint_name(idx)}: {e}"
            log.info("etcd watch connect failed endpoint=%s error=%s", self._ds._endpoint_name(idx), e)
            return "failed"
        with self._resp_lock:
            self._resp = resp
        if not self.queue.active:
            resp.close()
            return "done"
        try:
            if resp.status_code != 200:
                code, message = error_of(resp)
                self._last_error = f"{self._ds._endpoint_name(idx)}: {message}"
                if code == GRPC_UNAUTHENTICATED:
                    self._ds._drop_token()
                log.info("etcd watch refused endpoint=%s error=%s", self._ds._endpoint_name(idx), message)
                return "failed"
            created = False
            for line in resp.iter_lines():
                if not line:
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    self._last_error = f"{self._ds._endpoint_name(idx)}: {msg['error']}"
                    log.info("etcd watch stream error endpoint=%s error=%s", self._ds._endpoint_name(idx),
                             msg["error"])
                    return "failed"
                result = msg.get("result") or {}
                if result.get("created"):
                    created = True
                if result.get("canceled"):
                    compact = int_field(result, "compact_revision")
                    if compact:
                        self.queue.push(WatchEvent(EventType.RESYNC, "", None, compact))
                        return "done"
                    log.info("etcd watch canceled endpoint=%s reason=%s", self._ds._endpoint_name(idx),
                             result.get("cancel_reason", ""))
                    return "failed"
                events = result.get("events") or []
                for ev in events:
                    if not self.queue.push(_event_from(ev)):
                        return "done"
                if events:
                    self._next = int_field(events[-1]["kv"], "mod_revision") + 1
            return "ok" if created else "failed"
        except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError, OSError) as e:
            if not self.queue.active:
                return "done"
            if is_idle_timeout(e):
                return "ok"
            self._last_error = f"{self._ds._endpoint_name(idx)}: {e}"
            log.info("etcd watch stream lost endpoint=%s error=%s", self._ds._endpoint_name(idx), e)
            return "failed"
        finally:
            with self._resp_lock:
                self._resp = None
            with contextlib.suppress(Exception):
                resp.close()


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
