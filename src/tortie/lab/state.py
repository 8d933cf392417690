"""What a lab created, recorded in `<workdir>/lab.json` so any process can tear it down.

Input/output: `LabState` (plain dataclasses) <-> JSON, written atomically (temp file + rename)
after every change. `StateStore` is the one writer: the fabric, processes and workloads record what
they are about to create through it. Invariant: a namespace, process or file is recorded BEFORE it is
created, so a crash half-way through still leaves a record that `Lab.down()` can act on (teardown
treats "already gone" as done). Fields added after the first version have defaults, so older files
load. Names: hosts, workloads and appliances share one namespace of names (`<lab>-<name>`), checked
by `StateStore.check_member`. Addresses are per family: a host or appliance records one fabric
address per subnet of the lab (IPv4 first), a workload every address its CNI result gave it;
`host_ip`/`endpoint_of` pick one by family (default: the first).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tortie.common.ipfamily import Family, family_of
from tortie.lab.errors import LabError

STATE_FILE = "lab.json"
FORMAT_VERSION = 1
FABRIC_ALIAS = "fab"
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_MEMBER_RE = re.compile(r"^[a-z][a-z0-9-]{0,12}$")


def _pick(addresses: list[str], family: Family | None, what: str) -> str:
    """The bare address of `family` among `addresses` (with or without prefix), else the first one."""
    for address in addresses:
        if family is None or family_of(address) == family:
            return address.split("/")[0]
    raise LabError(f"{what} has no {family} address" if family else f"{what} has no address")


@dataclass
class HostRecord:
    name: str
    netns: str
    addresses: list[str]
    """Fabric addresses with prefix length, one per family, e.g. 172.31.0.11/24, fd00:172:31::b/64."""
    fabric_port: str
    segment: int = 0
    """Which of the fabric's subnets (bridge br<segment>) the host sits in."""

    @property
    def address(self) -> str:
        """The first fabric address (with prefix length)."""
        return self.addresses[0]

    def ip(self, family: Family | None = None) -> str:
        return _pick(self.addresses, family, f"host {self.name}")


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
    pod: str = ""
    """The Kubernetes pod name (K8S_POD_NAME) of a workload added as a Kubernetes pod; "" otherwise."""

    def ip(self, family: Family | None = None) -> str:
        return _pick(self.ips, family, f"workload {self.name}")


@dataclass
class ApplianceRecord:
    """A namespace on the fabric that is not a tortie host: a router or an etcd member."""

    name: str
    netns: str
    addresses: list[str]
    """Fabric addresses with prefix length, one per family."""
    fabric_port: str
    role: str
    """"router" or "etcd"."""
    kind: str = ""
    """For routers: gobgp or frr."""
    asn: int = 0
    segment: int = 0
    ports: list[str] = field(default_factory=list)
    """A subnet router's fabric ports, one per segment (its addresses: per segment, per family)."""

    @property
    def address(self) -> str:
        """The first fabric address (with prefix length)."""
        return self.addresses[0]

    def ip(self, family: Family | None = None) -> str:
        return _pick(self.addresses, family, f"{self.role} {self.name}")


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
    pools: list[str]
    """The lab's IPPools' CIDRs, one per family the lab carries (IPv4 first)."""
    host_as: int
    tor: str
    tor_as: int
    route_reflectors: list[str]
    cni_bin: str
    run_root: str
    etcd_ports: list[int] = field(default_factory=list)
    """Loopback ports of the relay in the root namespace, one per etcd member (etcd mode)."""
    encapsulation: str = "none"
    """none, vxlan or vxlan-cross-subnet (the IPPools' vxlanMode and what the fabric carries)."""
    bgp: str = "bird"
    """bird, or none: the nodes run without BGP (`tortie node run --bgp none`)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatacenterRecord:
        data = dict(data)
        if "pool" in data:  # before per-family pools: one IPv4 pool
            data["pools"] = [data.pop("pool")]
        data.pop("block_size", None)
        return cls(**data)


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


def _with_addresses(data: dict[str, Any]) -> dict[str, Any]:
    """A host/appliance record of lab.json; before per-family addresses it had one `address`."""
    data = dict(data)
    if "address" in data:
        data["addresses"] = [data.pop("address")]
    return data


@dataclass
class LabState:
    name: str
    subnets: list[str]
    """The fabric's subnets, one per IP family (IPv4 first)."""
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
    segments: int = 1
    """How many host subnets the fabric has (bridges br0..; a subnet router joins them)."""

    def netns_of(self, name: str) -> str:
        """The namespace of host, workload or appliance `name`, of the fabric (`fab`), or `name` itself
        when it is a recorded namespace; ValueError otherwise."""
        for table in (self.hosts, self.workloads, self.appliances):
            if name in table:
                return table[name].netns
        if name in (FABRIC_ALIAS, self.fabric_netns):
            return self.fabric_netns
        if name in self.namespaces:
            return name
        raise ValueError(f"no host, workload or namespace {name!r} in lab {self.name}")

    @property
    def families(self) -> list[Family]:
        """The IP families of the fabric (IPv4 first)."""
        return [family_of(s) for s in self.subnets]

    def host_ip(self, name: str, family: Family | None = None) -> str:
        """Host `name`'s fabric address in `family` (default: its first); LabError when it has none."""
        return self.hosts[name].ip(family)

    def endpoint_of(self, name: str, family: Family | None = None) -> tuple[str, str]:
        """(namespace, address) of a workload, host or appliance name — its address in `family`, by
        default its first — or ("", ip) for an IP address (which must then be of `family`)."""
        for table in (self.workloads, self.hosts, self.appliances):
            if name in table:
                return table[name].netns, table[name].ip(family)
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            raise LabError(f"no workload, host or router {name!r} in lab {self.name}") from None
        if family is not None and family_of(address) != family:
            raise LabError(f"{name} is not an {family} address")
        return "", str(address)

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
            subnets=list(data.get("subnets") or [data["subnet"]]),
            interface_prefix=data["interface_prefix"],
            fabric_netns=data["fabric_netns"],
            created_workdir=bool(data.get("created_workdir", False)),
            namespaces=list(data.get("namespaces", [])),
            hosts={k: HostRecord(**_with_addresses(v)) for k, v in data.get("hosts", {}).items()},
            workloads={k: WorkloadRecord(**v) for k, v in data.get("workloads", {}).items()},
            processes=[ProcessRecord(**p) for p in data.get("processes", [])],
            files=list(data.get("files", [])),
            trees=list(data.get("trees", [])),
            appliances={
                k: ApplianceRecord(**_with_addresses(v)) for k, v in data.get("appliances", {}).items()
            },
            datacenter=DatacenterRecord.from_json(data["datacenter"]) if data.get("datacenter") else None,
            segments=int(data.get("segments", 1)),
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


