"""The agent's flow logger: NFLOG and conntrack in, flow records out, on its own thread.

    calc thread:  on_event(syncer event)  --> EndpointDirectory, PendingPolicy (queue only)
    loop thread:  FlowCatalogManager      --> RuleCatalog (prefix -> rule)
    flow thread:  NFLOG groups 1, 2 ------+
                  conntrack DESTROY ------+--> FlowAggregator --every flush interval--> FlowStore
                  conntrack dump (flush) -+        (+ pending verdicts)               + metrics

Isolation (the contract with the agent): nothing here can block, slow or open traffic, or stop the
agent. The policy table logs whether or not anyone listens; this thread never touches the table.
Every failure (a group held by another process, a full disk, a bug) is logged, counted
(`tortie_flow_log_errors_total`, `tortie_flow_log_up` 0) and retried with backoff, while policy
enforcement goes on. The thread reads at most `max_messages_per_second` kernel messages a second;
beyond that the kernel's socket buffers overflow and the loss is counted
(`tortie_flow_log_lost_messages_total`), so a flood cannot take the agent's CPU.

`kernel=False` (tests, benchmarks of the pure parts) builds everything but the kernel sockets.
The namespace is the calling process's (the agent runs in the host's namespace).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from tortie.datastore import syncer as sync
from tortie.flows.aggregate import FlowAggregator
from tortie.flows.catalog import FlowCatalogManager, RuleCatalog
from tortie.flows.directory import PREFIXES as DIRECTORY_PREFIXES
from tortie.flows.directory import EndpointDirectory
from tortie.flows.metrics import FlowMetrics, flow_metrics
from tortie.flows.pending import STAGED_PREFIXES, PendingPolicy
from tortie.flows.records import FlowRecord
from tortie.flows.store import FlowStore, StoreError

log = logging.getLogger(__name__)

_STAGED = tuple(STAGED_PREFIXES)
_BACKOFF_MAX = 60.0


@dataclass(eq=False)
class FlowLogger:
    hostname: str
    store: FlowStore
    metrics: FlowMetrics
    pending: PendingPolicy
    _: KW_ONLY
    flush_interval: float = 15.0
    groups: tuple[int, int] = (1, 2)
    max_messages_per_second: int = 50_000
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.catalog = RuleCatalog()
        self.manager = FlowCatalogManager(self.catalog)
        self.directory = EndpointDirectory()
        self.aggregator = FlowAggregator(
            self.hostname, self.catalog.resolve, self.directory.peer, lambda: self.catalog.local_ips,
            self.pending.evaluate,
        )
        self._lock = threading.Lock()  # the aggregator: fed and flushed by the flow thread only
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="tortie-flows", daemon=True)
        self._interval_start = self.clock()

    # -- calc thread ------------------------------------------------------------------------------------
    @staticmethod
    def is_staged(key: str) -> bool:
        """Keys only the flow logger reads (staged kinds): the calc never sees them."""
        return key.startswith(_STAGED)

    def on_event(self, event: sync.SyncEvent) -> None:
        """A syncer event (the calc thread's tee): cheap, never raises."""
        try:
            if isinstance(event, sync.Update | sync.Delete):
                value = event.value if isinstance(event, sync.Update) else None
                if event.key.startswith(DIRECTORY_PREFIXES):
                    self.directory.on_update(event.key, value)
                self.pending.on_update(event.key, value, event.revision)
        except Exception:  # a bad value must not reach the calc thread's error handling
            log.exception("flow logger: update ignored key=%s", getattr(event, "key", "?"))
            self.metrics.errors.inc()

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # -- flow thread --------------------------------------------------------------------------------------
    def _main(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._run()
                return
            except Exception as exc:
                self.metrics.up.set(0)
                self.metrics.errors.inc()
                log.error("flow logger failed; policy enforcement is not affected, retrying in %.0fs "
                          "error=%s", backoff, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def _run(self) -> None:
        from tortie.kernel.conntrack import NFNLGRP_CONNTRACK_DESTROY, ConntrackEvents, conntrack_socket
        from tortie.kernel.nflog import NflogListener
        from tortie.kernel.sysctl import write_sysctl

        write_sysctl("net/netfilter/nf_conntrack_acct", "1")  # counters for connections from now on
        nflog = NflogListener(self.groups)
        events = ConntrackEvents(groups=(NFNLGRP_CONNTRACK_DESTROY,))
        dumper = conntrack_socket()
        log.info("flow logger started host=%s groups=%s flush_interval=%.1fs dir=%s", self.hostname,
                 self.groups, self.flush_interval, self.store.directory)
        self.metrics.up.set(1)
        try:
            self._loop(nflog, events, dumper)
        finally:
            nflog.close()
            events.close()
            dumper.close()

    def _loop(self, nflog: Any, events: Any, dumper: Any) -> None:
        from tortie.kernel.conntrack import dump_flows

        budget_start, budget = time.monotonic(), self.max_messages_per_second
        sources: tuple[tuple[str, Any, Callable[[Any], None]], ...] = (
            ("nflog", nflog, self.aggregator.on_log), ("conntrack", events, self.aggregator.on_destroyed))
        next_flush = time.monotonic() + self.flush_interval
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_flush:
                self.flush(dump_flows(dumper))
                next_flush = now + self.flush_interval
                continue
            if now - budget_start >= 1.0:
                budget_start, budget = now, self.max_messages_per_second
            if budget <= 0:  # over the rate: let the kernel's buffers take (and count) the excess
                self._stop.wait(min(1.0 - (now - budget_start), next_flush - now))
                continue
            ready, _, _ = select.select([nflog, events], [], [], min(0.5, next_flush - now))
            for source, sock, handle in sources:
                if sock in ready:
                    items, lost = sock.read()
                    budget -= len(items)
                    for item in items:
                        handle(item)
                    if lost:
                        self.metrics.lost.labels(source=source).inc(lost)

    def flush(self, table: list[Any]) -> list[FlowRecord]:
        """One flush: the conntrack table in, records to the store and the metrics (flow thread)."""
        started = time.monotonic()
        end = self.clock()
        self.aggregator.on_table(table)
        try:
            self.pending.refresh()
        except Exception as exc:  # the pending view is a preview: records go out without it
            log.warning("pending verdicts unavailable this interval error=%s", exc)
            self.metrics.errors.inc()
        records = self.aggregator.flush(self._interval_start, end)
        self._interval_start = end
        self.catalog.expire()
        try:
            self.store.write(records)
            self.metrics.records.inc(len(records))
            self.metrics.up.set(1)
        except StoreError as exc:
            self.metrics.dropped.labels(reason="store").inc(len(records))
            self.metrics.up.set(0)
            log.warning("flow records dropped count=%d reason=%s", len(records), exc)
        self.metrics.observe(records, self.aggregator, self.store, time.monotonic() - started)
        return records


STAGED_WATCH = _STAGED  # the prefixes the agent's syncer adds for the flow logger


def flow_logger(config: Any, ds: Any, registry: Any) -> FlowLogger:
    """The agent's flow logger from its configuration values (`tortie.agent.config`)."""
    from tortie.dataplane.nft.config import FLOW_LOG_GROUPS
    from tortie.flows.pending import datastore_lister

    hostname = str(config["hostname"])
    store = FlowStore(str(config["flow_logs_dir"]), max_bytes=int(config["flow_logs_max_bytes"]))
    return FlowLogger(
        hostname, store, flow_metrics(registry), PendingPolicy(hostname, datastore_lister(ds)),
        flush_interval=float(config["flow_logs_flush_interval"]) or 15.0, groups=FLOW_LOG_GROUPS,
    )
