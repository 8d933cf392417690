"""What `tortie lab up` is asked to build (`LabSpec`), where labs live, and what it seeds the datastore with.

    LabSpec(name, hosts, workloads_per_host, datastore, tor, route_reflectors, ip_family, encapsulation,
            subnets, bgp, ...)
        .check() -> UserError;  .families -> [V4, V6] (dual, the default), [V4] (ipv4), [V6] (ipv6)
        .vxlan_mode -> the pools' vxlanMode: none -> Never, vxlan -> Always, vxlan-cross-subnet ->
        CrossSubnet; .segments -> host subnets (cross-subnet: --subnets, default 2; else 1)
    lab_dir(name)         <root>/<name>, root /run/tortie/lab or $TORTIE_LAB_ROOT
    seed_manifests(spec, hosts, tor_ips) -> projectcalico.org/v3 documents:
        per family an IPPool (lab-pool: spec.pool /block_size; lab-pool-v6: spec.pool6 /block_size6,
        Calico's CALICO_IPV4POOL_* / CALICO_IPV6POOL_* pair), BGPConfiguration default (host AS, mesh
        unless route reflectors), a BGPPeer to the ToR per family it has an address in (tor, tor-ipv6),
        and for R route reflectors the first R hosts' Node labels + routeReflectorClusterID and a
        BGPPeer from every node to them (sessions per family come from the nodes' addresses).

Pure: no I/O. New `tortie lab up` options start here (a field, its check, its CLI flag).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tortie.common.errors import UserError
from tortie.common.ipfamily import V4, V6, Family, family_of, parse_network
from tortie.lab.fabric import fabric_subnets

DEFAULT_ROOT = "/run/tortie/lab"
DEFAULT_NAME = "tortie"
DATASTORES = ("sqlite", "etcd")
TORS = ("gobgp", "frr", "none")
ENCAPSULATIONS = {"none": "Never", "vxlan": "Always", "vxlan-cross-subnet": "CrossSubnet"}
BGP_MODES = ("bird", "none")
IP_FAMILIES = {"ipv4": (V4,), "ipv6": (V6,), "dual": (V4, V6)}
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
    ip_family: str = "dual"
    pool: str = "10.244.0.0/16"
    block_size: int = V4.default_block_size
    pool6: str = "fd00:10:244::/56"
    block_size6: int = V6.default_block_size
    host_as: int = 64512
    tor_as: int = 65000
    etcd_members: int = 3
    encapsulation: str = "none"
    subnets_count: int | None = None
    """`--subnets`: host subnets joined by a router (vxlan-cross-subnet only; default 2 there)."""
    bgp: str = "bird"
    etcd_tls: bool = False
    """etcd over HTTPS with client certificates and authentication (needs datastore etcd)."""

    @property
    def vxlan_mode(self) -> str:
        return ENCAPSULATIONS.get(self.encapsulation, "Never")

    @property
    def segments(self) -> int:
        if self.encapsulation != "vxlan-cross-subnet":
            return 1
        return self.subnets_count if self.subnets_count is not None else 2

    @property
    def families(self) -> tuple[Family, ...]:
        """The IP families of the fabric, the pools and the workloads (IPv4 first)."""
        return IP_FAMILIES.get(self.ip_family, (V4,))

    @property
    def subnets(self) -> tuple[str, ...]:
        return fabric_subnets(self.families)

    def bgp_neighbour_entries(self) -> int:
        """Neighbour (ARP / NDP) entries per family that the lab's BGP sessions need, summed over its
        hosts: H(H-1) for the full mesh, 2HR with R reflectors, plus 2H with a ToR. The kernel keeps
        one neighbour table per family for every namespace together, bounded by the root namespace's
        `net.ipv4.neigh.default.gc_thresh3` (`net.ipv6...` for IPv6); beyond it new entries fail
        (ENOBUFS) and sessions stay in Connect."""
        h, r = self.hosts, self.route_reflectors
        sessions = 2 * h * r if r else h * (h - 1)
        return sessions + (2 * h if self.tor != "none" else 0)

    def pools(self) -> list[tuple[str, str, int]]:
        """(IPPool name, CIDR, block size) per family of the lab."""
        out = []
        candidates = (("lab-pool", self.pool, self.block_size), ("lab-pool-v6", self.pool6, self.block_size6))
        for name, cidr, size in candidates:
            if family_of(cidr) in self.families:
                out.append((name, cidr, size))
        return out

    def check(self) -> None:
        problems = []
        if self.ip_family not in IP_FAMILIES:
            problems.append(f"--ip-family {self.ip_family!r}: one of {', '.join(IP_FAMILIES)}")
        for option, cidr, size, fam in (
            ("pool", self.pool, self.block_size, V4),
            ("pool6", self.pool6, self.block_size6, V6),
        ):
            try:
                net = parse_network(cidr, strict=True, family=fam)
            except ValueError as exc:
                problems.append(f"{option}: {exc}")
                continue
            low, high = fam.block_size_range
            if not low <= size <= high or size < net.prefixlen:
                low = max(low, net.prefixlen)
                problems.append(f"{option} {cidr}: block size {size} must be {low}..{high}")
        if not 1 <= self.hosts <= 200:
            problems.append(f"--hosts {self.hosts}: 1..200")
        if not 0 <= self.workloads_per_host <= 200:
            problems.append(f"--workloads-per-host {self.workloads_per_host}: 0..200")
        if self.datastore not in DATASTORES:
            problems.append(f"--datastore {self.datastore!r}: one of {', '.join(DATASTORES)}")
        if self.etcd_tls and self.datastore != "etcd":
            problems.append("--etcd-tls: needs --datastore etcd")
        if self.tor not in TORS:
            problems.append(f"--tor {self.tor!r}: one of {', '.join(TORS)}")
        if self.encapsulation not in ENCAPSULATIONS:
            problems.append(f"--encapsulation {self.encapsulation!r}: one of {', '.join(ENCAPSULATIONS)}")
        if self.subnets_count is not None and self.encapsulation != "vxlan-cross-subnet":
            problems.append(f"--subnets {self.subnets_count}: several host subnets come with "
                            "--encapsulation vxlan-cross-subnet")
        elif self.encapsulation == "vxlan-cross-subnet":
            if not 2 <= self.segments <= min(self.hosts, 16):
                problems.append(f"--subnets {self.segments}: 2..{min(self.hosts, 16)} (at most one per host, "
                                "and --hosts must be at least 2)")
            if self.tor != "none":
                problems.append("--tor with --encapsulation vxlan-cross-subnet: the ToR would sit in one "
                                "subnet only; leave it out")
        if self.bgp not in BGP_MODES:
            problems.append(f"--bgp {self.bgp!r}: one of {', '.join(BGP_MODES)}")
        elif self.bgp == "none" and (self.tor != "none" or self.route_reflectors):
            problems.append("--bgp none: no --tor and no --route-reflectors (nothing speaks BGP)")
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


def seed_manifests(spec: LabSpec, hosts: Sequence[str], tor_ips: Sequence[str]) -> list[dict[str, Any]]:
    out = [
        _resource("IPPool", name, {"cidr": cidr, "blockSize": size, "nodeSelector": "all()",
                                   "vxlanMode": spec.vxlan_mode})
        for name, cidr, size in spec.pools()
    ]
    out += [
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
    for i, tor_ip in enumerate(tor_ips):  # tor, then tor-ipv6 on a dual-stack fabric
        name = f"tor-{family_of(tor_ip).key}" if i else "tor"
        out.append(_resource("BGPPeer", name, {"peerIP": tor_ip, "asNumber": spec.tor_as}))
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
