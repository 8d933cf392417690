"""A virtual datacenter in network namespaces: fabric, hosts, workloads, processes, teardown.

    <lab>-fab  (bridge br0)
       |  p-h1 ... p-hK         veth pairs; the host end is eth0 in each host namespace
    <lab>-h1 ... <lab>-hK      eth0 = <subnet> + 10 + i, ip_forward=1, route 169.254.1.1/32 dev lo
       |  <prefix><hash>        host-side veth, MAC ee:ee:ee:ee:ee:ee
    <lab>-<workload>           eth0 <ip>/32 (/128), 169.254.1.1 dev eth0 scope link,
                               default via 169.254.1.1 (IPv6: via fe80::ecee:eeff:feee:eeee)

Workloads are plumbed Calico-style without CNI. The host side (the /32 route and the interface
sysctls) is left to the agent under test unless `plumb_host_side=True`. The `169.254.1.1/32 dev lo`
route on hosts is the lab's stand-in for a default route: the kernel answers proxy ARP for
169.254.1.1 only when it routes that address as unicast through ANOTHER device (arp_process ->
proxy path requires a route whose output device differs from the input one); blackhole or
unreachable routes do not qualify.

API (all names are logical: "h1", a workload name, or a full namespace name):
`Lab.create(name, workdir, hosts=2, subnet="172.31.0.0/24", interface_prefix="tort")`, `add_host`,
`add_workload(name, host, ips, plumb_host_side=False)`, `remove_workload`, `exec(ns, argv)`,
`ping(ns, ip)`, `start_process(ns, argv, log=None, env=None, role="") -> pid` (ns None: the root
namespace), `stop_process(pid)`, `process_by_role(role)`, `add_static_route(host, cidr, via)`,
`down()`; `Lab.load(workdir)` re-opens a lab recorded by another process (e.g. to tear it down).
For builders on top (the datacenter): `add_appliance(name, index, role)` (a router or etcd member on
the fabric), `add_namespace` / `forget_namespace`, `record_workload` / `forget_workload` (workloads
made by the CNI plugin), `record_file`, `record_tree` (removed by `down()`). Thread-safe for
parallel workload creation.

Invariants: every namespace is named `<lab>-...` so nothing else is touched; everything is
recorded in `<workdir>/lab.json` before it is created (see state.py); `down()` stops recorded
processes by pid (checking the pid's start time; datastore processes last), kills whatever still
runs inside the lab's namespaces, deletes recorded namespaces, files and trees, and is safe to
repeat. Namespace names are unique per lab name: tests pass a unique lab name (pid +
random suffix, see `tortie.testing.netns.unique_name`) because they run in parallel.

Gotcha: a thread that entered a namespace keeps it alive after `ip netns del` (the interfaces in
it survive until the thread exits). Close every driver working in a lab namespace (e.g. the
agent's) before `down()`; the lab's own sysctl writes use short-lived workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from tortie.common.errors import TortieError
from tortie.dataplane.drivers.sysctl import ProcSysctlDriver
from tortie.dataplane.interfaces import DEFAULT_INTERFACE_PREFIXES, MAX_IFNAME_LEN
from tortie.lab.state import (
    ApplianceRecord,
    HostRecord,
    LabState,
    ProcessRecord,
    WorkloadRecord,
    load_state,
    save_state,
)

log = logging.getLogger(__name__)

WORKLOAD_GATEWAY_V4 = "169.254.1.1"
HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"
WORKLOAD_GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"  # EUI-64 link-local of HOST_VETH_MAC
DEFAULT_SUBNET = "172.31.0.0/24"
HOST_OFFSET = 10
FABRIC_BRIDGE = "br0"

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_MEMBER_RE = re.compile(r"^[a-z][a-z0-9-]{0,12}$")


class LabError(TortieError):
    """A lab operation failed (the message includes the failing command and its stderr)."""


def host_interface_name(prefix: str, lab: str, workload: str) -> str:
    """`<prefix>` + hex hash of lab/workload, exactly 15 characters (the kernel's limit)."""
    digest = hashlib.sha1(f"{lab}/{workload}".encode()).hexdigest()
    return prefix + digest[: MAX_IFNAME_LEN - len(prefix)]


def _run(
    argv: Sequence[str], *, stdin: str | None = None, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        detail = f"\n{stdin}" if stdin else ""
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}{detail}\n{proc.stderr.strip()}")
    return proc


def _ip_batch(lines: Iterable[str], netns: str | None = None) -> None:
    script = "".join(f"{line}\n" for line in lines)
    if script:
        _run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], stdin=script)


