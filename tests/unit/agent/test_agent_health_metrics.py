"""Health aggregation and its HTTP endpoints; Prometheus metrics exposition."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tortie.agent.health import HealthAggregator, HealthServer
from tortie.agent.metrics import AgentMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}") if exc.code != 404 else {}


def test_ready_only_when_every_component_is_ready() -> None:
    health = HealthAggregator(FakeClock())
    health.register("syncer")
    health.register("dataplane")
    assert health.summary().live and not health.summary().ready
    health.report("syncer", ready=True)
    assert not health.summary().ready
    health.report("dataplane", ready=True)
    assert health.summary().ready
    health.report("syncer", live=True, ready=False, detail="datastore unreachable")
    summary = health.summary()
    assert summary.live and not summary.ready
    assert summary.components["syncer"]["detail"] == "datastore unreachable"


def test_a_component_that_stops_reporting_is_not_live() -> None:
    clock = FakeClock()
    health = HealthAggregator(clock)
    health.register("calc", timeout=10.0, ready=True)
    clock.now += 9
    assert health.summary().live
    clock.now += 2
    summary = health.summary()
    assert not summary.live and not summary.ready
    health.report("calc")
    assert health.summary().live


def test_http_endpoints_follow_the_aggregate() -> None:
    health = HealthAggregator()
    health.register("dataplane")
    server = HealthServer(health, "127.0.0.1", 0).start()
    try:
        assert _get(server.port, "/liveness")[0] == 200
        status, body = _get(server.port, "/readiness")
        assert status == 503 and body["ok"] is False
        health.report("dataplane", ready=True)
        assert _get(server.port, "/readiness")[0] == 200
        health.report("dataplane", live=False)
        assert _get(server.port, "/liveness")[0] == 503
        assert _get(server.port, "/nothing")[0] == 404
    finally:
        server.stop()


def test_metrics_exposition_and_http() -> None:
    metrics = AgentMetrics()
    metrics.apply_seconds.observe(0.003)
    metrics.local_endpoints.set(7)
    metrics.routes.labels(kind="endpoint").set(9)
    metrics.resyncs.inc()
    metrics.errors.labels(kind="apply").inc()
    text = metrics.render().decode()
    assert "tortie_agent_apply_seconds_count 1.0" in text
    assert "tortie_agent_local_endpoints 7.0" in text
    assert 'tortie_agent_routes{kind="endpoint"} 9.0' in text
    assert "tortie_agent_resyncs_total 1.0" in text
    assert 'tortie_agent_errors_total{kind="apply"} 1.0' in text
    assert "tortie_agent_datastore_to_kernel_seconds_bucket" in text
    port = metrics.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"tortie_agent_local_endpoints 7.0" in resp.read()
    finally:
        metrics.stop()
    assert AgentMetrics().render().count(b"tortie_agent_local_endpoints 0.0") == 1  # separate registries
