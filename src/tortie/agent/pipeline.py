"""One running instance of the agent's pipeline, for a fixed start-up configuration.

    Syncer thread --SyncEvent--> queue --> calc thread: CalcGraph.on_event(event) ... flush()
                                                |  messages (tee: endpoint status ids, config checks)
                                                v
                                     DataplaneLoop thread --> managers --> drivers --> kernel
                                                |  observer: metrics, readiness, latency
                                                v
                            StatusReporter thread --> datastore (optional)

`AgentPipeline.start()` starts the threads; `wait(stop)` blocks until `stop` is set or something ends
the run, and returns an `Outcome`: STOPPED (asked to stop), RESTART (the datastore changed a
configuration parameter that needs a fresh pipeline), DATAPLANE_FAILED (kernel programming kept
failing), SYNCER_FAILED or CALC_FAILED (a bug or an unusable datastore). `stop()` ends every thread
and leaves the kernel exactly as it is (a restart adopts it).

Datastore outage: the syncer reports "disconnected" and retries with backoff; the calc gets no
events, so the dataplane keeps the kernel as it is; on return the syncer re-lists, sends only the
differences and InSync, and the dataplane applies just those.
"""

from __future__ import annotations

import enum
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tortie.agent.config import PARAMS_BY_NAME, LocalConfig, ProblemReporter, datastore_resolver
from tortie.agent.health import HealthAggregator
from tortie.agent.metrics import AgentMetrics
from tortie.agent.observer import AgentObserver, EndpointStatusBridge, ReceiptTracker
from tortie.agent.status import StatusReporter
from tortie.calc.calc_graph import CalcGraph
from tortie.calc.policy_graph import POLICY_KINDS
from tortie.common.ipfamily import FAMILIES, V4
from tortie.dataplane.drivers.host_addresses import HostAddressDriver, NetlinkHostAddresses
from tortie.dataplane.drivers.kernel_watch import KernelWatch
from tortie.dataplane.drivers.links import LinkDriver
from tortie.dataplane.drivers.nftables import NftDriver
from tortie.dataplane.drivers.routes import RouteDriver
from tortie.dataplane.drivers.shaping import ShapingDriver
from tortie.dataplane.drivers.sysctl import SysctlDriver
from tortie.dataplane.drivers.vxlan import VxlanDriver
from tortie.dataplane.endpoint_status import EndpointStatusFiles
from tortie.dataplane.loop import DataplaneLoop
from tortie.dataplane.managers.block_routes import BlockRoutesManager
from tortie.dataplane.managers.endpoints import EndpointManager
from tortie.dataplane.managers.floating_ips import FloatingIPManager
from tortie.dataplane.managers.host_mtu import HostMtuManager
from tortie.dataplane.managers.host_sysctls import DEFAULT_HOST_SYSCTLS, HostSysctlsManager
from tortie.dataplane.managers.manager_api import Manager
from tortie.dataplane.managers.policy import PolicyManager
from tortie.dataplane.managers.qos import QosManager, unsupported_fields
from tortie.dataplane.managers.vxlan import DEVICE_NAMES, VxlanManager
from tortie.dataplane.messages import (
    ENCAP_MESSAGE_TYPES,
    POLICY_MESSAGE_TYPES,
    ConfigUpdate,
    Message,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.mtu import MtuSettings
from tortie.dataplane.nft.config import RenderConfig, render_config
from tortie.dataplane.routetable import RouteTable
from tortie.datastore import syncer as sync
from tortie.datastore.api import Datastore
from tortie.flows.collector import STAGED_WATCH, FlowLogger, flow_logger
from tortie.ipam.keys import BLOCK_ROOT, host_affinity_prefix
from tortie.kernel.sysctl import ipv6_absence
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)

_BATCH = 5000  # events handled between flushes at most (bounds latency during a big listing)
_CALC_LIVENESS_TIMEOUT = 60.0
_GC_PAUSE_MAX = 120.0  # the collector is resumed by then even if the kernel was never programmed


class Outcome(enum.Enum):
    STOPPED = "stopped"
    RESTART = "restart"
    DATAPLANE_FAILED = "dataplane-failed"
    SYNCER_FAILED = "syncer-failed"
    CALC_FAILED = "calc-failed"


