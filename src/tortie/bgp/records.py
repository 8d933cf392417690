"""The datastore facts BGP needs, as small frozen records (the input vocabulary of `tortie.bgp.view`).

Inputs: nothing (plain values); `tortie.bgp.snapshot` builds these from stored resources and IPAM
objects. Outputs: `Node`, `BgpConfig`, `Peer`, `Filter`, `Workload`, `Pool` records and a `Snapshot`
holding one consistent set of them, with the IPAM blocks as the `BlockHead` records every reader of a
block shares (`tortie.model.ipam_records`).

Keeping the view's vocabulary here (rather than using the model's resource classes directly) means the
view reads only what BGP cares about, already normalised: AS numbers as integers, addresses as
`ipaddress` objects, durations in seconds, `None` for "not set" so the view applies Calico's
defaults in one place.

Invariants: records are immutable and hashable; a `Snapshot` never holds two nodes (or configs,
peers, pools) with the same name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from tortie.common.ipfamily import V4, Family, IPAddress, IPInterface, IPNetwork
from tortie.model.ipam_block import BlockHead
from tortie.model.specs_bgp_filter import BGPFilterSpec

DEFAULT_AS_NUMBER = 64512
DEFAULT_LISTEN_PORT = 179


@dataclass(frozen=True)
class SecretRef:
    """A reference to one key of a named secret (Calico's `secretKeyRef`)."""

    name: str
    key: str


@dataclass(frozen=True)
class Node:
    """A cluster node as BGP sees it (Node.spec.bgp plus labels)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ipv4: ipaddress.IPv4Interface | None = None
    ipv6: ipaddress.IPv6Interface | None = None
    as_number: int | None = None
    rr_cluster_id: str | None = None

    def interface(self, fam: Family) -> IPInterface | None:
        """The node's BGP address of `fam` with its subnet's prefix length, None when it has none."""
        return self.ipv4 if fam is V4 else self.ipv6

    def address(self, fam: Family) -> IPAddress | None:
        iface = self.interface(fam)
        return None if iface is None else iface.ip

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.labels.items())), self.ipv4, self.ipv6))


@dataclass(frozen=True)
class Community:
    """A named community from BGPConfiguration.communities; value `aa:nn` or `aa:nn:mm`."""

    name: str
    value: str


@dataclass(frozen=True)
class PrefixAdvertisement:
    """Communities (names or literal values) to attach to routes inside `cidr`."""

    cidr: IPNetwork
    communities: tuple[str, ...]


@dataclass(frozen=True)
class BgpConfig:
    """One BGPConfiguration (`default` or `node.<name>`); None = not set there."""

    name: str
    as_number: int | None = None
    node_to_node_mesh_enabled: bool | None = None
    listen_port: int | None = None
    log_severity_screen: str | None = None
    communities: tuple[Community, ...] | None = None
    prefix_advertisements: tuple[PrefixAdvertisement, ...] | None = None
    ignored_interfaces: tuple[str, ...] | None = None
    node_mesh_password: SecretRef | None = None
    node_mesh_max_restart_time: int | None = None
    bind_mode: str | None = None  # "None" / "NodeIP"
    service_cluster_ips: tuple[IPNetwork, ...] = ()
    service_external_ips: tuple[IPNetwork, ...] = ()
    service_load_balancer_ips: tuple[IPNetwork, ...] = ()
    local_workload_peering_ipv4: ipaddress.IPv4Address | None = None
    local_workload_peering_ipv6: ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class Peer:
    """One BGPPeer. Exactly one of (`peer_ip` + `as_number`) and `peer_selector` selects the remote side;
    `node` / `node_selector` (or neither: global) select the local side."""

    name: str
    node: str | None = None
    node_selector: str | None = None
    peer_ip: IPAddress | None = None
    peer_port: int | None = None
    as_number: int | None = None
    peer_selector: str | None = None
    local_as_number: int | None = None
    source_address: str | None = None  # "UseNodeIP" (default) or "None"
    password: SecretRef | None = None
    keep_original_next_hop: bool = False
    next_hop_mode: str | None = None  # "Auto" / "Self" / "Keep"
    max_restart_time: int | None = None
    keepalive_time: int | None = None
    reverse_peering: str | None = None  # "Auto" (default) / "Manual"
    filters: tuple[str, ...] = ()  # BGPFilter names, in the order they apply
    ttl_security: int | None = None  # GTSM hop count; None / 0 = off
    reachable_by: IPAddress | None = None  # gateway of a static /32 (/128) route to peer_ip
    num_allowed_local_as: int | None = None
    local_workload_selector: str | None = None  # peer with this node's workloads it selects

    @property
    def is_global(self) -> bool:
        return self.node is None and self.node_selector is None


@dataclass(frozen=True)
class Filter:
    """One BGPFilter: its rules as the model validated them."""

    name: str
    spec: BGPFilterSpec


@dataclass(frozen=True)
class Workload:
    """A workload endpoint of some node: what workload peering (BGPPeer localWorkloadSelector) needs."""

    name: str
    node: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ipv4: ipaddress.IPv4Address | None = None  # its first address of each family
    ipv6: ipaddress.IPv6Address | None = None

    def address(self, fam: Family) -> IPAddress | None:
        return self.ipv4 if fam is V4 else self.ipv6

    def __hash__(self) -> int:
        return hash((self.name, self.node, tuple(sorted(self.labels.items())), self.ipv4, self.ipv6))


@dataclass(frozen=True)
class Pool:
    name: str
    cidr: IPNetwork
    disabled: bool = False
    disable_bgp_export: bool = False
    vxlan_mode: str = "Never"

    @property
    def exported(self) -> bool:
        """Whether BGP advertises addresses of this pool: enabled, not `disableBGPExport`, and not
        encapsulated (a VXLAN pool is routed by the agents from IPAM affinities; a peer that learned
        its blocks would route them natively, which is what the fabric cannot do)."""
        return not self.disabled and not self.disable_bgp_export and self.vxlan_mode == "Never"


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of everything BGP reads from the datastore."""

    nodes: tuple[Node, ...] = ()
    configs: tuple[BgpConfig, ...] = ()
    peers: tuple[Peer, ...] = ()
    pools: tuple[Pool, ...] = ()
    blocks: tuple[BlockHead, ...] = ()
    filters: tuple[Filter, ...] = ()
    workloads: tuple[Workload, ...] = ()  # the local node's workload endpoints only

    def node(self, name: str) -> Node | None:
        for n in self.nodes:
            if n.name == name:
                return n
        return None

    def config(self, name: str) -> BgpConfig | None:
        for c in self.configs:
            if c.name == name:
                return c
        return None

    def filter(self, name: str) -> Filter | None:
        for f in self.filters:
            if f.name == name:
                return f
        return None
