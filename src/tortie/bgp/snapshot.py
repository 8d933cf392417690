"""Mirror of the datastore keys BGP reads, decoded into `records` (the daemon's syncer sink side).

Inputs: `on_update(key, value)` / `on_delete(key)` for keys under `BGP_PREFIXES` (v3 resources as
stored wire dicts; IPAM blocks as Calico backend JSON). Output: `snapshot()` -> `records.Snapshot`.

Decoding goes through the same model validation as everything else (`tortie.model.parse_resource`;
IPAM blocks through `tortie.model.ipam_records.decode_block_head`, which reads no allocations);
an object that fails validation is treated as absent, with a warning (conventions §1), and one bad
object never hides the others. `decode_*` helpers are pure and also used by tests and the bench to
build snapshots straight from resources; `read_snapshot` is one listing of the datastore.

Invariants: the snapshot equals what the keys currently hold (an update replaces, a delete removes,
an invalid update removes the key's previous record); records are ordered by key.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any, TypeVar

from tortie.bgp.records import (
    BgpConfig,
    Community,
    Filter,
    Node,
    Peer,
    Pool,
    PrefixAdvertisement,
    SecretRef,
    Snapshot,
    Workload,
)
from tortie.common.errors import InvalidRecord
from tortie.common.ipfamily import IPNetwork
from tortie.datastore.api import Datastore
from tortie.ipam.keys import BLOCK_ROOT, parse_block_key
from tortie.model import (
    BGPConfigurationSpec,
    BGPPassword,
    BGPPeerSpec,
    IPPoolSpec,
    NodeSpec,
    Resource,
    ValidationError,
    parse_resource,
)
from tortie.model.fields import as_network, duration_seconds, peer_address
from tortie.model.ipam_block import BlockHead
from tortie.model.ipam_records import decode_block_head
from tortie.model.kinds import kind_info
from tortie.model.specs_bgp import ServiceCIDR
from tortie.model.specs_bgp_filter import BGPFilterSpec
from tortie.model.specs_endpoint import WorkloadEndpointSpec

log = logging.getLogger(__name__)

NODE_PREFIX = kind_info("Node").list_prefix()
CONFIG_PREFIX = kind_info("BGPConfiguration").list_prefix()
PEER_PREFIX = kind_info("BGPPeer").list_prefix()
POOL_PREFIX = kind_info("IPPool").list_prefix()
FILTER_PREFIX = kind_info("BGPFilter").list_prefix()
# Watched only while some BGPPeer has a localWorkloadSelector (the daemon's second syncer), and only
# this node's endpoints are kept: every node would otherwise receive every endpoint of the cluster.
WORKLOAD_PREFIX = kind_info("WorkloadEndpoint").list_prefix()

# Everything the BGP view depends on (non-overlapping, as the Syncer requires).
BGP_PREFIXES = (NODE_PREFIX, CONFIG_PREFIX, PEER_PREFIX, FILTER_PREFIX, POOL_PREFIX, BLOCK_ROOT)

Record = Node | BgpConfig | Peer | Filter | Workload | Pool | BlockHead
R = TypeVar("R", Node, BgpConfig, Peer, Filter, Workload, Pool, BlockHead)


def _secret(pw: BGPPassword | None) -> SecretRef | None:
    if pw is None:
        return None
    ref = pw.secret_key_ref
    return SecretRef(ref.name, ref.key)


def _seconds(text: str | None) -> int | None:
    return None if text is None else int(duration_seconds(text))


def _node(name: str, labels: dict[str, str], spec: NodeSpec) -> Node:
    bgp = spec.bgp
    if bgp is None:
        return Node(name, labels)
    return Node(
        name=name,
        labels=labels,
        ipv4=ipaddress.IPv4Interface(bgp.ipv4_address) if bgp.ipv4_address else None,
        ipv6=ipaddress.IPv6Interface(bgp.ipv6_address) if bgp.ipv6_address else None,
        as_number=bgp.as_number,
        rr_cluster_id=bgp.route_reflector_cluster_id or None,
    )


def _config(name: str, spec: BGPConfigurationSpec) -> BgpConfig:
    return BgpConfig(
        name=name,
        as_number=spec.as_number,
        node_to_node_mesh_enabled=spec.node_to_node_mesh_enabled,
        listen_port=spec.listen_port,
        log_severity_screen=spec.log_severity_screen,
        communities=tuple(Community(c.name, c.value) for c in spec.communities) or None,
        prefix_advertisements=tuple(
            PrefixAdvertisement(ipaddress.ip_network(a.cidr, strict=False), tuple(a.communities))
            for a in spec.prefix_advertisements
        ) or None,
        ignored_interfaces=tuple(spec.ignored_interfaces) or None,
        node_mesh_password=_secret(spec.node_mesh_password),
        node_mesh_max_restart_time=_seconds(spec.node_mesh_max_restart_time),
        bind_mode=spec.bind_mode,
        service_cluster_ips=_cidrs(spec.service_cluster_ips),
        service_external_ips=_cidrs(spec.service_external_ips),
        service_load_balancer_ips=_cidrs(spec.service_load_balancer_ips),
        local_workload_peering_ipv4=(ipaddress.IPv4Address(spec.local_workload_peering_ipv4)
                                     if spec.local_workload_peering_ipv4 else None),
        local_workload_peering_ipv6=(ipaddress.IPv6Address(spec.local_workload_peering_ipv6)
                                     if spec.local_workload_peering_ipv6 else None),
    )


def _cidrs(items: tuple[ServiceCIDR, ...]) -> tuple[IPNetwork, ...]:
    return tuple(as_network(item.cidr) for item in items)


def _peer(name: str, spec: BGPPeerSpec) -> Peer:
    addr, port = peer_address(spec.peer_ip) if spec.peer_ip else (None, None)
    return Peer(
        name=name,
        node=spec.node,
        node_selector=spec.node_selector,
        peer_ip=addr,
        peer_port=port,
        as_number=spec.as_number,
        peer_selector=spec.peer_selector,
        local_as_number=spec.local_as_number,
        source_address=spec.source_address,
        password=_secret(spec.password),
        keep_original_next_hop=bool(spec.keep_original_next_hop),
        next_hop_mode=spec.next_hop_mode,
        max_restart_time=_seconds(spec.max_restart_time),
        keepalive_time=_seconds(spec.keepalive_time),
        reverse_peering=spec.reverse_peering,
        filters=spec.filters,
        ttl_security=spec.ttl_security,
        reachable_by=ipaddress.ip_address(spec.reachable_by) if spec.reachable_by else None,
        num_allowed_local_as=spec.num_allowed_local_as_numbers,
        local_workload_selector=spec.local_workload_selector,
    )


def _workload(res: Resource) -> Workload | None:
    spec = res.spec_as(WorkloadEndpointSpec)
    if spec.node is None:
        return None
    nets = [as_network(n) for n in spec.ip_networks]
    v4 = next((n.network_address for n in nets if n.version == 4), None)
    v6 = next((n.network_address for n in nets if n.version == 6), None)
    labels = dict(res.metadata.labels)
    if res.metadata.namespace:
        labels.setdefault("projectcalico.org/namespace", res.metadata.namespace)
    return Workload(f"{res.metadata.namespace}/{res.metadata.name}", spec.node, labels,
                    v4 if isinstance(v4, ipaddress.IPv4Address) else None,
                    v6 if isinstance(v6, ipaddress.IPv6Address) else None)


def decode_resource(res: Resource) -> Record | None:
    """A model Resource -> the BGP record for it (None for kinds BGP does not read)."""
    name = res.metadata.name
    if res.kind == "Node":
        return _node(name, dict(res.metadata.labels), res.spec_as(NodeSpec))
    if res.kind == "BGPConfiguration":
        return _config(name, res.spec_as(BGPConfigurationSpec))
    if res.kind == "BGPPeer":
        return _peer(name, res.spec_as(BGPPeerSpec))
    if res.kind == "IPPool":
        spec = res.spec_as(IPPoolSpec)
        return Pool(name, spec.network, bool(spec.disabled), bool(spec.disable_bgp_export),
                    spec.effective_vxlan_mode)
    if res.kind == "BGPFilter":
        return Filter(name, res.spec_as(BGPFilterSpec))
    if res.kind == "WorkloadEndpoint":
        return _workload(res)
    return None


def snapshot_from_resources(resources: Iterable[Resource], blocks: Iterable[BlockHead] = (),
                            hostname: str | None = None) -> Snapshot:
    """Build a Snapshot straight from model Resources (tests, bench); workload endpoints are kept
    when they are `hostname`'s."""
    cache = SnapshotCache(hostname)
    for i, res in enumerate(resources):
        record = decode_resource(res)
        if record is not None:
            cache.put_record(f"{res.kind}/{res.metadata.name}/{i}", record)
    for b in blocks:
        cache.put_record(f"block/{b.cidr}", b)
    return cache.snapshot()


