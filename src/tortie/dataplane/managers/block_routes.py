"""Blackhole routes for the IPAM blocks affine to this host (Calico reference §3.5).

Input: `HostBlockUpdate` / `HostBlockRemove` (calc sends only blocks confirmed-affine to this
host), `resync()`. Output: one `blackhole <block>` route per block, with our route protocol.

Why: BGP advertises the whole block from this host; a packet for an address of the block that no
local workload holds must be dropped here, not sent back out along the default route (a loop
between hosts until the TTL runs out). Workload /32 (/128) routes are more specific and win, also
for addresses borrowed from another host's block.

Ownership: the routes of our protocol in the table whose kind is `blackhole`; a full resync (the
first apply after InSync included) deletes those not wanted and keeps everything else. Host-prefix
blocks (/32, /128) are skipped with a warning: their blackhole would share the kernel key of the
workload route for the same address and the two managers would fight over it.

Construction: `BlockRoutesManager(routes, table=254, ipv6=True)`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.routes import MAIN_TABLE, Route, RouteDriver
from tortie.dataplane.managers.manager_api import ApplyIncomplete
from tortie.dataplane.messages import HostBlockRemove, HostBlockUpdate, Message

log = logging.getLogger(__name__)


class BlockRoutesManager:
    """See the module docstring."""

    name = "block_routes"
    handles = frozenset({HostBlockUpdate, HostBlockRemove})

    def __init__(self, routes: RouteDriver, *, table: int = MAIN_TABLE, ipv6: bool = True) -> None:
        self._routes = routes
        self._table = table
        self._ipv6 = ipv6
        self._blocks: set[str] = set()
        self._programmed: dict[str, Route] = {}
        self._dirty: set[str] = set()
        self._full_resync = True

    def _usable(self, cidr: str) -> str | None:
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            log.warning("ignoring invalid block cidr=%s", cidr)
            return None
        if net.prefixlen == net.max_prefixlen:
            log.warning("not blackholing a host-prefix block (its workload route has that key) cidr=%s", net)
            return None
        if net.version == 6 and not self._ipv6:
            return None
        return str(net)

    def on_update(self, msg: Message) -> None:
        if isinstance(msg, HostBlockUpdate):
            cidr = self._usable(msg.cidr)
            if cidr is not None and cidr not in self._blocks:
                self._blocks.add(cidr)
                self._dirty.add(cidr)
        elif isinstance(msg, HostBlockRemove):
            cidr = self._usable(msg.cidr)
            if cidr is not None and cidr in self._blocks:
                self._blocks.discard(cidr)
                self._dirty.add(cidr)

    def on_link_event(self, event: LinkEvent) -> None:
        raise TypeError(f"{self.name} takes no link events (blackhole routes have no device)")

    def resync(self) -> None:
        self._full_resync = True

    @property
    def needs_apply(self) -> bool:
        return self._full_resync or bool(self._dirty)

    def _desired(self, cidr: str) -> Route | None:
        return Route(cidr, kind="blackhole", table=self._table) if cidr in self._blocks else None

    def apply(self) -> None:
        if self._full_resync:
            actual = self._routes.list_routes(self._table)
            self._programmed = {r.dst: r for r in actual if r.kind == "blackhole"}
            self._dirty.update(self._programmed)
            self._dirty.update(self._blocks)
            self._full_resync = False
            log.info(
                "block routes read back blackholes=%d blocks=%d", len(self._programmed), len(self._blocks)
            )
        failures: list[str] = []
        for cidr in sorted(self._dirty):
            want = self._desired(cidr)
            have = self._programmed.get(cidr)
            try:
                if want != have:
                    if want is None:
                        assert have is not None
                        self._routes.delete_route(have)
                        del self._programmed[cidr]
                    else:
                        self._routes.replace_route(want)
                        self._programmed[cidr] = want
                self._dirty.discard(cidr)
            except DataplaneError as exc:
                failures.append(f"blackhole {cidr}: {exc}")
        if failures:
            raise ApplyIncomplete(self.name, failures)

    def stats(self) -> Mapping[str, int]:
        return {"block_routes": len(self._programmed)}
