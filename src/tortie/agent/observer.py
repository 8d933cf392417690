"""Bridges from the dataplane loop to metrics, health and endpoint status (all on the loop thread).

* `AgentObserver` (a `DataplaneObserver`): apply durations, apply errors, route and endpoint gauges,
  readiness after the first apply, and the datastore-to-kernel latency.
* `ReceiptTracker`: the datastore-to-kernel latency. The calc thread records, for every flush that
  sent messages, when it sent them and when the oldest datastore event behind them was received
  (`flushed(sent_at, received_at)`). When the loop drains a batch (`on_batch`) the flushes sent up to
  then are attributed to it; when that batch reaches the kernel (`on_programmed`) the latency is
  now - oldest receipt. A batch that needs no kernel work (e.g. an endpoint whose interface does not
  exist yet) is dropped rather than counted later.
* `EndpointStatusBridge`: remembers each local endpoint's status identity (from the messages the
  calc sends) so the endpoint manager's `status_callback(id, state, endpoint)` can be forwarded to
  the `StatusReporter` (datastore keys), and feeds the endpoint status files the CNI plugin waits
  for (`tortie.dataplane.endpoint_status`), flushed after each apply round that fully succeeded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from tortie.agent.health import HealthAggregator
from tortie.agent.metrics import AgentMetrics
from tortie.agent.status import EndpointStatusId, StatusReporter
from tortie.dataplane.endpoint_status import EndpointStatusFiles, record
from tortie.dataplane.loop import DataplaneObserver
from tortie.dataplane.messages import WorkloadEndpointId, WorkloadEndpointUpdate

log = logging.getLogger(__name__)


class ReceiptTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._flushes: deque[tuple[float, float]] = deque()  # (sent_at, oldest received_at)
        self._drained: float | None = None

    def flushed(self, sent_at: float, received_at: float) -> None:
        with self._lock:
            self._flushes.append((sent_at, received_at))

    def drained(self, work_pending: bool) -> None:
        now = self._clock()
        with self._lock:
            oldest = self._drained
            while self._flushes and self._flushes[0][0] <= now:
                received = self._flushes.popleft()[1]
                oldest = received if oldest is None else min(oldest, received)
            self._drained = oldest if work_pending else None

    def programmed(self) -> float | None:
        """Seconds from the oldest attributed receipt to now, or None; resets the attribution."""
        now = self._clock()
        with self._lock:
            oldest, self._drained = self._drained, None
        return None if oldest is None else now - oldest


class AgentObserver(DataplaneObserver):
    def __init__(
        self,
        metrics: AgentMetrics,
        health: HealthAggregator,
        receipts: ReceiptTracker,
        needs_apply: Callable[[], bool],
        on_first_apply: Callable[[], None] = lambda: None,
        on_applied: Callable[[], None] = lambda: None,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._receipts = receipts
        self._needs_apply = needs_apply
        self._on_first_apply = on_first_apply
        self._on_applied = on_applied

    def on_batch(self, messages: int, link_events: int) -> None:
        self._receipts.drained(self._needs_apply())

    def on_apply(self, manager: str, seconds: float, error: BaseException | None) -> None:
        self._metrics.apply_seconds.observe(seconds)
        if error is not None:
            self._metrics.errors.labels(kind="apply").inc()

    def on_applied(self) -> None:
        self._on_applied()

    def on_first_apply(self, seconds: float) -> None:
        self._record_latency()
        self._metrics.in_sync.set(1)
        self._health.report("dataplane", ready=True)
        log.info("agent in sync: kernel programmed seconds_after_in_sync=%.3f", seconds)
        self._on_first_apply()

    def on_programmed(self, latency: float) -> None:
        self._record_latency()

    def _record_latency(self) -> None:
        latency = self._receipts.programmed()
        if latency is not None:
            self._metrics.datastore_to_kernel_seconds.observe(latency)

    def on_stats(self, stats: Mapping[str, int]) -> None:
        self._metrics.routes.labels(kind="endpoint").set(stats.get("endpoint_routes", 0))
        self._metrics.routes.labels(kind="floating_ip").set(stats.get("floating_ip_routes", 0))
        self._metrics.routes.labels(kind="block").set(stats.get("block_routes", 0))
        self._metrics.routes.labels(kind="remote_block_vxlan").set(stats.get("vxlan_block_routes", 0))
        self._metrics.routes.labels(kind="remote_block_native").set(stats.get("native_block_routes", 0))
        self._metrics.local_endpoints.set(stats.get("local_endpoints", 0))


class EndpointStatusBridge:
    def __init__(self, reporter: StatusReporter | None, files: EndpointStatusFiles | None = None) -> None:
        self._reporter = reporter
        self._files = files
        self._lock = threading.Lock()
        self._ids: dict[WorkloadEndpointId, EndpointStatusId] = {}

    def on_endpoint_update(self, msg: WorkloadEndpointUpdate) -> None:
        """Calc thread: an endpoint update is being sent to the dataplane."""
        status_id = EndpointStatusId.of(msg)
        with self._lock:
            old = self._ids.get(msg.id)
            self._ids[msg.id] = status_id
        if old is not None and old != status_id and self._reporter is not None:
            self._reporter.set_endpoint_status(old, None)

    def on_status(
        self, wep_id: WorkloadEndpointId, state: str | None, endpoint: WorkloadEndpointUpdate | None
    ) -> None:
        """Loop thread: the endpoint manager's status callback."""
        if self._files is not None:
            content = None
            if state == "up" and endpoint is not None:
                ep = endpoint
                content = record(ep.interface_name, ep.mac, ep.ipv4_nets, ep.ipv6_nets)
            self._files.on_status(wep_id.namespace, wep_id.name, content)
        with self._lock:
            status_id = self._ids.get(wep_id) if state is not None else self._ids.pop(wep_id, None)
        if status_id is not None and self._reporter is not None:
            self._reporter.set_endpoint_status(status_id, state)

    def flush(self) -> None:
        """Loop thread, after an apply round that fully succeeded: write the status files."""
        if self._files is not None:
            self._files.flush()

    def sync(self) -> None:
        """After the first apply: delete status keys and files of endpoints this host no longer has."""
        with self._lock:
            known = list(self._ids.values())
        if self._reporter is not None:
            self._reporter.sync_endpoint_status(known)
        if self._files is not None:
            self._files.sync()
