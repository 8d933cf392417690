"""What a lab created, recorded in `<workdir>/lab.json` so any process can tear it down.

Input/output: `LabState` (plain dataclasses) <-> JSON, written atomically (temp file + rename)
after every change. Invariant: a namespace, process or file is recorded BEFORE it is created, so
a crash half-way through still leaves a record that `Lab.down()` can act on (teardown treats
"already gone" as done).
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


@dataclass
class ProcessRecord:
    pid: int
    start_time: int
    """Field 22 of /proc/<pid>/stat: tells a reused pid apart from our process."""
    netns: str
    argv: list[str]
    log: str | None


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
