"""`tortie bgp run`: keep BIRD running with the configuration the datastore implies for this host.

    Datastore --Syncer(BGP_PREFIXES)--> queue --> SnapshotCache --(changed)--> compute_view --> render
        --> text differs from what BIRD runs?  write bird.conf.new, `configure check`, rename to
            bird.conf (atomic), `configure`  (over BIRD's control socket, like `birdc configure`)
    BIRD child process  --exited?--> restart with exponential backoff (reset after a stable run)
    the loop runs on every event (a datastore change, BIRD's exit) and otherwise every 0.25 s until
        ready, then every second (an idle daemon sleeps)
    every change and every HEALTH_INTERVAL --> status.json (health, atomically replaced)
    some BGPPeer has localWorkloadSelector?  a second Syncer on WorkloadEndpoints (this node's kept);
        the view's workload peering addresses are put on the loopback (`ip addr replace`, with
        BIRD's command prefix, so they land in BIRD's namespace) and removed when no longer used

Inputs: a `Datastore`, a `DaemonConfig` (host name, run directory, view options, BIRD command).
Outputs: files in the run directory — `bird.conf` (current configuration; mode 0600: it may hold BGP
passwords), `bird.ctl` (BIRD's control socket, created by BIRD under umask 077: root only),
`bird.log` (BIRD's stderr, appended), `status.json` (health, see `HealthStatus`) — and the
BIRD process itself.

Invariants:
* BIRD is not started before the first InSync and before the view exists (the Node has a BGP
  address); nothing is rendered from a partial listing.
* BIRD only ever reads a configuration that `configure check` accepted (or, at first start, one it
  accepts when it starts); a rejected render is reported in status.json and the running
  configuration stays.
* `configure` is sent only when the rendered text differs from the running one.
* BIRD runs in graceful restart recovery (`-R`) and is stopped for a graceful restart: `stop()` (a
  planned restart of the node) and a crash both leave its peers forwarding to this host on the routes
  they had, and this host forwarding on the routes the old BIRD wrote (`persist`), until the new
  BIRD has re-learned them (tortie.bgp.bird_process). `graceful_stop=False` makes `stop()` withdraw
  instead (SIGTERM: Cease). A BIRD left running by an earlier run is replaced, never doubled. The
  syncers are stopped; workload peering addresses the daemon added are removed.
* Events of a workload syncer that was stopped are dropped (each carries its syncer's generation).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tortie.bgp.bird_process import BirdProcess, bird_command, replace_leftover
from tortie.bgp.control import BirdCommandError, BirdControl, BirdNotRunning
from tortie.bgp.render import render
from tortie.bgp.snapshot import BGP_PREFIXES, WORKLOAD_PREFIX, SnapshotCache
from tortie.bgp.view import ViewOptions, ViewResult, compute_view
from tortie.common.files import write_atomically
from tortie.common.ipfamily import IPAddress
from tortie.datastore.api import Datastore
from tortie.datastore.syncer import Delete, InSync, Status, Syncer, SyncEvent, Update

log = logging.getLogger(__name__)

DEFAULT_RUN_ROOT = "/var/run/tortie"
HEALTH_INTERVAL = 5.0
BUSY_TICK = 0.25  # the loop's longest sleep while not ready (BIRD starting, a restart pending)
IDLE_TICK = 1.0  # ... and once ready: changes and BIRD's exit wake it anyway
SECRET_MODE = 0o600  # bird.conf holds BGP passwords: root only


def default_run_dir(hostname: str) -> str:
    return os.path.join(DEFAULT_RUN_ROOT, hostname)


@dataclass(frozen=True)
class RunPaths:
    """The files of one host's BGP daemon, all inside `run_dir`."""

    run_dir: str

    @property
    def config(self) -> str:
        return os.path.join(self.run_dir, "bird.conf")

    @property
    def candidate(self) -> str:
        return os.path.join(self.run_dir, "bird.conf.new")

    @property
    def socket(self) -> str:
        return os.path.join(self.run_dir, "bird.ctl")

    @property
    def bird_log(self) -> str:
        return os.path.join(self.run_dir, "bird.log")

    @property
    def status(self) -> str:
        return os.path.join(self.run_dir, "status.json")

    @property
    def pidfile(self) -> str:
        return os.path.join(self.run_dir, "bird.pid")


