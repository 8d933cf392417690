"""`Lab`: the namespace test bed every real-kernel test builds on — a facade over the lab's parts.

    Lab.create(name, workdir, hosts=2, subnets=("172.31.0.0/24",), interface_prefix="tort", segments=1)
                   (subnets: one per IP family; fabric_subnets((V4, V6)) for a dual-stack fabric;
                   segments: host subnets, shifted copies of `subnets`, hosts spread over them)
      .records    StateStore     what exists, in <workdir>/lab.json, recorded before it is created (state.py)
      .fabric     Fabric         namespaces, bridge, veths, host/appliance addresses, routes (fabric.py)
      .processes  ProcessTable   processes by namespace and role; stop, signal (processes.py)
      .workloads  PlainWorkloads Calico-style workloads plumbed by the lab (workloads.py)

    <lab>-fab  (bridge br0)
       |  p-h1 ... p-hK         veth pairs; the host end is eth0 in each host namespace
    <lab>-h1 ... <lab>-hK      eth0 = <subnet> + 10 + i per subnet, forwarding on,
                               route 169.254.1.1/32 dev lo
       |  <prefix><hash>        host-side veth, MAC ee:ee:ee:ee:ee:ee
    <lab>-<workload>           eth0 <ip>/32 (/128), 169.254.1.1 dev eth0 scope link,
                               default via 169.254.1.1 (IPv6: via fe80::ecee:eeff:feee:eeee)

The methods below are what tests use; builders on top (the datacenter: routers, etcd members, CNI
workloads) use the parts directly (`lab.fabric.add_appliance`, `lab.records.record_tree`, ...).
Names are logical ("h1", a workload name, "fab") or full namespace names. `Lab.load(workdir)`
re-opens a lab recorded by another process (e.g. to tear it down). Thread-safe for parallel
workload creation.

Invariants: every namespace is named `<lab>-...` so nothing else is touched; `down()` stops recorded
processes by pid (checking the pid's start time; datastore processes last), kills whatever still runs
inside the lab's namespaces, deletes recorded namespaces, files and trees, and is safe to repeat.
Tests pass a unique lab name (`tortie.testing.netns.unique_name`) because they run in parallel.

Gotcha: a thread that entered a namespace keeps it alive after `ip netns del` (the interfaces in it
survive until the thread exits). Close every driver working in a lab namespace (e.g. the agent's)
before `down()`; the lab's own sysctl writes use short-lived workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Unpack

from tortie.common.ipfamily import Family
from tortie.dataplane.interfaces import DEFAULT_INTERFACE_PREFIXES
from tortie.lab.errors import LabError
from tortie.lab.fabric import DEFAULT_SUBNET, Fabric, check_subnets, delete_namespaces
from tortie.lab.iproute import run
from tortie.lab.processes import ProcessOptions, ProcessTable, kill_namespace_stragglers
from tortie.lab.state import HostRecord, LabState, ProcessRecord, StateStore, WorkloadRecord, load_state
from tortie.lab.workloads import PlainWorkloads

log = logging.getLogger(__name__)


class Lab:
    """See the module docstring."""

    def __init__(
        self,
        name: str,
        workdir: str | os.PathLike[str],
        *,
        subnets: Sequence[str] = (DEFAULT_SUBNET,),
        interface_prefix: str = DEFAULT_INTERFACE_PREFIXES[0],
        segments: int = 1,
    ) -> None:
        self.records = StateStore.open(
            name, Path(workdir), subnets=check_subnets(subnets), interface_prefix=interface_prefix,
            segments=segments,
        )
        self.fabric = Fabric(self.records)
        self.processes = ProcessTable(self.records)
        self.workloads = PlainWorkloads(self.records)

    @classmethod
    def create(
        cls,
        name: str,
        workdir: str | os.PathLike[str],
        *,
        hosts: int | Sequence[str] = 2,
        subnets: Sequence[str] = (DEFAULT_SUBNET,),
        interface_prefix: str = DEFAULT_INTERFACE_PREFIXES[0],
        segments: int = 1,
    ) -> Lab:
        """Build a lab: fabric plus `hosts` hosts (a count -> h1..hK, or names). Torn down on error."""
        lab = cls(name, workdir, subnets=subnets, interface_prefix=interface_prefix, segments=segments)
        names = [f"h{i}" for i in range(1, hosts + 1)] if isinstance(hosts, int) else list(hosts)
        try:
            lab.fabric.add_hosts(names)
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
        return cls(state.name, workdir, subnets=state.subnets)

    @property
    def name(self) -> str:
        return self.records.name

    @property
    def state(self) -> LabState:
        return self.records.state

    @property
    def workdir(self) -> Path:
        return self.records.workdir

    # -- building ---------------------------------------------------------------------------------------

    def add_host(self, name: str) -> HostRecord:
        return self.fabric.add_hosts([name])[0]

    def add_workload(
        self, name: str, host: str, ips: str | Sequence[str], *, plumb_host_side: bool = False
    ) -> WorkloadRecord:
        """A plain workload (see workloads.py); `plumb_host_side` adds what CNI + agent would."""
        return self.workloads.add(name, host, ips, plumb_host_side=plumb_host_side)

    def remove_workload(self, name: str) -> None:
        self.workloads.remove(name)

    def add_static_route(self, host: str, cidr: str, via: str) -> None:
        self.fabric.add_static_route(host, cidr, via)

    # -- using the lab ----------------------------------------------------------------------------------

    def netns(self, name: str) -> str:
        """The namespace of host or workload `name` (a full namespace name is returned as is)."""
        return self.state.netns_of(name)

    def workload(self, name: str) -> WorkloadRecord:
        return self.state.workloads[name]

    def host_ip(self, name: str, family: Family | None = None) -> str:
        """Host `name`'s fabric address in `family` (default: its first)."""
        return self.state.host_ip(name, family)

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
        return run(["ip", "netns", "exec", self.netns(ns), *argv], stdin=stdin, check=check, timeout=timeout)

    def ping(self, ns: str, ip: str, *, attempts: int = 5, count: int = 1) -> bool:
        """Ping `ip` from `ns`; retried because the first packet after plumbing may be lost."""
        for _ in range(attempts):
            argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", ip]
            if self.exec(ns, argv, check=False).returncode == 0:
                return True
        return False

    # -- processes --------------------------------------------------------------------------------------

    def start_process(self, ns: str | None, argv: Sequence[str], **options: Unpack[ProcessOptions]) -> int:
        """Start `argv` in namespace `ns` (None: the root namespace) with `log`, `env`, `role` as
        `ProcessTable.start` takes them; returns its pid. The process outlives this object and `down()`
        stops it."""
        return self.processes.start(ns, argv, **options)

    def stop_process(self, pid: int, *, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status when known."""
        return self.processes.stop(pid, timeout=timeout)

    def process_by_role(self, role: str) -> ProcessRecord | None:
        return self.processes.by_role(role)

    def process_running(self, pid: int) -> bool:
        return self.processes.running(pid)

    # -- teardown ---------------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop processes, delete namespaces and files this lab created. Safe to repeat."""
        state = self.records.reload()
        self.processes.stop_recorded(state.processes)
        namespaces = [ns for ns in reversed(state.namespaces) if ns.startswith(f"{state.name}-")]
        kill_namespace_stragglers(namespaces)
        doomed = delete_namespaces(state.name, namespaces)
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
        self.records.reset()
        log.info("lab down lab=%s namespaces=%d", state.name, len(doomed))

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()
