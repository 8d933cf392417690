"""`FakeKernel`: an in-memory kernel implementing RouteDriver, LinkDriver, SysctlDriver and VxlanDriver
at once.

It models the kernel behaviour the dataplane relies on, and the conformance suites
(`tortie.testing.dataplane_conformance`) check the same behaviour against the real kernel:

* routes are keyed by (table, dst); `replace_route` takes over whatever route holds the key;
  listing and deleting see only routes of the driver's protocol;
* a unicast route needs its interface to exist (else `LinkNotFound`, ENODEV) and to be
  administratively up (else `KernelError`, ENETDOWN);
* setting an interface administratively down or deleting it removes every route through it; losing
  carrier (`set_carrier(name, False)`) keeps them;
* each interface has its per-interface sysctls (`net/ipv4/conf/<if>/...`, `net/ipv4/neigh/<if>/...`,
  `net/ipv6/conf/<if>/...` unless `ipv6=False`), created with kernel defaults and removed with it;
  writes to a missing key fail with ENOENT, non-integer values with EINVAL.

* VXLAN devices are links of kind "vxlan" with their tunnel parameters; their addresses, permanent
  neighbours and FDB entries go with them; a parent must exist; every link has an MTU (1500 unless
  given) and addresses (`host_interfaces()`).

Test controls (not part of the driver protocols): `add_link` (optionally `mtu`, `addresses`),
`remove_link`, `set_admin`, `set_carrier`, `set_mtu`, `add_route` (any protocol: "somebody else's"
routes), `drop_route`, `drop_fdb`, `drop_neighbour` and `set_sysctl` (changes behind the agent's
back), `routes()` (everything, with protocols), `sysctl(key)`.
Link changes are reported synchronously to the monitor callback, outside the internal lock.

Failure injection: `fail(op, times=1, key=None, error=None)` makes the next `times` calls of
driver operation `op` (optionally only those about `key`: a route dst or a sysctl key) raise
`error` (default a `KernelError` with EIO) without side effects; `times=None` fails for good.
`mutations` lists every successful mutating driver call, to assert that an
apply wrote the smallest change (or nothing).
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field
from typing import Literal

from tortie.common.errors import KernelError, LinkNotFound
from tortie.common.ipfamily import Family, canonical_cidr, family_of
from tortie.dataplane.drivers.links import Link, LinkCallback, LinkEvent
from tortie.dataplane.drivers.routes import MAIN_TABLE, TORTIE_ROUTE_PROTOCOL, Route
from tortie.dataplane.drivers.vxlan import HostInterface, NotVxlan, VxlanSpec, VxlanState, canonical_iface
from tortie.kernel.sysctl import check_key

FakeOp = Literal["list_routes", "replace_route", "delete_route", "list_links", "read_sysctl", "write_sysctl",
                 "create_vxlan", "set_neighbour", "append_fdb", "host_interfaces"]

_GLOBAL_SYSCTLS_V4 = {
    "net/ipv4/ip_forward": "0",
    "net/ipv4/conf/all/forwarding": "0",
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/default/rp_filter": "0",
    "net/ipv4/conf/default/proxy_arp": "0",
}
_GLOBAL_SYSCTLS_V6 = {
    "net/ipv6/conf/all/forwarding": "0",
    "net/ipv6/conf/default/forwarding": "0",
}
_LINK_SYSCTLS_V4 = {
    "net/ipv4/conf/{}/proxy_arp": "0",
    "net/ipv4/conf/{}/forwarding": "0",
    "net/ipv4/conf/{}/rp_filter": "0",
    "net/ipv4/conf/{}/route_localnet": "0",
    "net/ipv4/neigh/{}/proxy_delay": "80",
}
_LINK_SYSCTLS_V6 = {
    "net/ipv6/conf/{}/proxy_ndp": "0",
    "net/ipv6/conf/{}/forwarding": "0",
    "net/ipv6/conf/{}/accept_ra": "1",
    "net/ipv6/conf/{}/disable_ipv6": "0",
}


@dataclass
class _FakeLink:
    index: int
    admin_up: bool
    carrier: bool
    mtu: int = 1500
    addresses: set[str] = field(default_factory=set)
    vxlan: VxlanSpec | None = None
    neighbours: dict[str, str] = field(default_factory=dict)
    fdb: set[tuple[str, str]] = field(default_factory=set)

    def value(self, name: str) -> Link:
        oper = "UP" if self.admin_up and self.carrier else ("LOWERLAYERDOWN" if self.admin_up else "DOWN")
        return Link(name, self.index, self.admin_up, oper, 0x1 if self.admin_up else 0)


@dataclass(frozen=True)
class FakeRoute:
    """A route in the fake kernel, with the protocol that wrote it."""

    route: Route
    protocol: int


@dataclass
class _Failure:
    op: FakeOp
    remaining: int | None
    key: str | None
    error: BaseException


@dataclass
class FakeKernel:
    """See the module docstring."""

    protocol: int = TORTIE_ROUTE_PROTOCOL
    ipv6: bool = True
    mutations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._links: dict[str, _FakeLink] = {}
        self._next_index = 2  # 1 is lo
        self._routes: dict[tuple[int, str], FakeRoute] = {}
        self._sysctls: dict[str, str] = dict(_GLOBAL_SYSCTLS_V4)
        if self.ipv6:
            self._sysctls.update(_GLOBAL_SYSCTLS_V6)
        self._failures: list[_Failure] = []
        self._callback: LinkCallback | None = None
        self._links["lo"] = _FakeLink(index=1, admin_up=True, carrier=True)
        self._add_link_sysctls("lo")

    # -- failure injection ------------------------------------------------------------------------

    def fail(
        self, op: FakeOp, times: int | None = 1, *, key: str | None = None, error: BaseException | None = None
    ) -> None:
        err = error if error is not None else KernelError(f"injected failure in {op}", errno.EIO)
        with self._lock:
            self._failures.append(_Failure(op, times, key, err))

    def _check_failure(self, op: FakeOp, key: str | None = None) -> None:
        for failure in self._failures:
            if failure.op != op or (failure.key is not None and failure.key != key):
                continue
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
            raise failure.error

    # -- RouteDriver --------------------------------------------------------------------------------

    def list_routes(self, table: int = MAIN_TABLE) -> list[Route]:
        with self._lock:
            self._check_failure("list_routes")
            return sorted(
                held.route
                for (held_table, _), held in self._routes.items()
                if held_table == table and held.protocol == self.protocol
            )

    def replace_route(self, route: Route) -> None:
        with self._lock:
            self._check_failure("replace_route", route.dst)
            self._check_route_device(route)
            self._routes[(route.table, route.dst)] = FakeRoute(route, self.protocol)
            self.mutations.append(f"replace {route}")

    def delete_route(self, route: Route) -> None:
        with self._lock:
            self._check_failure("delete_route", route.dst)
            held = self._routes.get((route.table, route.dst))
            if held is None or held.protocol != self.protocol or held.route.kind != route.kind:
                return
            del self._routes[(route.table, route.dst)]
            self.mutations.append(f"delete {route}")

    def _check_route_device(self, route: Route) -> None:
        if route.ifname is None:
            return
        link = self._links.get(route.ifname)
        if link is None:
            raise LinkNotFound(f"interface {route.ifname} does not exist", errno.ENODEV)
        if not link.admin_up:
            raise KernelError(f"replace route {route}: Network is down", errno.ENETDOWN)

    # -- LinkDriver ---------------------------------------------------------------------------------

    def list_links(self) -> list[Link]:
        with self._lock:
            self._check_failure("list_links")
            return sorted((link.value(name) for name, link in self._links.items()), key=lambda x: x.index)

    def start_monitor(self, callback: LinkCallback) -> None:
        with self._lock:
            if self._callback is not None:
                raise RuntimeError("link monitor already running")
            self._callback = callback

    def stop_monitor(self) -> None:
        with self._lock:
            self._callback = None

    # -- SysctlDriver -------------------------------------------------------------------------------

    def read_sysctl(self, key: str) -> str | None:
        with self._lock:
            self._check_failure("read_sysctl", check_key(key))
            return self._sysctls.get(key)

    def write_sysctl(self, key: str, value: str) -> None:
        with self._lock:
            self._check_failure("write_sysctl", check_key(key))
            if key not in self._sysctls:
                raise KernelError(f"write sysctl {key}: no such parameter", errno.ENOENT)
            try:
                int(value.strip())
            except ValueError:
                raise KernelError(f"write sysctl {key}={value!r}: Invalid argument", errno.EINVAL) from None
            self._sysctls[key] = value.strip()
            self.mutations.append(f"sysctl {key}={value.strip()}")

    def close(self) -> None:
        self.stop_monitor()

    # -- test controls --------------------------------------------------------------------------------

    def _add_link_sysctls(self, name: str) -> None:
        for template, default in _LINK_SYSCTLS_V4.items():
            self._sysctls[template.format(name)] = default
        if self.ipv6:
            for template, default in _LINK_SYSCTLS_V6.items():
                self._sysctls[template.format(name)] = default

    def _emit(self, events: list[LinkEvent]) -> None:
        callback = self._callback
        if callback is not None:
            for event in events:
                callback(event)

    def add_link(self, name: str, *, up: bool = True, carrier: bool = True, mtu: int = 1500,
                 addresses: tuple[str, ...] = ()) -> Link:
        with self._lock:
            if name in self._links:
                raise ValueError(f"link {name} exists")
            link = _FakeLink(self._next_index, admin_up=up, carrier=carrier, mtu=mtu,
                             addresses={canonical_iface(a) for a in addresses})
            self._next_index += 1
            self._links[name] = link
            self._add_link_sysctls(name)
            value = link.value(name)
        self._emit([LinkEvent("added", value)])
        return value

    def remove_link(self, name: str) -> None:
        with self._lock:
            link = self._links.pop(name)
            self._flush_routes_via(name)
            for key in [k for k in self._sysctls if f"/{name}/" in k]:
                del self._sysctls[key]
            value = link.value(name)
        self._emit([LinkEvent("removed", value)])

    def _set_state(self, name: str, admin_up: bool | None, carrier: bool | None) -> None:
        with self._lock:
            link = self._links[name]
            was_up = link.value(name).is_up
            if admin_up is not None:
                link.admin_up = admin_up
                if not admin_up:
                    self._flush_routes_via(name)
            if carrier is not None:
                link.carrier = carrier
            value = link.value(name)
        if value.is_up != was_up:
            self._emit([LinkEvent("up" if value.is_up else "down", value)])

    def set_admin(self, name: str, up: bool) -> None:
        """`ip link set NAME up|down` (down removes routes through it)."""
        self._set_state(name, up, None)

    def set_carrier(self, name: str, carrier: bool) -> None:
        """The peer went down/up: operational state changes, routes stay."""
        self._set_state(name, None, carrier)

    def _flush_routes_via(self, name: str) -> None:
        for key in [k for k, held in self._routes.items() if held.route.ifname == name]:
            del self._routes[key]

    def link(self, name: str) -> Link | None:
        with self._lock:
            link = self._links.get(name)
            return link.value(name) if link is not None else None

    def add_route(self, route: Route, protocol: int) -> None:
        """Install a route as another program would (any protocol), replacing the key's holder."""
        with self._lock:
            self._check_route_device(route)
            self._routes[(route.table, route.dst)] = FakeRoute(route, protocol)

    def drop_route(self, dst: str, table: int = MAIN_TABLE) -> None:
        """Delete whatever route holds (table, dst), behind the agent's back."""
        with self._lock:
            self._routes.pop((table, canonical_cidr(dst)), None)

    def routes(self, table: int | None = None) -> list[FakeRoute]:
        with self._lock:
            return sorted(
                (held for (t, _), held in self._routes.items() if table is None or t == table),
                key=lambda held: (held.route, held.protocol),
            )

    def sysctl(self, key: str) -> str | None:
        with self._lock:
            return self._sysctls.get(key)

    def set_sysctl(self, key: str, value: str) -> None:
        """Change a sysctl behind the agent's back (the key must exist)."""
        with self._lock:
            if key not in self._sysctls:
                raise KeyError(key)
            self._sysctls[key] = value

    # -- VxlanDriver ----------------------------------------------------------------------------------

    def _vxlan_link(self, name: str) -> _FakeLink:
        link = self._links.get(name)
        if link is None:
            raise LinkNotFound(f"interface {name} does not exist", errno.ENODEV)
        return link

    def device(self, name: str) -> VxlanState | None:
        with self._lock:
            link = self._links.get(name)
            if link is None:
                return None
            if link.vxlan is None:
                raise NotVxlan(f"interface {name} exists and is not a VXLAN device", errno.EEXIST)
            spec = VxlanSpec(name, link.vxlan.vni, link.vxlan.port, link.vxlan.local, link.vxlan.parent,
                             link.vxlan.mac, link.mtu)
            return VxlanState(spec, link.index, link.admin_up, False, frozenset(link.addresses))

    def create(self, spec: VxlanSpec) -> None:
        with self._lock:
            self._check_failure("create_vxlan", spec.name)
            if spec.name in self._links:
                raise KernelError(f"create vxlan device {spec.name}: File exists", errno.EEXIST)
            if spec.parent is not None:
                self._vxlan_link(spec.parent)
            link = _FakeLink(self._next_index, admin_up=False, carrier=True, mtu=spec.mtu,
                             vxlan=VxlanSpec(spec.name, spec.vni, spec.port, spec.local, spec.parent,
                                             spec.mac.lower(), spec.mtu))
            self._next_index += 1
            self._links[spec.name] = link
            self._add_link_sysctls(spec.name)
            self.mutations.append(f"create vxlan {spec.name} vni {spec.vni} port {spec.port} "
                                  f"local {spec.local}")
            value = link.value(spec.name)
        self._emit([LinkEvent("added", value)])

    def update(self, name: str, *, mtu: int | None = None, mac: str | None = None,
               up: bool | None = None) -> None:
        with self._lock:
            link = self._vxlan_link(name)
            if mtu is not None:
                link.mtu = mtu
            if mac is not None and link.vxlan is not None:
                link.vxlan = VxlanSpec(name, link.vxlan.vni, link.vxlan.port, link.vxlan.local,
                                       link.vxlan.parent, mac.lower(), link.mtu)
            self.mutations.append(f"update {name} mtu={mtu} mac={mac} up={up}")
        if up is not None:
            self._set_state(name, up, None)

    def delete(self, name: str) -> None:
        with self._lock:
            if name not in self._links:
                return
            self.mutations.append(f"delete link {name}")
        self.remove_link(name)

    def add_address(self, name: str, iface: str) -> None:
        with self._lock:
            link = self._vxlan_link(name)
            value = canonical_iface(iface)
            if value in link.addresses:
                raise KernelError(f"add address {iface} to {name}: File exists", errno.EEXIST)
            link.addresses.add(value)
            self.mutations.append(f"address add {value} dev {name}")

    def delete_address(self, name: str, iface: str) -> None:
        with self._lock:
            self._vxlan_link(name).addresses.discard(canonical_iface(iface))
            self.mutations.append(f"address del {canonical_iface(iface)} dev {name}")

    def neighbours(self, name: str, family: Family) -> dict[str, str]:
        with self._lock:
            link = self._vxlan_link(name)
            return {ip: mac for ip, mac in link.neighbours.items() if family_of(ip) == family}

    def set_neighbour(self, name: str, ip: str, mac: str) -> None:
        with self._lock:
            self._check_failure("set_neighbour", ip)
            self._vxlan_link(name).neighbours[str(family_of(ip).address(ip))] = mac.lower()
            self.mutations.append(f"neigh replace {ip} lladdr {mac.lower()} dev {name}")

    def delete_neighbour(self, name: str, ip: str) -> None:
        with self._lock:
            self._vxlan_link(name).neighbours.pop(str(family_of(ip).address(ip)), None)
            self.mutations.append(f"neigh del {ip} dev {name}")

    def fdb(self, name: str) -> frozenset[tuple[str, str]]:
        with self._lock:
            return frozenset(self._vxlan_link(name).fdb)

    def append_fdb(self, name: str, mac: str, dst: str) -> None:
        with self._lock:
            self._check_failure("append_fdb", dst)
            link = self._vxlan_link(name)
            if link.vxlan is not None and family_of(dst) != family_of(link.vxlan.local):
                raise KernelError(f"append fdb {mac} dst {dst}: Address family not supported",
                                  errno.EAFNOSUPPORT)
            link.fdb.add((mac.lower(), str(family_of(dst).address(dst))))
            self.mutations.append(f"fdb append {mac.lower()} dst {dst} dev {name}")

    def delete_fdb(self, name: str, mac: str, dst: str) -> None:
        with self._lock:
            self._vxlan_link(name).fdb.discard((mac.lower(), str(family_of(dst).address(dst))))
            self.mutations.append(f"fdb del {mac.lower()} dst {dst} dev {name}")

    def host_interfaces(self) -> list[HostInterface]:
        with self._lock:
            self._check_failure("host_interfaces")
            return [HostInterface(name, link.index, link.mtu, link.value(name).is_up,
                                  "vxlan" if link.vxlan is not None else None, tuple(sorted(link.addresses)))
                    for name, link in sorted(self._links.items(), key=lambda item: item[1].index)]

    # -- test controls for the VXLAN side ------------------------------------------------------------

    def set_mtu(self, name: str, mtu: int) -> None:
        with self._lock:
            self._links[name].mtu = mtu

    def drop_fdb(self, name: str, mac: str, dst: str) -> None:
        """Delete an FDB entry behind the agent's back."""
        with self._lock:
            self._links[name].fdb.discard((mac.lower(), dst))

    def drop_neighbour(self, name: str, ip: str) -> None:
        with self._lock:
            self._links[name].neighbours.pop(ip, None)
