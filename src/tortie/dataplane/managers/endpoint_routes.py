"""Routes and interface sysctls for the workloads on this host (Calico reference §3.4).

Inputs: `WorkloadEndpointUpdate` / `WorkloadEndpointRemove` (local endpoints only; calc filters by
host), link events, `resync()`. Outputs, through the drivers:

* per endpoint address, a route `<ip>/32 dev <iface> scope link` (IPv6: `/128 dev <iface>`) with
  our route protocol, present exactly while the interface exists and is up (`Link.is_up`);
* per endpoint interface, the host-side sysctls below, set when the interface exists.

Why each sysctl (the "169.254.1.1 trick": the workload's only gateway is an address nobody owns):

* `net.ipv4.conf.<if>.proxy_arp=1`: the host answers the workload's ARP for 169.254.1.1 (and any
  other address it routes elsewhere) with its own MAC, so all workload traffic is addressed to the
  host and routed; there is no L2 between workloads.
* `net.ipv4.neigh.<if>.proxy_delay=0`: without it proxy replies wait up to 0.8 s (default 80
  jiffies, randomised), which delays the first packet of every new flow after ARP expiry.
* `net.ipv4.conf.<if>.forwarding=1`, IPv6 `forwarding=1`: route packets arriving on the interface.
* `net.ipv6.conf.<if>.proxy_ndp=1` and `accept_ra=0`: the IPv6 counterpart (the workload's
  default route points at the host veth's link-local address); never autoconfigure from workloads.
* `net.ipv4.conf.<if>.rp_filter=2` (loose). The kernel applies max(conf.all, conf.<if>), so 2 is
  the only per-interface value that guarantees strict mode (1) is not in force whatever the host's
  `all` setting; 0 would be overridden by `all=1`. Strict mode would drop legitimate traffic
  whenever the reverse route of a workload's source is not (yet, or not only) via its own
  interface: before the agent has programmed the /32, for extra source addresses (allowed source
  prefixes, floating IPs), during a move of an address between interfaces. Anti-spoofing belongs to
  policy (per-endpoint source checks), not to reverse-path filtering. Loose still drops sources
  with no route at all.

Ownership: only interfaces whose names carry one of `interface_prefixes` are touched. The manager
owns the routes of our protocol in its table that are `unicast`, without gateway, on an owned
interface; adoption (every full resync, the first apply after InSync included) removes exactly
those it does not want and keeps everything else: other protocols, other interfaces, other kinds.
An address claimed by two endpoints goes to the first endpoint id (sorted) whose interface is up.

Status: an optional `status_callback(endpoint_id, state)` receives "up" (interface up and all its
routes programmed), "down", or None (endpoint removed) whenever that changes, after an apply.

Construction: `EndpointRoutesManager(routes, links, sysctls, interface_prefixes=("tort",),
table=254, ipv6=True, status_callback=None)`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Literal

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.errors import KernelError
from tortie.dataplane.drivers.links import Link, LinkDriver, LinkEvent
from tortie.dataplane.drivers.routes import MAIN_TABLE, Route, RouteDriver
from tortie.dataplane.drivers.sysctl import SysctlDriver
from tortie.dataplane.interfaces import InterfacePrefixes
from tortie.dataplane.managers.manager_api import ApplyIncomplete
from tortie.dataplane.messages import (
    Message,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)

log = logging.getLogger(__name__)

EndpointState = Literal["up", "down"]
StatusCallback = Callable[[WorkloadEndpointId, EndpointState | None], None]

IFACE_SYSCTLS_V4: tuple[tuple[str, str], ...] = (
    ("net/ipv4/conf/{}/proxy_arp", "1"),
    ("net/ipv4/neigh/{}/proxy_delay", "0"),
    ("net/ipv4/conf/{}/forwarding", "1"),
    ("net/ipv4/conf/{}/rp_filter", "2"),
)
IFACE_SYSCTLS_V6: tuple[tuple[str, str], ...] = (
    ("net/ipv6/conf/{}/proxy_ndp", "1"),
    ("net/ipv6/conf/{}/forwarding", "1"),
    ("net/ipv6/conf/{}/accept_ra", "0"),
)


class EndpointRoutesManager:
    """See the module docstring."""

    name = "endpoint_routes"
    handles = frozenset({WorkloadEndpointUpdate, WorkloadEndpointRemove, LinkEvent})

    def __init__(
        self,
        routes: RouteDriver,
        links: LinkDriver,
        sysctls: SysctlDriver,
        *,
        interface_prefixes: Iterable[str] | InterfacePrefixes | None = None,
        table: int = MAIN_TABLE,
        ipv6: bool = True,
        status_callback: StatusCallback | None = None,
    ) -> None:
        self._routes = routes
        self._link_driver = links
        self._sysctls = sysctls
        self._prefixes = InterfacePrefixes.of(interface_prefixes)
        self._table = table
        self._ipv6 = ipv6
        self._status_callback = status_callback
        self._iface_sysctls = IFACE_SYSCTLS_V4 + (IFACE_SYSCTLS_V6 if ipv6 else ())
        # desired state
        self._endpoints: dict[WorkloadEndpointId, WorkloadEndpointUpdate] = {}
        self._owners: dict[str, set[WorkloadEndpointId]] = {}  # dst -> endpoints claiming it
        self._by_iface: dict[str, set[WorkloadEndpointId]] = {}
        # kernel state as last read back and written
        self._links: dict[str, Link] = {}  # owned interfaces only
        self._programmed: dict[str, Route] = {}  # dst -> our endpoint route in the kernel
        self._iface_done: dict[str, int] = {}  # iface -> ifindex whose sysctls are verified
        # work to do
        self._dirty_dsts: set[str] = set()
        self._dirty_ifaces: set[str] = set()
        self._full_resync = True
        self._status_dirty = False
        self._reported: dict[WorkloadEndpointId, EndpointState] = {}
        self._warned: set[str] = set()

    # -- recording desired state (no I/O) --------------------------------------------------------

    def _nets(self, endpoint: WorkloadEndpointUpdate) -> tuple[str, ...]:
        return endpoint.ipv4_nets + (endpoint.ipv6_nets if self._ipv6 else ())

    def _forget(self, endpoint: WorkloadEndpointUpdate) -> None:
        for dst in self._nets(endpoint):
            owners = self._owners.get(dst)
            if owners is not None:
                owners.discard(endpoint.id)
                if not owners:
                    del self._owners[dst]
            self._dirty_dsts.add(dst)
        users = self._by_iface.get(endpoint.interface_name)
        if users is not None:
            users.discard(endpoint.id)
            if not users:
                del self._by_iface[endpoint.interface_name]

    def _remember(self, endpoint: WorkloadEndpointUpdate) -> None:
        iface = endpoint.interface_name
        if not self._prefixes.owns(iface) and iface not in self._warned:
            self._warned.add(iface)
            log.warning(
                "endpoint interface lacks the configured prefix; not touching it endpoint=%s iface=%s "
                "prefixes=%s",
                endpoint.id,
                iface,
                self._prefixes,
            )
        for dst in self._nets(endpoint):
            owners = self._owners.setdefault(dst, set())
            owners.add(endpoint.id)
            if len(owners) > 1:
                log.warning("address claimed by several endpoints dst=%s endpoints=%s", dst, sorted(owners))
            self._dirty_dsts.add(dst)
        self._by_iface.setdefault(iface, set()).add(endpoint.id)
        if iface not in self._iface_done:
            self._dirty_ifaces.add(iface)

    @staticmethod
    def _valid_nets(nets: tuple[str, ...], endpoint_id: WorkloadEndpointId) -> tuple[str, ...]:
        valid = []
        for net in nets:
            try:
                parsed = ipaddress.ip_network(net, strict=True)
            except ValueError:
                log.warning("ignoring invalid endpoint address endpoint=%s net=%r", endpoint_id, net)
                continue
            if parsed.prefixlen == parsed.max_prefixlen:
                valid.append(str(parsed))
            else:
                log.warning("ignoring non-host endpoint address endpoint=%s net=%s", endpoint_id, parsed)
        return tuple(valid)

    def on_update(self, msg: Message) -> None:
        if isinstance(msg, WorkloadEndpointUpdate):
            v4 = self._valid_nets(msg.ipv4_nets, msg.id)
            v6 = self._valid_nets(msg.ipv6_nets, msg.id)
            if (v4, v6) != (msg.ipv4_nets, msg.ipv6_nets):
                msg = replace(msg, ipv4_nets=v4, ipv6_nets=v6)
            old = self._endpoints.get(msg.id)
            if old == msg:
                return
            if old is not None:
                self._forget(old)
            self._endpoints[msg.id] = msg
            self._remember(msg)
            self._status_dirty = True
        elif isinstance(msg, WorkloadEndpointRemove):
            old = self._endpoints.pop(msg.id, None)
            if old is not None:
                self._forget(old)
                self._status_dirty = True

    def on_link_event(self, event: LinkEvent) -> None:
        name = event.link.name
        if not self._prefixes.owns(name):
            return
        if event.kind == "removed":
            self._links.pop(name, None)
            self._iface_done.pop(name, None)
            self._forget_programmed_on(name)  # the kernel deleted them with the interface
        else:
            self._links[name] = event.link
            if event.kind in ("added", "up"):
                self._forget_programmed_on(name)  # a new or re-upped interface has no routes yet
            if event.kind == "added":
                self._iface_done.pop(name, None)
                if name in self._by_iface:
                    self._dirty_ifaces.add(name)
        for endpoint_id in self._by_iface.get(name, ()):
            self._dirty_dsts.update(self._nets(self._endpoints[endpoint_id]))
        self._status_dirty = True

    def _forget_programmed_on(self, ifname: str) -> None:
        for dst in [dst for dst, route in self._programmed.items() if route.ifname == ifname]:
            del self._programmed[dst]
            self._dirty_dsts.add(dst)

    def resync(self) -> None:
        self._full_resync = True

    @property
    def needs_apply(self) -> bool:
        return self._full_resync or bool(self._dirty_dsts or self._dirty_ifaces or self._status_dirty)

    # -- applying (I/O through the drivers) ----------------------------------------------------------

    def _owns_route(self, route: Route) -> bool:
        return route.kind == "unicast" and route.gateway is None and self._prefixes.owns(route.ifname)

    def _desired(self, dst: str) -> Route | None:
        for endpoint_id in sorted(self._owners.get(dst, ())):
            iface = self._endpoints[endpoint_id].interface_name
            link = self._links.get(iface)
            if link is not None and link.is_up and self._prefixes.owns(iface):
                return Route(dst, ifname=iface, table=self._table)
        return None

    def _read_back(self) -> None:
        links = self._link_driver.list_links()
        actual = self._routes.list_routes(self._table)
        self._links = {link.name: link for link in links if self._prefixes.owns(link.name)}
        self._programmed = {route.dst: route for route in actual if self._owns_route(route)}
        unwanted = [dst for dst in self._programmed if self._desired(dst) != self._programmed[dst]]
        self._dirty_dsts.update(self._programmed)
        self._dirty_dsts.update(self._owners)
        self._iface_done.clear()
        self._dirty_ifaces.update(self._by_iface)
        self._full_resync = False
        self._status_dirty = True
        log.info(
            "endpoint routes read back routes=%d to_change=%d owned_interfaces=%d endpoints=%d",
            len(self._programmed),
            len(unwanted),
            len(self._links),
            len(self._endpoints),
        )

    def _apply_route(self, dst: str) -> None:
        want = self._desired(dst)
        have = self._programmed.get(dst)
        if want != have:
            if want is None:
                assert have is not None
                self._routes.delete_route(have)
                del self._programmed[dst]
                log.debug("route removed route=%s", have)
            else:
                self._routes.replace_route(want)
                self._programmed[dst] = want
                log.debug("route programmed route=%s", want)
        self._dirty_dsts.discard(dst)

    def _apply_iface(self, iface: str) -> None:
        link = self._links.get(iface)
        if link is None or iface not in self._by_iface or not self._prefixes.owns(iface):
            self._dirty_ifaces.discard(iface)
            return
        for template, value in self._iface_sysctls:
            key = template.format(iface)
            current = self._sysctls.read_sysctl(key)
            if current is None:
                if key.startswith("net/ipv6/"):
                    continue  # IPv6 disabled on this host: nothing to set
                raise KernelError(f"sysctl {key} missing (interface {iface} gone?)")
            if current != value:
                self._sysctls.write_sysctl(key, value)
                log.debug("interface sysctl set key=%s old=%s new=%s", key, current, value)
        self._iface_done[iface] = link.index
        self._dirty_ifaces.discard(iface)

    def apply(self) -> None:
        if self._full_resync:
            self._read_back()  # a failure here raises and leaves the full resync pending
        failures: list[str] = []
        for dst in sorted(self._dirty_dsts):
            try:
                self._apply_route(dst)
            except DataplaneError as exc:
                failures.append(f"route {dst}: {exc}")
        for iface in sorted(self._dirty_ifaces):
            try:
                self._apply_iface(iface)
            except DataplaneError as exc:
                failures.append(f"sysctls of {iface}: {exc}")
        if self._status_dirty:
            self._report_status()
        if failures:
            raise ApplyIncomplete(self.name, failures)

    # -- status and stats -------------------------------------------------------------------------------

    def endpoint_state(self, endpoint_id: WorkloadEndpointId) -> EndpointState | None:
        """ "up" when the interface is up and every address is routed to it; None if unknown."""
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            return None
        link = self._links.get(endpoint.interface_name)
        if link is None or not link.is_up:
            return "down"
        for dst in self._nets(endpoint):
            route = self._programmed.get(dst)
            if route is None or route.ifname != endpoint.interface_name:
                return "down"
        return "up"

    def _report_status(self) -> None:
        self._status_dirty = False
        if self._status_callback is None:
            return
        changes: list[tuple[WorkloadEndpointId, EndpointState | None]] = []
        for endpoint_id in [e for e in self._reported if e not in self._endpoints]:
            del self._reported[endpoint_id]
            changes.append((endpoint_id, None))
        for endpoint_id in sorted(self._endpoints):
            state = self.endpoint_state(endpoint_id)
            if state is not None and self._reported.get(endpoint_id) != state:
                self._reported[endpoint_id] = state
                changes.append((endpoint_id, state))
        for endpoint_id, reported in changes:
            try:
                self._status_callback(endpoint_id, reported)
            except Exception:
                log.exception("endpoint status callback failed endpoint=%s", endpoint_id)

    def stats(self) -> Mapping[str, int]:
        return {"local_endpoints": len(self._endpoints), "endpoint_routes": len(self._programmed)}