@dataclass(frozen=True)
class DaemonConfig:
    hostname: str
    run_dir: str
    view_options: ViewOptions = field(default_factory=ViewOptions)
    bird_binary: str = "bird"
    # Prepended to BIRD's command line, e.g. ("ip", "netns", "exec", "h1") to run BIRD in a namespace.
    bird_command_prefix: tuple[str, ...] = ()
    restart_backoff_initial: float = 0.5
    restart_backoff_max: float = 30.0
    stable_run: float = 30.0  # a BIRD that ran this long resets the backoff
    rerender_interval: float = 10.0  # re-render without a datastore change (secret file rotation)
    stop_grace: float = 5.0
    graceful_stop: bool = True
    """`stop()` shuts BIRD down for a graceful restart (peers keep this host's routes until it is back
    or its restart time ends); False: SIGTERM, BIRD sends Cease and peers withdraw at once."""


@dataclass
class HealthStatus:
    """What status.json holds. `ready`: BIRD runs, answers on its control socket, and runs the
    configuration for the current datastore state. `live`: the daemon loop is turning (`updated` is
    refreshed at least every HEALTH_INTERVAL seconds while it does)."""

    hostname: str
    pid: int
    live: bool = True
    ready: bool = False
    in_sync: bool = False
    datastore_connected: bool = True
    bird_running: bool = False
    bird_pid: int | None = None
    bird_restarts: int = 0
    bird_last_exit: int | None = None
    config_generation: int = 0
    last_configure: float | None = None
    last_error: str | None = None
    problems: list[str] = field(default_factory=list)
    updated: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname, "pid": self.pid, "live": self.live, "ready": self.ready,
            "inSync": self.in_sync, "datastoreConnected": self.datastore_connected,
            "bird": {"running": self.bird_running, "pid": self.bird_pid, "restarts": self.bird_restarts,
                     "lastExitCode": self.bird_last_exit},
            "configGeneration": self.config_generation, "lastConfigure": self.last_configure,
            "lastError": self.last_error, "problems": list(self.problems), "updated": self.updated,
        }


@dataclass(frozen=True)
class WorkloadEvent:
    """An Update/Delete of the workload syncer of `generation` (older generations are dropped)."""

    generation: int
    event: SyncEvent