class StateStore:
    """The lab's record in memory and on disk; every method that records saves before returning, so the
    caller creates the thing only once it is recorded. Thread-safe (parallel workload adds)."""

    def __init__(self, workdir: Path, state: LabState) -> None:
        self.workdir = workdir
        self.state = state
        self.lock = threading.RLock()

    @classmethod
    def open(
        cls, name: str, workdir: Path, *, subnets: Sequence[str], interface_prefix: str, segments: int = 1
    ) -> StateStore:
        """The record of lab `name` in `workdir`, created (with the workdir) when there is none."""
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid lab name {name!r}: lowercase letters, digits and '-', at most 40")
        if not 0 < len(interface_prefix) <= 8:
            raise ValueError(f"interface prefix {interface_prefix!r} must be 1..8 characters")
        existing = load_state(workdir)
        if existing is not None:
            if existing.name != name:
                raise LabError(f"{workdir} holds lab {existing.name!r}, not {name!r}")
            return cls(workdir, existing)
        created = not workdir.exists()
        workdir.mkdir(parents=True, exist_ok=True)
        store = cls(
            workdir,
            LabState(
                name=name,
                subnets=list(subnets),
                interface_prefix=interface_prefix,
                fabric_netns=f"{name}-fab",
                created_workdir=created,
                segments=segments,
            ),
        )
        store.save()
        return store

    @property
    def name(self) -> str:
        return self.state.name

    def save(self) -> None:
        with self.lock:
            save_state(self.workdir, self.state)

    def reload(self) -> LabState:
        """What is on disk now (another process may have recorded more), else what is in memory."""
        return load_state(self.workdir) or self.state

    def reset(self) -> None:
        """Forget everything but the lab's identity (after teardown)."""
        s = self.state
        self.state = LabState(s.name, s.subnets, s.interface_prefix, s.fabric_netns, segments=s.segments)

    def check_member(self, name: str) -> None:
        """ValueError unless `name` is a valid, unused host/workload/appliance name."""
        if not _MEMBER_RE.match(name) or name == FABRIC_ALIAS:
            raise ValueError(f"invalid host/workload name {name!r}: lowercase, digits, '-', at most 13")
        s = self.state
        if name in s.hosts or name in s.workloads or name in s.appliances:
            raise ValueError(f"{name!r} already exists in lab {self.name}")

    def add_namespace(self, netns: str, *, save: bool = True) -> None:
        with self.lock:
            if netns not in self.state.namespaces:
                self.state.namespaces.append(netns)
                if save:
                    self.save()

    def forget_namespace(self, netns: str) -> None:
        with self.lock:
            if netns in self.state.namespaces:
                self.state.namespaces.remove(netns)
            self.save()

    def record_tree(self, path: str | os.PathLike[str]) -> Path:
        """Record a directory (created now if missing) that `down()` removes with its contents."""
        tree = Path(path)
        with self.lock:
            if str(tree) not in self.state.trees:
                self.state.trees.append(str(tree))
            self.save()
        tree.mkdir(parents=True, exist_ok=True)
        return tree

    def record_file(self, path: str | os.PathLike[str]) -> Path:
        """Record a file (created by the caller after this returns) that `down()` deletes."""
        with self.lock:
            if str(path) not in self.state.files:
                self.state.files.append(str(path))
            self.save()
        return Path(path)

    def record_workload(self, record: WorkloadRecord, *, new: bool = False) -> None:
        """Record (`new`: a name not in use yet, else ValueError) or update a workload, with its
        namespace recorded before anyone creates it."""
        with self.lock:
            if new or record.name not in self.state.workloads:
                self.check_member(record.name)
                self.add_namespace(record.netns, save=False)
            self.state.workloads[record.name] = record
            self.save()

    def forget_workload(self, name: str) -> WorkloadRecord | None:
        with self.lock:
            record = self.state.workloads.pop(name, None)
            self.save()
        return record

    def record_process(self, record: ProcessRecord) -> None:
        with self.lock:
            self.state.processes.append(record)
            self.save()

    def forget_process(self, record: ProcessRecord) -> None:
        with self.lock:
            if record in self.state.processes:
                self.state.processes.remove(record)
            self.save()
