"""A small network-namespace test bed for BGP tests and benchmarks: fabrics, hosts, routers, workloads,
and in-process tortie BGP daemons driving real BIRD processes.

    fabric ns  (bridge br0)  <-- veth -->  host ns  eth0 = <subnet> + index, forwarding on
                             <-- veth -->  router ns  legN = <subnet> + index (may join several fabrics)
    host ns  caliN <-- veth --> workload ns eth0 = IP/32, default via 169.254.1.1 (Calico style)

Everything is named `<prefix>-<role><n>` with a per-instance prefix (pid + random), so parallel tests
never collide, and nothing touches the root namespace. `close()` stops every process the bed started
(by pid: daemons first, then routers' processes) and deletes every namespace it created; use it as a
context manager.

A fabric's subnet is IPv4 or IPv6. On an IPv6 fabric addresses skip duplicate address detection,
`bird_routes` reads the host's IPv6 routes, `node_manifest` writes `ipv6Address` for an IPv6
address (the node is then IPv6-only), and gobgpd takes an IPv4 router id beside IPv6 neighbours.

What the agent would do is simulated with `add_workload_route` / `add_block_blackhole`: routes with
the agent's protocol number (77) exactly as the agent writes them, so BIRD learns them the same way.

This exists because `tortie.lab` was not available when the BGP tests were written; it is
deliberately small (see docs/design/bgp.md, "Test bed").
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

from tortie.bgp.daemon import BgpDaemon, DaemonConfig
from tortie.bgp.view import DEFAULT_AGENT_ROUTE_PROTOCOL, Timers, ViewOptions
from tortie.common.ipfamily import V4, V6, Family, IPInterface, IPNetwork, family_of
from tortie.datastore.api import Datastore


def run(cmd: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "") -> None:
    """Poll `predicate` until it is true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class Fabric:
    name: str  # namespace holding the bridge
    subnet: IPNetwork
    ports: int = 0

    @property
    def family(self) -> Family:
        return family_of(self.subnet)

    def address(self, index: int) -> IPInterface:
        return ipaddress.ip_interface(f"{self.subnet.network_address + index}/{self.subnet.prefixlen}")


@dataclass
class Host:
    name: str  # tortie Node name
    ns: str
    address: IPInterface
    run_dir: str
    fabric: Fabric
    workloads: int = 0
    daemon: BgpDaemon | None = None
    thread: threading.Thread | None = None


@dataclass
class Router:
    name: str
    ns: str
    legs: dict[str, IPInterface] = field(default_factory=dict)  # fabric name -> address