@dataclass(frozen=True)
class Drivers:
    routes: RouteDriver
    links: LinkDriver
    sysctls: SysctlDriver
    nft: NftDriver | None = None  # policy (issue 5); None: policy is not enforced
    addresses: HostAddressDriver | None = None  # host endpoints by expectedIPs; None: read with netlink
    flow_logs: bool = False  # the flow logger may use this process's kernel (NFLOG, conntrack; issue 20)
    vxlan: VxlanDriver | None = None  # tunnel devices and host MTU; None: no VXLAN and no MTU file
    shaping: ShapingDriver | None = None  # QoS bandwidth (tc); None: bandwidth limits are refused
    shaping_support: Mapping[str, str | None] | None = None  # probe_shaping(); None: not probed
    kernel_watch: KernelWatch | None = None  # drift repaired on the event; None: periodic read-back only

    def close(self) -> None:
        optional = [d for d in (self.nft, self.vxlan, self.shaping) if d is not None]
        for driver in (self.routes, self.links, self.sysctls, *optional):
            try:
                driver.close()
            except Exception:  # closing is best effort; a driver may share another's resources
                log.debug("driver close failed driver=%r", driver, exc_info=True)


def syncer_prefixes(hostname: str) -> list[str]:
    """What the agent watches: endpoints, configuration, Nodes (VXLAN tunnel endpoints, this host's
    subnet), IPAM blocks and this host's affinities, and the policy kinds (IP pools among them)."""
    return [
        kind_info("WorkloadEndpoint").prefix,
        kind_info("FelixConfiguration").prefix,
        kind_info("Node").prefix,
        BLOCK_ROOT,
        host_affinity_prefix(hostname),
        *(kind_info(kind).prefix for kind in POLICY_KINDS if kind != "WorkloadEndpoint"),
    ]


