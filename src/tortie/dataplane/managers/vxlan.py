"""VXLAN: one tunnel device per family, its static neighbours and FDB entries, and the routes to
other hosts' blocks (Felix's VXLAN manager, reference §3.5, §3.11).

Input: `EncapUpdate` (which families encapsulate), `VtepUpdate`/`VtepRemove` (this host's VTEP:
the device; the others': neighbours and FDB entries), `RemoteBlockRouteUpdate`/`Remove`, link
events on the devices and uplinks, `resync()`; the MTU manager's decision (device MTUs, uplinks).
Output, per family F that encapsulates and whose local VTEP is known:

    <device F> (vxlan.calico / vxlan-v6.calico): VNI, UDP port, local = this host's underlay
        address, parent = the uplink holding it, learning off, MAC = the Node's tunnel MAC, MTU from
        the MTU decision, address <tunnel address>/32 (/128), up
    neighbours  <remote tunnel address> lladdr <remote MAC> nud permanent       per remote VTEP
    FDB         <remote MAC> dst <remote underlay address>                       per remote VTEP
    routes      <block> via <remote tunnel address> dev <device F> onlink        (RouteTable targets,
                <block> via <remote underlay address> dev <uplink>               class REMOTE_BLOCK_*)

The devices are ours by name (they carry no workload prefix): a device of that name that is not
wanted is deleted (a pool left VXLAN, or the agent starts after VXLAN was switched off), one whose
tunnel parameters differ (VNI, port, local address, parent, learning) is deleted and created again;
MTU, MAC, address and admin state are changed in place. A device that is right is kept as it is, and
neighbours and FDB entries are diffed against the kernel, so a restarted agent adopts everything
without a flap. Unwanted permanent neighbours and FDB entries on our devices are removed; the
kernel's own dynamic neighbours are left to it. Routes are the route table's (drift repair, sweep);
the uplink a native route uses becomes one of its owned devices once known.

A full reconcile of a family (read back the device, its neighbours and FDB) runs when something of
that family changed, on link events of its device or uplink, when the kernel reports a neighbour or
FDB entry deleted on its device (`on_kernel_changes`: drift repaired on the event), and on
`resync()` (periodic drift repair); a failure keeps that family dirty and raises `ApplyIncomplete`
after the others.

Construction: `VxlanManager(driver, route_table, mtu, vni=4096, port=4789, families=FAMILIES)`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from tortie.common.errors import DataplaneError
from tortie.common.ipfamily import FAMILIES, V4, V6, Family, family_of
from tortie.dataplane.drivers.kernel_watch import KernelChanges
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.vxlan import NotVxlan, VxlanDriver, VxlanSpec
from tortie.dataplane.managers.host_mtu import HostMtuManager
from tortie.dataplane.managers.manager_api import ApplyIncomplete
from tortie.dataplane.messages import (
    EncapUpdate,
    Message,
    RemoteBlockRouteRemove,
    RemoteBlockRouteUpdate,
    VtepRemove,
    VtepUpdate,
)
from tortie.dataplane.routetable import RouteClass, RouteTable, RouteTarget

log = logging.getLogger(__name__)

DEVICE_NAMES: Mapping[Family, str] = {V4: "vxlan.calico", V6: "vxlan-v6.calico"}
DEFAULT_VNI = 4096
DEFAULT_PORT = 4789


class VxlanManager:
    """See the module docstring."""

    name = "vxlan"
    handles = frozenset({EncapUpdate, VtepUpdate, VtepRemove, RemoteBlockRouteUpdate, RemoteBlockRouteRemove,
                         LinkEvent, KernelChanges})

    def __init__(self, driver: VxlanDriver, route_table: RouteTable, mtu: HostMtuManager, *,
                 vni: int = DEFAULT_VNI, port: int = DEFAULT_PORT,
                 families: Collection[Family] = FAMILIES) -> None:
        self._driver = driver
        self._table = route_table
        self._mtu = mtu
        self._vni = vni
        self._port = port
        self._families = frozenset(families)
        self._encap = EncapUpdate()
        self._vteps: dict[Family, dict[str, VtepUpdate]] = {f: {} for f in FAMILIES}
        self._routes: dict[str, RemoteBlockRouteUpdate] = {}
        self._dirty_families: set[Family] = set(FAMILIES)
        self._dirty_routes: set[str] = set()
        self._mtu_version = -1
        self._uplinks: dict[Family, str] = {}

    # -- inputs (no I/O) ---------------------------------------------------------------------------------
    def on_update(self, msg: Message) -> None:
        if isinstance(msg, EncapUpdate):
            if msg.vxlan != self._encap.vxlan:
                self._dirty_families.update(FAMILIES)
            self._encap = msg
        elif isinstance(msg, VtepUpdate):
            self._vteps[msg.family][msg.node] = msg
            self._dirty_families.add(msg.family)
        elif isinstance(msg, VtepRemove):
            if self._vteps[msg.family].pop(msg.node, None) is not None:
                self._dirty_families.add(msg.family)
        elif isinstance(msg, RemoteBlockRouteUpdate):
            self._routes[msg.cidr] = msg
            self._dirty_routes.add(msg.cidr)
        elif isinstance(msg, RemoteBlockRouteRemove):
            self._routes.pop(msg.cidr, None)
            self._dirty_routes.add(msg.cidr)

    def on_link_event(self, event: LinkEvent) -> None:
        name = event.link.name
        for fam, device in DEVICE_NAMES.items():
            if name in (device, self._uplinks.get(fam)):
                self._dirty_families.add(fam)

    def on_kernel_changes(self, changes: KernelChanges) -> None:
        """A neighbour or FDB entry deleted on one of our devices (by anyone: our own deletes cost
        one cheap read-back of that device) makes its family reconcile at the next apply."""
        if changes.routes_lost:  # the route socket also carries the neighbour notifications
            self._dirty_families.update(FAMILIES)
            return
        for gone in changes.neighbours:
            for fam, device in DEVICE_NAMES.items():
                link = self._table.link(device)
                if link is not None and link.index == gone.ifindex:
                    self._dirty_families.add(fam)

    def resync(self) -> None:
        self._dirty_families.update(FAMILIES)

    @property
    def needs_apply(self) -> bool:
        mtu_moved = self._mtu.decision is not None and self._mtu.version != self._mtu_version
        return bool(self._dirty_families or self._dirty_routes) or mtu_moved

    # -- desired state --------------------------------------------------------------------------------
    def _local(self, fam: Family) -> VtepUpdate | None:
        if fam not in self._families or fam not in self._encap.vxlan:
            return None
        return next((v for v in self._vteps[fam].values() if v.local), None)

    def _spec(self, fam: Family, local: VtepUpdate) -> VxlanSpec | None:
        decision = self._mtu.decision
        if decision is None or fam not in decision.device_mtu:
            return None  # no MTU (yet, or not a valid one): leave the device as it is
        uplink = decision.uplinks.get(fam)
        parent = uplink.name if uplink is not None else None
        return VxlanSpec(DEVICE_NAMES[fam], self._vni, self._port, local.parent_address, parent, local.mac,
                         decision.device_mtu[fam])

    def _target(self, route: RemoteBlockRouteUpdate) -> RouteTarget | None:
        fam = family_of(route.cidr)
        if fam not in self._families:
            return None
        if route.encap == "vxlan":
            return RouteTarget.via(route.cidr, DEVICE_NAMES[fam], RouteClass.REMOTE_BLOCK_VXLAN,
                                   gateway=route.gateway, onlink=True)
        uplink = self._uplinks.get(fam)
        if uplink is None:
            return None
        return RouteTarget.via(route.cidr, uplink, RouteClass.REMOTE_BLOCK_NATIVE, gateway=route.gateway)

    # -- applying ---------------------------------------------------------------------------------------
    def apply(self) -> None:
        if self._mtu.version != self._mtu_version:
            self._mtu_version = self._mtu.version
            self._dirty_families.update(FAMILIES)  # device MTUs may have moved
            self._learn_uplinks()
        failures: list[str] = []
        for fam in sorted(self._dirty_families, key=lambda f: f.version):
            try:
                self._reconcile(fam)
                self._dirty_families.discard(fam)
            except DataplaneError as exc:
                failures.append(f"{DEVICE_NAMES[fam]}: {exc}")
        for cidr in sorted(self._dirty_routes):
            route = self._routes.get(cidr)
            target = self._target(route) if route is not None else None
            self._table.set_targets(("remote-block", cidr), [target] if target is not None else [])
        self._dirty_routes.clear()
        if failures:
            raise ApplyIncomplete(self.name, failures)

    def _learn_uplinks(self) -> None:
        decision = self._mtu.decision
        uplinks = {f: u.name for f, u in decision.uplinks.items()} if decision is not None else {}
        if uplinks != self._uplinks:
            self._uplinks = uplinks
            self._table.own_devices(uplinks.values())
            self._dirty_routes.update(c for c, r in self._routes.items() if r.encap == "none")

    def _reconcile(self, fam: Family) -> None:
        name = DEVICE_NAMES[fam]
        local = self._local(fam)
        try:
            state = self._driver.device(name)
        except NotVxlan:
            log.warning("interface with the VXLAN device's name is not a VXLAN device; replacing it "
                        "device=%s", name)
            self._driver.delete(name)
            state = None
        if local is None:
            if state is not None:
                self._driver.delete(name)
                log.info("vxlan device removed device=%s (no %s pool uses VXLAN, or no local VTEP)",
                         name, fam.name)
            return
        spec = self._spec(fam, local)
        if spec is None:
            return
        if state is not None and not state.same_tunnel(spec):
            log.info("vxlan device has other tunnel parameters; recreating device=%s have=%s want=%s",
                     name, state.spec, spec)
            self._driver.delete(name)
            state = None
        if state is None:
            self._driver.create(spec)
            log.info("vxlan device created device=%s vni=%d port=%d local=%s parent=%s mtu=%d",
                     name, spec.vni, spec.port, spec.local, spec.parent, spec.mtu)
            state = self._driver.device(name)
            if state is None:
                raise DataplaneError(f"{name} vanished right after it was created")
        if (state.spec.mtu, state.spec.mac) != (spec.mtu, spec.mac):
            self._driver.update(name, mtu=spec.mtu if state.spec.mtu != spec.mtu else None,
                                mac=spec.mac if state.spec.mac != spec.mac else None)
        address = f"{local.tunnel_address}/{fam.host_prefix}"
        for stale in sorted(state.addresses - {address}):
            self._driver.delete_address(name, stale)
        if address not in state.addresses:
            self._driver.add_address(name, address)
        if not state.admin_up:
            self._driver.update(name, up=True)
        remotes = [v for v in self._vteps[fam].values() if not v.local]
        self._sync_neighbours(name, fam, {v.tunnel_address: v.mac for v in remotes})
        self._sync_fdb(name, {(v.mac, v.parent_address) for v in remotes})

    def _sync_neighbours(self, name: str, fam: Family, want: dict[str, str]) -> None:
        have = self._driver.neighbours(name, fam)
        for ip in sorted(set(have) - set(want)):
            self._driver.delete_neighbour(name, ip)
        for ip, mac in sorted(want.items()):
            if have.get(ip) != mac:
                self._driver.set_neighbour(name, ip, mac)

    def _sync_fdb(self, name: str, want: set[tuple[str, str]]) -> None:
        have = self._driver.fdb(name)
        for mac, dst in sorted(have - want):
            self._driver.delete_fdb(name, mac, dst)
        for mac, dst in sorted(want - have):
            self._driver.append_fdb(name, mac, dst)

    def stats(self) -> Mapping[str, int]:
        remote = sum(1 for f in FAMILIES for v in self._vteps[f].values() if not v.local)
        return {"vxlan_remote_vteps": remote}