def read_snapshot(ds: Datastore, hostname: str) -> Snapshot:
    """One listing of everything BGP reads (what `tortie bgp render` shows): the same decoding as the
    daemon's syncer; WorkloadEndpoints are listed only when some BGPPeer peers with workloads."""
    cache = SnapshotCache(hostname)
    for prefix in BGP_PREFIXES:
        for kv in ds.list(prefix)[0]:
            cache.on_update(kv.key, kv.value)
    if any(p.local_workload_selector is not None for p in cache.snapshot().peers):
        for kv in ds.list(WORKLOAD_PREFIX)[0]:
            cache.on_update(kv.key, kv.value)
    return cache.snapshot()


class SnapshotCache:
    """Key -> record map fed by syncer events; `snapshot()` is cached until the next change."""

    def __init__(self, hostname: str | None = None) -> None:
        self.hostname = hostname  # workload endpoints of other nodes are dropped
        self._records: dict[str, Record] = {}
        self._cached: Snapshot | None = None

    def __len__(self) -> int:
        return len(self._records)

    def put_record(self, key: str, record: Record) -> None:
        if isinstance(record, Workload) and record.node != self.hostname:
            return
        self._records[key] = record
        self._cached = None

    def on_update(self, key: str, value: dict[str, Any]) -> bool:
        """Apply a PUT; returns True if the snapshot changed (a block whose allocations changed but
        whose affinity did not leaves it unchanged)."""
        record: Record | None
        try:
            if key.startswith(BLOCK_ROOT):
                cidr = parse_block_key(key)
                record = decode_block_head(value, cidr) if cidr is not None else None
            else:
                record = decode_resource(parse_resource(value, source=key))
        except (ValidationError, InvalidRecord, ValueError) as exc:
            log.warning("ignoring invalid object key=%s problem=%s", key, exc)
            record = None
        if record is None or (isinstance(record, Workload) and record.node != self.hostname):
            return self.on_delete(key)
        if self._records.get(key) == record:
            return False
        self._records[key] = record
        self._cached = None
        return True

    def on_delete(self, key: str) -> bool:
        """Apply a DELETE; returns True if the snapshot changed."""
        if self._records.pop(key, None) is None:
            return False
        self._cached = None
        return True

    def drop_prefix(self, prefix: str) -> bool:
        """Forget every record under `prefix` (a watch that stopped); True if the snapshot changed."""
        keys = [k for k in self._records if k.startswith(prefix)]
        for k in keys:
            del self._records[k]
        if keys:
            self._cached = None
        return bool(keys)

    def snapshot(self) -> Snapshot:
        if self._cached is None:
            by_type: dict[type, list[Record]] = {}
            for key in sorted(self._records):
                r = self._records[key]
                by_type.setdefault(type(r), []).append(r)

            def of(cls: type[R]) -> tuple[R, ...]:
                return tuple(r for r in by_type.get(cls, ()) if isinstance(r, cls))

            self._cached = Snapshot(of(Node), of(BgpConfig), of(Peer), of(Pool), of(BlockHead),
                                    of(Filter), of(Workload))
        return self._cached
