"""A consistent picture of IPAM state and of what uses the addresses, for `check` and `show`.

Input: the KVs under `/calico/` (one `Datastore.list`, so everything is read at a single revision).
Output: an `IpamSnapshot` value. `snapshot_from_kvs` is pure; `take_snapshot(ds)` does the one read.

What it gathers: blocks, affinities, handles, IPAM config (IPAM objects, see `keys`); IPPools,
IPReservations; Nodes (existence, and their tunnel addresses, which are IPAM allocations too); and the
addresses of WorkloadEndpoints (`spec.ipNetworks`). Malformed IPAM objects are kept as `bad_records`
(key -> reason) so the audit can report them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import tortie.ipam.keys as keys
from tortie.common.errors import InvalidRecord
from tortie.common.ipfamily import IPAddress, IPNetwork
from tortie.datastore.api import KV, Datastore
from tortie.ipam.config import IpamConfig, newest_config
from tortie.ipam.pools import PoolView, pool_from_resource, reservations_from_resources
from tortie.model.ipam_block import Block
from tortie.model.ipam_records import Affinity, Handle, decode_affinity, decode_block, decode_handle

SNAPSHOT_PREFIX = "/calico/"

# Node fields holding tunnel addresses allocated from IPAM (reference §1.6, §5.5): (path, label).
TUNNEL_FIELDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("bgp", "ipv4IPIPTunnelAddr"), "IPIP tunnel"),
    (("ipv4VXLANTunnelAddr",), "VXLAN tunnel"),
    (("ipv6VXLANTunnelAddr",), "VXLAN IPv6 tunnel"),
    (("wireguard", "interfaceIPv4Address"), "WireGuard tunnel"),
    (("wireguard", "interfaceIPv6Address"), "WireGuard IPv6 tunnel"),
)


@dataclass(frozen=True)
class AddressUser:
    """Something using an address: a WorkloadEndpoint or a node's tunnel device."""

    kind: str  # "WorkloadEndpoint" or the tunnel label
    name: str  # "<namespace>/<name>" for endpoints, the node name for tunnels
    node: str | None = None
    namespace: str | None = None
    pod: str | None = None

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class IpamSnapshot:
    revision: int
    blocks: Mapping[IPNetwork, Block] = field(default_factory=dict)
    affinities: tuple[Affinity, ...] = ()
    handles: Mapping[str, Handle] = field(default_factory=dict)
    config: IpamConfig = field(default_factory=IpamConfig)
    pools: tuple[PoolView, ...] = ()
    reservations: tuple[IPNetwork, ...] = ()
    nodes: frozenset[str] = frozenset()
    users: Mapping[IPAddress, tuple[AddressUser, ...]] = field(default_factory=dict)
    bad_records: Mapping[str, str] = field(default_factory=dict)


def _dig(obj: Mapping[str, Any], path: Iterable[str]) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def _address(text: Any) -> IPAddress | None:
    """An address from "10.0.0.5", "10.0.0.5/32" or "10.0.0.5/24" (interface form); None if invalid."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return ipaddress.ip_interface(text).ip
    except ValueError:
        return None


def snapshot_from_kvs(kvs: Iterable[KV], revision: int) -> IpamSnapshot:
    blocks: dict[IPNetwork, Block] = {}
    affinities: list[Affinity] = []
    handles: dict[str, Handle] = {}
    config_backend: tuple[int, Mapping[str, Any]] | None = None
    config_resource: tuple[int, Mapping[str, Any]] | None = None
    pools: list[PoolView] = []
    reservation_objs: list[Mapping[str, Any]] = []
    nodes: set[str] = set()
    users: dict[IPAddress, list[AddressUser]] = {}
    bad: dict[str, str] = {}
    for kv in kvs:
        key, value = kv.key, kv.value
        try:
            if (cidr := keys.parse_block_key(key)) is not None:
                blocks[cidr] = decode_block(value, cidr)
            elif (parsed := keys.parse_affinity_key(key)) is not None:
                affinities.append(decode_affinity(parsed[0], parsed[1], value))
            elif (handle := keys.parse_handle_key(key)) is not None:
                handles[handle] = decode_handle(handle, value)
            elif key == keys.CONFIG_KEY:
                config_backend = (kv.mod_revision, value)
            elif key == keys.CONFIG_RESOURCE_KEY:
                config_resource = (kv.mod_revision, value)
            elif key.startswith(keys.POOL_PREFIX):
                pool = pool_from_resource(value)
                if pool is not None:
                    pools.append(pool)
            elif key.startswith(keys.RESERVATION_PREFIX):
                reservation_objs.append(value)
            elif key.startswith(keys.NODE_PREFIX):
                name = key[len(keys.NODE_PREFIX) :]
                nodes.add(name)
                spec = value.get("spec") or {}
                for path, label in TUNNEL_FIELDS:
                    addr = _address(_dig(spec, path))
                    if addr is not None:
                        users.setdefault(addr, []).append(AddressUser(label, name, node=name))
            elif key.startswith(keys.WEP_PREFIX):
                namespace, _, name = key[len(keys.WEP_PREFIX) :].partition("/")
                spec = value.get("spec") or {}
                user = AddressUser(
                    "WorkloadEndpoint",
                    f"{namespace}/{name}",
                    node=spec.get("node"),
                    namespace=namespace,
                    pod=spec.get("pod") or spec.get("workload"),
                )
                for net in spec.get("ipNetworks") or []:
                    addr = _address(net)
                    if addr is not None:
                        users.setdefault(addr, []).append(user)
        except InvalidRecord as exc:
            bad[key] = str(exc)
    return IpamSnapshot(
        revision=revision,
        blocks=blocks,
        affinities=tuple(affinities),
        handles=handles,
        config=newest_config(config_backend, config_resource),
        pools=tuple(pools),
        reservations=tuple(reservations_from_resources(reservation_objs)),
        nodes=frozenset(nodes),
        users={ip: tuple(u) for ip, u in users.items()},
        bad_records=bad,
    )


def take_snapshot(ds: Datastore) -> IpamSnapshot:
    kvs, revision = ds.list(SNAPSHOT_PREFIX)
    return snapshot_from_kvs(kvs, revision)
