"""Processes of a lab: start them in a namespace, find them by role, signal and stop them, and make sure
nothing of the lab keeps running after teardown.

    start(ns, argv, role="node/h1")   `ip netns exec <ns> argv...` (iproute2 execs the command, so the pid
                                      is the program's), new session, stdout+stderr to a log file;
                                      recorded in lab.json (pid + start time) before anything waits on it
    by_role(role) / running(pid)      roles name what a process is for: node/<host>, etcd/<member>,
                                      router/<name>[/zebra], relay
    signal(role, sig)                 one component, e.g. SIGKILL an etcd member as a crash would
    stop(pid) / stop_all(records)     SIGTERM, then SIGKILL after a grace period
    in_namespace(pid, netns)          a pid alive inside that namespace (faults check before signalling)
    kill_namespace_stragglers(nss)    SIGKILL whatever still runs inside the lab's namespaces

Invariant: a pid is only signalled while /proc/<pid>/stat still shows the start time recorded for it,
so a reused pid is never touched. Processes outlive the `ProcessTable` that started them (another
process, e.g. `tortie lab down`, stops them from the record).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal as signals
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from tortie.lab.errors import LabError
from tortie.lab.state import ProcessRecord, StateStore

log = logging.getLogger(__name__)


def proc_start_time(pid: int) -> int | None:
    """Start time of a live (not zombie) process `pid`, None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


class ProcessOptions(TypedDict, total=False):
    """The keyword options of `ProcessTable.start`."""

    log: str | os.PathLike[str] | None
    env: Mapping[str, str] | None
    role: str


def flows_dir(workdir: Path, host: str) -> Path:
    """Where agents started in lab host `host` write their flow records (under the workdir, which
    `down()` removes)."""
    return workdir / "flows" / host


class ProcessTable:
    """The recorded processes of one lab (see the module docstring)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._popen: dict[int, subprocess.Popen[bytes]] = {}

    def start(
        self,
        ns: str | None,
        argv: Sequence[str],
        *,
        log: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        role: str = "",
    ) -> int:
        """Start `argv` in namespace `ns` (a logical name or a namespace; None: the root namespace, for
        helpers such as the etcd relay) with stdout+stderr to `log` (default `<workdir>/logs/`)."""
        netns = self.store.state.netns_of(ns) if ns is not None else ""
        if log is None:
            logs = self.store.workdir / "logs"
            logs.mkdir(exist_ok=True)
            stem = role.replace("/", "-") or f"{ns or 'root'}-{Path(argv[0]).name}"
            log_path = logs / f"{stem}-{len(self.store.state.processes)}-{time.time_ns()}.log"
        else:
            log_path = Path(log)
        self.store.record_file(log_path)
        if netns:  # an agent started here keeps its flow logs in the lab (`tortie lab flows` reads them)
            merged = dict(env if env is not None else os.environ)
            if "TORTIE_FLOW_LOGS_DIR" not in merged:
                self.store.record_tree(self.store.workdir / "flows")
                merged["TORTIE_FLOW_LOGS_DIR"] = str(flows_dir(self.store.workdir, ns or netns))
            env = merged
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
        start_time = proc_start_time(proc.pid) or 0
        self.store.record_process(ProcessRecord(proc.pid, start_time, netns, list(argv), str(log_path), role))
        return proc.pid

    def by_role(self, role: str) -> ProcessRecord | None:
        """The most recent recorded process started with `role`."""
        found = [p for p in self.store.state.processes if p.role == role]
        return found[-1] if found else None

    def _record(self, pid: int) -> ProcessRecord | None:
        return next((p for p in self.store.state.processes if p.pid == pid), None)

    def alive(self, record: ProcessRecord) -> bool:
        popen = self._popen.get(record.pid)
        if popen is not None:
            return popen.poll() is None
        return proc_start_time(record.pid) == record.start_time

    def running(self, pid: int) -> bool:
        record = self._record(pid)
        return record is not None and self.alive(record)

    def signal(self, role: str, sig: int = signals.SIGKILL, *, wait: float = 5.0) -> int:
        """Send `sig` to the running process of `role` and wait up to `wait` s for it to end; returns its
        pid. The record stays (teardown skips processes that are gone)."""
        record = self.by_role(role)
        if record is None or not self.alive(record):
            raise LabError(f"no running {role} in lab {self.store.name}")
        os.kill(record.pid, sig)
        deadline = time.monotonic() + wait
        while self.alive(record) and time.monotonic() < deadline:
            time.sleep(0.02)
        return record.pid

    def stop(self, pid: int, *, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status when known."""
        record = self._record(pid)
        if record is None:
            raise ValueError(f"process {pid} was not started by lab {self.store.name}")
        popen = self._popen.pop(record.pid, None)
        for sig in (signals.SIGTERM, signals.SIGKILL):
            if not (popen.poll() is None if popen is not None else self.alive(record)):
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
                elif proc_start_time(record.pid) != record.start_time:
                    break
                else:
                    time.sleep(0.05)
        self.store.forget_process(record)
        return popen.returncode if popen is not None else None

    def stop_all(self, records: Sequence[ProcessRecord], timeout: float) -> None:
        """SIGTERM every live recorded process at once, wait up to `timeout`, SIGKILL the rest."""
        for sig in (signals.SIGTERM, signals.SIGKILL):
            alive = [r for r in records if self.alive(r)]
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
                alive = [r for r in alive if self.alive(r)]
            if not alive:
                break
        for record in records:
            popen = self._popen.pop(record.pid, None)
            if popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(1.0)

    def stop_recorded(self, records: Sequence[ProcessRecord]) -> None:
        """Stop every recorded process, clients before the services they use: nodes and routers first,
        then the datastore (an etcd member gone first would make every node's shutdown wait on it).
        etcd members stopped all at once can take seconds to agree to go; their data is thrown away,
        so they get 1 s."""
        last = [p for p in records if p.role.startswith(("etcd/", "relay"))]
        self.stop_all([p for p in records if p not in last], timeout=5.0)
        self.stop_all(last, timeout=1.0)


def _netns_inodes(namespaces: Sequence[str]) -> set[tuple[int, int]]:
    inodes = set()
    for ns in namespaces:
        with contextlib.suppress(OSError):
            st = os.stat(f"/run/netns/{ns}")
            inodes.add((st.st_dev, st.st_ino))
    return inodes


def in_namespace(pid: int, netns: str) -> bool:
    """Process `pid` is alive and runs inside namespace `netns` (as `namespace_pids` tells)."""
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    return proc_start_time(pid) is not None and (st.st_dev, st.st_ino) in _netns_inodes([netns])


def namespace_pids(namespaces: Sequence[str]) -> list[int]:
    """Processes running inside any of `namespaces` (this one excluded). Like `ip netns pids`, a process
    belongs to a namespace when its /proc/<pid>/ns/net is that namespace's inode."""
    inodes = _netns_inodes(namespaces)
    if not inodes:
        return []
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{entry}/ns/net")
            if (st.st_dev, st.st_ino) in inodes:
                found.append(int(entry))
    return found


def kill_namespace_stragglers(namespaces: Sequence[str]) -> None:
    """SIGKILL processes still running inside the lab's namespaces (children of stopped processes, e.g.
    a BIRD orphaned by a killed node service, or a shell someone left in a workload): nothing may keep
    running, or keep a namespace alive, after `down()`."""
    for _round in range(3):
        found = namespace_pids(namespaces)
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signals.SIGKILL)
        time.sleep(0.1)
