"""The workloads on this host: their interfaces' sysctls, their routes (as targets on the route
table), their status (Calico reference §3.4).

Inputs: `WorkloadEndpointUpdate` / `WorkloadEndpointRemove` (local endpoints only, addresses
canonical host CIDRs: calc decides locality and validates), link events, `resync()`. Outputs:

* per endpoint, on the `RouteTable`, the targets `<ip>/32 dev <iface>` (IPv6: `/128 dev <iface>`) of
  class `LOCAL_WORKLOAD`, under the source key ("endpoint", namespace, name); the table programs
  them while the interface exists and is up;
* per endpoint interface, the host-side sysctls below, set (through the sysctl driver) when the
  interface exists.

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

Ownership: only interfaces the route table owns (`RouteTable.owns_device`: the interface prefixes)
get sysctls; an endpoint on another interface gets neither sysctls nor routes (the table warns).
Interface state comes from the route table (`link`), which reads links back and takes link
events: the loop applies the table before this manager, so the sysctls and the status of a round
see that round's routes and links. An address claimed by two endpoints goes to the first endpoint
id (sorted) whose interface is up (the table's tie-break by source key).

Status: an optional `status_callback(endpoint_id, state, endpoint)` receives "up" (interface up and
all its routes programmed), "down", or None (endpoint removed) whenever that changes, after an apply,
and "up" again when an endpoint that is up was replaced by a new update (a new MAC or address under
the same name: what a CNI ADD waits for). `endpoint` is the update the state is about (None with
None). The work per apply is proportional to what changed, not to the endpoints on the host: an
endpoint's state is recomputed when its update, removal or a link event of its interface arrives;
endpoints not up are also rechecked whenever the route table changed (a route that failed and was
retried); a full resync rechecks them all.

Construction: `EndpointManager(route_table, sysctls, status_callback=None)`; IPv6 follows
`route_table.serves(V6)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Literal

from tortie.common.errors import KernelError
from tortie.common.ipfamily import V6
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.sysctl import SysctlDriver
from tortie.dataplane.managers.manager_api import ApplyIncomplete, apply_each
from tortie.dataplane.messages import (
    Message,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.routetable import RouteClass, RouteTable, RouteTarget, SourceKey

log = logging.getLogger(__name__)

EndpointState = Literal["up", "down"]
StatusCallback = Callable[[WorkloadEndpointId, EndpointState | None, WorkloadEndpointUpdate | None], None]

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


def route_source(endpoint_id: WorkloadEndpointId) -> SourceKey:
    """The route table source key of an endpoint's targets."""
    return ("endpoint", endpoint_id.namespace, endpoint_id.name)