def _proc_start_time(pid: int) -> int | None:
    """Start time of a live (not zombie) process `pid`, None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _write_sysctls(netns: str, values: Mapping[str, str]) -> None:
    driver = ProcSysctlDriver(netns)  # short-lived: its thread must not pin the namespace
    try:
        for key, value in values.items():
            if driver.read_sysctl(key) is not None or not key.startswith("net/ipv6/"):
                driver.write_sysctl(key, value)
    finally:
        driver.close()


class Lab:
    """See the module docstring."""

    def __init__(
        self,
        name: str,
        workdir: str | os.PathLike[str],
        *,
        subnet: str = DEFAULT_SUBNET,
        interface_prefix: str = DEFAULT_INTERFACE_PREFIXES[0],
    ) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid lab name {name!r}: lowercase letters, digits and '-', at most 40")
        if not 0 < len(interface_prefix) <= 8:
            raise ValueError(f"interface prefix {interface_prefix!r} must be 1..8 characters")
        self.workdir = Path(workdir)
        self._popen: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.RLock()  # state changes from several threads (parallel workload adds)
        existing = load_state(self.workdir)
        if existing is not None:
            if existing.name != name:
                raise LabError(f"{self.workdir} holds lab {existing.name!r}, not {name!r}")
            self.state = existing
            return
        created = not self.workdir.exists()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state = LabState(
            name=name,
            subnet=str(ipaddress.ip_network(subnet, strict=True)),
            interface_prefix=interface_prefix,
            fabric_netns=f"{name}-fab",
            created_workdir=created,
        )
        self._save()

    # -- construction ----------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        workdir: str | os.PathLike[str],
        *,
        hosts: int | Sequence[str] = 2,
        subnet: str = DEFAULT_SUBNET,
        interface_prefix: str = DEFAULT_INTERFACE_PREFIXES[0],
    ) -> Lab:
        """Build a lab: fabric plus `hosts` hosts (a count -> h1..hK, or names). Torn down on error."""
        lab = cls(name, workdir, subnet=subnet, interface_prefix=interface_prefix)
        names = [f"h{i}" for i in range(1, hosts + 1)] if isinstance(hosts, int) else list(hosts)
        try:
            lab.add_hosts(names)
        except BaseException:
            lab.down()
            raise
        return lab

    @classmethod
    def load(cls, workdir: str | os.PathLike[str]) -> Lab:
        """Re-open the lab recorded in `workdir` (by this or another process)."""
        state = load_state(Path(workdir))
        if state is None:
            raise LabError(f"no lab recorded in {workdir}")
        return cls(state.name, workdir)

    @property
    def name(self) -> str:
        return self.state.name

    def _save(self) -> None:
        with self._lock:
            save_state(self.workdir, self.state)

    def _record_netns(self, netns: str) -> None:
        with self._lock:
            if netns not in self.state.namespaces:
                self.state.namespaces.append(netns)

    def record_tree(self, path: str | os.PathLike[str]) -> Path:
        """Record a directory (created now if missing) that `down()` removes with its contents."""
        tree = Path(path)
        with self._lock:
            if str(tree) not in self.state.trees:
                self.state.trees.append(str(tree))
            self._save()
        tree.mkdir(parents=True, exist_ok=True)
        return tree

    def record_file(self, path: str | os.PathLike[str]) -> Path:
        """Record a file (created by the caller after this returns) that `down()` deletes."""
        with self._lock:
            if str(path) not in self.state.files:
                self.state.files.append(str(path))
            self._save()
        return Path(path)

    def add_namespace(self, netns: str) -> None:
        """Record, then create, an empty namespace `netns` (must start with `<lab>-`) with lo up."""
        if not netns.startswith(f"{self.name}-"):
            raise ValueError(f"namespace {netns!r} does not belong to lab {self.name}")
        with self._lock:
            if netns not in self.state.namespaces:
                self._record_netns(netns)
                self._save()
        _run(["ip", "netns", "add", netns])
        _ip_batch(["link set lo up"], netns)

    def forget_namespace(self, netns: str) -> None:
        """Delete a namespace of this lab and drop it from the record (missing is fine)."""
        _run(["ip", "netns", "del", netns], check=False)
        with self._lock:
            if netns in self.state.namespaces:
                self.state.namespaces.remove(netns)
            self._save()

    def record_workload(self, record: WorkloadRecord, *, new: bool = False) -> None:
        """Record (`new`: a name not in use yet, else ValueError) or update a workload built by someone
        else (e.g. the CNI plugin)."""
        with self._lock:
            if new or record.name not in self.state.workloads:
                self._check_member(record.name)
                self._record_netns(record.netns)  # recorded before anyone creates it
            self.state.workloads[record.name] = record
            self._save()

    def forget_workload(self, name: str) -> WorkloadRecord | None:
        with self._lock:
            record = self.state.workloads.pop(name, None)
            self._save()
        return record

    def _check_member(self, name: str) -> None:
        if not _MEMBER_RE.match(name) or name == "fab":
            raise ValueError(f"invalid host/workload name {name!r}: lowercase, digits, '-', at most 13")
        if name in self.state.hosts or name in self.state.workloads or name in self.state.appliances:
            raise ValueError(f"{name!r} already exists in lab {self.name}")

    def _fabric_up(self) -> bool:
        return self.state.fabric_netns in self.state.namespaces

    def add_hosts(self, names: Sequence[str]) -> list[HostRecord]:
        """Create hosts (and the fabric on first use) in a few `ip -batch` calls."""
        for host in names:
            self._check_member(host)
        subnet = ipaddress.ip_network(self.state.subnet)
        new_netns: list[str] = []
        if not self._fabric_up():
            new_netns.append(self.state.fabric_netns)
        records = []
        for host in names:
            index = len(self.state.hosts) + 1
            address = subnet.network_address + HOST_OFFSET + index
            if address not in subnet or address == subnet.broadcast_address:
                raise LabError(f"subnet {subnet} has no room for host #{index}")
            record = HostRecord(host, f"{self.name}-{host}", f"{address}/{subnet.prefixlen}", f"p-{host}")
            self.state.hosts[host] = record
            records.append(record)
            new_netns.append(record.netns)
        for netns in new_netns:
            self._record_netns(netns)
        self._save()
        _ip_batch(f"netns add {netns}" for netns in new_netns)
        fabric: list[str] = []
        if self.state.fabric_netns in new_netns:
            fabric += ["link set lo up", f"link add {FABRIC_BRIDGE} type bridge"]
            fabric += [f"link set {FABRIC_BRIDGE} up"]
        for record in records:
            fabric += [
                f"link add {record.fabric_port} type veth peer name eth0 netns {record.netns}",
                f"link set {record.fabric_port} master {FABRIC_BRIDGE}",
                f"link set {record.fabric_port} up",
            ]
        _ip_batch(fabric, self.state.fabric_netns)
        for record in records:
            _write_sysctls(
                record.netns,
                {
                    "net/ipv4/ip_forward": "1",
                    "net/ipv6/conf/all/forwarding": "1",
                    "net/ipv6/conf/eth0/accept_dad": "0",
                },
            )
            _ip_batch(
                [
                    "link set lo up",
                    f"addr add {record.address} dev eth0",
                    "link set eth0 up",
                    f"route add {WORKLOAD_GATEWAY_V4}/32 dev lo",
                ],
                record.netns,
            )
        log.info("lab hosts created lab=%s hosts=%s", self.name, ",".join(names))
        return records

    def add_host(self, name: str) -> HostRecord:
        return self.add_hosts([name])[0]

    def add_appliance(
        self, name: str, index: int, role: str, *, kind: str = "", asn: int = 0
    ) -> ApplianceRecord:
        """A namespace on the fabric at `<subnet> + index` that is not a tortie host (a router, an etcd
        member): eth0 with that address, lo up, forwarding on. Indexes below 11 are free for these."""
        self._check_member(name)
        subnet = ipaddress.ip_network(self.state.subnet)
        address = subnet.network_address + index
        taken = {ipaddress.ip_interface(h.address).ip for h in self.state.hosts.values()}
        taken |= {ipaddress.ip_interface(a.address).ip for a in self.state.appliances.values()}
        if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
            raise LabError(f"subnet {subnet} has no address #{index} for {name}")
        if address in taken:
            raise LabError(f"address {address} is already used in lab {self.name}")
        record = ApplianceRecord(
            name, f"{self.name}-{name}", f"{address}/{subnet.prefixlen}", f"p-{name}", role, kind, asn
        )
        with self._lock:
            self.state.appliances[name] = record
            if not self._fabric_up():
                raise LabError(f"lab {self.name} has no fabric yet: add a host first")
            self._record_netns(record.netns)
            self._save()
        _run(["ip", "netns", "add", record.netns])
        _ip_batch(
            [
                f"link add {record.fabric_port} type veth peer name eth0 netns {record.netns}",
                f"link set {record.fabric_port} master {FABRIC_BRIDGE}",
                f"link set {record.fabric_port} up",
            ],
            self.state.fabric_netns,
        )
        _write_sysctls(record.netns, {"net/ipv4/ip_forward": "1", "net/ipv6/conf/eth0/accept_dad": "0"})
        _ip_batch(["link set lo up", f"addr add {record.address} dev eth0", "link set eth0 up"], record.netns)
        log.info(
            "lab appliance created lab=%s name=%s role=%s address=%s", self.name, name, role, record.address
        )
        return record

    def add_workload(
        self,
        name: str,
        host: str,
        ips: str | Sequence[str],
        *,
        plumb_host_side: bool = False,
    ) -> WorkloadRecord:
        """A workload namespace on `host` with `ips` (/32, /128 implied) behind a veth, Calico style.

        The host-side interface is `<prefix><hash>` with MAC ee:ee:ee:ee:ee:ee; with
        `plumb_host_side` the lab also adds the host routes and sysctls the agent would add."""
        self._check_member(name)
        if host not in self.state.hosts:
            raise ValueError(f"no host {host!r} in lab {self.name}")
        given = [ips] if isinstance(ips, str) else list(ips)
        addresses = [ipaddress.ip_address(ip.split("/")[0]) for ip in given]
        host_record = self.state.hosts[host]
        record = WorkloadRecord(
            name=name,
            host=host,
            netns=f"{self.name}-{name}",
            ips=[str(a) for a in addresses],
            host_ifname=host_interface_name(self.state.interface_prefix, self.name, name),
            plumbed_host_side=plumb_host_side,
        )
        self.state.workloads[name] = record
        self._record_netns(record.netns)
        self._save()
        _run(["ip", "netns", "add", record.netns])
        hif = record.host_ifname
        _ip_batch(
            [
                f"link add {hif} type veth peer name eth0 netns {record.netns}",
                f"link set {hif} address {HOST_VETH_MAC}",
            ],
            host_record.netns,
        )
        has_v6 = any(a.version == 6 for a in addresses)
        if has_v6:
            _write_sysctls(host_record.netns, {f"net/ipv6/conf/{hif}/accept_dad": "0"})
            _write_sysctls(record.netns, {"net/ipv6/conf/eth0/accept_dad": "0"})
        inside = ["link set lo up", "link set eth0 up"]
        for address in addresses:
            if address.version == 4:
                inside.append(f"addr add {address}/32 dev eth0")
            else:
                inside.append(f"addr add {address}/128 dev eth0 nodad")
        if any(a.version == 4 for a in addresses):
            inside += [
                f"route add {WORKLOAD_GATEWAY_V4} dev eth0 scope link",
                f"route add default via {WORKLOAD_GATEWAY_V4} dev eth0",
            ]
        if has_v6:
            inside.append(f"route add ::/0 via {WORKLOAD_GATEWAY_V6} dev eth0")
        _ip_batch(inside, record.netns)
        _ip_batch([f"link set {hif} up"], host_record.netns)
        if plumb_host_side:
            self._plumb_host_side(host_record, record, addresses)
        log.info(
            "lab workload created lab=%s workload=%s host=%s ips=%s iface=%s",
            self.name,
            name,
            host,
            ",".join(record.ips),
            hif,
        )
        return record

    @staticmethod
    def _plumb_host_side(host: HostRecord, workload: WorkloadRecord, addresses: Sequence[_Address]) -> None:
        hif = workload.host_ifname
        values = {f"net/ipv4/conf/{hif}/proxy_arp": "1", f"net/ipv4/neigh/{hif}/proxy_delay": "0"}
        if any(a.version == 6 for a in addresses):
            values.update({f"net/ipv6/conf/{hif}/proxy_ndp": "1", f"net/ipv6/conf/{hif}/forwarding": "1"})
        _write_sysctls(host.netns, values)
        _ip_batch(
            [
                f"route replace {a}/{a.max_prefixlen} dev {hif}" + (" scope link" if a.version == 4 else "")
                for a in addresses
            ],
            host.netns,
        )

    def remove_workload(self, name: str) -> None:
        """Delete the workload's namespace (its veth pair and host routes go with it)."""
        record = self.state.workloads.pop(name)
        _run(["ip", "netns", "del", record.netns], check=False)
        if record.netns in self.state.namespaces:
            self.state.namespaces.remove(record.netns)
        self._save()

    # -- using the lab -------------------------------------------------------------------------------

    def netns(self, name: str) -> str:
        """The namespace of host or workload `name` (a full namespace name is returned as is)."""
        if name in self.state.hosts:
            return self.state.hosts[name].netns
        if name in self.state.workloads:
            return self.state.workloads[name].netns
        if name in self.state.appliances:
            return self.state.appliances[name].netns
        if name == "fab" or name == self.state.fabric_netns:
            return self.state.fabric_netns
        if name in self.state.namespaces:
            return name
        raise ValueError(f"no host, workload or namespace {name!r} in lab {self.name}")

    def host(self, name: str) -> HostRecord:
        return self.state.hosts[name]

    def workload(self, name: str) -> WorkloadRecord:
        return self.state.workloads[name]

    def host_ip(self, name: str) -> str:
        return self.state.hosts[name].address.split("/")[0]

    def exec(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60.0,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside namespace `ns` and wait (stdout/stderr captured as text)."""
        return _run(["ip", "netns", "exec", self.netns(ns), *argv], stdin=stdin, check=check, timeout=timeout)

    def ping(self, ns: str, ip: str, *, attempts: int = 5, count: int = 1) -> bool:
        """Ping `ip` from `ns`; retried because the first packet after plumbing may be lost."""
        for _ in range(attempts):
            argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", ip]
            proc = self.exec(ns, argv, check=False)
            if proc.returncode == 0:
                return True
        return False

    def add_static_route(self, host: str, cidr: str, via: str) -> None:
        """`ip route replace CIDR via VIA` on host `host` (e.g. another host's workload block)."""
        net = ipaddress.ip_network(cidr, strict=True)
        _ip_batch([f"route replace {net} via {via}"], self.netns(host))

    def start_process(
        self,
        ns: str | None,
        argv: Sequence[str],
        *,
        log: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        role: str = "",
    ) -> int:
        """Start `argv` in namespace `ns` (None: the root namespace, for helpers such as the etcd relay)
        with stdout+stderr to `log` (default `<workdir>/logs/`); returns its pid. `role` names what it
        is for (`process_by_role`); the process outlives this object and `down()` stops it."""
        netns = self.netns(ns) if ns is not None else ""
        if log is None:
            logs = self.workdir / "logs"
            logs.mkdir(exist_ok=True)
            stem = role.replace("/", "-") or f"{ns or 'root'}-{Path(argv[0]).name}"
            log_path = logs / f"{stem}-{len(self.state.processes)}-{time.time_ns()}.log"
        else:
            log_path = Path(log)
        with self._lock:
            self.state.files.append(str(log_path))
            self._save()
        command = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        self._popen[proc.pid] = proc
        start_time = _proc_start_time(proc.pid) or 0
        with self._lock:
            self.state.processes.append(
                ProcessRecord(proc.pid, start_time, netns, list(argv), str(log_path), role)
            )
            self._save()
        return proc.pid

    def process_by_role(self, role: str) -> ProcessRecord | None:
        """The most recent recorded process started with `role`."""
        found = [p for p in self.state.processes if p.role == role]
        return found[-1] if found else None

    def _process_alive(self, record: ProcessRecord) -> bool:
        popen = self._popen.get(record.pid)
        if popen is not None:
            return popen.poll() is None
        return _proc_start_time(record.pid) == record.start_time

    def stop_process(self, pid: int, *, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status when known."""
        record = next((p for p in self.state.processes if p.pid == pid), None)
        if record is None:
            raise ValueError(f"process {pid} was not started by lab {self.name}")
        status = self._stop(record, timeout)
        with self._lock:
            self.state.processes.remove(record)
            self._save()
        return status

    def _stop(self, record: ProcessRecord, timeout: float) -> int | None:
        popen = self._popen.pop(record.pid, None)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not (popen.poll() is None if popen is not None else self._process_alive(record)):
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if popen is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        popen.wait(0.05)
                    if popen.returncode is not None:
                        break
                elif _proc_start_time(record.pid) != record.start_time:
                    break
                else:
                    time.sleep(0.05)
        return popen.returncode if popen is not None else None

    def _stop_all(self, records: Sequence[ProcessRecord], timeout: float) -> None:
        """SIGTERM every live recorded process at once, wait up to `timeout`, SIGKILL the rest."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [r for r in records if self._process_alive(r)]
            for record in alive:
                try:
                    os.kill(record.pid, sig)
                except ProcessLookupError:
                    pass
                except OSError as exc:
                    log.warning("lab: could not signal pid=%d error=%s", record.pid, exc)
            deadline = time.monotonic() + timeout
            while alive and time.monotonic() < deadline:
                time.sleep(0.05)
                alive = [r for r in alive if self._process_alive(r)]
            if not alive:
                break
        for record in records:
            popen = self._popen.pop(record.pid, None)
            if popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(1.0)

    def process_running(self, pid: int) -> bool:
        record = next((p for p in self.state.processes if p.pid == pid), None)
        return record is not None and self._process_alive(record)

    # -- teardown -----------------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop processes, delete namespaces and files this lab created. Safe to repeat."""
        state = load_state(self.workdir) or self.state
        # Clients before the services they use: nodes and routers first, then the datastore (an etcd
        # member gone first would make every node's shutdown wait on it). etcd members stopped all at
        # once can take seconds to agree to go; their data is thrown away, so they get 1 s.
        last = [p for p in state.processes if p.role.startswith(("etcd/", "relay"))]
        self._stop_all([p for p in state.processes if p not in last], timeout=5.0)
        self._stop_all(last, timeout=1.0)
        doomed = [ns for ns in reversed(state.namespaces) if ns.startswith(f"{state.name}-")]
        _kill_namespace_stragglers(doomed)
        if doomed:
            _ip_batch_lenient([f"netns del {ns}" for ns in doomed])
        for name in state.files:
            with contextlib.suppress(OSError):
                os.unlink(name)
        for tree in state.trees:
            shutil.rmtree(tree, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.workdir / "logs").rmdir()
        with contextlib.suppress(OSError):
            (self.workdir / "lab.json").unlink()
        if state.created_workdir:
            with contextlib.suppress(OSError):
                self.workdir.rmdir()
        self.state = LabState(state.name, state.subnet, state.interface_prefix, state.fabric_netns)
        log.info("lab down lab=%s namespaces=%d", state.name, len(doomed))

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()


def _kill_namespace_stragglers(namespaces: Sequence[str]) -> None:
    """SIGKILL processes still running inside the lab's namespaces (children of stopped processes, e.g.
    a BIRD orphaned by a killed node service, or a shell someone left in a workload): nothing may keep
    running, or keep a namespace alive, after `down()`. Like `ip netns pids`, a process belongs to a
    namespace when its /proc/<pid>/ns/net is that namespace's inode."""
    inodes = set()
    for ns in namespaces:
        with contextlib.suppress(OSError):
            st = os.stat(f"/run/netns/{ns}")
            inodes.add((st.st_dev, st.st_ino))
    if not inodes:
        return
    me = os.getpid()
    for _round in range(3):
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            with contextlib.suppress(OSError):
                st = os.stat(f"/proc/{entry}/ns/net")
                if (st.st_dev, st.st_ino) in inodes:
                    found.append(int(entry))
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _ip_batch_lenient(lines: list[str]) -> None:
    """Run each line; `ip -force -batch` continues past lines that fail (e.g. already deleted)."""
    _run(["ip", "-force", "-batch", "-"], stdin="".join(f"{line}\n" for line in lines), check=False)
