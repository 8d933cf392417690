"""`tortie agent run`: configuration -> logging -> datastore -> pipeline -> health/metrics, until SIGTERM.

    command line, TORTIE_* env, config file ----------------+
    FelixConfiguration default, node.<host> (read at start) -+--> effective config
                                                                     |
        logging (log_severity_screen)   HealthServer :9099   AgentMetrics :9091
                                                                     |
        AgentPipeline (tortie.agent.pipeline):
            Syncer thread --> queue --> calc thread (CalcGraph) --> DataplaneLoop thread --> kernel
                                                  StatusReporter thread --> datastore

Run: `run_agent(cli_values)` blocks until SIGTERM/SIGINT (or `stop` when given) and returns the exit
code: 0 stopped, 1 configuration error or calc bug, 2 datastore unusable (not an outage: those are
retried forever), 3 the kernel could not be programmed for `fail_after` seconds. The kernel is
never flushed on exit: a restarted agent adopts what is there after its first InSync, so traffic
flows throughout.

A FelixConfiguration change that touches a non-`live` parameter rebuilds the pipeline in-process
(new threads and managers, same kernel state, adopted again after InSync); `log_severity_screen`
applies live.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from tortie.agent.config import (
    LocalConfig,
    ProblemReporter,
    ResolvedConfig,
    load_local,
)
from tortie.agent.health import HealthAggregator, HealthServer
from tortie.agent.metrics import AgentMetrics
from tortie.agent.pipeline import AgentPipeline, Drivers, Outcome, log_level, make_stop_callback
from tortie.calc.validation_filter import parse_felix_configuration
from tortie.common.errors import DatastoreError, TortieError
from tortie.datastore.api import Datastore
from tortie.datastore.url import redact_url
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_DATASTORE = 2
EXIT_DATAPLANE = 3

DriversFactory = Callable[[Mapping[str, Any]], Drivers]


def netlink_drivers(config: Mapping[str, Any]) -> Drivers:
    """The real kernel drivers for the agent's own network namespace."""
    from tortie.dataplane.drivers.kernel_watch import NetlinkKernelWatch
    from tortie.dataplane.drivers.links import NetlinkLinkDriver
    from tortie.dataplane.drivers.routes import NetlinkRouteDriver
    from tortie.dataplane.drivers.shaping import NetlinkShapingDriver
    from tortie.dataplane.drivers.sysctl import ProcSysctlDriver
    from tortie.dataplane.drivers.vxlan import NetlinkVxlanDriver
    from tortie.kernel.tc import probe_shaping

    nft = None
    if config.get("policy_enabled", True):
        from tortie.dataplane.drivers.nftables import NftablesDriver

        nft = NftablesDriver()
    return Drivers(NetlinkRouteDriver(protocol=int(config["device_route_protocol"])), NetlinkLinkDriver(),
                   ProcSysctlDriver(), nft, flow_logs=bool(config.get("flow_logs_enabled", False)),
                   vxlan=NetlinkVxlanDriver(), shaping=NetlinkShapingDriver(),
                   shaping_support=probe_shaping(),
                   kernel_watch=NetlinkKernelWatch(nftables=nft is not None))


def setup_logging(severity: str) -> None:
    root = logging.getLogger()
    root.setLevel(log_level(severity))
    # Library chatter (HTTP clients log every request at DEBUG) stays at INFO and above.
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(max(log_level(severity), logging.INFO))
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)


