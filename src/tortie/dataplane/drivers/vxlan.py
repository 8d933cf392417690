"""VXLAN driver: one tunnel device per family, its address, static neighbours and FDB entries, and
the host's interfaces the tunnel rides on (uplink, MTU), over rtnetlink.

Values (strings as `tortie.common.ipfamily` makes them canonical, MACs lower-case):

    VxlanSpec(name, vni, port, local, parent, mac, mtu)   what the device should be; `local` is this
        host's underlay address (its family is the device's: IFLA_VXLAN_LOCAL / LOCAL6), `parent` the
        interface holding it (IFLA_VXLAN_LINK), learning always off (remote VTEPs come from the FDB)
    VxlanState(spec, index, admin_up, learning, addresses)  a device as read back (addresses without
        the kernel's IPv6 link-local one); `same_tunnel(spec)`
        says whether the tunnel itself (VNI, port, local, parent, no learning) is as wanted — those
        cannot change on a live device, so a difference means delete and create
    HostInterface(name, index, mtu, up, kind, addresses)   one interface of the host (MTU detection)

Driver (`VxlanDriver`): `device(name)` (None when there is no such interface; `NotVxlan` when the
name holds another kind of interface), `create(spec)` (created down), `update(name, mtu, mac, up)`,
`delete(name)` (idempotent; the kernel drops the device's routes, neighbours and FDB with it);
`addresses(name)` via the state, `add_address` / `delete_address` (`ip/len`; IPv6 without DAD);
`neighbours(name, family)` -> {ip: mac} of the permanent entries (those we write; the kernel's own
dynamic ones are left to it), `set_neighbour` (permanent, replace), `delete_neighbour`;
`fdb(name)` -> {(mac, dst)} of the entries with a remote, `append_fdb`, `delete_fdb`;
`host_interfaces()`.

Errors: `LinkNotFound` when the device or parent is missing, `KernelError` for every other netlink
failure. `NetlinkVxlanDriver(netns=None)` opens its socket inside the namespace (a worker thread),
as the route driver does; `tortie.testing.kernel_fake.FakeKernel` implements the same protocol and
`tortie.testing.vxlan_conformance` checks both.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from typing import Protocol

from tortie.common.errors import KernelError, LinkNotFound, kernel_call
from tortie.common.ipfamily import Family, family_of
from tortie.dataplane.drivers.rtnl_driver import RtnlDriver
from tortie.kernel.rtnl import Rtnl
from tortie.kernel.rtnl_codec import AF_BRIDGE, NUD_PERMANENT


class NotVxlan(KernelError):
    """An interface with the device's name exists but is not a VXLAN device."""


@dataclass(frozen=True)
class VxlanSpec:
    name: str
    vni: int
    port: int
    local: str
    parent: str | None
    mac: str
    mtu: int

    @property
    def family(self) -> Family:
        return family_of(self.local)


@dataclass(frozen=True)
class VxlanState:
    spec: VxlanSpec
    index: int
    admin_up: bool
    learning: bool
    addresses: frozenset[str]

    def same_tunnel(self, want: VxlanSpec) -> bool:
        have = self.spec
        return (have.vni, have.port, have.local, have.parent, self.learning) == (
            want.vni, want.port, want.local, want.parent, False)


@dataclass(frozen=True)
class HostInterface:
    name: str
    index: int
    mtu: int
    up: bool
    kind: str | None
    addresses: tuple[str, ...]  # "ip/len"

    def holds(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ipaddress.ip_interface(a).ip == ip for a in self.addresses)


class VxlanDriver(Protocol):
    def device(self, name: str) -> VxlanState | None: ...

    def create(self, spec: VxlanSpec) -> None: ...

    def update(self, name: str, *, mtu: int | None = None, mac: str | None = None,
               up: bool | None = None) -> None: ...

    def delete(self, name: str) -> None: ...

    def add_address(self, name: str, iface: str) -> None: ...

    def delete_address(self, name: str, iface: str) -> None: ...

    def neighbours(self, name: str, family: Family) -> dict[str, str]: ...

    def set_neighbour(self, name: str, ip: str, mac: str) -> None: ...

    def delete_neighbour(self, name: str, ip: str) -> None: ...

    def fdb(self, name: str) -> frozenset[tuple[str, str]]: ...

    def append_fdb(self, name: str, mac: str, dst: str) -> None: ...

    def delete_fdb(self, name: str, mac: str, dst: str) -> None: ...

    def host_interfaces(self) -> list[HostInterface]: ...

    def close(self) -> None: ...


def canonical_iface(text: str) -> str:
    """`ip/len` with the address canonical (host bits kept: it is an interface address)."""
    iface = ipaddress.ip_interface(text)
    return f"{iface.ip}/{iface.network.prefixlen}"


