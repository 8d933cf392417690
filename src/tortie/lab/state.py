"""What a lab created, recorded in `<workdir>/lab.json` so any process can tear it down.

Input/output: `LabState` (plain dataclasses) <-> JSON, written atomically (temp file + rename)
after every change. Invariant: a namespace, process or file is recorded BEFORE it is created, so
a crash half-way through still leaves a record that `Lab.down()` can act on (teardown treats
"already gone" as done). Fields added after the first version have defaults, so older files load.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "lab.json"
FORMAT_VERSION = 1


@dataclass
class HostRecord:
    name: str
    netns: str
    address: str
    """Fabric address with prefix length, e.g. 172.31.0.11/24."""
    fabric_port: str


@dataclass
class WorkloadRecord:
    name: str
    host: str
    netns: str
    ips: list[str]
    host_ifname: str
    plumbed_host_side: bool
    via_cni: bool = False
    """Created by the CNI plugin (the datastore has its WorkloadEndpoint) rather than plumbed by the lab."""
    namespace: str = ""
    """The endpoint's namespace (policy scope), for CNI workloads."""
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)
    """Named ports as given: name:proto:port."""
    endpoint: str = ""
    """The WorkloadEndpoint name, for CNI workloads."""


@dataclass
class ApplianceRecord:
    """A namespace on the fabric that is not a tortie host: a router or an etcd member."""

    name: str
    netns: str
    address: str
    """Fabric address with prefix length."""
    fabric_port: str
    role: str
    """"router" or "etcd"."""
    kind: str = ""
    """For routers: gobgp or frr."""
    asn: int = 0


@dataclass
class DatacenterRecord:
    """What `tortie lab up` built on top of the namespaces (absent for labs built by the library alone)."""

    datastore_kind: str
    """sqlite or etcd."""
    datastore_url: str
    """The URL hosts use (inside the lab's namespaces)."""
    client_url: str
    """The URL for commands in the root namespace (`tortie lab env`): the same file for sqlite, the
    relay's loopback ports for etcd."""
    pool: str
    block_size: int
    host_as: int
    tor: str
    tor_as: int
    route_reflectors: list[str]
    cni_bin: str
    run_root: str
    etcd_ports: list[int] = field(default_factory=list)
    """Loopback ports of the relay in the root namespace, one per etcd member (etcd mode)."""


@dataclass
class ProcessRecord:
    pid: int
    start_time: int
    """Field 22 of /proc/<pid>/stat: tells a reused pid apart from our process."""
    netns: str
    """The namespace it runs in ("" for the root namespace)."""
    argv: list[str]
    log: str | None
    role: str = ""
    """What it is for, e.g. "node/h1", "etcd/e1", "router/tor", "relay" (empty for ad-hoc processes)."""


@dataclass
class LabState:
    name: str
    subnet: str
    interface_prefix: str
    fabric_netns: str
    created_workdir: bool = False
    namespaces: list[str] = field(default_factory=list)
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    workloads: dict[str, WorkloadRecord] = field(default_factory=dict)
    processes: list[ProcessRecord] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)
    """Directories the lab created and removes with everything in them."""
    appliances: dict[str, ApplianceRecord] = field(default_factory=dict)
    datacenter: DatacenterRecord | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = FORMAT_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported lab state version {data.get('version')!r}")
        return cls(
            name=data["name"],
            subnet=data["subnet"],
            interface_prefix=data["interface_prefix"],
            fabric_netns=data["fabric_netns"],
            created_workdir=bool(data.get("created_workdir", False)),
            namespaces=list(data.get("namespaces", [])),
            hosts={k: HostRecord(**v) for k, v in data.get("hosts", {}).items()},
            workloads={k: WorkloadRecord(**v) for k, v in data.get("workloads", {}).items()},
            processes=[ProcessRecord(**p) for p in data.get("processes", [])],
            files=list(data.get("files", [])),
            trees=list(data.get("trees", [])),
            appliances={k: ApplianceRecord(**v) for k, v in data.get("appliances", {}).items()},
            datacenter=DatacenterRecord(**data["datacenter"]) if data.get("datacenter") else None,
        )


def save_state(workdir: Path, state: LabState) -> None:
    path = workdir / STATE_FILE
    tmp = workdir / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_state(workdir: Path) -> LabState | None:
    path = workdir / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return LabState.from_json(json.loads(text))