def read_felix_specs(ds: Datastore, hostname: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """FelixConfiguration default and node.<hostname> specs as stored now (None when absent or the
    datastore is unreachable: the calc sees them later and a difference restarts the pipeline)."""
    info = kind_info("FelixConfiguration")
    specs: list[dict[str, Any] | None] = []
    for name in ("default", f"node.{hostname}"):
        try:
            kv = ds.get(info.key(name))
        except DatastoreError as exc:
            log.warning("cannot read FelixConfiguration at start; using local config for now "
                        "name=%s error=%s", name, exc)
            specs.append(None)
            continue
        spec: object = None
        if kv is not None:
            try:  # exactly as the calc will see it, so that the two never disagree
                spec = parse_felix_configuration(kv.key, kv.value)
            except ValueError as exc:
                log.warning("invalid FelixConfiguration treated as absent name=%s reason=%r", name, str(exc))
        specs.append(dict(spec) if isinstance(spec, Mapping) else None)
    return specs[0], specs[1]


def _resolve(local: LocalConfig, ds: Datastore | None, reporter: ProblemReporter) -> ResolvedConfig:
    hostname = str(local.resolve().values["hostname"])
    default, node = read_felix_specs(ds, hostname) if ds is not None else (None, None)
    resolved = local.resolve(default, node, hostname)
    reporter.report(resolved.problems)
    return resolved


def run_agent(
    cli_values: Mapping[str, object | None],
    environ: Mapping[str, str] | None = None,
    *,
    stop: threading.Event | None = None,
    open_store: Callable[[str | None], Datastore] | None = None,
    drivers_factory: DriversFactory = netlink_drivers,
    on_started: Callable[[AgentPipeline, HealthServer | None, int | None], None] | None = None,
) -> int:
    """Run the agent until stopped; see the module docstring. The keyword arguments let tests and
    benchmarks inject a datastore opener, fake drivers and a stop event."""
    stop_event = stop if stop is not None else threading.Event()
    if stop is None and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, make_stop_callback(stop_event))

    reporter = ProblemReporter()
    local = load_local(cli_values, environ)
    initial = local.resolve()
    setup_logging(str(initial.values["log_severity_screen"]))
    if local.file.problems and initial.origin["config_file"] != "default":
        for problem in local.file.problems:
            log.error("%s", problem)
        return EXIT_CONFIG

    if open_store is None:
        from tortie.datastore.url import open_datastore

        open_store = open_datastore
    url = str(initial.values["datastore"]) or None
    shown = redact_url(url) if url else "(default)"  # a password in the URL never reaches a log
    try:
        ds = open_store(url)
    except TortieError as exc:
        log.error("cannot open the datastore url=%s error=%s", shown, exc)
        return EXIT_DATASTORE

    health = HealthAggregator()
    metrics = AgentMetrics()
    health_server: HealthServer | None = None
    metrics_port: int | None = None
    try:
        config = _resolve(local, ds, reporter)
        values = config.values
        setup_logging(str(values["log_severity_screen"]))
        log.info("agent starting host=%s datastore=%s interface_prefix=%s route_protocol=%s",
                 values["hostname"], shown, ",".join(values["interface_prefix"]),
                 values["device_route_protocol"])
        try:
            if values["health_enabled"]:
                health_server = HealthServer(health, str(values["health_host"]),
                                             int(values["health_port"])).start()
            if values["prometheus_metrics_enabled"]:
                metrics_port = metrics.serve(str(values["prometheus_metrics_host"]),
                                             int(values["prometheus_metrics_port"]))
        except OSError as exc:
            log.error("cannot listen for health/metrics error=%s", exc)
            return EXIT_CONFIG
        while True:
            outcome = _run_pipeline(values, local, ds, drivers_factory, health, metrics, reporter, stop_event,
                                    health_server, metrics_port, on_started, own_process=stop is None)
            if outcome is Outcome.RESTART and not stop_event.is_set():
                values = _resolve(local, ds, reporter).values
                setup_logging(str(values["log_severity_screen"]))
                continue
            return {
                Outcome.STOPPED: EXIT_OK,
                Outcome.RESTART: EXIT_OK,
                Outcome.DATAPLANE_FAILED: EXIT_DATAPLANE,
                Outcome.SYNCER_FAILED: EXIT_DATASTORE,
                Outcome.CALC_FAILED: EXIT_CONFIG,
            }[outcome]
    finally:
        if health_server is not None:
            health_server.stop()
        metrics.stop()
        ds.close()
        log.info("agent stopped")


def _run_pipeline(
    values: Mapping[str, Any],
    local: LocalConfig,
    ds: Datastore,
    drivers_factory: DriversFactory,
    health: HealthAggregator,
    metrics: AgentMetrics,
    reporter: ProblemReporter,
    stop_event: threading.Event,
    health_server: HealthServer | None,
    metrics_port: int | None,
    on_started: Callable[[AgentPipeline, HealthServer | None, int | None], None] | None,
    *,
    own_process: bool,
) -> Outcome:
    drivers = drivers_factory(values)
    pipeline = AgentPipeline(values, local, ds, drivers, health=health, metrics=metrics, reporter=reporter,
                             freeze_heap_when_programmed=own_process)
    if own_process:
        # Everything alive now (modules, classes, configuration) lives as long as the process.
        # Moving it out of the collector's generations keeps each full collection from walking it
        # again: that halves the collector's share of the initial sync and shortens every later
        # full-collection pause (the add -> kernel tail on a busy host); the pipeline does the same
        # with the calc's state once the initial snapshot is programmed. Not when embedded (a
        # `stop` event given: tests): the caller's heap is not ours to freeze.
        gc.freeze()
    try:
        pipeline.start()
        if on_started is not None:
            on_started(pipeline, health_server, metrics_port)
        return pipeline.wait(stop_event)
    finally:
        pipeline.stop()
        drivers.close()
