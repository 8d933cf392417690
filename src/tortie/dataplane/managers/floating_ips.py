"""Floating IPs: the ipNATs of this host's WorkloadEndpoints (Calico reference §3.10).

Inputs: `WorkloadEndpointUpdate` / `WorkloadEndpointRemove` (their `ip_nats`), `PoolUpdate` /
`PoolRemove` (which destinations are inside the cluster), `resync()`. Outputs:

* on the `RouteTable`, per endpoint, the targets `<external>/32 dev <iface>` (IPv6 `/128`) of class
  `FLOATING_IP` under the source key ("floating", namespace, name): the host routes the external
  address to the workload (so that the host's own traffic to it finds the interface before DNAT)
  and BIRD, which imports the agent's routes, exports it from this host when an export IP pool
  covers it, exactly as a borrowed workload address (docs/design/bgp.md). A workload address of the
  same CIDR wins (class `LOCAL_WORKLOAD`).
* the table `inet tortie-nat` (`nft.floating`): DNAT of every external address to its internal one,
  hairpin SNAT, and SNAT of the workload's own traffic to destinations outside every pool; deleted
  when no endpoint has an ipNAT.

Ordering: the agent applies this manager before the route table, so in one round the translation
exists before the route that attracts traffic to the external address (and BGP's advertisement).

An external address two endpoints claim goes to the first endpoint id (sorted), for its route (the
table's tie-break) and its NAT alike; the loser is logged once per change.

Construction: `FloatingIPManager(route_table, nft)`; IPv6 mappings follow `route_table.serves(V6)`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tortie.common.ipfamily import V6, family_of
from tortie.dataplane.drivers.kernel_watch import KernelChanges
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.nftables import NftDriver
from tortie.dataplane.managers.nft_table import NftTable
from tortie.dataplane.messages import (
    IPNat,
    Message,
    PoolRemove,
    PoolUpdate,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.nft.floating import TABLE, render_floating, resolve_nats
from tortie.dataplane.routetable import RouteClass, RouteTable, RouteTarget, SourceKey

log = logging.getLogger(__name__)


def route_source(endpoint_id: WorkloadEndpointId) -> SourceKey:
    return ("floating", endpoint_id.namespace, endpoint_id.name)


class FloatingIPManager:
    """See the module docstring."""

    name = "floating_ips"
    handles = frozenset(
        {WorkloadEndpointUpdate, WorkloadEndpointRemove, PoolUpdate, PoolRemove, KernelChanges})

    def __init__(self, route_table: RouteTable, nft: NftDriver, *, table: str = TABLE) -> None:
        self._table = route_table
        self._nft = NftTable(nft, table)
        self._ipv6 = route_table.serves(V6)
        self._nats: dict[WorkloadEndpointId, tuple[IPNat, ...]] = {}
        self._pools: dict[str, str] = {}  # pool name -> cidr
        self._render_dirty = True
        self._lost: frozenset[tuple[WorkloadEndpointId, IPNat]] = frozenset()

    def on_update(self, msg: Message) -> None:
        if isinstance(msg, WorkloadEndpointUpdate):
            nats = tuple(n for n in msg.ip_nats if self._ipv6 or family_of(n.external) != V6)
            if self._nats.get(msg.id, ()) == nats:
                return
            if nats:
                self._nats[msg.id] = nats
            else:
                self._nats.pop(msg.id, None)
            iface = msg.interface_name
            targets = {n.external: RouteTarget.via(family_of(n.external).host_cidr(n.external), iface,
                                                   RouteClass.FLOATING_IP) for n in nats}
            self._table.set_targets(route_source(msg.id), targets.values())
            self._render_dirty = True
        elif isinstance(msg, WorkloadEndpointRemove):
            if self._nats.pop(msg.id, None) is not None:
                self._table.clear(route_source(msg.id))
                self._render_dirty = True
        elif isinstance(msg, PoolUpdate) and self._pools.get(msg.name) != msg.cidr:
            self._pools[msg.name] = msg.cidr
            self._render_dirty = self._render_dirty or bool(self._nats)
        elif isinstance(msg, PoolRemove) and self._pools.pop(msg.name, None) is not None:
            self._render_dirty = self._render_dirty or bool(self._nats)

    def on_link_event(self, event: LinkEvent) -> None:
        raise TypeError(f"{self.name} takes no link events (the route table follows interfaces)")

    def on_kernel_changes(self, changes: KernelChanges) -> None:
        self._nft.on_kernel_changes(changes)  # a NAT table someone else changed is read back and repaired

    def resync(self) -> None:
        self._nft.resync()

    @property
    def needs_apply(self) -> bool:
        return self._render_dirty or self._nft.needs_apply

    def apply(self) -> None:
        if self._render_dirty:
            dnat, lost = resolve_nats(self._nats)
            if frozenset(lost) != self._lost:
                for endpoint_id, nat in sorted(frozenset(lost) - self._lost):
                    log.warning("floating IP held by an earlier endpoint; not translated for this one "
                                "endpoint=%s external=%s internal=%s",
                                endpoint_id, nat.external, nat.internal)
                self._lost = frozenset(lost)
            self._nft.set_desired(render_floating(dnat, self._pools.values()))
            self._render_dirty = False
        self._nft.apply()

    def stats(self) -> Mapping[str, int]:
        return {"floating_ips": sum(len(n) for n in self._nats.values())}
