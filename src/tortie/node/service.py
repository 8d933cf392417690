"""`tortie node run`: register this host as a Node, then run and supervise the agent and BGP.

    NodeService.run(stop)
      open the datastore  --(unreachable: retry with backoff)-->
      addresses: --ip / --ip6 (autodetect by method | none | CIDR)   --> register_node (CAS)
      Supervisor:
        agent  child process   python -m tortie.cli.main agent run --hostname H [--datastore URL]
                               (a password in URL moves to $TORTIE_DATASTORE_PASSWORD: never in argv)
                               (health on 127.0.0.1:<agent_health_port>, polled for readiness)
        cni    in-process      tortie.cni.service.CniService: the CNI launchers' calls on a root-only
                               unix socket (`cni_socket`; "" = none), with warm datastore and netlink
        bgp    in-process      tortie.bgp.daemon.BgpDaemon (which supervises BIRD: `bird -f`)
      loop: restart what exited (backoff 0.5 s .. 30 s), refresh <run_dir>/node.json; it runs at
        once when a component exits or the agent's answer changes, when a restart is due, and
        otherwise every 0.2 s until the node is ready, then every second (an idle node sleeps);
        an agent whose /readiness has said for 10 s that a part of it is not live is restarted too
      SIGTERM/SIGINT (the `stop` event): stop the BGP daemon (BIRD: graceful restart, peers keep routes)
        and the agent (its routes and sysctls stay); exit 0. The dataplane stays in place.
      CalicoNodeStatus objects naming this host: filled by `tortie.node.status_report` (own thread)
      VXLAN tunnel addresses of this host: kept by `tortie.node.tunnel_addresses` (own thread)
      IPAM garbage collection of this host (and of deleted hosts): `tortie.node.ipam_gc` (own thread,
        every `ipam_gc_interval` seconds)

Why two shapes: the agent is a separate process so that it can be restarted on its own (a crash, exit
code 3 after persistent kernel failures) and a new one adopts the kernel state without loss; the BGP
daemon is itself only a supervisor of BIRD, so it shares this process and its datastore connection
(one interpreter and one datastore watcher fewer per host).

Output: `<run_dir>/node.json`, replaced atomically on every change and at least every 5 s:
`hostname`, `pid`, `updated` (epoch seconds), `node` (the registered addresses and AS), per
component `running`, `pid`, `restarts`, `lastExitCode`, `ready`, and overall `ready` (every enabled
component ready). `read_node_status(run_dir)` reads it back (lab status, tests).

Exit codes: 0 stopped; 1 configuration problem (no address found, address used by another Node,
invalid value).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tortie.bgp.daemon import BgpDaemon, DaemonConfig, read_health
from tortie.bgp.secrets import DEFAULT_SECRETS_DIR, FileSecrets
from tortie.bgp.view import DEFAULT_AGENT_ROUTE_PROTOCOL, Timers, ViewOptions
from tortie.common.errors import DatastoreUnavailable, TortieError, UserError
from tortie.common.files import write_atomically
from tortie.common.ipfamily import V4, V6, Family, IPInterface, family_of
from tortie.datastore.api import Datastore
from tortie.datastore.url import credentials_to_environment
from tortie.kernel.sysctl import ipv6_absence
from tortie.node.autodetect import autodetect
from tortie.node.ipam_gc import IpamCollector, IpamGcLoop, read_kernel
from tortie.node.registration import KEEP, REMOVE, AddressChoice, NodeAddresses, register_node
from tortie.node.status_report import NodeStatusReporter, families_of
from tortie.node.supervisor import ChildProcess, Component, InProcess, Supervisor
from tortie.node.tunnel_addresses import TunnelAddressKeeper

if TYPE_CHECKING:
    from tortie.cni.service import CniService

log = logging.getLogger(__name__)

STATUS_FILE = "node.json"
STATUS_INTERVAL = 5.0
LOOP_INTERVAL = 0.2  # while the node is not ready
IDLE_INTERVAL = 1.0  # while it is: exits and answer changes wake the loop anyway
AGENT_LIVENESS_GRACE = 10.0
EXIT_OK = 0
EXIT_CONFIG = 1


@dataclass(frozen=True)
class NodeConfig:
    hostname: str
    run_dir: str
    datastore_url: str | None = None
    ip: str = "autodetect"
    """`autodetect` (by `ip_method`), `none` (no IPv4 BGP address) or an address with prefix length."""
    ip_method: str = "first-found"
    ip6: str = "none"
    ip6_method: str = "first-found"
    as_number: int | None = None
    run_agent: bool = True
    run_bgp: bool = True
    agent_config_file: str | None = None
    agent_health_port: int = 9099
    """Port of the agent's health server on 127.0.0.1 (0: do not enable it; readiness unknown)."""
    agent_env: Mapping[str, str] = field(default_factory=dict)
    workload_interface_prefixes: tuple[str, ...] = ("tort", "cali")
    agent_route_protocol: int = DEFAULT_AGENT_ROUTE_PROTOCOL
    fast_bgp_timers: bool = False
    bird_binary: str = "bird"
    secrets_dir: str = DEFAULT_SECRETS_DIR
    python: str = sys.executable
    restart_initial: float = 0.5
    restart_max: float = 30.0
    nodename_file: str = ""
    """Where to write the registered Node name for the CNI plugin (its `nodename_file`); "" = nowhere."""
    mtu_file: str = ""
    """Where the agent publishes the workload MTU for the CNI plugin (its `mtu_file`); "" = nowhere."""
    cni_socket: str = ""
    ipam_gc_interval: float = 300.0
    """Seconds between this host's IPAM garbage collection passes (`tortie.node.ipam_gc`; 0 = none)."""
    ipam_gc_grace: float = 900.0
    """How long garbage must have been garbage before the collector releases it."""
    ipam_lock_file: str = ""
    """The CNI plugin's host IPAM lock (its `ipam_lock_file`), held while the collector releases."""
    """Where the CNI service listens for the CNI launchers (their `service_socket`); "" = no service."""