class BgpTestBed:
    def __init__(self, workdir: str, prefix: str = "tb") -> None:
        self.workdir = workdir
        self.tag = f"{prefix}{os.getpid() % 10000}{secrets.token_hex(2)}"
        self.namespaces: list[str] = []
        self.hosts: dict[str, Host] = {}
        self.routers: dict[str, Router] = {}
        self.fabrics: dict[str, Fabric] = {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> BgpTestBed:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for host in self.hosts.values():
            self.stop_daemon(host.name)
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for fh in self._logs:
            fh.close()
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()

    # -- building ------------------------------------------------------------------------------
    def _netns(self, role: str) -> str:
        name = f"{self.tag}-{role}"
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def exec(self, ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", ns, *cmd], check=check)

    def sysctl(self, ns: str, key: str, value: str) -> None:
        self.exec(ns, "sysctl", "-q", "-w", f"{key}={value}")

    def add_fabric(self, name: str, subnet: str) -> Fabric:
        ns = self._netns(name)
        run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", ns, "link", "set", "br0", "up"])
        fabric = Fabric(ns, ipaddress.ip_network(subnet))
        self.fabrics[name] = fabric
        return fabric

    def _attach(self, fabric: Fabric, ns: str, ifname: str, index: int) -> IPInterface:
        fabric.ports += 1
        port = f"p{fabric.ports}"
        run(["ip", "-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", port,
             "netns", fabric.name])
        run(["ip", "-n", fabric.name, "link", "set", port, "master", "br0", "up"])
        address = fabric.address(index)
        nodad = ["nodad"] if fabric.family is V6 else []
        run(["ip", "-n", ns, "addr", "add", str(address), "dev", ifname, *nodad])
        run(["ip", "-n", ns, "link", "set", ifname, "up"])
        return address

    def _forward(self, ns: str) -> None:
        self.sysctl(ns, "net.ipv4.ip_forward", "1")
        self.sysctl(ns, "net.ipv6.conf.all.forwarding", "1")

    def add_host(self, name: str, fabric: Fabric, index: int) -> Host:
        ns = self._netns(name)
        address = self._attach(fabric, ns, "eth0", index)
        self._forward(ns)
        # Proxy ARP for 169.254.1.1 needs a unicast route to it via another device (notes: linux-lab).
        run(["ip", "-n", ns, "route", "add", "169.254.1.1/32", "dev", "lo"])
        run_dir = os.path.join(self.workdir, name)
        os.makedirs(run_dir, exist_ok=True)
        host = Host(name, ns, address, run_dir, fabric)
        self.hosts[name] = host
        return host

    def add_router(self, name: str, legs: Sequence[tuple[Fabric, int]]) -> Router:
        ns = self._netns(name)
        router = Router(name, ns)
        for i, (fabric, index) in enumerate(legs):
            router.legs[fabric.name] = self._attach(fabric, ns, f"leg{i}", index)
        self._forward(ns)
        self.routers[name] = router
        return router

    # -- what the agent would do ---------------------------------------------------------------
    def add_block_blackhole(self, host: str, cidr: str) -> None:
        run(["ip", "-n", self.hosts[host].ns, "route", "replace", "blackhole", cidr,
             "proto", str(DEFAULT_AGENT_ROUTE_PROTOCOL)])

    def add_workload_route(self, host: str, ip: str) -> str:
        """A host route (/32, /128) `dev caliN scope link proto 77` on a veth whose other end stays in
        the host."""
        h = self.hosts[host]
        h.workloads += 1
        ifname = f"cali{h.workloads}"
        run(["ip", "-n", h.ns, "link", "add", ifname, "type", "veth", "peer", "name", f"wl{h.workloads}"])
        run(["ip", "-n", h.ns, "link", "set", ifname, "up"])
        run(["ip", "-n", h.ns, "link", "set", f"wl{h.workloads}", "up"])
        run(["ip", "-n", h.ns, "route", "add", family_of(ip).host_cidr(ip), "dev", ifname, "scope", "link",
             "proto", str(DEFAULT_AGENT_ROUTE_PROTOCOL)])
        return ifname

    def del_workload_route(self, host: str, ip: str) -> None:
        run(["ip", "-n", self.hosts[host].ns, "route", "del", f"{ip}/32", "proto",
             str(DEFAULT_AGENT_ROUTE_PROTOCOL), "scope", "link"])

    def add_workload(self, host: str, ip: str) -> str:
        """A Calico-style workload namespace with `ip`/32; returns the workload namespace."""
        h = self.hosts[host]
        h.workloads += 1
        wns = self._netns(f"{host}w{h.workloads}")
        ifname = f"cali{h.workloads}"
        run(["ip", "-n", h.ns, "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", wns])
        self.sysctl(h.ns, f"net.ipv4.conf.{ifname}.proxy_arp", "1")
        self.sysctl(h.ns, f"net.ipv4.neigh.{ifname}.proxy_delay", "0")
        run(["ip", "-n", h.ns, "link", "set", ifname, "up"])
        run(["ip", "-n", wns, "addr", "add", f"{ip}/32", "dev", "eth0"])
        run(["ip", "-n", wns, "link", "set", "eth0", "up"])
        run(["ip", "-n", wns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"])
        run(["ip", "-n", wns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"])
        run(["ip", "-n", h.ns, "route", "add", f"{ip}/32", "dev", ifname, "scope", "link",
             "proto", str(DEFAULT_AGENT_ROUTE_PROTOCOL)])
        return wns

    # -- observing -----------------------------------------------------------------------------
    def routes(self, ns: str, proto: str | None = None, family: Family = V4) -> dict[str, str]:
        """Kernel routes of a namespace in `family`: destination -> the rest of the `ip route` line."""
        cmd = ["ip", "-n", ns, family.ip_flag, "route", "show"]
        if proto is not None:
            cmd += ["proto", proto]
        out: dict[str, str] = {}
        for line in run(cmd).stdout.splitlines():
            parts = line.split(None, 1)
            if not parts:
                continue
            dst = parts[0]
            rest = parts[1] if len(parts) > 1 else ""
            if dst in ("blackhole", "unreachable", "prohibit"):
                dst, _, rest2 = rest.partition(" ")
                rest = f"{parts[0]} {rest2}"
            if "/" not in dst and dst != "default":
                dst = family.host_cidr(dst)
            out[dst] = rest
        return out

    def bird_routes(self, host: str) -> dict[str, str]:
        """Routes BIRD wrote into a host's kernel, in the family of the host's fabric."""
        h = self.hosts[host]
        return self.routes(h.ns, "bird", h.fabric.family)

    # -- processes -----------------------------------------------------------------------------
    def start_process(self, ns: str, argv: Sequence[str], log_path: str,
                      user_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        fh = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(fh)
        env = dict(os.environ, **(user_env or {}))
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=fh, stderr=fh,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.processes.append(proc)
        return proc

    def start_daemon(self, ds: Datastore, host: str, *, timers: Timers | None = None) -> BgpDaemon:
        h = self.hosts[host]
        cfg = DaemonConfig(
            hostname=host, run_dir=h.run_dir,
            view_options=ViewOptions(timers=timers or Timers.fast()),
            bird_command_prefix=("ip", "netns", "exec", h.ns),
            restart_backoff_initial=0.2, restart_backoff_max=2.0,
        )
        daemon = BgpDaemon(ds, cfg)
        thread = threading.Thread(target=daemon.run, name=f"bgp-{host}", daemon=True)
        thread.start()
        h.daemon, h.thread = daemon, thread
        return daemon

    def wait_ready(self, hosts: Sequence[str] | None = None, timeout: float = 20) -> None:
        """Wait until the daemons of `hosts` (default: all) report ready in status.json."""
        from tortie.bgp.daemon import read_health

        names = list(hosts) if hosts is not None else list(self.hosts)
        def ready() -> bool:
            return all((read_health(self.hosts[h].run_dir) or {}).get("ready") is True for h in names)

        wait_until(ready, timeout, what=f"BGP daemons ready on {names}")

    def stop_daemon(self, host: str) -> None:
        h = self.hosts[host]
        if h.daemon is not None:
            h.daemon.stop()
        if h.thread is not None:
            h.thread.join(15)
        h.daemon, h.thread = None, None


def frr_available() -> bool:
    return os.path.exists("/usr/lib/frr/bgpd") and os.path.exists("/usr/lib/frr/zebra")


def gobgp_available() -> bool:
    return shutil.which("gobgpd") is not None and shutil.which("gobgp") is not None


def lab_marks(*, gobgp: bool = False, frr: bool = False) -> list[Any]:
    """The pytest marks of a BGP lab test: root, BIRD, and gobgpd / FRR when it uses them (skipped,
    saying what to install, when they are missing)."""
    import pytest

    marks = [pytest.mark.root,
             pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2)")]
    if gobgp:
        marks.append(pytest.mark.skipif(not gobgp_available(),
                                        reason="needs gobgpd (apt-get install gobgpd)"))
    if frr:
        marks.append(pytest.mark.skipif(not frr_available(), reason="needs FRR (apt-get install frr)"))
    return marks


# --------------------------------------------------------------------------- datastore content


def apply_manifests(ds: Datastore, text: str) -> None:
    """Apply YAML manifests (validated through the model) to the datastore."""
    from tortie.datastore.resources import ResourceStore
    from tortie.model import load_resources

    store = ResourceStore(ds)
    for res in load_resources(text, source="<test>"):
        store.apply(res)


def put_block(ds: Datastore, cidr: str, host: str | None) -> None:
    """Write an (empty) IPAM block affine to `host`, in Calico's backend JSON at Calico's key."""
    from tortie.ipam.keys import block_key
    from tortie.model.ipam_block import Block as IpamBlock
    from tortie.model.ipam_records import encode_block

    net = ipaddress.ip_network(cidr)
    ds.put(block_key(net), encode_block(IpamBlock.new(net, f"host:{host}" if host else None)))


def pool_manifest(cidr: str, name: str = "pool") -> str:
    return (f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\n"
            f"spec: {{cidr: {cidr}}}\n---\n")


def node_manifest(name: str, address: str, *, labels: dict[str, str] | None = None,
                  as_number: int | None = None, rr_cluster_id: str | None = None) -> str:
    bgp = [f"{family_of(address).key}Address: '{address}'"]
    if as_number is not None:
        bgp.append(f"asNumber: {as_number}")
    if rr_cluster_id is not None:
        bgp.append(f"routeReflectorClusterID: {rr_cluster_id}")
    label_text = ", ".join(f'{k}: "{v}"' for k, v in (labels or {}).items())
    return ("apiVersion: projectcalico.org/v3\nkind: Node\n"
            f"metadata: {{name: {name}, labels: {{{label_text}}}}}\n"
            f"spec: {{bgp: {{{', '.join(bgp)}}}}}\n---\n")


# --------------------------------------------------------------------------- external routers


class FrrRouter:
    """zebra + bgpd (FRR) inside a router namespace, as user frr, with files in their own directory
    (world-traversable, owned by frr: FRR drops privileges and cannot use root's temp dirs)."""

    def __init__(self, bed: BgpTestBed, router: Router, bgpd_conf: str) -> None:
        import pwd
        import tempfile

        self.bed = bed
        self.router = router
        self.dir = tempfile.mkdtemp(prefix=f"tortie-frr-{router.name}-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.dir, "zebra.conf"), "w") as fh:
            fh.write(f"hostname {router.name}\n")
        with open(os.path.join(self.dir, "bgpd.conf"), "w") as fh:
            fh.write(bgpd_conf)
        frr = pwd.getpwnam("frr")
        for entry in [self.dir, *(os.path.join(self.dir, f) for f in os.listdir(self.dir))]:
            os.chown(entry, frr.pw_uid, frr.pw_gid)
        common = ["-z", os.path.join(self.dir, "zserv.api"), "--vty_socket", self.dir, "-P", "0"]
        self.zebra = bed.start_process(router.ns, [
            "/usr/lib/frr/zebra", "-f", os.path.join(self.dir, "zebra.conf"),
            "-i", os.path.join(self.dir, "zebra.pid"), *common],
            os.path.join(bed.workdir, f"{router.name}-zebra.log"))
        wait_until(lambda: os.path.exists(os.path.join(self.dir, "zserv.api")), 10, what="zebra socket")
        self.bgpd = bed.start_process(router.ns, [
            "/usr/lib/frr/bgpd", "-f", os.path.join(self.dir, "bgpd.conf"),
            "-i", os.path.join(self.dir, "bgpd.pid"), *common],
            os.path.join(bed.workdir, f"{router.name}-bgpd.log"))

    def vtysh(self, command: str) -> str:
        return self.bed.exec(self.router.ns, "vtysh", "--vty_socket", self.dir, "-c", command).stdout

    def close(self) -> None:
        for proc in (self.bgpd, self.zebra):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def gobgp_toml(asn: int, router_id: str, neighbors: Sequence[tuple[str, int]], *, timers: str = "",
               extra: dict[str, str] | None = None) -> str:
    """A gobgpd configuration: `neighbors` as (address, peer AS), each in the unicast family of its
    address (gobgpd's default), `router_id` an IPv4 address; every neighbour retries connecting
    every second, plus the `timers` lines (TOML, e.g. `hold-time = 6`); `extra` adds TOML tables
    to the neighbour of that address (e.g. its `[neighbors.ttl-security.config]`)."""
    out = f'[global.config]\n  as = {asn}\n  router-id = "{router_id}"\n'
    for address, peer_as in neighbors:
        out += (f'\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = "{address}"\n'
                f"    peer-as = {peer_as}\n  [neighbors.timers.config]\n    connect-retry = 1\n")
        out += "".join(f"    {line.strip()}\n" for line in timers.splitlines() if line.strip())
        out += (extra or {}).get(address, "")
    return out


class GobgpRouter:
    """gobgpd inside a router namespace; its gRPC API on the namespace's own loopback."""

    API_PORT = 50051  # inside a fresh namespace nothing else can hold it

    def __init__(self, bed: BgpTestBed, router: Router, toml: str) -> None:
        self.bed = bed
        self.router = router
        self.conf = os.path.join(bed.workdir, f"{router.name}-gobgpd.toml")
        with open(self.conf, "w") as fh:
            fh.write(toml)
        self.proc = bed.start_process(router.ns, [
            "gobgpd", "-f", self.conf, "-p", "--pprof-disable", f"--api-hosts=127.0.0.1:{self.API_PORT}"],
            os.path.join(bed.workdir, f"{router.name}-gobgpd.log"))
        wait_until(lambda: bed.exec(router.ns, *self._cli("global"), check=False).returncode == 0,
                   10, what="gobgpd API")

    def _cli(self, *args: str) -> list[str]:
        return ["gobgp", "-u", "127.0.0.1", "-p", str(self.API_PORT), *args]

    def cli(self, *args: str) -> str:
        return self.bed.exec(self.router.ns, *self._cli(*args)).stdout

    def established(self) -> set[str]:
        """Neighbour addresses gobgpd has an Established session with."""
        import json

        return {n["state"]["neighbor_address"] for n in json.loads(self.cli("neighbor", "-j"))
                if n.get("state", {}).get("session_state") in (6, "established", "ESTABLISHED")}

    def rib_prefixes(self, family: Family = V4) -> set[str]:
        """Prefixes of `family` in gobgpd's global RIB (what it received plus what it originated)."""
        import json

        data = json.loads(self.cli("global", "rib", "-a", family.key, "-j") or "{}")
        return set(data) if isinstance(data, dict) else set()
