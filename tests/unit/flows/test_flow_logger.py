"""FlowLogger without the kernel: the tee from the calc thread, and failures that must not spread."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from tortie.datastore import syncer as sync
from tortie.flows.collector import FlowLogger
from tortie.flows.metrics import flow_metrics
from tortie.flows.pending import PendingPolicy
from tortie.flows.store import FlowStore
from tortie.kernel.conntrack import CtFlow, FlowTuple
from tortie.testing.policy_world import key_of, wep


def logger(directory: Path) -> tuple[FlowLogger, CollectorRegistry]:
    registry = CollectorRegistry()
    pending = PendingPolicy("h1", lambda: [])
    flows = FlowLogger("h1", FlowStore(directory), flow_metrics(registry), pending, flush_interval=1.0)
    return flows, registry


def test_records_flow_to_the_store_and_metrics(tmp_path: Path) -> None:
    flows, registry = logger(tmp_path / "store")
    a = wep("a", "10.0.0.1/32", labels={"app": "a"})
    flows.on_event(sync.Update(key_of(a), a, 3))
    flows.catalog.local_ips = frozenset({"10.0.0.1"})
    flows.on_event(sync.Update("/calico/resources/v3/projectcalico.org/workloadendpoints/x", {"spec": 7}, 4))
    table = [CtFlow(1, FlowTuple(6, "192.0.2.9", "10.0.0.1", 5, 80), 2, 120, 2, 120)]
    assert flows.flush(table) == []  # no log message for it yet: reported one flush later
    [record] = flows.flush(table)
    assert record.destination.name == "a" and record.destination.labels == {"app": "a"}
    text = generate_latest(registry).decode()
    assert "tortie_flow_log_records_total 1.0" in text and "tortie_flow_log_up 1.0" in text
    assert flow_metrics(registry) is flows.metrics  # a restarted pipeline reuses the metrics


def test_an_unwritable_store_drops_records_and_says_so(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    flows, registry = logger(blocked / "store")
    flows.catalog.local_ips = frozenset({"10.0.0.1"})
    table = [CtFlow(1, FlowTuple(6, "192.0.2.9", "10.0.0.1", 5, 80), 2, 120, 2, 120)]
    records = flows.flush(table) + flows.flush(table)
    assert len(records) == 1  # produced, then dropped: no exception reaches the caller
    text = generate_latest(registry).decode()
    assert 'tortie_flow_log_records_dropped_total{reason="store"} 1.0' in text
    assert "tortie_flow_log_up 0.0" in text


def test_staged_keys_stay_away_from_the_calc() -> None:
    assert FlowLogger.is_staged("/calico/resources/v3/projectcalico.org/stagednetworkpolicies/ns/x")
    assert not FlowLogger.is_staged("/calico/resources/v3/projectcalico.org/networkpolicies/ns/x")
