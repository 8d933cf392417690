"""Route driver: list, replace and delete the routes tortie owns, over netlink (pyroute2).

Ownership: every route the agent writes carries one route protocol number (`rtm_protocol`),
`TORTIE_ROUTE_PROTOCOL` = 77 by default (agent config `device_route_protocol`). 77 is unassigned in
iproute2's rt_protos, distinct from BIRD's 12, from boot/static (3/4, used by people and CNI
plugins) and from Felix's own 80, so a host migrated from Calico never has Calico's leftovers
mistaken for ours. `list_routes` returns only routes with our protocol; `delete_route` sends the
protocol too, and the kernel matches on it (IPv4 `fib_table_delete`, IPv6 `ip6_route_del`), so a
delete can never remove somebody else's route with the same destination.

Values: `Route(dst, kind, ifname, gateway, table)`; `dst` is a canonical CIDR string, the family
follows from it. Kernel keys: a route is identified by (table, dst) at the kernel's default metric
(IPv4 0, IPv6 1024); `replace_route` replaces whatever route holds that key, ours or not (kernel
NLM_F_REPLACE semantics) and then it is ours.

Kinds written: `unicast` with `ifname` (and optional `gateway`): IPv4 `dev X scope link` (scope
universe when a gateway is given); IPv6 ignores scope. `blackhole`: no device. Read-back also
reports `unreachable`, `prohibit` and `other` for routes of our protocol somebody else wrote.

Errors: `LinkNotFound` when `ifname` does not exist, `KernelError` for every other netlink failure
(e.g. ENETDOWN for an administratively down device). Deleting a route that is not there succeeds.

Namespaces: `NetlinkRouteDriver(netns="name")` programs `/run/netns/name` from a worker thread that
entered it (see netns_worker; pyroute2 0.9 sockets must stay on the thread that made them, and
`IPRoute(netns=...)` creates a missing namespace unless `flags=0`: we avoid both pitfalls).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tortie.dataplane.drivers.errors import KernelError, LinkNotFound
from tortie.dataplane.drivers.netns_worker import NetnsWorker

TORTIE_ROUTE_PROTOCOL = 77
MAIN_TABLE = 254

RouteKind = Literal["unicast", "blackhole", "unreachable", "prohibit", "other"]

_RTN_TO_KIND: dict[int, RouteKind] = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
_KIND_TO_RTN: dict[str, int] = {kind: rtn for rtn, kind in _RTN_TO_KIND.items()}
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255  # in a delete request: "any scope" (what `ip route del` sends)


def canonical_cidr(dst: str) -> str:
    """`10.0.0.1` -> `10.0.0.1/32`, `fd00::1/128` stays; host bits set is an error (ValueError)."""
    return str(ipaddress.ip_network(dst, strict=True))


def is_ipv6(cidr: str) -> bool:
    return ":" in cidr


@dataclass(frozen=True, order=True)
class Route:
    """One route of ours, as written or as read back."""

    dst: str
    kind: RouteKind = "unicast"
    ifname: str | None = None
    gateway: str | None = None
    table: int = MAIN_TABLE

    def __post_init__(self) -> None:
        object.__setattr__(self, "dst", canonical_cidr(self.dst))
        if self.kind == "unicast" and self.ifname is None and self.gateway is None:
            raise ValueError(f"unicast route {self.dst} needs an interface or a gateway")
        if self.kind != "unicast" and (self.ifname is not None or self.gateway is not None):
            raise ValueError(f"{self.kind} route {self.dst} takes no interface or gateway")

    @property
    def family(self) -> int:
        return socket.AF_INET6 if is_ipv6(self.dst) else socket.AF_INET

    def __str__(self) -> str:
        parts = [self.dst if self.kind == "unicast" else f"{self.kind} {self.dst}"]
        if self.gateway:
            parts.append(f"via {self.gateway}")
        if self.ifname:
            parts.append(f"dev {self.ifname}")
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


def _netlink_errno(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    return exc.errno if isinstance(exc, OSError) else None


class NetlinkRouteDriver:
    """`RouteDriver` over rtnetlink with pyroute2, in the process's or a named namespace."""

    def __init__(self, netns: str | None = None, *, protocol: int = TORTIE_ROUTE_PROTOCOL) -> None:
        if not 0 < protocol < 256:
            raise ValueError(f"route protocol must be 1..255, not {protocol}")
        self._protocol = protocol
        self._worker = NetnsWorker(netns, name="route-driver")
        self._ipr: Any = None
        self._worker.on_close(self._close_socket)

    @property
    def protocol(self) -> int:
        return self._protocol

    @property
    def netns(self) -> str | None:
        return self._worker.netns

    # -- worker-thread side -------------------------------------------------------------------

    def _socket(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    def _close_socket(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def _ifindex(self, ifname: str) -> int:
        found = self._socket().link_lookup(ifname=ifname)
        if not found:
            raise LinkNotFound(f"interface {ifname} does not exist", errno.ENODEV)
        return int(found[0])

    def _dump(self, table: int) -> list[Route]:
        ipr = self._socket()
        names = {int(msg["index"]): msg.get("ifname") for msg in ipr.link("dump")}
        found: list[Route] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ipr.route("dump", family=family):
                route = self._parse(msg, names, table)
                if route is not None:
                    found.append(route)
        return sorted(found)

    def _parse(self, msg: Any, names: dict[int, str | None], table: int) -> Route | None:
        if msg["proto"] != self._protocol:
            return None
        msg_table = msg.get("table")
        if (msg_table if msg_table is not None else msg["table"]) != table:
            return None
        family = msg["family"]
        dst = msg.get("dst") or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        cidr = str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False))
        kind = _RTN_TO_KIND.get(msg["type"], "other")
        if kind != "unicast":
            return Route(cidr, kind, table=table)
        oif = msg.get("oif")
        gateway = msg.get("gateway")
        ifname = names.get(int(oif)) if oif is not None else None
        if ifname is None and gateway is None:
            return Route(cidr, "other", table=table)  # multipath or unresolvable: report, never equal
        return Route(cidr, "unicast", ifname=ifname, gateway=gateway, table=table)

    def _request(self, route: Route, *, delete: bool) -> dict[str, Any]:
        request: dict[str, Any] = {
            "dst": route.dst,
            "family": route.family,
            "table": route.table,
            "proto": self._protocol,
            "type": _KIND_TO_RTN.get(route.kind, 1),
        }
        if delete:
            request["scope"] = RT_SCOPE_NOWHERE
            if route.family == socket.AF_INET6:
                request.pop("scope")
            return request
        if route.kind == "unicast":
            if route.ifname is not None:
                request["oif"] = self._ifindex(route.ifname)
            if route.gateway is not None:
                request["gateway"] = route.gateway
            if route.family == socket.AF_INET:
                request["scope"] = RT_SCOPE_UNIVERSE if route.gateway else RT_SCOPE_LINK
        return request

    def _replace(self, route: Route) -> None:
        self._socket().route("replace", **self._request(route, delete=False))

    def _delete(self, route: Route) -> None:
        try:
            self._socket().route("del", **self._request(route, delete=True))
        except Exception as exc:
            if _netlink_errno(exc) in (errno.ESRCH, errno.ENOENT):
                return
            raise

    # -- caller side ----------------------------------------------------------------------------

    def _run(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return self._worker.call(fn, *args)
        except KernelError:
            raise
        except Exception as exc:
            code = _netlink_errno(exc)
            reason = os.strerror(code) if code else str(exc)
            if code == errno.ENODEV:
                raise LinkNotFound(f"{what}: {reason}", code) from exc
            raise KernelError(f"{what}: {reason}", code) from exc

    def list_routes(self, table: int = MAIN_TABLE) -> list[Route]:
        routes: list[Route] = self._run(f"list routes (table {table})", self._dump, table)
        return routes

    def replace_route(self, route: Route) -> None:
        self._run(f"replace route {route}", self._replace, route)

    def delete_route(self, route: Route) -> None:
        self._run(f"delete route {route}", self._delete, route)

    def close(self) -> None:
        self._worker.close()
