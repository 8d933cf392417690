"""`tortie lab`'s virtual datacenter: the facade the CLI (and e2e tests) use.

    Datacenter.up(LabSpec(...), progress=print)   build it (build.py), ready when it returns
    Datacenter.open(name) / Datacenter.locked(name)   re-open from any process / hold <workdir>/.lock
    dc.lab        Lab             records, fabric, processes (lab.py)
    dc.nodes      NodeServices    `tortie node run` per host: start, stop, take_down, status, BGP
                                  (node_services.py)
    dc.workloads  CniWorkloads    workloads through the CNI plugin (cni_workloads.py)
    dc.wait_ready(), dc.probe(src, dst, family=V6), dc.matrix(family=None), dc.flow_dirs(),
                  dc.matrices([("tcp", 80), ("udp", 81)]) (several at once), dc.env_lines(), dc.down()
                  (probes go to the destination's address of `family`; None: its first address,
                   IPv4 on a dual-stack lab)

Everything is recorded in `<workdir>/lab.json` (workdir `<root>/<name>`, root `/run/tortie/lab` or
$TORTIE_LAB_ROOT) before it is created, so `down()` — from any process — removes exactly what the lab
made. Commands that change a lab hold `<workdir>/.lock` (flock) for their duration, so concurrent
`tortie lab workload add` calls do not lose each other's records.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from tortie.common.ipfamily import Family
from tortie.datastore.api import Datastore
from tortie.lab.build import Progress, build
from tortie.lab.cni_workloads import CniWorkloads
from tortie.lab.errors import LabError, NoSuchLab
from tortie.lab.lab import Lab
from tortie.lab.node_services import NodeServices
from tortie.lab.probe import Probe, run_probe_sets, run_probes
from tortie.lab.processes import flows_dir
from tortie.lab.readiness import wait_ready
from tortie.lab.spec import LabSpec, lab_dir
from tortie.lab.state import DatacenterRecord, load_state


class Datacenter:
    """A lab built by `up` (see the module docstring)."""

    def __init__(self, lab: Lab) -> None:
        if lab.state.datacenter is None:
            raise NoSuchLab(f"{lab.workdir} holds a lab built by the library, not by `tortie lab up`")
        self.lab = lab
        self.record: DatacenterRecord = lab.state.datacenter
        self.nodes = NodeServices(lab, self.record)
        self.workloads = CniWorkloads.for_lab(lab)

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

    @classmethod
    def up(
        cls,
        spec: LabSpec,
        *,
        root: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
        timeout: float = 120.0,
    ) -> Datacenter:
        return cls(build(spec, lab_dir(spec.name, root), progress=progress, timeout=timeout))

    @property
    def name(self) -> str:
        return self.lab.name

    @property
    def hosts(self) -> list[str]:
        return list(self.lab.state.hosts)

    def datastore(self) -> Datastore:
        """A client of the lab's datastore from this (root) namespace; the caller closes it."""
        from tortie.datastore.url import open_datastore

        return open_datastore(self.record.client_url)

    def wait_ready(
        self, timeout: float = 60.0, progress: Progress | None = None, hosts: Sequence[str] | None = None
    ) -> None:
        """See readiness.py: nodes ready, BGP sessions established, remote workloads routed."""
        wait_ready(self.nodes, timeout=timeout, progress=progress, hosts=hosts)

    def probe(
        self,
        src: str,
        dst: str,
        protocol: str = "tcp",
        port: int = 80,
        timeout: float = 2.0,
        family: Family | None = None,
    ) -> bool:
        state = self.lab.state
        src_netns, _ = state.endpoint_of(src)
        if not src_netns:
            raise LabError(f"the source must be a workload, host or router of lab {self.name}, not {src!r}")
        dst_netns, dst_ip = state.endpoint_of(dst, family)
        return run_probes([Probe(src_netns, dst_netns or None, dst_ip)], protocol, port, timeout)[0]

    def matrix(
        self,
        protocol: str = "tcp",
        port: int = 80,
        timeout: float = 2.0,
        workloads: Sequence[str] | None = None,
        family: Family | None = None,
    ) -> dict[str, dict[str, bool]]:
        """src -> dst -> allowed, over every ordered pair of distinct workloads (to each destination's
        address of `family`; by default its first)."""
        state = self.lab.state
        names = list(workloads) if workloads is not None else sorted(state.workloads)
        ends = {n: state.endpoint_of(n, family) for n in names}
        pairs = [(s, d) for s in names for d in names if s != d]
        results = run_probes(
            [Probe(ends[s][0], ends[d][0], ends[d][1]) for s, d in pairs], protocol, port, timeout
        )
        out: dict[str, dict[str, bool]] = {n: {} for n in names}
        for (s, d), ok in zip(pairs, results, strict=True):
            out[s][d] = ok
        return out

    def matrices(
        self,
        checks: Sequence[tuple[str, int]],
        timeout: float = 2.0,
        workloads: Sequence[str] | None = None,
        family: Family | None = None,
    ) -> dict[tuple[str, int], dict[str, dict[str, bool]]]:
        """`matrix` for several (protocol, port) checks at once (probed in parallel: about one
        timeout in all); keyed by the checks as given."""
        state = self.lab.state
        names = list(workloads) if workloads is not None else sorted(state.workloads)
        ends = {n: state.endpoint_of(n, family) for n in names}
        pairs = [(s, d) for s in names for d in names if s != d]
        probes = [Probe(ends[s][0], ends[d][0], ends[d][1]) for s, d in pairs]
        results = run_probe_sets([(probes, protocol, port) for protocol, port in checks], timeout)
        out: dict[tuple[str, int], dict[str, dict[str, bool]]] = {}
        for check, found in zip(checks, results, strict=True):
            table: dict[str, dict[str, bool]] = {n: {} for n in names}
            for (s, d), ok in zip(pairs, found, strict=True):
                table[s][d] = ok
            out[check[0], check[1]] = table
        return out

    def flow_dirs(self) -> dict[str, Path]:
        """Each host's flow store (where its agent writes flow records; `tortie lab flows`)."""
        return {host: flows_dir(self.lab.workdir, host) for host in self.hosts}

    def env_lines(self) -> list[str]:
        return [f"export TORTIE_DATASTORE={self.record.client_url}", f"export TORTIE_LAB={self.name}"]

    def down(self) -> None:
        self.lab.down()


def down(name: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Tear down lab `name` if it is recorded; False when there was nothing to do."""
    workdir = lab_dir(name, root)
    if load_state(workdir) is None:
        return False
    Lab.load(workdir).down()
    return True
