"""Blackhole routes for the IPAM blocks affine to this host (Calico reference §3.5), as targets on
the route table.

Input: `HostBlockUpdate` / `HostBlockRemove` (calc sends only blocks confirmed-affine to this host,
as canonical CIDRs). Output: per block, the target `blackhole <block>` of class `IPAM_BLOCK_DROP`
on the `RouteTable`, under the source key ("block", cidr). The table reads back, writes and sweeps;
this manager never touches the kernel itself (`needs_apply` is always False).

Why: BGP advertises the whole block from this host; a packet for an address of the block that no
local workload holds must be dropped here, not sent back out along the default route (a loop
between hosts until the TTL runs out). Workload /32 (/128) routes are more specific and win, also
for addresses borrowed from another host's block.

Host-prefix blocks (/32, /128) are skipped with a warning, as before the route table arbitrated
between classes: their blackhole would share the kernel key of the workload route for that address
(the table would give the workload route precedence, and the blackhole whenever the interface is
down).

Construction: `BlockRoutesManager(route_table)`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tortie.common.ipfamily import is_host_cidr
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.messages import HostBlockRemove, HostBlockUpdate, Message
from tortie.dataplane.routetable import RouteClass, RouteTable, RouteTarget

log = logging.getLogger(__name__)


class BlockRoutesManager:
    """See the module docstring."""

    name = "block_routes"
    handles = frozenset({HostBlockUpdate, HostBlockRemove})

    def __init__(self, route_table: RouteTable) -> None:
        self._table = route_table

    def on_update(self, msg: Message) -> None:
        if isinstance(msg, HostBlockUpdate):
            if is_host_cidr(msg.cidr):
                log.warning("not blackholing a host-prefix block (its workload route has that key) cidr=%s",
                            msg.cidr)
                return
            target = RouteTarget.blackhole(msg.cidr, RouteClass.IPAM_BLOCK_DROP)
            self._table.set_targets(("block", msg.cidr), [target])
        elif isinstance(msg, HostBlockRemove):
            self._table.clear(("block", msg.cidr))

    def on_link_event(self, event: LinkEvent) -> None:
        raise TypeError(f"{self.name} takes no link events (blackhole routes have no device)")

    def resync(self) -> None:
        """Nothing to read back: the route table does that for every source."""

    @property
    def needs_apply(self) -> bool:
        return False

    def apply(self) -> None:
        """Nothing to write: the route table does that for every source."""

    def stats(self) -> Mapping[str, int]:
        return {}  # the route table counts the programmed blackholes ("block_routes")