class LoopbackAddresses:
    """Addresses the daemon keeps on the loopback of BIRD's namespace (workload peering), by `ip`."""

    def __init__(self, command_prefix: tuple[str, ...]) -> None:
        self.prefix = command_prefix
        self.present: set[IPAddress] = set()

    def _ip(self, verb: str, address: IPAddress) -> str | None:
        cmd = [*self.prefix, "ip", "addr", verb, f"{address}/{address.max_prefixlen}", "dev", "lo"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if proc.returncode:
            return proc.stderr.strip() or f"exit {proc.returncode}"
        return None

    def sync(self, wanted: set[IPAddress]) -> list[str]:
        """Add what is missing, remove what is no longer wanted; the problems met, as sentences."""
        problems: list[str] = []
        for address in sorted(wanted - self.present, key=str):
            error = self._ip("replace", address)
            if error is None:
                self.present.add(address)
            else:
                problems.append(f"workload peering address {address}: cannot add it to lo: {error}")
        for address in sorted(self.present - wanted, key=str):
            self._ip("del", address)
            self.present.discard(address)
        return problems


def read_health(run_dir: str) -> dict[str, Any] | None:
    """The daemon's status.json, or None if there is none."""
    try:
        with open(RunPaths(run_dir).status, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class BgpDaemon:
    """Supervises BIRD for one host; see the module docstring. `run()` blocks until `stop()`."""

    def __init__(self, ds: Datastore, config: DaemonConfig) -> None:
        self.ds = ds
        self.config = config
        self.paths = RunPaths(config.run_dir)
        self.cache = SnapshotCache(config.hostname)
        self.health = HealthStatus(config.hostname, os.getpid())
        self._events: queue.Queue[SyncEvent | WorkloadEvent] = queue.Queue()
        self._stop = threading.Event()
        self._bird: BirdProcess | None = None
        self._running_text: str | None = None  # the configuration BIRD runs
        self._dirty = True
        self._next_start = 0.0
        self._backoff = config.restart_backoff_initial
        self._last_render = 0.0
        self._last_health = 0.0
        self._last_health_doc: dict[str, Any] | None = None
        self._starts = 0
        self._bird_answering = False  # the current BIRD has answered on its control socket
        self._syncer: Syncer | None = None
        self._workload_syncer: Syncer | None = None
        self._workload_generation = 0
        self._loopback = LoopbackAddresses(config.bird_command_prefix)
        self.last_view: ViewResult | None = None

    # -- public ------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._events.put(Status("stopping"))  # wake the loop

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        """Run until `stop()`; returns 0, or 1 if the datastore syncer failed for good."""
        os.makedirs(self.config.run_dir, exist_ok=True)
        self._syncer = Syncer(self.ds, BGP_PREFIXES, self._events.put)
        self._syncer.start()
        log.info("bgp daemon started host=%s run_dir=%s", self.config.hostname, self.config.run_dir)
        rc = 0
        try:
            while not self._stop.is_set():
                self._drain(timeout=IDLE_TICK if self.health.ready else BUSY_TICK)
                if self._syncer.failure is not None:
                    self.health.last_error = f"datastore syncer failed: {self._syncer.failure}"
                    rc = 1
                    break
                self._step()
        finally:
            self._syncer.stop()
            self._watch_workloads(False)
            self._loopback.sync(set())
            if self._bird is not None:
                self._bird.stop(self.config.stop_grace, graceful=self.config.graceful_stop)
            self.health.live = False
            self.health.bird_running = False
            self.health.ready = False
            self._write_health(force=True)
            log.info("bgp daemon stopped host=%s", self.config.hostname)
        return rc

    # -- loop ----------------------------------------------------------------------------------
    def _drain(self, timeout: float) -> None:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._apply(event)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return

    def _apply(self, event: SyncEvent | WorkloadEvent) -> None:
        if isinstance(event, WorkloadEvent):
            if event.generation == self._workload_generation and self._workload_syncer is not None \
                    and isinstance(event.event, Update | Delete):
                self._apply(event.event)
            return
        if isinstance(event, Update):
            if self.cache.on_update(event.key, event.value):
                self._dirty = True
        elif isinstance(event, Delete):
            if self.cache.on_delete(event.key):
                self._dirty = True
        elif isinstance(event, InSync):
            if not self.health.in_sync:
                log.info("bgp daemon in sync host=%s keys=%d", self.config.hostname, len(self.cache))
            self.health.in_sync = True
            self.health.datastore_connected = True
            self._dirty = True
        elif event.state == "disconnected":
            self.health.datastore_connected = False
            self.health.in_sync = False
            self._write_health(force=True)
        elif event.state == "reconnected":
            self.health.datastore_connected = True

    def _watch_workloads(self, wanted: bool) -> None:
        """Start or stop the WorkloadEndpoint syncer (only while a BGPPeer peers with workloads)."""
        if wanted and self._workload_syncer is None:
            self._workload_generation += 1
            generation = self._workload_generation

            def sink(event: SyncEvent) -> None:
                self._events.put(WorkloadEvent(generation, event))

            self._workload_syncer = Syncer(self.ds, (WORKLOAD_PREFIX,), sink)
            self._workload_syncer.start()
        elif not wanted and self._workload_syncer is not None:
            self._workload_syncer.stop()
            self._workload_syncer = None
            self._workload_generation += 1
            if self.cache.drop_prefix(WORKLOAD_PREFIX):
                self._dirty = True

    def _step(self) -> None:
        now = time.monotonic()
        if self.health.in_sync:
            peers = self.cache.snapshot().peers
            self._watch_workloads(any(p.local_workload_selector is not None for p in peers))
        if self.health.in_sync and (self._dirty or now - self._last_render >= self.config.rerender_interval):
            self._dirty = False
            self._last_render = now
            self._reconcile_config()
        self._supervise_bird(now)
        self._write_health()

    def _reconcile_config(self) -> None:
        result = compute_view(self.cache.snapshot(), self.config.hostname, self.config.view_options)
        if result != self.last_view:
            for problem in result.problems:
                log.warning("bgp view problem host=%s problem=%s", self.config.hostname, problem)
        self.last_view = result
        problems = list(result.problems)
        wanted = set(result.view.workload_peering) if result.view is not None else set()
        problems += self._loopback.sync(wanted)
        self.health.problems = problems
        if result.view is None:
            return
        text = render(result.view)
        if text == self._running_text:
            return
        if self._bird is None or not self._bird.running():
            # BIRD reads the file when it (re)starts.
            write_atomically(self.paths.config, text, SECRET_MODE)
            self._running_text = text
            self.health.config_generation += 1
            return
        try:
            write_atomically(self.paths.candidate, text, SECRET_MODE)
            with BirdControl(self.paths.socket) as ctl:
                ctl.command(f'configure check "{self.paths.candidate}"')
                os.replace(self.paths.candidate, self.paths.config)
                summary = ctl.configure()
        except BirdCommandError as exc:
            self.health.last_error = f"rendered configuration rejected: {exc}"
            log.error("bird rejected configuration host=%s error=%s", self.config.hostname, exc)
            return
        except BirdNotRunning as exc:
            # BIRD died or is still starting: keep the new text on disk for its next start.
            if os.path.exists(self.paths.candidate):
                os.replace(self.paths.candidate, self.paths.config)
            self._running_text = None
            self._dirty = True
            log.warning("bird control socket unavailable during reconfigure host=%s error=%s",
                        self.config.hostname, exc)
            return
        self._running_text = text
        self.health.config_generation += 1
        self.health.last_configure = time.time()
        self.health.last_error = None
        log.info("bird reconfigured host=%s generation=%d result=%s", self.config.hostname,
                 self.health.config_generation, summary)

    def _bird_command(self) -> list[str]:
        return bird_command(self.config.bird_command_prefix, self.config.bird_binary, self.paths.config,
                            self.paths.socket, self.paths.pidfile)

    def _supervise_bird(self, now: float) -> None:
        bird = self._bird
        if bird is not None and bird.proc is not None:
            code = bird.poll()
            if code is not None:
                ran = now - bird.started_at
                bird.close_log()
                self._bird = None
                self.health.bird_running = False
                self.health.bird_pid = None
                self.health.bird_last_exit = code
                self.health.ready = False
                if ran >= self.config.stable_run:
                    self._backoff = self.config.restart_backoff_initial
                self._next_start = now + self._backoff
                log.warning("bird exited host=%s code=%s after=%.1fs restart_in=%.1fs", self.config.hostname,
                            code, ran, self._backoff)
                self._backoff = min(self._backoff * 2, self.config.restart_backoff_max)
                self._write_health(force=True)
                return
        if self._bird is None and self._running_text is not None and now >= self._next_start:
            if self._starts:
                self.health.bird_restarts += 1
            else:  # never two BIRDs on one host (bird_process.replace_leftover)
                replace_leftover(self.paths.socket, self.paths.pidfile, self.config.stop_grace)
            self._starts += 1
            # Always start from the latest render.
            if self.last_view is not None and self.last_view.view is not None:
                text = render(self.last_view.view)
                write_atomically(self.paths.config, text, SECRET_MODE)
                self._running_text = text
            self._bird = BirdProcess(self._bird_command(), self.paths.bird_log, self.paths.socket)
            self._bird_answering = False
            try:
                self._bird.start()
            except OSError as exc:
                self._bird = None
                self.health.last_error = f"cannot start bird: {exc}"
                self._next_start = now + self._backoff
                self._backoff = min(self._backoff * 2, self.config.restart_backoff_max)
                return
            self.health.bird_running = True
            self.health.bird_pid = self._bird.pid
            self._wake_on_exit(self._bird)
            self._write_health(force=True)
        if self._bird is not None and not self._bird_answering and self._bird.running():
            try:
                with BirdControl(self.paths.socket, timeout=1.0):
                    self._bird_answering = True
            except BirdNotRunning:
                pass  # still starting
        self.health.ready = (self._bird is not None and self._bird.running() and self._bird_answering
                             and self.health.in_sync and self._running_text is not None and not self._dirty)

    def _wake_on_exit(self, bird: BirdProcess) -> None:
        """Wake the loop when BIRD exits (a thread blocked in waitpid: nothing polls)."""
        proc = bird.proc
        if proc is None:
            return

        def await_exit() -> None:
            proc.wait()
            self._events.put(Status("bird exited"))

        threading.Thread(target=await_exit, name="bird-exit", daemon=True).start()

    def _write_health(self, force: bool = False) -> None:
        """Write status.json when something in it changed, and at least every HEALTH_INTERVAL."""
        now = time.monotonic()
        doc = self.health.to_json()
        doc.pop("updated")
        if not force and doc == self._last_health_doc and now - self._last_health < HEALTH_INTERVAL:
            return
        self._last_health = now
        self._last_health_doc = doc
        self.health.updated = time.time()
        try:
            text = json.dumps(self.health.to_json(), indent=1, sort_keys=True) + "\n"
            write_atomically(self.paths.status, text)
        except OSError as exc:
            log.warning("cannot write health status path=%s error=%s", self.paths.status, exc)
