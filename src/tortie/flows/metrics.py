"""Prometheus metrics of flow logging, in the agent's registry (docs/reference/metrics.md).

    tortie_flow_log_up                                      1 while the flow logger runs and writes
    tortie_flow_log_records_total                           records written to the store
    tortie_flow_log_records_dropped_total{reason}           records lost (reason=store: not writable)
    tortie_flow_log_lost_messages_total{source}             kernel messages lost in a full socket buffer
                                                            (source=nflog|conntrack: over the read rate)
    tortie_flow_log_errors_total                            flow logger failures (each one retried)
    tortie_flow_log_store_bytes                             size of the local store
    tortie_flow_log_live_flows                              connections the logger tracks
    tortie_flow_log_flush_seconds                           duration of one flush (histogram)
    tortie_policy_rule_packets_total{tier,policy,rule,action}   packets of the flows each rule decided
    tortie_policy_rule_bytes_total{tier,policy,rule,action}     bytes of those flows (both directions)
    tortie_endpoint_denied_packets_total{endpoint}          denied packets logged, by local endpoint

Per-rule counts come from the flow records: for allowed flows conntrack's packet and byte counters
(both directions) of every connection the rule decided or passed; for denied flows the packets the
kernel logged, which its rate limit (`flow_logs_deny_rate` per rule) caps.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tortie.flows.records import FlowRecord

_RULE_LABELS = ("tier", "policy", "rule", "action")


class FlowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.up = Gauge("tortie_flow_log_up", "1 while the flow logger runs and its store is writable.",
                        registry=r)
        self.records = Counter("tortie_flow_log_records", "Flow records written to the local store.",
                               registry=r)
        self.dropped = Counter("tortie_flow_log_records_dropped", "Flow records lost, by reason.", ["reason"],
                               registry=r)
        self.lost = Counter("tortie_flow_log_lost_messages",
                            "Kernel messages lost because a socket buffer was full, by source.", ["source"],
                            registry=r)
        self.errors = Counter("tortie_flow_log_errors", "Flow logger failures (each one retried).",
                              registry=r)
        self.store_bytes = Gauge("tortie_flow_log_store_bytes", "Bytes in the local flow store.", registry=r)
        self.live_flows = Gauge("tortie_flow_log_live_flows", "Connections the flow logger tracks.",
                                registry=r)
        self.flush_seconds = Histogram("tortie_flow_log_flush_seconds", "Duration of one flush.",
                                       buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
                                       registry=r)
        self.rule_packets = Counter("tortie_policy_rule_packets", "Packets of the flows each policy rule "
                                    "decided.", _RULE_LABELS, registry=r)
        self.rule_bytes = Counter("tortie_policy_rule_bytes", "Bytes of the flows each policy rule decided.",
                                  _RULE_LABELS, registry=r)
        self.denied = Counter("tortie_endpoint_denied_packets", "Denied packets logged, by local endpoint.",
                              ["endpoint"], registry=r)
        for reason in ("store",):
            self.dropped.labels(reason=reason)
        for source in ("nflog", "conntrack"):
            self.lost.labels(source=source)

    def observe(self, records: list[FlowRecord], aggregator: Any, store: Any, seconds: float) -> None:
        self.flush_seconds.observe(seconds)
        self.live_flows.set(len(aggregator))
        with contextlib.suppress(OSError):
            self.store_bytes.set(store.size())
        for record in records:
            packets = record.packets.src_to_dst + record.packets.dst_to_src
            octets = record.bytes.src_to_dst + record.bytes.dst_to_src
            for hit in record.policies:
                parts = hit.split("|")
                if len(parts) != 4:
                    continue
                labels = dict(zip(_RULE_LABELS, parts, strict=True))
                self.rule_packets.labels(**labels).inc(packets)
                self.rule_bytes.labels(**labels).inc(octets)
            if record.action == "deny":
                local = record.destination if record.reporter == "dst" else record.source
                self.denied.labels(endpoint=local.label).inc(packets)


_BY_REGISTRY: dict[int, tuple[CollectorRegistry, FlowMetrics]] = {}


def flow_metrics(registry: CollectorRegistry) -> FlowMetrics:
    """The flow metrics of `registry`, registered once (a restarted pipeline reuses them)."""
    found = _BY_REGISTRY.get(id(registry))
    if found is None or found[0] is not registry:
        found = _BY_REGISTRY[id(registry)] = (registry, FlowMetrics(registry))
    return found[1]
