"""Prometheus metrics of the agent (prometheus-client), in a registry of their own.

Families (names modelled on Felix's, reference §3.13):

    tortie_agent_apply_seconds                  histogram  duration of one dataplane apply
    tortie_agent_datastore_to_kernel_seconds    histogram  datastore event received -> kernel programmed
    tortie_agent_local_endpoints                gauge      WorkloadEndpoints of this host the dataplane holds
    tortie_agent_routes{kind}                   gauge      routes wanted: kind=endpoint (/32,/128) | block |
                                                           remote_block_vxlan | remote_block_native
    tortie_agent_resyncs_total                  counter    datastore (re)syncs started (first one included)
    tortie_agent_errors_total{kind}             counter    errors by kind: apply, datastore, calc, status
    tortie_agent_in_sync                        gauge      1 once the first snapshot reached the kernel

Each `AgentMetrics` owns a fresh `CollectorRegistry`, so several agents (tests) can live in one process.
`serve(host, port)` exposes /metrics over HTTP (port 0 picks a free one) until `stop()`.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.apply_seconds = Histogram("tortie_agent_apply_seconds", "Duration of one dataplane apply.",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.datastore_to_kernel_seconds = Histogram(
            "tortie_agent_datastore_to_kernel_seconds",
            "Time from receiving a datastore event to the kernel being programmed for it.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.local_endpoints = Gauge("tortie_agent_local_endpoints",
                                     "WorkloadEndpoints of this host sent to the dataplane.", registry=r)
        self.routes = Gauge("tortie_agent_routes", "Routes the agent wants in the kernel, by kind.", ["kind"],
                            registry=r)
        self.resyncs = Counter("tortie_agent_resyncs", "Datastore syncs started (the first included).",
                               registry=r)
        self.errors = Counter("tortie_agent_errors", "Errors by kind.", ["kind"], registry=r)
        self.in_sync = Gauge("tortie_agent_in_sync", "1 once the first snapshot reached the kernel.",
                             registry=r)
        for kind in ("endpoint", "floating_ip", "block", "remote_block_vxlan", "remote_block_native"):
            self.routes.labels(kind=kind).set(0)
        for kind in ("apply", "datastore", "calc", "status"):
            self.errors.labels(kind=kind)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def render(self) -> bytes:
        """The exposition text (what /metrics returns)."""
        return bytes(generate_latest(self.registry))

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP server; returns the bound port."""
        self._server, self._thread = start_http_server(port, addr=host or "0.0.0.0", registry=self.registry)
        bound = int(self._server.server_port)
        log.info("metrics server listening host=%s port=%d", host or "0.0.0.0", bound)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
