"""Status written back to the datastore: the agent's liveness report and per-endpoint up/down.

Keys (Felix's layout, reference §1.16 and §3.13; region = `no-region` or `region-<openstack_region>`):

    /calico/felix/v2/<region>/host/<host>/status                 {"time", "uptime", "first_update"}, leased
    /calico/felix/v2/<region>/host/<host>/last_reported_status   the same value, no lease
    /calico/felix/v2/<region>/host/<host>/workload/<orch>/<wl>/endpoint/<ep>   {"status": "up" | "down"}

`<orch>/<wl>/<ep>` are the WorkloadEndpoint's orchestrator, workload (or pod) and endpoint fields,
percent-encoded so that a '/' cannot split a segment; missing ones fall back to `unknown`, the
namespace/name and the name respectively.

Liveness: every `reporting_interval` seconds (0 disables) the agent puts the status key with a lease
of `reporting_ttl` seconds, so the key vanishes when the agent stops reporting; `first_update` is true
on the first report after start (Neutron's agent-liveness reads this).

Endpoint status (only when `endpoint_reporting_enabled`): `set_endpoint_status(id, status | None)`
queues a change; changes are written at most every `endpoint_reporting_delay` seconds (coalescing
flaps); None deletes the key. `sync_endpoint_status(known)` deletes status keys of this host that
belong to no known endpoint (left by a previous run) once the agent is in sync.

Threading: the setters are thread-safe; `tick()` does the datastore I/O and is called by one thread
(`start()` runs it when something is due: the next liveness report, queued endpoint changes after
their coalescing delay; a setter wakes it, and it never runs more often than every `period`, 0.2 s).
Datastore errors are logged, counted and retried on the next tick.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from tortie.common.errors import DatastoreError, LeaseExpired, NotFound
from tortie.dataplane.messages import WorkloadEndpointId, WorkloadEndpointUpdate
from tortie.datastore.api import Datastore

log = logging.getLogger(__name__)

ROOT = "/calico/felix/v2/"
UP = "up"
DOWN = "down"


def region_segment(region: str) -> str:
    return f"region-{region}" if region else "no-region"


def host_prefix(hostname: str, region: str = "") -> str:
    return f"{ROOT}{region_segment(region)}/host/{hostname}/"


def status_key(hostname: str, region: str = "") -> str:
    return host_prefix(hostname, region) + "status"


def last_reported_key(hostname: str, region: str = "") -> str:
    return host_prefix(hostname, region) + "last_reported_status"


def _segment(text: str) -> str:
    return quote(text, safe="")


@dataclass(frozen=True)
class EndpointStatusId:
    """The three identity parts of an endpoint status key."""

    orchestrator: str
    workload: str
    endpoint: str

    @classmethod
    def of(cls, msg: WorkloadEndpointUpdate) -> EndpointStatusId:
        wep: WorkloadEndpointId = msg.id
        return cls(msg.orchestrator or "unknown", msg.workload or f"{wep.namespace}/{wep.name}",
                   msg.endpoint or wep.name)

    def key(self, hostname: str, region: str = "") -> str:
        return (f"{host_prefix(hostname, region)}workload/{_segment(self.orchestrator)}/"
                f"{_segment(self.workload)}/endpoint/{_segment(self.endpoint)}")


def _rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusReporter:
    def __init__(
        self,
        ds: Datastore,
        hostname: str,
        *,
        region: str = "",
        reporting_interval: float = 30.0,
        reporting_ttl: float = 90.0,
        endpoint_reporting: bool = False,
        endpoint_delay: float = 1.0,
        on_error: Callable[[], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ds = ds
        self._host = hostname
        self._region = region
        self._interval = reporting_interval
        self._ttl = reporting_ttl
        self._endpoint_reporting = endpoint_reporting
        self._endpoint_delay = endpoint_delay
        self._on_error = on_error or (lambda: None)
        self._wall = wall_clock
        self._mono = monotonic
        self._started = monotonic()
        self._lease: int | None = None
        self._next_report = 0.0
        self._first = True
        self._lock = threading.Lock()
        self._pending: dict[EndpointStatusId, str | None] = {}
        self._written: dict[EndpointStatusId, str] = {}
        self._cleanup: frozenset[EndpointStatusId] | None = None
        self._next_endpoint_write = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()  # a setter queued work, or stop()
        self._thread: threading.Thread | None = None

    # -- inputs (any thread) -----------------------------------------------------------------------
    def set_endpoint_status(self, ep: EndpointStatusId, status: str | None) -> None:
        if not self._endpoint_reporting:
            return
        with self._lock:
            if status is not None and self._written.get(ep) == status:
                self._pending.pop(ep, None)
                return
            self._pending[ep] = status
        self._wake.set()

    def sync_endpoint_status(self, known: Iterable[EndpointStatusId]) -> None:
        """Request deletion of this host's status keys for endpoints not in `known` (next tick)."""
        if self._endpoint_reporting:
            with self._lock:
                self._cleanup = frozenset(known)
            self._wake.set()

    # -- I/O (one thread) --------------------------------------------------------------------------
    def tick(self) -> None:
        now = self._mono()
        try:
            if self._interval > 0 and now >= self._next_report:
                self._report()
                self._next_report = now + self._interval
            if self._endpoint_reporting and now >= self._next_endpoint_write and self._write_endpoints():
                self._next_endpoint_write = now + self._endpoint_delay
        except DatastoreError as exc:
            self._on_error()
            log.warning("status report failed; retrying host=%s error=%s", self._host, exc)

    def _report(self) -> None:
        value = {"time": _rfc3339(self._wall()), "uptime": round(self._mono() - self._started, 3),
                 "first_update": self._first}
        if self._lease is None:
            self._lease = self._ds.grant_lease(self._ttl)
        else:
            try:
                self._ds.refresh_lease(self._lease)
            except LeaseExpired:
                self._lease = self._ds.grant_lease(self._ttl)
        try:
            self._ds.put(status_key(self._host, self._region), value, lease=self._lease)
        except LeaseExpired:
            self._lease = self._ds.grant_lease(self._ttl)
            self._ds.put(status_key(self._host, self._region), value, lease=self._lease)
        self._ds.put(last_reported_key(self._host, self._region), value)
        if self._first:
            log.info("agent status reported host=%s ttl=%ss", self._host, self._ttl)
        self._first = False

    def _write_endpoints(self) -> bool:
        with self._lock:
            pending, self._pending = self._pending, {}
            cleanup, self._cleanup = self._cleanup, None
        try:
            for ep, status in pending.items():
                key = ep.key(self._host, self._region)
                if status is None:
                    if self._written.pop(ep, None) is not None:
                        self._delete(key)
                else:
                    self._ds.put(key, {"status": status})
                    self._written[ep] = status
            if cleanup is not None:
                self._delete_stale(cleanup)
        except DatastoreError:
            with self._lock:  # keep what was not written for the next tick (newer values win)
                for ep, status in pending.items():
                    self._pending.setdefault(ep, status)
                if cleanup is not None and self._cleanup is None:
                    self._cleanup = cleanup
            raise
        return bool(pending) or cleanup is not None

    def _delete(self, key: str) -> None:
        with contextlib.suppress(NotFound):
            self._ds.delete(key)

    def _delete_stale(self, known: frozenset[EndpointStatusId]) -> None:
        wanted = {ep.key(self._host, self._region) for ep in known}
        kvs, _rev = self._ds.list(host_prefix(self._host, self._region) + "workload/")
        for kv in kvs:
            if kv.key not in wanted:
                self._delete(kv.key)
                log.info("stale endpoint status removed key=%s", kv.key)

    # -- thread ------------------------------------------------------------------------------------
    def _sleep(self, period: float) -> float | None:
        """Seconds until the next tick is due (at least `period`); None: only when woken."""
        due: list[float] = []
        if self._interval > 0:
            due.append(self._next_report)
        with self._lock:
            if self._pending or self._cleanup is not None:
                due.append(self._next_endpoint_write)
        return None if not due else max(period, min(due) - self._mono())

    def start(self, period: float = 0.2) -> StatusReporter:
        def run() -> None:
            while True:
                self._wake.wait(self._sleep(period))
                if self._stop.is_set():
                    return
                self._wake.clear()
                self.tick()
                if self._stop.wait(period):  # one tick per period at most, however often woken
                    return

        self.tick()
        self._thread = threading.Thread(target=run, name="tortie-status", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def alive(self) -> bool:
        """False once the reporting thread has ended without being stopped (a bug: it catches
        datastore errors itself)."""
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()