def resolve_address(choice: str, method: str, fam: Family) -> AddressChoice:
    """`autodetect` -> the detected address; `none` -> REMOVE; `keep` -> KEEP; else a literal CIDR."""
    text = choice.strip().lower()
    option = "--ip" if fam is V4 else "--ip6"
    if text == "autodetect":
        return autodetect(method, fam)
    if text == "none":
        return REMOVE
    if text == "keep":
        return KEEP
    try:
        iface: IPInterface = ipaddress.ip_interface(choice.strip())
    except ValueError:
        raise UserError(
            f"{option} {choice!r}: expected autodetect, none or an "
            "address with prefix length (e.g. 10.0.0.5/24)"
        ) from None
    if family_of(iface) is not fam:
        raise UserError(f"{option} {choice!r} is not an {fam.name} address")
    if "/" not in choice:
        raise UserError(
            f"{option} {choice!r}: give the prefix length too "
            "(e.g. 10.0.0.5/24); BGP uses it to tell local subnets apart"
        )
    return iface


def read_node_status(run_dir: str) -> dict[str, Any] | None:
    """The node service's node.json, or None when there is none (yet)."""
    try:
        with open(os.path.join(run_dir, STATUS_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class AgentHealthPoller:
    """Polls the agent's /readiness on a thread: every `interval` (1 s), `steady_factor` (3) times
    that while the agent says it is ready and live (its exit is seen at once anyway; a hung agent is
    restarted after AGENT_LIVENESS_GRACE). `ready` is None until the first answer; `unlive_since`
    is the monotonic time since which every answer said some part of the agent is not live
    (None while it is live or does not answer: a starting agent is not a dead one).
    """

    def __init__(
        self, port: int, interval: float = 1.0, on_change: Callable[[], None] | None = None,
        steady_factor: float = 3.0,
    ) -> None:
        self.url = f"http://127.0.0.1:{port}/readiness"
        self.interval = interval
        self.steady_factor = steady_factor
        self.on_change = on_change
        self.ready: bool | None = None
        self.unlive_since: float | None = None
        self.detail = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="agent-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3.0)

    def forget(self) -> None:
        """A new agent process: nothing it said is known yet."""
        self.ready = None
        self.unlive_since = None
        self.detail = ""

    def check(self) -> tuple[bool, bool | None, str]:
        """(ready, live, detail) from one answer; live None when the agent did not answer."""
        try:
            with urllib.request.urlopen(self.url, timeout=1.0) as resp:
                return int(resp.status) == 200, True, ""
        except urllib.error.HTTPError as exc:
            try:
                components = json.loads(exc.read() or b"{}").get("components", {})
            except ValueError:
                components = {}
            dead = {n: c.get("detail", "") for n, c in components.items() if not c.get("live", True)}
            return False, not dead, "; ".join(f"{n}: {d}" for n, d in sorted(dead.items()))
        except (OSError, ValueError):
            return False, None, ""

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, live, detail = self.check()
            before = (self.ready, self.unlive_since is None)
            self.ready = ready
            if live is False:
                self.detail = detail
                if self.unlive_since is None:
                    self.unlive_since = time.monotonic()
            elif live is True:
                self.unlive_since = None
            if self.on_change is not None and before != (self.ready, self.unlive_since is None):
                self.on_change()
            steady = ready and live is True
            self._stop.wait(self.interval * (self.steady_factor if steady else 1.0))


class NodeService:
    """See the module docstring. `run(stop)` blocks until `stop` is set."""

    def __init__(self, config: NodeConfig, ds: Datastore) -> None:
        self.config = config
        self.ds = ds
        self.registered: dict[str, Any] = {}
        self.supervisor: Supervisor | None = None
        self.health: AgentHealthPoller | None = None
        self._bgp: InProcess | None = None
        self._cni: CniService | None = None
        self._last_status = 0.0
        self._last_doc: dict[str, Any] | None = None
        self._agent_pid: int | None = None
        self._wake = threading.Event()  # set when the loop should run before its timeout

    # -- pieces ----------------------------------------------------------------------------------
    def addresses(self) -> NodeAddresses:
        """The BGP addresses to register. Asked for an IPv6 address on a kernel without IPv6, the node
        registers none, says so once and goes on with IPv4 (rather than failing the whole node)."""
        cfg = self.config
        ip6 = cfg.ip6
        absent = ipv6_absence() if ip6.strip().lower() not in ("none", "keep") else None
        if absent is not None:
            log.warning("IPv6 is off on this host: %s; registering without an IPv6 BGP address "
                        "(--ip6 %s not used), IPv4 only", absent, ip6)
            ip6 = "none"
        return NodeAddresses(
            ipv4=resolve_address(cfg.ip, cfg.ip_method, V4),
            ipv6=resolve_address(ip6, cfg.ip6_method, V6),
            as_number=cfg.as_number,
        )

    def register(self, stop: threading.Event) -> bool:
        """Register the Node, retrying while the datastore is unreachable; False if stopped first."""
        want = self.addresses()
        delay = 0.5
        while not stop.is_set():
            try:
                resource = register_node(self.ds, self.config.hostname, want)
            except DatastoreUnavailable as exc:
                log.warning("datastore unreachable; node registration retries in %.1fs error=%s", delay, exc)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            bgp = resource.to_wire().get("spec", {}).get("bgp") or {}
            self.registered = {k: bgp.get(k) for k in ("ipv4Address", "ipv6Address", "asNumber")}
            if self.config.nodename_file:
                os.makedirs(os.path.dirname(self.config.nodename_file) or ".", exist_ok=True)
                write_atomically(self.config.nodename_file, self.config.hostname)
            return True
        return False

    def agent_component(self) -> ChildProcess:
        cfg = self.config
        argv = [cfg.python, "-m", "tortie.cli.main", "agent", "run", "--hostname", cfg.hostname]
        env = dict(os.environ)
        if cfg.datastore_url:  # a password goes by the environment: argv is readable by every user
            url, secrets = credentials_to_environment(cfg.datastore_url)
            argv += ["--datastore", url]
            env.update(secrets)
        if cfg.agent_config_file:
            argv += ["--config", cfg.agent_config_file]
        if cfg.agent_health_port > 0:
            env.update(
                {
                    "TORTIE_HEALTH_ENABLED": "true",
                    "TORTIE_HEALTH_HOST": "127.0.0.1",
                    "TORTIE_HEALTH_PORT": str(cfg.agent_health_port),
                }
            )
        env["TORTIE_MTU_FILE"] = cfg.mtu_file
        env.update(cfg.agent_env)
        return ChildProcess("agent", argv, env, on_exit=self._wake.set)

    def cni_component(self) -> InProcess:
        from tortie.cni.service import CniService, ServiceConfig

        def make() -> CniService:
            self._cni = CniService(ServiceConfig(self.config.cni_socket))
            return self._cni

        return InProcess("cni", make, on_exit=self._wake.set)

    def bgp_component(self) -> InProcess:
        cfg = self.config
        options = ViewOptions(
            agent_route_protocol=cfg.agent_route_protocol,
            workload_iface_prefixes=cfg.workload_interface_prefixes,
            timers=Timers.fast() if cfg.fast_bgp_timers else Timers(),
            secrets=FileSecrets(cfg.secrets_dir),
        )
        daemon_config = DaemonConfig(
            hostname=cfg.hostname, run_dir=cfg.run_dir, view_options=options, bird_binary=cfg.bird_binary
        )
        return InProcess("bgp", lambda: BgpDaemon(self.ds, daemon_config), on_exit=self._wake.set)

    # -- status ----------------------------------------------------------------------------------
    def status(self, stopping: bool = False) -> dict[str, Any]:
        components = self.supervisor.status() if self.supervisor is not None else {}
        if "agent" in components:
            agent = components["agent"]
            if self.health is None:
                agent["ready"] = None
            else:
                if agent["pid"] != self._agent_pid:  # a new agent: forget the old one's answer
                    self._agent_pid = agent["pid"]
                    self.health.forget()
                agent["ready"] = bool(agent["running"] and self.health.ready)
        if "cni" in components:
            components["cni"]["ready"] = bool(
                components["cni"]["running"] and self._cni is not None and self._cni.ready.is_set()
            )
            components["cni"]["socket"] = self.config.cni_socket
        if "bgp" in components:
            bgp_health = read_health(self.config.run_dir) or {}
            components["bgp"]["ready"] = bool(components["bgp"]["running"] and bgp_health.get("ready"))
            components["bgp"]["bird"] = bgp_health.get("bird")
        ready = (
            bool(components)
            and not stopping
            and all(c.get("ready") is not False for c in components.values())
        )
        return {
            "hostname": self.config.hostname,
            "pid": os.getpid(),
            "updated": time.time(),
            "stopping": stopping,
            "node": dict(self.registered),
            "mtuFile": self.config.mtu_file,
            "bgp": "bird" if self.config.run_bgp else "none",
            "components": components,
            "ready": ready,
        }

    def write_status(self, *, force: bool = False, stopping: bool = False) -> None:
        now = time.monotonic()
        doc = self.status(stopping)
        comparable = {k: v for k, v in doc.items() if k not in ("updated", "components")}
        comparable["components"] = {
            name: {k: v for k, v in comp.items() if k not in ("uptime", "nextStartIn")}
            for name, comp in doc["components"].items()
        }
        if not force and comparable == self._last_doc and now - self._last_status < STATUS_INTERVAL:
            return
        self._last_doc = comparable
        self._last_status = now
        write_atomically(os.path.join(self.config.run_dir, STATUS_FILE), json.dumps(doc, indent=2) + "\n")

    # -- main loop -------------------------------------------------------------------------------
    def _restart_unlive_agent(self) -> None:
        """An agent process that runs but has said for AGENT_LIVENESS_GRACE seconds that a part of it
        is not live (a hung thread) is restarted, as a liveness probe would."""
        health, supervisor = self.health, self.supervisor
        if health is None or supervisor is None or health.unlive_since is None:
            return
        if time.monotonic() - health.unlive_since < AGENT_LIVENESS_GRACE:
            return
        supervisor.restart("agent", f"not live for {AGENT_LIVENESS_GRACE:.0f}s ({health.detail})")
        health.forget()

    def _ipam_gc(self) -> IpamGcLoop | None:
        """This host's periodic IPAM garbage collection (started), unless its interval is 0."""
        cfg = self.config
        if cfg.ipam_gc_interval <= 0:
            return None
        prefixes = cfg.workload_interface_prefixes
        collector = IpamCollector(
            self.ds, cfg.hostname, lambda: read_kernel(prefixes), cfg.ipam_gc_grace, cfg.ipam_lock_file
        )
        loop = IpamGcLoop(collector, cfg.ipam_gc_interval)
        loop.start()
        return loop

    def _wake_on(self, stop: threading.Event) -> None:
        stop.wait()
        self._wake.set()

    def _loop_timeout(self) -> float:
        """How long the loop may sleep: until the next restart is due, at most LOOP_INTERVAL while
        the node is not ready and IDLE_INTERVAL once it is."""
        ready = self._last_doc is not None and bool(self._last_doc.get("ready"))
        timeout = IDLE_INTERVAL if ready else LOOP_INTERVAL
        due = self.supervisor.next_due() if self.supervisor is not None else None
        return timeout if due is None else min(timeout, due)

    def run(self, stop: threading.Event) -> int:
        cfg = self.config
        os.makedirs(cfg.run_dir, exist_ok=True)
        try:
            if not self.register(stop):
                return EXIT_OK
        except TortieError as exc:
            log.error("node registration failed host=%s error=%s", cfg.hostname, exc)
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        components: list[Component] = []
        if cfg.run_agent:
            components.append(self.agent_component())
            if cfg.agent_health_port > 0:
                self.health = AgentHealthPoller(cfg.agent_health_port, on_change=self._wake.set)
                self.health.start()
        if cfg.cni_socket:
            components.append(self.cni_component())
        if cfg.run_bgp:
            if self.registered.get("ipv4Address") or self.registered.get("ipv6Address"):
                components.append(self.bgp_component())
            else:
                log.warning("no BGP address registered host=%s; not running BGP", cfg.hostname)
        self.supervisor = Supervisor(components, initial=cfg.restart_initial, maximum=cfg.restart_max)
        # CalicoNodeStatus objects naming this node are filled by their own thread.
        reporter = NodeStatusReporter(self.ds, cfg.hostname, cfg.run_dir, families_of(self.registered))
        reporter.start()
        tunnels = TunnelAddressKeeper(self.ds, cfg.hostname)
        tunnels.start()
        gc = self._ipam_gc()
        log.info(
            "node service running host=%s components=%s", cfg.hostname, ",".join(c.name for c in components)
        )
        threading.Thread(target=self._wake_on, args=(stop,), name="node-stop", daemon=True).start()
        try:
            while not stop.is_set():
                self._wake.clear()  # before the work: a wake during it makes the next wait return at once
                self._restart_unlive_agent()
                self.supervisor.step()
                self.write_status(force=self.supervisor.changed)
                self.supervisor.changed = False
                self._wake.wait(self._loop_timeout())
        finally:
            tunnels.stop()
            if gc is not None:
                gc.stop()
            reporter.stop()
            self.write_status(force=True, stopping=True)
            self.supervisor.stop_all()
            if self.health is not None:
                self.health.stop()
            self.write_status(force=True, stopping=True)
            log.info("node service stopped host=%s", cfg.hostname)
        return EXIT_OK
