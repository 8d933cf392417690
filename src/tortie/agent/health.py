"""Health of the agent: per-component liveness/readiness, aggregated, served over HTTP.

Inputs: each long-lived loop of the agent (syncer, calc, dataplane) registers once and then calls
`report(name, live=..., ready=...)`. A component registered with a `timeout` must report at least
that often, else it counts as not live (a hung thread). Output: `HealthAggregator.summary()` and the
HTTP endpoints of `HealthServer`:

    GET /liveness   200 when every component is live, else 503
    GET /readiness  200 when every component is live and ready, else 503

Both return a small JSON body with each component's state. The server (stdlib `http.server`, one
daemon thread) listens on `health_host:health_port` (localhost:9099 by default; port 0 picks a free
one, see `HealthServer.port`). Thread-safe.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Component:
    timeout: float | None
    live: bool = True
    ready: bool = False
    detail: str = ""
    last_report: float = 0.0


@dataclass(frozen=True)
class HealthSummary:
    live: bool
    ready: bool
    components: dict[str, dict[str, Any]]


class HealthAggregator:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._components: dict[str, _Component] = {}

    def register(self, name: str, *, timeout: float | None = None, ready: bool = False) -> None:
        with self._lock:
            self._components[name] = _Component(timeout=timeout, ready=ready, last_report=self._clock())

    def report(self, name: str, *, live: bool = True, ready: bool | None = None, detail: str = "") -> None:
        with self._lock:
            comp = self._components[name]
            comp.live = live
            if ready is not None:
                comp.ready = ready
            comp.detail = detail
            comp.last_report = self._clock()

    def summary(self) -> HealthSummary:
        now = self._clock()
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            all_live = all_ready = True
            for name, comp in sorted(self._components.items()):
                stale = comp.timeout is not None and now - comp.last_report > comp.timeout
                live = comp.live and not stale
                ready = live and comp.ready
                all_live &= live
                all_ready &= ready
                entry: dict[str, Any] = {"live": live, "ready": ready}
                if stale:
                    entry["detail"] = f"no report for {now - comp.last_report:.1f}s (timeout {comp.timeout}s)"
                elif comp.detail:
                    entry["detail"] = comp.detail
                out[name] = entry
            return HealthSummary(all_live, all_ready, out)


class _Handler(BaseHTTPRequestHandler):
    aggregator: HealthAggregator  # set on the subclass made per server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        summary = self.aggregator.summary()
        if path == "/liveness":
            ok = summary.live
        elif path == "/readiness":
            ok = summary.ready
        else:
            self.send_error(404, "try /liveness or /readiness")
            return
        body = json.dumps({"ok": ok, "components": summary.components}, sort_keys=True).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health http " + format, *args)


class HealthServer:
    """Serves an aggregator over HTTP in a daemon thread; `stop()` shuts it down."""

    def __init__(self, aggregator: HealthAggregator, host: str, port: int) -> None:
        handler = type("HealthHandler", (_Handler,), {"aggregator": aggregator})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health server listening host=%s port=%d", self._server.server_address[0], self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
