"""`tortie lab`'s virtual datacenter: hosts running `tortie node run`, a ToR, workloads via CNI.

    Datacenter.up(LabSpec(name, hosts, workloads_per_host, datastore, tor, route_reflectors), progress)
      Lab.create: fabric <name>-fab + hosts <name>-h1..hK              (tortie.lab.lab)
      datastore:  sqlite file in <workdir>/data, or 3 etcd members on the fabric + relay (etcd_members)
      seed:       IPPool lab-pool, BGPConfiguration default (AS, mesh), BGPPeer to the ToR,
                  route reflectors (Node labels + cluster ID, BGPPeer to them, mesh off)
      ToR:        <name>-tor at <subnet>.1, gobgpd or FRR                   (routers)
      workloads:  w<host>-<n> through the CNI plugin, several at a time      (cni_workloads)
      per host:   python -m tortie.cli.main node run --hostname hN ...       (inside the host namespace)
      ready:      every node ready, every BGP session Established, every host routes every remote
                  workload via that workload's host (BGP-learned kernel routes)

Everything is recorded in `<workdir>/lab.json` (workdir `<root>/<name>`, root `/run/tortie/lab` or
$TORTIE_LAB_ROOT) before it is created, so `down()` — from any process — removes exactly what the lab
made. A failure while building tears the partial lab down and re-raises.

Other processes re-open a lab with `Datacenter.open(name)`; commands that change it hold
`<workdir>/.lock` (flock) for their duration, so concurrent `tortie lab workload add` calls do not lose
each other's records.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tortie.common.errors import UserError
from tortie.datastore.api import Datastore
from tortie.lab.cni_workloads import CniWorkloads, NetworkConfig, parse_ports
from tortie.lab.lab import DEFAULT_SUBNET, Lab, LabError
from tortie.lab.probe import Probe, run_probes
from tortie.lab.state import DatacenterRecord, WorkloadRecord, load_state

DEFAULT_ROOT = "/run/tortie/lab"
DEFAULT_NAME = "tortie"
DATASTORES = ("sqlite", "etcd")
TORS = ("gobgp", "frr", "none")
RR_CLUSTER_ID = "244.0.0.1"
TOR_INDEX = 1

Progress = Callable[[str], None]


class LabExists(LabError, UserError):
    """A lab of that name (or namespaces with its prefix) already exists."""


class NoSuchLab(LabError, UserError):
    """No lab of that name is recorded."""


def lab_root() -> Path:
    return Path(os.environ.get("TORTIE_LAB_ROOT") or DEFAULT_ROOT)


def lab_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root) / name if root is not None else lab_root() / name


@dataclass(frozen=True)
class LabSpec:
    name: str = DEFAULT_NAME
    hosts: int = 3
    workloads_per_host: int = 0
    datastore: str = "sqlite"
    tor: str = "none"
    route_reflectors: int = 0
    subnet: str = DEFAULT_SUBNET
    pool: str = "10.244.0.0/16"
    block_size: int = 26
    host_as: int = 64512
    tor_as: int = 65000
    etcd_members: int = 3

    def check(self) -> None:
        problems = []
        if not 1 <= self.hosts <= 200:
            problems.append(f"--hosts {self.hosts}: 1..200")
        if not 0 <= self.workloads_per_host <= 200:
            problems.append(f"--workloads-per-host {self.workloads_per_host}: 0..200")
        if self.datastore not in DATASTORES:
            problems.append(f"--datastore {self.datastore!r}: one of {', '.join(DATASTORES)}")
        if self.tor not in TORS:
            problems.append(f"--tor {self.tor!r}: one of {', '.join(TORS)}")
        if not 0 <= self.route_reflectors <= self.hosts:
            problems.append(
                f"--route-reflectors {self.route_reflectors}: 0..{self.hosts} (hosts act as reflectors)"
            )
        if problems:
            raise UserError("invalid lab: " + "; ".join(problems))


def _seed_manifests(spec: LabSpec, hosts: Sequence[str], tor_ip: str | None) -> list[dict[str, Any]]:
    def res(
        kind: str, name: str, spec_: dict[str, Any], labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = labels
        return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec_}

    out = [
        res("IPPool", "lab-pool", {"cidr": spec.pool, "blockSize": spec.block_size, "nodeSelector": "all()"}),
        res(
            "BGPConfiguration",
            "default",
            {
                "asNumber": spec.host_as,
                "logSeverityScreen": "Info",
                "nodeToNodeMeshEnabled": spec.route_reflectors == 0,
            },
        ),
    ]
    if tor_ip is not None:
        out.append(res("BGPPeer", "tor", {"peerIP": tor_ip, "asNumber": spec.tor_as}))
    if spec.route_reflectors:
        for host in hosts[: spec.route_reflectors]:
            out.append(
                res(
                    "Node",
                    host,
                    {"bgp": {"routeReflectorClusterID": RR_CLUSTER_ID}},
                    {"route-reflector": "true"},
                )
            )
        out.append(
            res(
                "BGPPeer",
                "peer-with-route-reflectors",
                {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
            )
        )
    return out


class Datacenter:
    """A lab built by `up` (see the module docstring)."""

    def __init__(self, lab: Lab) -> None:
        if lab.state.datacenter is None:
            raise NoSuchLab(f"{lab.workdir} holds a lab built by the library, not by `tortie lab up`")
        self.lab = lab
        self.record: DatacenterRecord = lab.state.datacenter

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, name: str, root: str | os.PathLike[str] | None = None) -> Datacenter:
        workdir = lab_dir(name, root)
        if load_state(workdir) is None:
            raise NoSuchLab(
                f"no lab named {name!r} (nothing recorded in {workdir}); create one with `tortie lab up`"
            )
        return cls(Lab.load(workdir))

    @staticmethod
    @contextlib.contextmanager
    def locked(name: str, root: str | os.PathLike[str] | None = None) -> Iterator[None]:
        """Hold the lab's lock file (serialises commands that change the lab)."""
        workdir = lab_dir(name, root)
        if not workdir.is_dir():
            raise NoSuchLab(f"no lab named {name!r} ({workdir} does not exist)")
        with open(workdir / ".lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @property
    def name(self) -> str:
        return self.lab.name

    @property
    def hosts(self) -> list[str]:
        return list(self.lab.state.hosts)

    @property
    def run_dirs(self) -> dict[str, str]:
        return {h: os.path.join(self.record.run_root, h) for h in self.lab.state.hosts}

    def datastore(self) -> Datastore:
        """A client of the lab's datastore from this (root) namespace; the caller closes it."""
        from tortie.datastore.url import open_datastore

        return open_datastore(self.record.client_url)

    # -- building ------------------------------------------------------------------------------------
    @classmethod
    def up(
        cls,
        spec: LabSpec,
        *,
        root: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
        timeout: float = 120.0,
    ) -> Datacenter:
        spec.check()
        started = time.monotonic()

        def say(message: str) -> None:
            if progress is not None:
                progress(f"[{time.monotonic() - started:5.1f}s] {message}")

        workdir = lab_dir(spec.name, root)
        if load_state(workdir) is not None:
            raise LabExists(
                f"lab {spec.name!r} already exists ({workdir}); remove it with "
                f"`tortie lab down --name {spec.name}` or pick another --name"
            )
        taken = [ns for ns in _netns_list() if ns.startswith(f"{spec.name}-")]
        if taken:
            raise LabExists(
                f"network namespaces named {spec.name}-* already exist ({', '.join(taken[:5])}); "
                "pick another --name"
            )
        from tortie.cni.install import install

        lab = Lab.create(spec.name, workdir, hosts=spec.hosts, subnet=spec.subnet)
        try:
            lab.record_file(workdir / ".lock")
            hosts = list(lab.state.hosts)
            say(f"fabric {lab.state.fabric_netns} and {len(hosts)} hosts: {' '.join(hosts)}")
            run_root = lab.record_tree(workdir / "run")
            cni_root = lab.record_tree(workdir / "cni")
            if spec.datastore == "etcd":
                from tortie.lab.etcd_members import start_cluster

                endpoints = start_cluster(lab, spec.etcd_members)
                inner, client, ports = endpoints.inner_url, endpoints.client_url, endpoints.relay_ports
                say(
                    f"etcd: {spec.etcd_members} members on the fabric ({inner.removeprefix('etcd://')}), "
                    f"relay for this namespace: {client}"
                )
            else:
                data = lab.record_tree(workdir / "data")
                inner = client = f"sqlite://{data / 'datastore.db'}"
                ports = []
                say(f"datastore: {inner}")
            tor_ip = None
            if spec.tor != "none":
                tor = lab.add_appliance("tor", TOR_INDEX, "router", kind=spec.tor, asn=spec.tor_as)
                tor_ip = str(ipaddress.ip_interface(tor.address).ip)
            lab.state.datacenter = DatacenterRecord(
                datastore_kind=spec.datastore,
                datastore_url=inner,
                client_url=client,
                pool=spec.pool,
                block_size=spec.block_size,
                host_as=spec.host_as,
                tor=spec.tor,
                tor_as=spec.tor_as,
                route_reflectors=hosts[: spec.route_reflectors],
                cni_bin=str(cni_root / "bin"),
                run_root=str(run_root),
                etcd_ports=ports,
            )
            dc = cls(lab)
            dc._seed(spec, hosts, tor_ip)
            if tor_ip is not None:
                from tortie.lab.routers import start_router

                start_router(lab, lab.state.appliances["tor"], spec.host_as)
                say(f"ToR tor ({spec.tor}, AS {spec.tor_as}) at {tor_ip}")
            install(cni_root / "bin")
            # Workloads first: the CNI plugin needs only the datastore and the host namespace (it writes
            # the host routes itself; the agent adopts them), and nodes that start afterwards read every
            # endpoint and block in one listing instead of reacting to each creation on every host.
            names = [  # round robin over hosts: each host's IPAM calls are serialised by its lock file
                (f"w{i}-{j}", host)
                for j in range(1, spec.workloads_per_host + 1)
                for i, host in enumerate(hosts, 1)
            ]
            if names:
                dc.add_workloads(names, progress=say)
            for host in hosts:
                dc.start_node(host)
            say(f"tortie node run started on {len(hosts)} hosts")
            dc.wait_ready(timeout=timeout, progress=say)
            say(f"lab {spec.name} is ready")
            return dc
        except BaseException:
            lab.down()
            raise

    def _seed(self, spec: LabSpec, hosts: Sequence[str], tor_ip: str | None) -> None:
        from tortie.datastore.resources import ResourceStore
        from tortie.model import parse_resource

        ds = self.datastore()
        try:
            store = ResourceStore(ds)
            store.apply_all([parse_resource(m, source="lab") for m in _seed_manifests(spec, hosts, tor_ip)])
        finally:
            ds.close()

    # -- nodes ---------------------------------------------------------------------------------------
    def start_node(self, host: str) -> int:
        """Start `tortie node run` inside host `host` (BGP address from its eth0); returns the pid."""
        run_dir = self.run_dirs[host]
        os.makedirs(run_dir, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "tortie.cli.main",
            "node",
            "run",
            "--hostname",
            host,
            "--datastore",
            self.record.datastore_url,
            "--ip-autodetection-method",
            "interface=^eth0$",
            "--run-dir",
            run_dir,
            "--fast-bgp-timers",
            "--nodename-file",
            "",
        ]
        env = {k: v for k, v in os.environ.items() if k != "TORTIE_DATASTORE"}
        return self.lab.start_process(host, argv, env=env, role=f"node/{host}")

    def node_pid(self, host: str) -> int | None:
        record = self.lab.process_by_role(f"node/{host}")
        return record.pid if record is not None and self.lab.process_running(record.pid) else None

    def stop_node(self, host: str) -> None:
        """SIGTERM the node service of `host` (the agent and BIRD stop; the kernel keeps its routes)."""
        record = self.lab.process_by_role(f"node/{host}")
        if record is not None:
            self.lab.stop_process(record.pid, timeout=15.0)

    def take_host_down(self, host: str) -> None:
        """Stop the host's node service (its BGP sessions close), then cut its fabric link."""
        self.stop_node(host)
        self.lab.exec("fab", ["ip", "link", "set", self.lab.host(host).fabric_port, "down"])

    def bring_host_up(self, host: str) -> int:
        self.lab.exec("fab", ["ip", "link", "set", self.lab.host(host).fabric_port, "up"])
        return self.start_node(host)

    def node_status(self, host: str) -> dict[str, Any] | None:
        from tortie.node.service import read_node_status

        return read_node_status(self.run_dirs[host])

    def bgp_peers(self, host: str) -> list[dict[str, Any]] | None:
        """BIRD's sessions on `host` (None when BIRD does not answer)."""
        from tortie.bgp.control import BirdControl, BirdNotRunning
        from tortie.bgp.daemon import RunPaths
        from tortie.bgp.status import query_peers

        try:
            with BirdControl(RunPaths(self.run_dirs[host]).socket, timeout=2.0) as ctl:
                return [p.to_json() for p in query_peers(ctl)]
        except (BirdNotRunning, OSError):
            return None

    def bird_routes(self, host: str) -> dict[str, str]:
        """BGP-learned kernel routes of `host`: destination -> gateway (or the route type)."""
        text = self.lab.exec(host, ["ip", "-j", "-4", "route", "show", "proto", "bird"], check=False).stdout
        out: dict[str, str] = {}
        for route in json.loads(text or "[]"):
            dst = str(route.get("dst", ""))
            dst = dst if "/" in dst else f"{dst}/32"
            out[dst] = str(route.get("gateway") or route.get("type") or "")
        return out

    def kill_etcd_member(self, member: str) -> int:
        """SIGKILL etcd member `member` (e1, e2, ...), as a crash would; returns its pid. The record
        stays (`down()` skips processes that are gone)."""
        record = self.lab.process_by_role(f"etcd/{member}")
        if record is None or not self.lab.process_running(record.pid):
            raise LabError(f"no running etcd member {member!r} in lab {self.name}")
        os.kill(record.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while self.lab.process_running(record.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return record.pid

    # -- readiness -----------------------------------------------------------------------------------
    def up_hosts(self) -> list[str]:
        return [h for h in self.hosts if self.node_pid(h) is not None]

    def missing_routes(self, hosts: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Per host, the remote workloads (on other up hosts) it does not route via their host."""
        hosts = list(hosts) if hosts is not None else self.up_hosts()
        missing: dict[str, list[str]] = {}
        for host in hosts:
            routes = [(ipaddress.ip_network(dst), gw) for dst, gw in self.bird_routes(host).items()]
            for wl in self.lab.state.workloads.values():
                if wl.host == host or wl.host not in hosts:
                    continue
                via = self.lab.host_ip(wl.host)
                for ip in wl.ips:
                    address = ipaddress.ip_address(ip)
                    if address.version != 4:
                        continue
                    best = max(
                        (n for n, _gw in routes if address in n), key=lambda n: n.prefixlen, default=None
                    )
                    if best is None or dict(routes)[best] != via:
                        missing.setdefault(host, []).append(wl.name)
        return missing

    def wait_ready(
        self, timeout: float = 60.0, progress: Progress | None = None, hosts: Sequence[str] | None = None
    ) -> None:
        """Until every node of `hosts` (default: the running ones) is ready, its BGP sessions are all
        Established and it routes every remote workload; LabError naming what is missing otherwise."""
        deadline = time.monotonic() + timeout
        hosts = list(hosts) if hosts is not None else self.up_hosts()
        stage = 0
        what = ""
        while True:
            if stage == 0:
                statuses = {h: self.node_status(h) for h in hosts}
                waiting = [h for h, s in statuses.items() if not (s and s.get("ready"))]
                what = f"nodes not ready: {', '.join(waiting)}"
                if not waiting:
                    stage = 1
                    if progress:
                        progress(f"nodes ready: {len(hosts)}/{len(hosts)} (agent + BGP daemon + BIRD)")
            if stage == 1:
                sessions = {h: self.bgp_peers(h) or [] for h in hosts}
                total = sum(len(s) for s in sessions.values())
                stopped = {self.lab.host_ip(h) for h in self.hosts if h not in hosts}  # hosts taken down
                down = [
                    f"{h}->{p['peerAddress']}"
                    for h, s in sessions.items()
                    for p in s
                    if not p["established"] and p["peerAddress"] not in stopped
                ]
                routers = [a for a in self.lab.state.appliances.values() if a.role == "router"]
                lonely = len(self.hosts) + len(routers) == 1  # nobody to peer with
                empty = [] if lonely else [h for h, s in sessions.items() if not s]
                what = f"BGP sessions not established: {', '.join(down + empty)}"
                if not down and not empty:
                    stage = 2
                    if progress:
                        progress(f"BGP sessions established: {total}")
            if stage == 2:
                missing = self.missing_routes(hosts)
                what = "routes missing: " + "; ".join(f"{h} lacks {', '.join(w)}" for h, w in missing.items())
                if not missing:
                    if progress:
                        progress(
                            f"routes converged: every host routes every remote workload "
                            f"({len(self.lab.state.workloads)} workloads)"
                        )
                    return
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab {self.name} not ready after {timeout:.0f}s: {what} (logs: {self.lab.workdir}/logs)"
                )
            time.sleep(0.1)

    # -- workloads -----------------------------------------------------------------------------------
    def _cni(self) -> CniWorkloads:
        network = NetworkConfig(self.record.datastore_url, str(Path(self.record.cni_bin).parent))
        return CniWorkloads(self.lab, self.record.cni_bin, network)

    def add_workload(
        self,
        name: str,
        host: str,
        *,
        labels: Mapping[str, str] | None = None,
        namespace: str = "default",
        ports: Sequence[str] = (),
    ) -> WorkloadRecord:
        port_specs = parse_ports(list(ports)) if ports else []
        record = self._cni().add(name, host, labels=labels, namespace=namespace, ports=list(ports))
        if port_specs:
            try:
                self._set_ports(record, port_specs)
            except BaseException:
                self._cni().delete(name)
                raise
        return record

    def add_workloads(
        self, items: Sequence[tuple[str, str]], parallel: int = 4, progress: Progress | None = None
    ) -> list[WorkloadRecord]:
        """Create many (name, host) workloads, `parallel` CNI calls at a time."""
        cni = self._cni()
        done: list[WorkloadRecord] = []
        step = max(1, len(items) // 5)
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [pool.submit(cni.add, name, host) for name, host in items]
            for future in concurrent.futures.as_completed(futures):
                done.append(future.result())
                if progress and (len(done) % step == 0 or len(done) == len(items)):
                    progress(f"workloads created through CNI: {len(done)}/{len(items)}")
        return done

    def _set_ports(self, record: WorkloadRecord, ports: list[dict[str, Any]]) -> None:
        from tortie.datastore.resources import ResourceStore
        from tortie.model import parse_resource

        ds = self.datastore()
        try:
            store = ResourceStore(ds)
            current = store.get("WorkloadEndpoint", record.endpoint, record.namespace or "default")
            wire = current.to_wire()
            wire["spec"]["ports"] = ports
            store.update(parse_resource(wire, source=f"lab workload {record.name}"))
        finally:
            ds.close()

    def remove_workload(self, name: str) -> None:
        self._cni().delete(name)

    # -- probes --------------------------------------------------------------------------------------
    def endpoint_of(self, name: str) -> tuple[str, str]:
        """(namespace, address) of a workload, host or router name, or (fabric namespace, ip) of an IP."""
        state = self.lab.state
        if name in state.workloads:
            wl = state.workloads[name]
            if not wl.ips:
                raise LabError(f"workload {name} has no address")
            return wl.netns, wl.ips[0]
        if name in state.hosts:
            return state.hosts[name].netns, self.lab.host_ip(name)
        if name in state.appliances:
            appliance = state.appliances[name]
            return appliance.netns, str(ipaddress.ip_interface(appliance.address).ip)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            raise LabError(f"no workload, host or router {name!r} in lab {self.name}") from None
        return "", name

    def probe(self, src: str, dst: str, protocol: str = "tcp", port: int = 80, timeout: float = 2.0) -> bool:
        src_netns, _ = self.endpoint_of(src)
        if not src_netns:
            raise LabError(f"the source must be a workload, host or router of lab {self.name}, not {src!r}")
        dst_netns, dst_ip = self.endpoint_of(dst)
        return run_probes([Probe(src_netns, dst_netns or None, dst_ip)], protocol, port, timeout)[0]

    def matrix(
        self,
        protocol: str = "tcp",
        port: int = 80,
        timeout: float = 2.0,
        workloads: Sequence[str] | None = None,
    ) -> dict[str, dict[str, bool]]:
        """src -> dst -> allowed, over every ordered pair of distinct workloads."""
        names = list(workloads) if workloads is not None else sorted(self.lab.state.workloads)
        ends = {n: self.endpoint_of(n) for n in names}
        pairs = [(s, d) for s in names for d in names if s != d]
        results = run_probes(
            [Probe(ends[s][0], ends[d][0], ends[d][1]) for s, d in pairs], protocol, port, timeout
        )
        out: dict[str, dict[str, bool]] = {n: {} for n in names}
        for (s, d), ok in zip(pairs, results, strict=True):
            out[s][d] = ok
        return out

    # -- the rest ------------------------------------------------------------------------------------
    def env_lines(self) -> list[str]:
        return [f"export TORTIE_DATASTORE={self.record.client_url}", f"export TORTIE_LAB={self.name}"]

    def down(self) -> None:
        self.lab.down()


def _netns_list() -> list[str]:
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def down(name: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Tear down lab `name` if it is recorded; False when there was nothing to do."""
    workdir = lab_dir(name, root)
    if load_state(workdir) is None:
        return False
    Lab.load(workdir).down()
    return True
