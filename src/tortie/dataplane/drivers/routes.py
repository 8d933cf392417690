"""Route driver: list, replace and delete the routes tortie owns, over rtnetlink.

Ownership: every route the agent writes carries one route protocol number (`rtm_protocol`),
`TORTIE_ROUTE_PROTOCOL` = 77 by default (agent config `device_route_protocol`). 77 is unassigned in
iproute2's rt_protos, distinct from BIRD's 12, from boot/static (3/4, used by people and CNI
plugins) and from Felix's own 80, so a host migrated from Calico never has Calico's leftovers
mistaken for ours. `list_routes` returns only routes with our protocol; `delete_route` sends the
protocol too, and the kernel matches on it (IPv4 `fib_table_delete`, IPv6 `ip6_route_del`), so a
delete can never remove somebody else's route with the same destination.

Values: `Route(dst, kind, ifname, gateway, table, onlink)`; `dst` is a canonical CIDR string, the
family follows from it. `onlink` (`RTNH_F_ONLINK`) makes the kernel take the gateway as reachable
through `ifname` without a route to it: a VXLAN route goes via the remote VTEP's tunnel address,
which no local route covers. It is part of the value: read-back reports it, and a route that differs
only in it is a different route.

Kernel keys: a route is identified by (table, dst) at the kernel's default metric (IPv4 0, IPv6
1024); `replace_route` replaces whatever route holds that key, ours or not (kernel NLM_F_REPLACE
semantics) and then it is ours.

Kinds written: `unicast` with `ifname` (and optional `gateway`): IPv4 `dev X scope link` (scope
universe when a gateway is given); IPv6 ignores scope. `blackhole`: no device. Read-back also
reports `unreachable`, `prohibit` and `other` for routes of our protocol somebody else wrote.

Errors: `LinkNotFound` when `ifname` does not exist, `KernelError` for every other netlink failure
(e.g. ENETDOWN for an administratively down device). Deleting a route that is not there succeeds.

Namespaces: `NetlinkRouteDriver(netns="name")` programs `/run/netns/name` through a netlink socket
opened by a worker thread that entered it (`tortie.kernel.netns.NetnsWorker`); a missing namespace is
an error (`NetnsNotFound`), never created.

Cost (the agent's start-up programs hundreds of routes, an endpoint add one): a write is one
RTM_GETLINK by name and one acknowledged RTM_NEWROUTE on the caller's thread; a read-back is one
kernel-filtered route dump per family plus one link dump. The wire work is `tortie.kernel.rtnl`'s;
this module maps its records to `Route` values and its errors to the driver's contract.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from typing import Literal, Protocol

from tortie.common.errors import LinkNotFound, kernel_call
from tortie.common.ipfamily import FAMILIES, V4, Family, canonical_cidr, family_of
from tortie.dataplane.drivers.rtnl_driver import RtnlDriver
from tortie.kernel import rtnl_codec

TORTIE_ROUTE_PROTOCOL = 77
MAIN_TABLE = 254

RouteKind = Literal["unicast", "blackhole", "unreachable", "prohibit", "other"]

RTN_KINDS: dict[int, RouteKind] = {
    rtnl_codec.RTN_UNICAST: "unicast",
    rtnl_codec.RTN_BLACKHOLE: "blackhole",
    rtnl_codec.RTN_UNREACHABLE: "unreachable",
    rtnl_codec.RTN_PROHIBIT: "prohibit",
}
_KIND_TO_RTN: dict[str, int] = {kind: rtn for rtn, kind in RTN_KINDS.items()}


@dataclass(frozen=True, order=True)
class Route:
    """One route of ours, as written or as read back."""

    dst: str
    kind: RouteKind = "unicast"
    ifname: str | None = None
    gateway: str | None = None
    table: int = MAIN_TABLE
    onlink: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dst", canonical_cidr(self.dst))  # host bits set: ValueError
        if self.kind == "unicast" and self.ifname is None and self.gateway is None:
            raise ValueError(f"unicast route {self.dst} needs an interface or a gateway")
        if self.kind != "unicast" and (self.ifname is not None or self.gateway is not None):
            raise ValueError(f"{self.kind} route {self.dst} takes no interface or gateway")
        if self.onlink and (self.gateway is None or self.ifname is None):
            raise ValueError(f"onlink route {self.dst} needs a gateway and an interface")

    @property
    def family(self) -> Family:
        return family_of(self.dst)

    def __str__(self) -> str:
        parts = [self.dst if self.kind == "unicast" else f"{self.kind} {self.dst}"]
        if self.gateway:
            parts.append(f"via {self.gateway}")
        if self.ifname:
            parts.append(f"dev {self.ifname}")
        if self.onlink:
            parts.append("onlink")
        if self.table != MAIN_TABLE:
            parts.append(f"table {self.table}")
        return " ".join(parts)


class RouteDriver(Protocol):
    """Routes of one protocol number in one network namespace."""

    @property
    def protocol(self) -> int: ...

    def list_routes(self, table: int = MAIN_TABLE) -> list[Route]:
        """Every route with our protocol in `table`, both families, sorted."""
        ...

    def replace_route(self, route: Route) -> None:
        """Create or replace the route at (route.table, route.dst) with `route`, tagged as ours."""
        ...

    def delete_route(self, route: Route) -> None:
        """Delete our route at (route.table, route.dst); no error when it is already gone."""
        ...

    def close(self) -> None: ...


class NetlinkRouteDriver(RtnlDriver):
    """`RouteDriver` over rtnetlink (`tortie.kernel.rtnl.Rtnl`), in the process's or a named namespace.

    The socket is opened in the namespace by the driver's worker thread, once; netlink sockets keep
    their namespace whichever thread uses them, so requests then run on the caller's thread (no
    thread hop per route). Each unicast write resolves its interface name to an index with one
    targeted RTM_GETLINK (a hash lookup in the kernel, tens of microseconds; never a dump), so an
    interface that was re-created or renamed is always found under its current index. Read-back asks
    the kernel for our protocol in one table only (strict dump filtering) and maps interface indexes
    to names with one link dump.
    """

    def __init__(self, netns: str | None = None, *, protocol: int = TORTIE_ROUTE_PROTOCOL) -> None:
        if not 0 < protocol < 256:
            raise ValueError(f"route protocol must be 1..255, not {protocol}")
        self._protocol = protocol
        super().__init__(netns, "route driver")

    @property
    def protocol(self) -> int:
        return self._protocol

    def _ifindex(self, ifname: str) -> int:
        link = self._rtnl.get().get_link(ifname)
        if link is None:
            raise LinkNotFound(f"interface {ifname} does not exist", errno.ENODEV)
        return link.ifindex

    def _dump(self, table: int) -> list[Route]:
        rtnl = self._rtnl.get()
        ours = [record for fam in FAMILIES for record in rtnl.routes(fam.af, table, self._protocol)]
        names: dict[int, str] = {}
        if any(record.oif is not None for record in ours):
            names = {link.ifindex: link.name for link in rtnl.links()}
        return sorted(self._parse(record, names, table) for record in ours)

    @staticmethod
    def _parse(record: rtnl_codec.Route, names: dict[int, str], table: int) -> Route:
        cidr = str(record.dst)
        kind = RTN_KINDS.get(record.type, "other")
        if kind != "unicast":
            return Route(cidr, kind, table=table)
        ifname = names.get(record.oif) if record.oif is not None else None
        if record.multipath or (ifname is None and record.gateway is None):
            return Route(cidr, "other", table=table)  # multipath or unresolvable: report, never equal
        gateway = str(record.gateway) if record.gateway is not None else None
        onlink = record.onlink and gateway is not None and ifname is not None
        return Route(cidr, "unicast", ifname=ifname, gateway=gateway, table=table, onlink=onlink)

    def _replace(self, route: Route) -> None:
        oif: int | None = None
        scope = rtnl_codec.RT_SCOPE_UNIVERSE
        if route.kind == "unicast":
            if route.ifname is not None:
                oif = self._ifindex(route.ifname)
            if route.family is V4 and not route.gateway:  # IPv6 routes have no scope
                scope = rtnl_codec.RT_SCOPE_LINK
        self._rtnl.get().add_route(
            ipaddress.ip_network(route.dst),
            oif=oif,
            gateway=ipaddress.ip_address(route.gateway) if route.gateway else None,
            scope=scope,
            protocol=self._protocol,
            table=route.table,
            type=_KIND_TO_RTN.get(route.kind, rtnl_codec.RTN_UNICAST),
            onlink=route.onlink,
            replace=True,
        )

    def _delete(self, route: Route) -> None:
        # IPv4 matches on scope: "nowhere" means any (as `ip route del`); IPv6 ignores it. A route
        # already gone is success.
        self._rtnl.get().delete_route(
            ipaddress.ip_network(route.dst),
            scope=rtnl_codec.RT_SCOPE_NOWHERE if route.family is V4 else rtnl_codec.RT_SCOPE_UNIVERSE,
            protocol=self._protocol,
            table=route.table,
            type=_KIND_TO_RTN.get(route.kind, rtnl_codec.RTN_UNICAST),
        )

    # -- caller side ----------------------------------------------------------------------------

    def list_routes(self, table: int = MAIN_TABLE) -> list[Route]:
        return kernel_call(f"list routes (table {table})", self._dump, table)

    def replace_route(self, route: Route) -> None:
        kernel_call(f"replace route {route}", self._replace, route)

    def delete_route(self, route: Route) -> None:
        kernel_call(f"delete route {route}", self._delete, route)

