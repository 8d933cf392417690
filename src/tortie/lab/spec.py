"""What `tortie lab up` is asked to build (`LabSpec`), where labs live, and what it seeds the datastore with.

    LabSpec(name, hosts, workloads_per_host, datastore, tor, route_reflectors, ...)  .check() -> UserError
    lab_dir(name)         <root>/<name>, root /run/tortie/lab or $TORTIE_LAB_ROOT
    seed_manifests(spec, hosts, tor_ip) -> projectcalico.org/v3 documents:
        IPPool lab-pool (spec.pool, /block_size), BGPConfiguration default (host AS, mesh unless route
        reflectors), BGPPeer tor (when there is a ToR), and for R route reflectors the first R hosts'
        Node labels + routeReflectorClusterID and a BGPPeer from every node to them.

Pure: no I/O. New `tortie lab up` options start here (a field, its check, its CLI flag).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tortie.common.errors import UserError
from tortie.lab.fabric import DEFAULT_SUBNET

DEFAULT_ROOT = "/run/tortie/lab"
DEFAULT_NAME = "tortie"
DATASTORES = ("sqlite", "etcd")
TORS = ("gobgp", "frr", "none")
RR_CLUSTER_ID = "244.0.0.1"


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


def _resource(
    kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


def seed_manifests(spec: LabSpec, hosts: Sequence[str], tor_ip: str | None) -> list[dict[str, Any]]:
    out = [
        _resource(
            "IPPool", "lab-pool", {"cidr": spec.pool, "blockSize": spec.block_size, "nodeSelector": "all()"}
        ),
        _resource(
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
        out.append(_resource("BGPPeer", "tor", {"peerIP": tor_ip, "asNumber": spec.tor_as}))
    if spec.route_reflectors:
        for host in hosts[: spec.route_reflectors]:
            out.append(
                _resource(
                    "Node",
                    host,
                    {"bgp": {"routeReflectorClusterID": RR_CLUSTER_ID}},
                    {"route-reflector": "true"},
                )
            )
        out.append(
            _resource(
                "BGPPeer",
                "peer-with-route-reflectors",
                {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
            )
        )
    return out