class NetlinkVxlanDriver(RtnlDriver):
    """`VxlanDriver` over rtnetlink (see the module docstring)."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(netns, "vxlan driver")

    # -- helpers ------------------------------------------------------------------------------------
    def _index(self, rtnl: Rtnl, name: str) -> int:
        link = rtnl.get_link(name)
        if link is None:
            raise LinkNotFound(f"interface {name} does not exist", errno.ENODEV)
        return link.ifindex

    # -- the device ---------------------------------------------------------------------------------
    def _device(self, name: str) -> VxlanState | None:
        rtnl = self._rtnl.get()
        link = rtnl.get_link(name)
        if link is None:
            return None
        if link.kind != "vxlan" or link.vxlan is None:
            raise NotVxlan(f"interface {name} exists and is not a VXLAN device (kind {link.kind})",
                           errno.EEXIST)
        info = link.vxlan
        parent = None
        if info.link:
            parent_link = next((x for x in rtnl.links() if x.ifindex == info.link), None)
            parent = parent_link.name if parent_link is not None else f"#{info.link}"
        spec = VxlanSpec(name, info.vni, info.port or 0, str(info.local) if info.local else "", parent,
                         (link.mac or "").lower(), link.mtu or 0)
        addrs = frozenset(f"{a.address.ip}/{a.address.network.prefixlen}" for a in rtnl.addrs(link.ifindex)
                          if not a.address.ip.is_link_local)  # the kernel's own IPv6 link-local
        return VxlanState(spec, link.ifindex, link.up, info.learning, addrs)

    def device(self, name: str) -> VxlanState | None:
        return kernel_call(f"read vxlan device {name}", self._device, name)

    def _create(self, spec: VxlanSpec) -> None:
        rtnl = self._rtnl.get()
        parent = self._index(rtnl, spec.parent) if spec.parent else None
        rtnl.add_vxlan(spec.name, spec.vni, port=spec.port, local=ipaddress.ip_address(spec.local),
                       link=parent, learning=False, mtu=spec.mtu, mac=spec.mac)

    def create(self, spec: VxlanSpec) -> None:
        kernel_call(f"create vxlan device {spec.name}", self._create, spec)

    def _update(self, name: str, mtu: int | None, mac: str | None, up: bool | None) -> None:
        rtnl = self._rtnl.get()
        rtnl.set_link(self._index(rtnl, name), mtu=mtu, mac=mac, up=up)

    def update(self, name: str, *, mtu: int | None = None, mac: str | None = None,
               up: bool | None = None) -> None:
        kernel_call(f"update vxlan device {name}", self._update, name, mtu, mac, up)

    def delete(self, name: str) -> None:
        kernel_call(f"delete vxlan device {name}", self._delete_link, name)

    # -- address ------------------------------------------------------------------------------------
    def _address(self, name: str, iface: str, add: bool) -> None:
        rtnl = self._rtnl.get()
        index = self._index(rtnl, name)
        value = ipaddress.ip_interface(iface)
        if add:
            rtnl.add_addr(index, value, nodad=family_of(value).dad)
        else:
            rtnl.delete_addr(index, value)

    def add_address(self, name: str, iface: str) -> None:
        kernel_call(f"add address {iface} to {name}", self._address, name, iface, True)

    def delete_address(self, name: str, iface: str) -> None:
        kernel_call(f"delete address {iface} from {name}", self._address, name, iface, False)

    # -- neighbours ---------------------------------------------------------------------------------
    def _neighbours(self, name: str, family: Family) -> dict[str, str]:
        rtnl = self._rtnl.get()
        index = self._index(rtnl, name)
        return {str(n.dst): (n.mac or "").lower() for n in rtnl.neighbours(family.af, index)
                if n.dst is not None and n.state & NUD_PERMANENT}

    def neighbours(self, name: str, family: Family) -> dict[str, str]:
        return kernel_call(f"list neighbours of {name}", self._neighbours, name, family)

    def _set_neighbour(self, name: str, ip: str, mac: str) -> None:
        rtnl = self._rtnl.get()
        rtnl.set_neighbour(self._index(rtnl, name), ipaddress.ip_address(ip), mac)

    def set_neighbour(self, name: str, ip: str, mac: str) -> None:
        kernel_call(f"set neighbour {ip} on {name}", self._set_neighbour, name, ip, mac)

    def _delete_neighbour(self, name: str, ip: str) -> None:
        rtnl = self._rtnl.get()
        rtnl.delete_neighbour(self._index(rtnl, name), ipaddress.ip_address(ip))

    def delete_neighbour(self, name: str, ip: str) -> None:
        kernel_call(f"delete neighbour {ip} on {name}", self._delete_neighbour, name, ip)

    # -- FDB ----------------------------------------------------------------------------------------
    def _fdb(self, name: str) -> frozenset[tuple[str, str]]:
        rtnl = self._rtnl.get()
        index = self._index(rtnl, name)
        return frozenset(((n.mac or "").lower(), str(n.dst)) for n in rtnl.fdb(index)
                         if n.family == AF_BRIDGE and n.dst is not None)

    def fdb(self, name: str) -> frozenset[tuple[str, str]]:
        return kernel_call(f"list fdb of {name}", self._fdb, name)

    def _fdb_change(self, name: str, mac: str, dst: str, add: bool) -> None:
        rtnl = self._rtnl.get()
        index = self._index(rtnl, name)
        if add:
            rtnl.append_fdb(index, mac, ipaddress.ip_address(dst))
        else:
            rtnl.delete_fdb(index, mac, ipaddress.ip_address(dst))

    def append_fdb(self, name: str, mac: str, dst: str) -> None:
        kernel_call(f"append fdb {mac} dst {dst} on {name}", self._fdb_change, name, mac, dst, True)

    def delete_fdb(self, name: str, mac: str, dst: str) -> None:
        kernel_call(f"delete fdb {mac} dst {dst} on {name}", self._fdb_change, name, mac, dst, False)

    # -- host interfaces ----------------------------------------------------------------------------
    def _host_interfaces(self) -> list[HostInterface]:
        rtnl = self._rtnl.get()
        addrs: dict[int, list[str]] = {}
        for a in rtnl.addrs():
            addrs.setdefault(a.ifindex, []).append(f"{a.address.ip}/{a.address.network.prefixlen}")
        return [HostInterface(link.name, link.ifindex, link.mtu or 0, link.up and link.oper_state in
                              ("UP", "UNKNOWN"), link.kind, tuple(addrs.get(link.ifindex, ())))
                for link in sorted(rtnl.links(), key=lambda x: x.ifindex)]

    def host_interfaces(self) -> list[HostInterface]:
        return kernel_call("list host interfaces", self._host_interfaces)