class EndpointManager:
    """See the module docstring."""

    name = "endpoints"
    handles = frozenset({WorkloadEndpointUpdate, WorkloadEndpointRemove, LinkEvent})

    def __init__(
        self,
        route_table: RouteTable,
        sysctls: SysctlDriver,
        *,
        status_callback: StatusCallback | None = None,
    ) -> None:
        self._table = route_table
        self._sysctls = sysctls
        self._ipv6 = route_table.serves(V6)
        self._status_callback = status_callback
        self._iface_sysctls = IFACE_SYSCTLS_V4 + (IFACE_SYSCTLS_V6 if self._ipv6 else ())
        # desired state
        self._endpoints: dict[WorkloadEndpointId, WorkloadEndpointUpdate] = {}
        self._by_iface: dict[str, set[WorkloadEndpointId]] = {}
        # kernel state as last verified
        self._iface_done: dict[str, int] = {}  # iface -> ifindex whose sysctls are verified
        # work to do
        self._dirty_ifaces: set[str] = set()
        self._full_resync = True
        self._status_dirty: set[WorkloadEndpointId] = set()
        self._status_all = True
        self._table_version = -1  # the route table's version the reported status reflects
        self._reported: dict[WorkloadEndpointId, tuple[EndpointState, WorkloadEndpointUpdate]] = {}
        self._not_up: set[WorkloadEndpointId] = set()  # rechecked whenever the route table changes

    # -- recording desired state (no I/O) --------------------------------------------------------

    def _nets(self, endpoint: WorkloadEndpointUpdate) -> tuple[str, ...]:
        return endpoint.ipv4_nets + (endpoint.ipv6_nets if self._ipv6 else ())

    def _unlink(self, endpoint: WorkloadEndpointUpdate) -> None:
        users = self._by_iface.get(endpoint.interface_name)
        if users is not None:
            users.discard(endpoint.id)
            if not users:
                del self._by_iface[endpoint.interface_name]

    def on_update(self, msg: Message) -> None:
        if isinstance(msg, WorkloadEndpointUpdate):
            old = self._endpoints.get(msg.id)
            if old == msg:
                return
            iface = msg.interface_name
            targets = [RouteTarget.via(net, iface, RouteClass.LOCAL_WORKLOAD) for net in self._nets(msg)]
            self._table.set_targets(route_source(msg.id), targets)
            if old is not None:
                self._unlink(old)
            self._endpoints[msg.id] = msg
            self._by_iface.setdefault(iface, set()).add(msg.id)
            if iface not in self._iface_done:
                self._dirty_ifaces.add(iface)
            self._status_dirty.add(msg.id)
        elif isinstance(msg, WorkloadEndpointRemove):
            old = self._endpoints.pop(msg.id, None)
            if old is not None:
                self._table.clear(route_source(msg.id))
                self._unlink(old)
                self._status_dirty.add(msg.id)

    def on_link_event(self, event: LinkEvent) -> None:
        name = event.link.name
        if not self._table.owns_device(name):
            return
        if event.kind in ("removed", "added"):
            self._iface_done.pop(name, None)  # gone, or a new device under that name: verify again
            if event.kind == "added" and name in self._by_iface:
                self._dirty_ifaces.add(name)
        self._status_dirty.update(self._by_iface.get(name, ()))

    def resync(self) -> None:
        self._full_resync = True

    @property
    def needs_apply(self) -> bool:
        return (
            self._full_resync
            or bool(self._dirty_ifaces or self._status_dirty or self._status_all)
            or (bool(self._not_up) and self._table.version != self._table_version)
        )

    # -- applying (I/O through the sysctl driver) -------------------------------------------------

    def _apply_iface(self, iface: str) -> None:
        link = self._table.link(iface)
        if link is None or iface not in self._by_iface or not self._table.owns_device(iface):
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
        if not self._table.links_known:
            return  # the route table's read-back (applied before us) has not succeeded: it retries
        if self._full_resync:
            self._iface_done.clear()
            self._dirty_ifaces.update(self._by_iface)
            self._full_resync = False
            self._status_all = True
        failures = apply_each(self._dirty_ifaces, self._apply_iface, "sysctls of ")
        self._report_status()
        if failures:
            raise ApplyIncomplete(self.name, failures)

    # -- status and stats -------------------------------------------------------------------------------

    def endpoint_state(self, endpoint_id: WorkloadEndpointId) -> EndpointState | None:
        """ "up" when the interface is up and every address is routed to it; None if unknown."""
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            return None
        link = self._table.link(endpoint.interface_name)
        if link is None or not link.is_up:
            return "down"
        for dst in self._nets(endpoint):
            route = self._table.programmed(dst)
            if route is None or route.ifname != endpoint.interface_name:
                return "down"
        return "up"

    def _report_status(self) -> None:
        if self._table.version != self._table_version:
            self._status_dirty |= self._not_up
            self._table_version = self._table.version
        if self._status_all:
            self._status_dirty |= self._endpoints.keys() | self._reported.keys()
            self._status_all = False
        dirty, self._status_dirty = self._status_dirty, set()
        changes: list[tuple[WorkloadEndpointId, EndpointState | None, WorkloadEndpointUpdate | None]] = []
        for endpoint_id in sorted(dirty):
            endpoint = self._endpoints.get(endpoint_id)
            state = self.endpoint_state(endpoint_id)
            if state == "down":
                self._not_up.add(endpoint_id)
            else:
                self._not_up.discard(endpoint_id)
            before = self._reported.get(endpoint_id)
            if state is None or endpoint is None:
                if before is not None:
                    del self._reported[endpoint_id]
                    changes.append((endpoint_id, None, None))
            elif before is None or before[0] != state or (state == "up" and before[1] != endpoint):
                self._reported[endpoint_id] = (state, endpoint)
                changes.append((endpoint_id, state, endpoint))
        if self._status_callback is None:
            return
        for endpoint_id, reported, endpoint in changes:
            try:
                self._status_callback(endpoint_id, reported, endpoint)
            except Exception:
                log.exception("endpoint status callback failed endpoint=%s", endpoint_id)

    def stats(self) -> Mapping[str, int]:
        return {"local_endpoints": len(self._endpoints)}
