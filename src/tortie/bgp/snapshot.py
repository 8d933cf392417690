"""Mirror of the datastore keys BGP reads, decoded into `records` (the daemon's syncer sink side).

Inputs: `on_update(key, value)` / `on_delete(key)` for keys under `BGP_PREFIXES` (v3 resources as
stored wire dicts; IPAM blocks as Calico backend JSON). Output: `snapshot()` -> `records.Snapshot`.

Decoding goes through the same model validation as everything else (`tortie.model.parse_resource`;
IPAM blocks through `tortie.model.ipam_records.decode_block_head`, which reads no allocations);
an object that fails validation is treated as absent, with a warning (conventions §1), and one bad
object never hides the others. `decode_*` helpers are pure and also used by tests and the bench to
build snapshots straight from resources.

Invariants: the snapshot equals what the keys currently hold (an update replaces, a delete removes,
an invalid update removes the key's previous record); records are ordered by key.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from tortie.bgp.records import (
    BgpConfig,
    Community,
    Node,
    Peer,
    Pool,
    PrefixAdvertisement,
    SecretRef,
    Snapshot,
)
from tortie.common.errors import InvalidRecord
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
from tortie.model.fields import duration_seconds, peer_address
from tortie.model.ipam_block import BlockHead
from tortie.model.ipam_records import decode_block_head
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)

NODE_PREFIX = kind_info("Node").list_prefix()
CONFIG_PREFIX = kind_info("BGPConfiguration").list_prefix()
PEER_PREFIX = kind_info("BGPPeer").list_prefix()
POOL_PREFIX = kind_info("IPPool").list_prefix()

# Everything the BGP view depends on (non-overlapping, as the Syncer requires).
BGP_PREFIXES = (NODE_PREFIX, CONFIG_PREFIX, PEER_PREFIX, POOL_PREFIX, BLOCK_ROOT)

Record = Node | BgpConfig | Peer | Pool | BlockHead


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
    )


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
    )


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
        return Pool(name, spec.network, bool(spec.disabled), bool(spec.disable_bgp_export))
    return None


def snapshot_from_resources(resources: Iterable[Resource], blocks: Iterable[BlockHead] = ()) -> Snapshot:
    """Build a Snapshot straight from model Resources (tests, bench)."""
    cache = SnapshotCache()
    for i, res in enumerate(resources):
        record = decode_resource(res)
        if record is not None:
            cache.put_record(f"{res.kind}/{res.metadata.name}/{i}", record)
    for b in blocks:
        cache.put_record(f"block/{b.cidr}", b)
    return cache.snapshot()


class SnapshotCache:
    """Key -> record map fed by syncer events; `snapshot()` is cached until the next change."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._cached: Snapshot | None = None

    def __len__(self) -> int:
        return len(self._records)

    def put_record(self, key: str, record: Record) -> None:
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
        if record is None:
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

    def snapshot(self) -> Snapshot:
        if self._cached is None:
            nodes: list[Node] = []
            configs: list[BgpConfig] = []
            peers: list[Peer] = []
            pools: list[Pool] = []
            blocks: list[BlockHead] = []
            for key in sorted(self._records):
                r = self._records[key]
                if isinstance(r, Node):
                    nodes.append(r)
                elif isinstance(r, BgpConfig):
                    configs.append(r)
                elif isinstance(r, Peer):
                    peers.append(r)
                elif isinstance(r, Pool):
                    pools.append(r)
                else:
                    blocks.append(r)
            self._cached = Snapshot(tuple(nodes), tuple(configs), tuple(peers), tuple(pools), tuple(blocks))
        return self._cached
