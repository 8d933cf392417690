"""Shaping driver: token-bucket limits on devices, and ifb devices to shape a device's ingress, over
rtnetlink (`tortie.kernel.tc`).

Values: `TbfParams(rate, burst, limit, peakrate, minburst)` (bytes/s and bytes; read back with
`burst=None`, the kernel answering it only as a time) and

    Shaping(index, mtu, tbf, ingress, redirect)   what a device has: the root tbf (None: the root qdisc
        is not a tbf), whether the ingress qdisc exists, and the device its ingress is redirected to
        by a u32 + mirred filter (None: no such filter)

Driver (`ShapingDriver`): `shaping(name)` (None: no such device), `shaped()` (every device with a
root tbf or an ingress qdisc, by name: what a full resync sweeps), `set_tbf(name, params)` (replaces
the root qdisc), `clear_tbf(name)` (the device's default root comes back; nothing when the root is
not a tbf), `set_redirect(name, target)` (the ingress qdisc, and exactly one redirect filter, to
`target`), `clear_ingress(name)` (the ingress qdisc and its filters go), `ifb_devices(prefix)`,
`add_ifb(name, mtu)` (created up), `delete_device(name)` (idempotent), `close()`.

Errors: `LinkNotFound` for a missing device, `KernelError` otherwise (a missing qdisc kind or action
module: the kernel's text, e.g. "Specified qdisc kind is unknown"). `NetlinkShapingDriver(netns=None)`
opens its socket inside the namespace (a worker thread), as the other drivers do;
`tortie.testing.shaping_fake.FakeShaping` implements the protocol and
`tortie.testing.shaping_conformance` checks both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tortie.common.errors import kernel_call
from tortie.dataplane.drivers.rtnl_driver import RtnlDriver
from tortie.kernel.tc import Tc
from tortie.kernel.tc_codec import INGRESS_HANDLE, REDIRECT_PRIO, TC_H_ROOT, TbfParams

__all__ = ["NetlinkShapingDriver", "Shaping", "ShapingDriver", "TbfParams"]


@dataclass(frozen=True)
class Shaping:
    index: int
    mtu: int
    tbf: TbfParams | None
    ingress: bool
    redirect: str | None


class ShapingDriver(Protocol):
    def shaping(self, name: str) -> Shaping | None: ...

    def shaped(self) -> dict[str, Shaping]: ...

    def set_tbf(self, name: str, params: TbfParams) -> None: ...

    def clear_tbf(self, name: str) -> None: ...

    def set_redirect(self, name: str, target: str) -> None: ...

    def clear_ingress(self, name: str) -> None: ...

    def ifb_devices(self, prefix: str) -> frozenset[str]: ...

    def add_ifb(self, name: str, mtu: int) -> None: ...

    def delete_device(self, name: str) -> None: ...

    def close(self) -> None: ...


class NetlinkShapingDriver(RtnlDriver):
    """`ShapingDriver` over rtnetlink (see the module docstring)."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(netns, "shaping driver")



    def _shaping(self, name: str) -> Shaping | None:
        rtnl = self._rtnl.get()
        link = rtnl.get_link(name)
        if link is None:
            return None
        tc = Tc(rtnl)
        qdiscs = tc.qdiscs(link.ifindex)
        tbf = next((q.tbf for q in qdiscs if q.parent == TC_H_ROOT and q.kind == "tbf"), None)
        ingress = any(q.kind == "ingress" for q in qdiscs)
        redirect = None
        if ingress:
            targets = [f.redirect_ifindex for f in tc.filters(link.ifindex, INGRESS_HANDLE)
                       if f.redirect_ifindex is not None]
            if len(targets) == 1:
                names = {x.ifindex: x.name for x in rtnl.links()}
                redirect = names.get(targets[0], f"#{targets[0]}")
            elif targets:
                redirect = "(several)"
        return Shaping(link.ifindex, link.mtu or 0, tbf, ingress, redirect)

    def shaping(self, name: str) -> Shaping | None:
        return kernel_call(f"read shaping of {name}", self._shaping, name)

    def _shaped(self) -> dict[str, Shaping]:
        rtnl = self._rtnl.get()
        names = {x.ifindex: x.name for x in rtnl.links()}
        indexes = {q.ifindex for q in Tc(rtnl).qdiscs(0)
                   if q.kind == "ingress" or (q.kind == "tbf" and q.parent == TC_H_ROOT)}
        out = {}
        for index in sorted(indexes):
            name = names.get(index)
            state = self._shaping(name) if name is not None else None
            if name is not None and state is not None:
                out[name] = state
        return out

    def shaped(self) -> dict[str, Shaping]:
        return kernel_call("list shaped devices", self._shaped)

    def _set_tbf(self, name: str, params: TbfParams) -> None:
        rtnl = self._rtnl.get()
        Tc(rtnl).replace_tbf(rtnl.ifindex(name), params)

    def set_tbf(self, name: str, params: TbfParams) -> None:
        kernel_call(f"set tbf on {name}", self._set_tbf, name, params)

    def _clear_tbf(self, name: str) -> None:
        rtnl = self._rtnl.get()
        link = rtnl.get_link(name)
        if link is None:
            return
        tc = Tc(rtnl)
        if any(q.parent == TC_H_ROOT and q.kind == "tbf" for q in tc.qdiscs(link.ifindex)):
            tc.delete_root(link.ifindex)

    def clear_tbf(self, name: str) -> None:
        kernel_call(f"clear tbf of {name}", self._clear_tbf, name)

    def _set_redirect(self, name: str, target: str) -> None:
        rtnl = self._rtnl.get()
        index, target_index = rtnl.ifindex(name), rtnl.ifindex(target)
        tc = Tc(rtnl)
        if not any(q.kind == "ingress" for q in tc.qdiscs(index)):
            tc.add_ingress(index)
        else:
            tc.delete_filters(index, INGRESS_HANDLE, REDIRECT_PRIO)
        tc.add_redirect(index, target_index)

    def set_redirect(self, name: str, target: str) -> None:
        kernel_call(f"redirect {name} to {target}", self._set_redirect, name, target)

    def _clear_ingress(self, name: str) -> None:
        rtnl = self._rtnl.get()
        link = rtnl.get_link(name)
        if link is not None:
            Tc(rtnl).delete_ingress(link.ifindex)

    def clear_ingress(self, name: str) -> None:
        kernel_call(f"clear ingress of {name}", self._clear_ingress, name)

    def ifb_devices(self, prefix: str) -> frozenset[str]:
        links = kernel_call("list links", lambda: self._rtnl.get().links())
        return frozenset(x.name for x in links if x.kind == "ifb" and x.name.startswith(prefix))

    def _add_ifb(self, name: str, mtu: int) -> None:
        rtnl = self._rtnl.get()
        Tc(rtnl).add_ifb(name, mtu)
        rtnl.set_link(rtnl.ifindex(name), up=True)

    def add_ifb(self, name: str, mtu: int) -> None:
        kernel_call(f"create ifb {name}", self._add_ifb, name, mtu)

    def delete_device(self, name: str) -> None:
        kernel_call(f"delete {name}", self._delete_link, name)