def restart_needed(running: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Parameters whose change needs a fresh pipeline (all but the `live` ones)."""
    return sorted(name for name, param in PARAMS_BY_NAME.items()
                  if not param.live and running.get(name) != new.get(name))


def log_level(severity: str) -> int:
    return {"Debug": logging.DEBUG, "Info": logging.INFO, "Warning": logging.WARNING,
            "Error": logging.ERROR, "Fatal": logging.CRITICAL}.get(severity, logging.INFO)


class AgentPipeline:
    def __init__(
        self,
        config: Mapping[str, Any],
        local: LocalConfig,
        ds: Datastore,
        drivers: Drivers,
        *,
        health: HealthAggregator,
        metrics: AgentMetrics,
        reporter: ProblemReporter,
        syncer_backoff_max: float = 5.0,
        freeze_heap_when_programmed: bool = False,
    ) -> None:
        self.config = dict(config)
        self.hostname = str(config["hostname"])
        self._ds = ds
        self._health = health
        self._metrics = metrics
        self._done = threading.Event()
        self._outcome: Outcome | None = None
        self._outcome_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[float, sync.SyncEvent] | None] = queue.SimpleQueue()
        self._receipts = ReceiptTracker()
        self._first_in_sync_logged = False
        self._freeze_heap = freeze_heap_when_programmed
        self._gc_paused_at: float | None = None

        self.status_reporter: StatusReporter | None = None
        if config["reporting_interval"] > 0 or config["endpoint_reporting_enabled"]:
            self.status_reporter = StatusReporter(
                ds, self.hostname, region=config["openstack_region"],
                reporting_interval=config["reporting_interval"], reporting_ttl=config["reporting_ttl"],
                endpoint_reporting=config["endpoint_reporting_enabled"],
                endpoint_delay=config["endpoint_reporting_delay"],
                on_error=lambda: metrics.errors.labels(kind="status").inc())
        prefix = str(config.get("endpoint_status_path_prefix") or "")
        self.status_files = EndpointStatusFiles(prefix) if prefix else None
        self._status_bridge = EndpointStatusBridge(self.status_reporter, self.status_files)

        ipv6 = bool(config["ipv6_support"])
        absent = ipv6_absence(drivers.sysctls.read_sysctl) if ipv6 else None
        if absent is not None:
            log.warning(
                "IPv6 is off on this host: %s; serving IPv4 only (no IPv6 routes, sysctls or addresses; "
                "set ipv6_support=false to say so and silence this)", absent)
            ipv6 = False
        families = FAMILIES if ipv6 else (V4,)
        # Route sources (blocks, VXLAN, endpoints) set targets on the one route table of the main
        # table; the table is applied after the sources that feed it, the endpoint manager after the
        # table (its sysctls and status need the table's links and routes of the same round). The
        # MTU manager decides before the VXLAN manager sizes its devices.
        iface_prefixes = tuple(config["interface_prefix"])
        self.route_table = RouteTable(
            drivers.routes, drivers.links, interface_prefixes=iface_prefixes, devices=DEVICE_NAMES.values(),
            families=families)
        self.block_manager = BlockRoutesManager(self.route_table)
        self.endpoint_manager = EndpointManager(
            self.route_table, drivers.sysctls, status_callback=self._status_bridge.on_status)
        host_settings = DEFAULT_HOST_SYSCTLS if config["ip_forwarding"] == "Enabled" else {}
        self.sysctl_manager = HostSysctlsManager(drivers.sysctls, host_settings, ipv6=ipv6)
        managers: list[Manager] = [self.sysctl_manager, self.block_manager]
        self.mtu_manager: HostMtuManager | None = None
        self.vxlan_manager: VxlanManager | None = None
        encap_unhandled: tuple[type, ...] = ENCAP_MESSAGE_TYPES
        if drivers.vxlan is not None:
            ignore = (*iface_prefixes, *DEVICE_NAMES.values())
            settings = MtuSettings(int(config["vxlan_mtu"]), int(config["vxlan_mtu_v6"]),
                                   str(config["mtu_iface_pattern"]), ignore)
            mtu_file = str(config["mtu_file"]) or None
            self.mtu_manager = HostMtuManager(drivers.vxlan, settings, mtu_file=mtu_file)
            self.vxlan_manager = VxlanManager(drivers.vxlan, self.route_table, self.mtu_manager,
                                              vni=int(config["vxlan_vni"]), port=int(config["vxlan_port"]),
                                              families=families)
            managers += [self.mtu_manager, self.vxlan_manager]
            encap_unhandled = ()
        managers += [self.route_table, self.endpoint_manager]
        self.policy_manager: PolicyManager | None = None
        policy = bool(config.get("policy_enabled", True)) and drivers.nft is not None
        # Flow logs (tortie.flows): a thread of their own that only reads the kernel; the catalog of
        # logged rules follows the policy messages as one more manager.
        self.flows: FlowLogger | None = None
        if policy and drivers.flow_logs and config.get("flow_logs_enabled", False):
            self.flows = flow_logger(config, ds, metrics.registry)
            managers.append(self.flows.manager)
        # What this host's dataplane cannot program: endpoints using it are refused by the calc.
        self.unsupported: dict[str, str] = {}
        self.floating_manager: FloatingIPManager | None = None
        if policy:
            assert drivers.nft is not None
            # Before the route table: a floating IP's translation exists before its route.
            self.floating_manager = FloatingIPManager(self.route_table, drivers.nft)
            managers.insert(managers.index(self.route_table), self.floating_manager)
        else:
            self.unsupported["ipNATs"] = (
                "1:1 NAT needs nftables, which the agent does not use with policy_enabled=false")
        # QoS limits before the route table too: limits exist before the workload is reachable.
        self.unsupported.update(unsupported_fields(drivers.shaping_support, tc=drivers.shaping is not None,
                                                   nft=policy))
        self.qos_manager = QosManager(drivers.shaping, drivers.nft if policy else None,
                                      owns=self.route_table.owns_device)
        managers.insert(managers.index(self.route_table), self.qos_manager)
        if self.unsupported:
            log.warning("this host refuses endpoints that ask for what it cannot program: %s",
                        "; ".join(f"{k}: {v}" for k, v in sorted(self.unsupported.items())))
        if policy:
            assert drivers.nft is not None
            # First: each apply round programs policy before routes open new interfaces (fail closed).
            addresses = drivers.addresses or NetlinkHostAddresses(getattr(drivers.nft, "netns", None))
            base = render_config(config, RenderConfig())
            if self.flows is not None:
                base = replace(base, flow_log_groups=self.flows.groups)
            self.policy_manager = PolicyManager(drivers.nft, base, addresses=addresses)
            managers.insert(0, self.policy_manager)
        observer = AgentObserver(metrics, health, self._receipts,
                                 needs_apply=lambda: any(m.needs_apply for m in managers),
                                 on_first_apply=self._on_first_apply, on_applied=self._status_bridge.flush)
        route_refresh = config["route_refresh_interval"] or None
        # Without policy the calc sends no policy messages, and the configuration is the pipeline's.
        unhandled = (*encap_unhandled, *(() if policy else (*POLICY_MESSAGE_TYPES, ConfigUpdate)))
        self.loop = DataplaneLoop(
            managers, unhandled=unhandled, link_driver=drivers.links, kernel_watch=drivers.kernel_watch,
            refresh_interval=route_refresh,
            refresh_overrides={self.sysctl_manager.name: config["interface_refresh_interval"] or None},
            observer=observer, on_fatal=lambda exc: self._finish(Outcome.DATAPLANE_FAILED, str(exc)))

        self._invalid: frozenset[str] = frozenset()
        resolve = datastore_resolver(local, self.hostname, reporter, on_invalid=self._on_invalid)
        self.graph = CalcGraph(self.hostname, self._collect, resolve, policy=policy,
                               unsupported=self.unsupported)
        self._out: list[Message] = []
        prefixes = syncer_prefixes(self.hostname) + (list(STAGED_WATCH) if self.flows is not None else [])
        self.syncer = sync.Syncer(ds, prefixes, self._on_sync_event, backoff_max=syncer_backoff_max)
        self._calc_thread = threading.Thread(target=self._calc_main, name="tortie-calc", daemon=True)

        health.register("syncer")
        health.register("calc", timeout=_CALC_LIVENESS_TIMEOUT)
        health.register("dataplane")
        health.register("status", ready=True)  # status write-back (ready unless its thread died)

    def _on_first_apply(self) -> None:
        """Loop thread, once: the initial snapshot is programmed."""
        self._status_bridge.sync()
        if self._freeze_heap:
            # What the initial sync built (the calc's view of every endpoint and policy) lives until
            # it changes: take it out of the collector's generations, so that a full collection in
            # steady state does not walk it (a pause of 100+ ms with 20,000 remote endpoints).
            gc.freeze()
            self._resume_gc()

    def _pause_gc(self) -> None:
        """During the initial snapshot the heap only grows (parsed objects, indexes, rendered rules:
        millions of objects, freed by reference counting, hardly any cycles), and each full
        collection walks all of it: with policy at 20,000 endpoints, over a third of start-up. The
        collector is paused until the first apply (then the heap is frozen), at most _GC_PAUSE_MAX."""
        if gc.isenabled():
            gc.disable()
            self._gc_paused_at = time.monotonic()

    def _resume_gc(self) -> None:
        if self._gc_paused_at is not None:
            self._gc_paused_at = None
            gc.enable()

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._freeze_heap:
            self._pause_gc()
        self.loop.start()
        self._calc_thread.start()
        self._metrics.resyncs.inc()
        self.syncer.start()
        if self.status_reporter is not None:
            self.status_reporter.start()
        if self.flows is not None:
            self.flows.start()
        log.info("agent pipeline started host=%s prefixes=%s", self.hostname, syncer_prefixes(self.hostname))

    def wait(self, stop: threading.Event, poll: float = 0.5) -> Outcome:
        while not stop.is_set() and not self._done.is_set():
            self._watchdog()
            stop.wait(poll)
        return self._outcome or Outcome.STOPPED

    def stop(self) -> None:
        """Stop every thread; the kernel is left as it is."""
        self._resume_gc()
        self.syncer.stop(timeout=5)
        self._queue.put(None)
        self._calc_thread.join(timeout=10)
        self.loop.stop(timeout=10)
        if self.status_reporter is not None:
            self.status_reporter.stop()
        if self.flows is not None:
            self.flows.stop()

    def _finish(self, outcome: Outcome, reason: str) -> None:
        with self._outcome_lock:
            if self._outcome is None:
                self._outcome = outcome
                log.log(logging.INFO if outcome is Outcome.RESTART else logging.ERROR,
                        "agent pipeline ending outcome=%s reason=%r", outcome.value, reason)
        self._done.set()

    def _watchdog(self) -> None:
        paused_at = self._gc_paused_at
        if paused_at is not None and time.monotonic() - paused_at > _GC_PAUSE_MAX:
            log.warning("kernel not programmed after %.0fs; resuming the garbage collector", _GC_PAUSE_MAX)
            self._resume_gc()
        status = self.loop.status()
        detail = f"apply failing since t={status.failing_since:.0f}" if status.failing_since else ""
        self._health.report("dataplane", live=status.fatal is None, ready=status.programmed, detail=detail)
        for name, outcome, reason in self._dead_parts():
            # A dead part is never silent: health says so at once (503), and the run ends with a
            # non-zero exit so that the supervisor restarts the agent (a fresh process re-reads all).
            self._health.report(name, live=False, ready=False, detail=reason)
            if name == "syncer":
                self._metrics.errors.labels(kind="datastore").inc()
            self._finish(outcome, reason)

    def _dead_parts(self) -> list[tuple[str, Outcome, str]]:
        """The pipeline's threads that ended without being asked to: (health component, outcome,
        reason). The flow logger is not one of them: it restarts itself and never affects policy."""
        dead: list[tuple[str, Outcome, str]] = []
        if self.syncer.failure is not None:
            dead.append(("syncer", Outcome.SYNCER_FAILED, f"syncer failed: {self.syncer.failure!r}"))
        elif not self.syncer.alive():
            dead.append(("syncer", Outcome.SYNCER_FAILED, "the syncer thread ended"))
        calc = self._calc_thread
        if calc.ident is not None and not calc.is_alive() and not self._done.is_set():
            dead.append(("calc", Outcome.CALC_FAILED, "the calc thread ended"))
        if not self.loop.alive():
            dead.append(("dataplane", Outcome.DATAPLANE_FAILED, "the dataplane loop thread ended"))
        if self.status_reporter is not None and not self.status_reporter.alive():
            dead.append(("status", Outcome.DATAPLANE_FAILED, "the status reporting thread ended"))
        return dead

    # -- syncer thread --------------------------------------------------------------------------------
    def _on_sync_event(self, event: sync.SyncEvent) -> None:
        self._queue.put((time.monotonic(), event))

    # -- calc thread ------------------------------------------------------------------------------------
    def _calc_main(self) -> None:
        try:
            while not self._done.is_set():
                self._health.report("calc", ready=self.graph.sequencer.in_sync_sent)
                try:
                    item = self._queue.get(timeout=1.0)
                except queue.Empty:
                    continue
                if item is None:
                    return
                oldest = item[0]
                self._handle(item[1])
                for _ in range(_BATCH):
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        return
                    self._handle(item[1])
                self._flush(oldest)
        except Exception as exc:
            log.exception("calc failed")
            self._metrics.errors.labels(kind="calc").inc()
            self._finish(Outcome.CALC_FAILED, repr(exc))

    def _handle(self, event: sync.SyncEvent) -> None:
        """Health and logs for the syncer's state changes; every event then goes to the calc as it
        is (one vocabulary: the calc consumes the syncer's events and ignores Status)."""
        if isinstance(event, sync.InSync):
            self._health.report("syncer", ready=True)
            if self._first_in_sync_logged:
                log.info("datastore resync complete; applying only the differences host=%s", self.hostname)
            self._first_in_sync_logged = True
        elif isinstance(event, sync.Status):
            if event.state == "disconnected":
                self._metrics.errors.labels(kind="datastore").inc()
                self._health.report("syncer", ready=False, detail="datastore unreachable; retrying")
                log.warning("datastore outage: keeping the kernel as it is, retrying host=%s", self.hostname)
            else:
                self._metrics.resyncs.inc()
                log.info("datastore back: resyncing host=%s", self.hostname)
        if self.flows is not None:
            self.flows.on_event(event)
            if isinstance(event, sync.Update | sync.Delete) and self.flows.is_staged(event.key):
                return  # staged policies are never enforced: the calc does not see them
        self.graph.on_event(event)

    def _collect(self, msg: Message) -> None:
        self._out.append(msg)

    def _flush(self, oldest_receipt: float) -> None:
        self.graph.flush()
        if not self._out:
            return
        out, self._out = self._out, []
        for index, msg in enumerate(out):
            if isinstance(msg, WorkloadEndpointUpdate):
                self._status_bridge.on_endpoint_update(msg)
            elif isinstance(msg, ConfigUpdate):
                out[index] = msg = ConfigUpdate(self._keep_running(msg.values))
                self._on_config(msg.values)
        self._receipts.flushed(time.monotonic(), oldest_receipt)
        self.loop.send_many(out)

    def _on_invalid(self, names: frozenset[str]) -> None:
        """Calc thread: the parameters whose latest resolution met an invalid value."""
        self._invalid = names

    def _keep_running(self, values: Mapping[str, object]) -> dict[str, object]:
        """The new configuration, except that a parameter with an invalid value somewhere keeps the
        value this pipeline runs with: a bad edit (a VNI out of range written past validation) never
        changes or restarts a running dataplane; fixing the value applies it."""
        kept = {name: self.config[name] for name in self._invalid
                if name in self.config and values.get(name) != self.config[name]}
        for name, value in sorted(kept.items()):
            log.warning("invalid configuration value; keeping the running value param=%s running=%r",
                        name, value)
        return {**values, **kept}

    def _on_config(self, values: Mapping[str, object]) -> None:
        changed = restart_needed(self.config, values)
        if changed:
            self._finish(Outcome.RESTART, f"configuration changed: {', '.join(changed)}")
            return
        level = log_level(str(values.get("log_severity_screen", "Info")))
        if logging.getLogger().level != level:
            logging.getLogger().setLevel(level)
            log.info("log level changed level=%s", values.get("log_severity_screen"))
        self.config.update(values)


def make_stop_callback(event: threading.Event) -> Callable[[int, object], None]:
    def handler(signum: int, _frame: object) -> None:
        log.info("agent stopping signal=%d (the kernel is left as it is)", signum)
        event.set()

    return handler
