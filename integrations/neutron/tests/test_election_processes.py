"""Election with two driver processes (Neutron's ML2 plugin + the driver in each, one Neutron DB
file shared by both, one tortie datastore): exactly one master does the periodic work; when it is
killed the other takes over after the lease TTL; a stopped master steps down at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import sqlalchemy
from neutron.db.migration.models import head
from neutron_harness import wait_for
from tortie.datastore.api import Datastore
from tortie.datastore.resources import ResourceStore
from tortie.datastore.url import open_datastore
from tortie.model import parse_resource

from networking_tortie import naming

WORKER = Path(__file__).with_name("election_worker.py")
KEY = naming.election_key()
pytestmark = pytest.mark.slow


class Worker:
    def __init__(self, name: str, neutron_db: Path, url: str, logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-W", "ignore", str(WORKER), "--neutron-db", str(neutron_db),
             "--datastore", url, "--name", name],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.startswith("ready"), f"{self.name} did not start: {line!r}\n{self.log()}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def workers(tmp_path: Path, datastore_url: str) -> Iterator[tuple[list[Worker], Datastore]]:
    neutron_db = tmp_path / "neutron.db"
    started: list[Worker] = []
    ds = open_datastore(datastore_url)
    engine = sqlalchemy.create_engine(f"sqlite:///{neutron_db}")
    head.get_metadata().create_all(engine)  # the shared Neutron DB, so both workers start at once
    engine.dispose()
    try:
        started.append(Worker("server-a", neutron_db, datastore_url, tmp_path))
        started.append(Worker("server-b", neutron_db, datastore_url, tmp_path))
        for w in started:
            w.wait_ready()
        yield started, ds
    finally:
        for w in started:
            w.stop(signal.SIGKILL)
        ds.close()


def _holder(ds: Datastore) -> int | None:
    kv = ds.get(KEY)
    return int(kv.value["pid"]) if kv is not None else None


def _stray(name: str) -> object:
    return parse_resource({
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "openstack"},
        "spec": {"orchestrator": "openstack", "node": "h9", "workload": "gone", "endpoint": name,
                 "interfaceName": "tap0123456789a", "ipNetworks": ["10.65.0.99/32"]},
    })


def test_two_driver_processes_elect_one_master(workers: tuple[list[Worker], Datastore]) -> None:
    procs, ds = workers
    by_pid = {w.pid: w for w in procs}
    assert wait_for(lambda: _holder(ds) in by_pid)
    master = by_pid[_holder(ds)]  # type: ignore[index]
    other = next(w for w in procs if w is not master)
    # Stable: the key keeps its holder over many refresh periods of both processes.
    for _ in range(10):
        time.sleep(0.1)
        assert _holder(ds) == master.pid
    # Only the master does the periodic work: drift is repaired, and only the master resyncs.
    store = ResourceStore(ds)
    store.create(_stray("stray-1"))  # type: ignore[arg-type]
    assert wait_for(lambda: not store.list("WorkloadEndpoint", "openstack"))
    assert "resync done" in master.log()
    assert "resync done" not in other.log()
    assert "election won" not in other.log()
    # The master dies without stepping down: its lease expires, the other takes over and works.
    master.stop(signal.SIGKILL)
    assert wait_for(lambda: _holder(ds) == other.pid, timeout=15)
    store.create(_stray("stray-2"))  # type: ignore[arg-type]
    assert wait_for(lambda: not store.list("WorkloadEndpoint", "openstack"))
    assert "election won" in other.log() and "resync done" in other.log()
    # A clean stop steps down at once (no waiting for the TTL).
    assert other.stop(signal.SIGTERM) == 0
    assert ds.get(KEY) is None
