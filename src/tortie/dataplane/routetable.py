"""One owner per routing table: route sources set *targets* on it; it alone reads the kernel back,
diffs, writes the smallest change and sweeps what is ours but no longer wanted (Felix's RouteTable).

    EndpointManager    --set_targets(("endpoint", ns, name), [<ip>/32 dev tortX, ...])--+
    FloatingIPManager  --set_targets(("floating", ns, name), [<external>/32 dev tortX])---+
    BlockRoutesManager --set_targets(("block", cidr), [blackhole <cidr>])------------------+
    a next source      --set_targets((kind, ...), [<cidr> via <gateway> dev <device>])-----+
                                                                                            v
    link events on owned devices --on_link_event--> RouteTable(table) --apply()--> RouteDriver --> kernel

A route source never talks to the kernel: it says, per *source key* (a tuple of strings naming who
wants the routes, e.g. one endpoint or one block), the complete set of `RouteTarget`s it wants
(`set_targets`, `clear`). The table is a dataplane manager (`manager_api.Manager`) that takes only
link events; the loop applies it after the sources that feed it.

Resolution: the kernel identifies a route by (table, destination CIDR) at the default metric, so the
table keeps, per CIDR, every source's target and programs one: the *usable* target of the lowest
`RouteClass`, ties going to the lowest source key (two endpoints claiming one address resolve the
same way on every apply and every restart). A target is usable when it has no device (blackhole) or
its device is owned, exists and is up (administratively up and operationally UP/UNKNOWN: a veth
only when both ends are). A CIDR with no usable target has no route of ours.

Ownership: the read-back keeps, of the routes with the driver's protocol in this table, the
blackholes and the unicast routes through an *owned device*: one whose name carries an interface
prefix, or one of `devices` (a device a source adds, e.g. a tunnel). Only those are ever deleted;
routes of other protocols, and ours of other kinds or on other devices, are left alone. Writing a
target takes over whatever route holds its key (the kernel's replace semantics).

Families: a target carries its `Family` (from its CIDR); the table programs the `families` it was
given (default both) and drops targets of the others, whose routes of ours the read-back then sweeps.

Apply: a full resync (pending at construction, after `resync()` and after a failed read-back) lists
the owned links and our routes, then every CIDR known either way is reconciled; otherwise only the
dirty CIDRs (changed targets, or a link event on a device they use). Link events: `added`/`up`
forget what was believed programmed on the device (a new or re-upped device has no routes: the
kernel flushes them on admin-down and deletion) and reprogram; `down` withdraws (also when only the
carrier went, where the kernel would keep them); `removed` forgets. A write that fails keeps its
CIDR dirty and the apply raises `ApplyIncomplete` after doing everything else.

Drift on the event (`KernelChanges` from `drivers.kernel_watch`, when the loop has one): a route
of ours that someone deleted, changed, or replaced with another protocol's route at its key is
forgotten and its CIDR made dirty, so the apply that follows (well within a second) writes it back.
Our own writes come back as notifications too; each is compared with what we programmed (one
dictionary lookup) and ignored when it matches, so the table never chases its own changes. Lost
notifications schedule a full read-back. The periodic read-back stays as the safety net; it logs
what it found and what it had to repair.

Queries for the sources: `link(name)` (an owned device as last seen), `links_known` (a read-back
has succeeded), `programmed(cidr)` (our route at that key as last read or written), `serves(family)`,
`owns_device(name)`, and `version`, which increases whenever one of these answers may have changed.

Construction: `RouteTable(routes, links, table=254, interface_prefixes=("tort",), devices=(),
families=FAMILIES)`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from tortie.common.ipfamily import FAMILIES, Family, canonical_cidr, family_of
from tortie.dataplane.drivers.kernel_watch import KernelChanges, RouteChange
from tortie.dataplane.drivers.links import Link, LinkDriver, LinkEvent
from tortie.dataplane.drivers.routes import MAIN_TABLE, Route, RouteDriver
from tortie.dataplane.interfaces import InterfacePrefixes
from tortie.dataplane.managers.manager_api import ApplyIncomplete, apply_each
from tortie.dataplane.messages import Message

log = logging.getLogger(__name__)

SourceKey = tuple[str, ...]
"""Who wants a set of targets, e.g. ("endpoint", namespace, name) or ("block", cidr)."""

TargetKind = Literal["unicast", "blackhole"]


class RouteClass(IntEnum):
    """The kind of source a target comes from. For one CIDR the lowest usable class wins; the
    gaps leave room for the classes to come."""

    LOCAL_WORKLOAD = 10
    FLOATING_IP = 20  # a local endpoint's ipNATs external address, via its interface
    REMOTE_BLOCK_NATIVE = 40  # a remote host's block via its address on a shared subnet (CrossSubnet)
    REMOTE_BLOCK_VXLAN = 50  # a remote host's block via its VXLAN tunnel address, onlink
    IPAM_BLOCK_DROP = 90

    @property
    def stat(self) -> str:
        """The `stats()` key counting the programmed routes of this class."""
        return _CLASS_STATS[self]


_CLASS_STATS: Mapping[RouteClass, str] = {
    RouteClass.LOCAL_WORKLOAD: "endpoint_routes",
    RouteClass.FLOATING_IP: "floating_ip_routes",
    RouteClass.REMOTE_BLOCK_NATIVE: "native_block_routes",
    RouteClass.REMOTE_BLOCK_VXLAN: "vxlan_block_routes",
    RouteClass.IPAM_BLOCK_DROP: "block_routes",
}


@dataclass(frozen=True)
class RouteTarget:
    """One route a source wants. `cidr` is made canonical (ValueError if it is not a CIDR or has
    host bits set); `family` follows from it. Unicast goes through a device (`ifname`), optionally
    via a `gateway` of the same family, `onlink` when no route covers the gateway (a VXLAN next hop);
    a blackhole has none of these."""

    cidr: str
    route_class: RouteClass
    kind: TargetKind = "unicast"
    ifname: str | None = None
    gateway: str | None = None
    onlink: bool = False
    family: Family = field(init=False, compare=False)

    def __post_init__(self) -> None:
        cidr = canonical_cidr(self.cidr)
        fam = family_of(cidr)
        object.__setattr__(self, "cidr", cidr)
        object.__setattr__(self, "family", fam)
        if self.kind == "unicast" and self.ifname is None:
            raise ValueError(f"route target {cidr} needs a device")
        if self.kind == "blackhole" and (self.ifname is not None or self.gateway is not None):
            raise ValueError(f"blackhole target {cidr} takes no device or gateway")
        if self.gateway is not None:
            object.__setattr__(self, "gateway", str(fam.address(self.gateway)))
        elif self.onlink:
            raise ValueError(f"onlink target {cidr} needs a gateway")

    @classmethod
    def via(
        cls, cidr: str, ifname: str, route_class: RouteClass, *, gateway: str | None = None,
        onlink: bool = False,
    ) -> RouteTarget:
        return cls(cidr, route_class, "unicast", ifname, gateway, onlink)

    @classmethod
    def blackhole(cls, cidr: str, route_class: RouteClass) -> RouteTarget:
        return cls(cidr, route_class, "blackhole")

    def matches(self, route: Route) -> bool:
        """True when `route` (of this CIDR) is what this target asks for."""
        return (route.kind == self.kind and route.ifname == self.ifname and route.gateway == self.gateway
                and route.onlink == self.onlink)

    def route(self, table: int) -> Route:
        return Route(self.cidr, kind=self.kind, ifname=self.ifname, gateway=self.gateway, table=table,
                     onlink=self.onlink)

    def __str__(self) -> str:
        return str(self.route(MAIN_TABLE))


class RouteTable:
    """See the module docstring."""

    handles = frozenset({LinkEvent, KernelChanges})

    def __init__(
        self,
        routes: RouteDriver,
        links: LinkDriver,
        *,
        table: int = MAIN_TABLE,
        interface_prefixes: Iterable[str] | InterfacePrefixes | None = None,
        devices: Iterable[str] = (),
        families: Collection[Family] = FAMILIES,
    ) -> None:
        self.name = "route_table" if table == MAIN_TABLE else f"route_table_{table}"
        self._routes = routes
        self._link_driver = links
        self._table = table
        self._prefixes = InterfacePrefixes.of(interface_prefixes)
        self._devices = frozenset(devices)
        self._families = frozenset(families)
        # desired state
        self._sources: dict[SourceKey, dict[str, RouteTarget]] = {}
        self._candidates: dict[str, dict[SourceKey, RouteTarget]] = {}  # cidr -> source -> target
        self._via: dict[str, set[str]] = {}  # device -> cidrs with a target through it
        # kernel state as last read back and written
        self._links: dict[str, Link] = {}  # owned devices only
        self._links_known = False
        self._programmed: dict[str, Route] = {}  # cidr -> our route at that key
        self._classes: dict[str, RouteClass] = {}  # cidr -> class of the target it was programmed for
        # work to do
        self._dirty: set[str] = set()
        self._full_resync = True
        self._warned: set[str] = set()
        self._repairs: dict[str, list[str]] = {}  # what the current apply wrote, per action
        self._drifted: set[str] = set()  # CIDRs someone else changed (kernel events), to log the repair
        self._read_summary = ""
        self.version = 0

    # -- targets (no I/O) ---------------------------------------------------------------------------------

    def set_targets(self, source: SourceKey, targets: Iterable[RouteTarget]) -> None:
        """Replace everything `source` said before with `targets` (at most one per CIDR)."""
        new: dict[str, RouteTarget] = {}
        for target in targets:
            if target.family not in self._families:
                continue
            if target.cidr in new and new[target.cidr] != target:
                raise ValueError(f"route source {source} gives two targets for {target.cidr}")
            new[target.cidr] = target
        old = self._sources.get(source, {})
        if new == old:
            return
        for cidr, target in old.items():
            if new.get(cidr) != target:
                self._drop(source, target)
        for cidr, target in new.items():
            if old.get(cidr) != target:
                self._add(source, target)
        if new:
            self._sources[source] = new
        else:
            self._sources.pop(source, None)

    def clear(self, source: SourceKey) -> None:
        self.set_targets(source, ())

    def own_devices(self, names: Iterable[str]) -> None:
        """Also own these devices from now on (a source learns the uplink its routes use only from
        the datastore); the next apply is a full read-back, so routes of ours on them are adopted
        or swept. Ownership is never given up while the table lives."""
        new = frozenset(names) - self._devices
        if new:
            self._devices |= new
            self._full_resync = True
            self.version += 1

    def _add(self, source: SourceKey, target: RouteTarget) -> None:
        self._candidates.setdefault(target.cidr, {})[source] = target
        if target.ifname is not None:
            self._via.setdefault(target.ifname, set()).add(target.cidr)
            if not self.owns_device(target.ifname) and target.ifname not in self._warned:
                self._warned.add(target.ifname)
                log.warning("route target through a device that is not ours; not touching it source=%s "
                            "device=%s prefixes=%s", "/".join(source), target.ifname, self._prefixes)
        self._dirty.add(target.cidr)

    def _drop(self, source: SourceKey, target: RouteTarget) -> None:
        cidr = target.cidr
        others = self._candidates.get(cidr, {})
        others.pop(source, None)
        if not others:
            self._candidates.pop(cidr, None)
        device = target.ifname
        if device is not None and not any(t.ifname == device for t in others.values()):
            users = self._via.get(device)
            if users is not None:
                users.discard(cidr)
                if not users:
                    del self._via[device]
        self._dirty.add(cidr)

    # -- manager protocol: inputs ---------------------------------------------------------------------------

    def on_update(self, msg: Message) -> None:
        raise TypeError(f"{self.name} takes targets from route sources, not messages ({type(msg).__name__})")

    def on_link_event(self, event: LinkEvent) -> None:
        name = event.link.name
        if not self.owns_device(name):
            return
        if event.kind == "removed":
            self._links.pop(name, None)
            self._forget_programmed_on(name)  # the kernel deleted them with the device
        else:
            self._links[name] = event.link
            if event.kind in ("added", "up"):
                self._forget_programmed_on(name)  # a new or re-upped device has no routes yet
        self._dirty.update(self._via.get(name, ()))
        self.version += 1

    def _forget_programmed_on(self, device: str) -> None:
        for cidr in [cidr for cidr, route in self._programmed.items() if route.ifname == device]:
            del self._programmed[cidr]
            self._classes.pop(cidr, None)
            self._dirty.add(cidr)

    def on_kernel_changes(self, changes: KernelChanges) -> None:
        if changes.routes_lost:
            log.info("route notifications were lost; full read-back table=%d", self._table)
            self._full_resync = True
            return
        for change in changes.routes:
            if change.table != self._table:
                continue
            have = self._programmed.get(change.dst)
            if have is None:
                continue
            why = self._drift(have, change)
            if why is None:
                continue
            log.info("route drift: %s; repairing route=%s", why, have)
            del self._programmed[change.dst]
            self._classes.pop(change.dst, None)
            self._dirty.add(change.dst)
            self._drifted.add(change.dst)
            self.version += 1

    def _drift(self, have: Route, change: RouteChange) -> str | None:
        """Why `change` means our route `have` is no longer in the kernel as we wrote it (None: it is
        our own write coming back, or a change beside our route)."""
        ours = change.protocol == self._routes.protocol
        if change.deleted:
            return "deleted by someone else" if ours and self._is(have, change) else None
        if ours:
            return None if self._is(have, change) else "changed by someone else"
        default_metric = change.priority in ((None, 0) if ":" not in change.dst else (1024,))
        return f"replaced by a route of protocol {change.protocol}" if default_metric else None

    def _is(self, have: Route, change: RouteChange) -> bool:
        if change.kind != have.kind:
            return False
        if have.ifname is None:
            return True
        link = self._links.get(have.ifname)
        return (link is not None and change.ifindex == link.index and change.gateway == have.gateway
                and change.onlink == have.onlink)

    def resync(self) -> None:
        self._full_resync = True

    @property
    def needs_apply(self) -> bool:
        return self._full_resync or bool(self._dirty)

    # -- resolution ----------------------------------------------------------------------------------------

    def owns_device(self, name: str | None) -> bool:
        return name is not None and (self._prefixes.owns(name) or name in self._devices)

    def serves(self, family: Family) -> bool:
        return family in self._families

    def _usable(self, target: RouteTarget) -> bool:
        if target.ifname is None:
            return True
        link = self._links.get(target.ifname)
        return link is not None and link.is_up and self.owns_device(target.ifname)

    def _resolve(self, cidr: str) -> RouteTarget | None:
        best: RouteTarget | None = None
        best_key: tuple[RouteClass, SourceKey] | None = None
        for source, target in self._candidates.get(cidr, {}).items():
            key = (target.route_class, source)
            if (best_key is None or key < best_key) and self._usable(target):
                best, best_key = target, key
        return best

    def _owns_route(self, route: Route) -> bool:
        return route.kind == "blackhole" or (route.kind == "unicast" and self.owns_device(route.ifname))

    # -- applying (I/O through the drivers) -----------------------------------------------------------------

    def _read_back(self) -> None:
        links = self._link_driver.list_links()
        actual = self._routes.list_routes(self._table)
        self._links = {link.name: link for link in links if self.owns_device(link.name)}
        self._links_known = True
        self._programmed = {route.dst: route for route in actual if self._owns_route(route)}
        self._classes.clear()
        self._dirty.update(self._programmed)
        self._dirty.update(self._candidates)
        self._full_resync = False
        self.version += 1
        self._read_summary = (f"routes={len(self._programmed)} owned_devices={len(self._links)} "
                              f"sources={len(self._sources)}")

    def _apply_cidr(self, cidr: str) -> None:
        want = self._resolve(cidr)
        have = self._programmed.get(cidr)
        if want is None:
            if have is not None:
                self._routes.delete_route(have)
                del self._programmed[cidr]
                self._classes.pop(cidr, None)
                self.version += 1
                self._repairs.setdefault("removed", []).append(cidr)
                log.debug("route removed route=%s", have)
        elif have is None or not want.matches(have):
            route = want.route(self._table)
            self._routes.replace_route(route)
            self._repairs.setdefault("added" if have is None else "replaced", []).append(cidr)
            self._programmed[cidr] = route
            self._classes[cidr] = want.route_class
            self.version += 1
            log.debug("route programmed route=%s class=%s", route, want.route_class.name)
        else:
            self._classes[cidr] = want.route_class
        self._dirty.discard(cidr)

    def apply(self) -> None:
        full = self._full_resync
        if full:
            self._read_back()  # a failure here raises and leaves the full resync pending
        self._repairs = {}
        failures = apply_each(self._dirty, self._apply_cidr, "route ")
        drifted, self._drifted = self._drifted, set()
        if full or drifted:
            self._log_repairs("read back" if full else "kernel event", failures)
        if failures:
            raise ApplyIncomplete(self.name, failures)

    def _log_repairs(self, trigger: str, failures: list[str]) -> None:
        """What a read-back or a drift event led to: every route written or removed (the first few
        named), so that a log line never says "nothing" after a repair."""
        parts = []
        for action in ("added", "replaced", "removed"):
            cidrs = self._repairs.get(action, [])
            if cidrs:
                shown = ",".join(cidrs[:5]) + (f",+{len(cidrs) - 5}" if len(cidrs) > 5 else "")
                parts.append(f"{action}={len(cidrs)}[{shown}]")
        read = f" {self._read_summary}" if trigger == "read back" else ""
        log.info("route table %s table=%d%s repaired: %s failed=%d", trigger, self._table, read,
                 " ".join(parts) or "nothing", len(failures))

    # -- queries --------------------------------------------------------------------------------------------

    @property
    def links_known(self) -> bool:
        return self._links_known

    def link(self, name: str) -> Link | None:
        return self._links.get(name)

    def programmed(self, cidr: str) -> Route | None:
        return self._programmed.get(cidr)

    def stats(self) -> Mapping[str, int]:
        counts = dict.fromkeys(_CLASS_STATS.values(), 0)
        for route_class in self._classes.values():
            counts[route_class.stat] += 1
        return counts
