"""MTU: what the host's uplink carries, what each VXLAN device gets and what workloads get (pure).

    decide(interfaces, host_addresses, vxlan_families, settings) -> MtuDecision

* Uplink MTU, per family: with `mtuIfacePattern` set, the smallest MTU of the up interfaces whose
  name matches it (Felix's rule); otherwise the MTU of the interface holding this host's address of
  that family (the address `tortie node run` detected), falling back to Felix's default pattern
  when the host has no address of any family. No candidate at all: 1500.
* VXLAN device MTU of a family that encapsulates: `vxlanMTU` / `vxlanMTUV6` when set (non-zero),
  else the uplink MTU minus the encapsulation overhead (IPv4 50: outer IPv4 20 + UDP 8 + VXLAN 8 +
  inner Ethernet 14; IPv6 70: outer IPv6 40 instead of 20).
* Workload MTU (what CNI and the DHCP service give workloads, published in the MTU file): the
  smallest VXLAN device MTU when a family encapsulates (a workload may reach any host, so every
  path must fit — also CrossSubnet pools, whose same-subnet traffic would fit more), else the
  smallest uplink MTU.
* Problems: an IPv6 VXLAN device or an IPv6-carrying host below 1280 (IPv6's minimum link MTU,
  RFC 8200 §5): the device is not programmed with it (`device_mtu` leaves that family out).

`MtuDecision.reason` says why in words (`tortie node status` shows it); `to_json()` is what the
agent writes beside the MTU file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tortie.common.ipfamily import FAMILIES, V4, V6, Family, family_of
from tortie.common.mtu_file import IPV6_MIN_MTU
from tortie.dataplane.drivers.vxlan import HostInterface

VXLAN_OVERHEAD = {V4: 50, V6: 70}
DEFAULT_MTU = 1500
FELIX_DEFAULT_PATTERN = r"^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)"


@dataclass(frozen=True)
class MtuSettings:
    vxlan_mtu: int = 0
    vxlan_mtu_v6: int = 0
    iface_pattern: str = ""
    ignore: tuple[str, ...] = ()
    """Interface name prefixes never taken as an uplink (workload interfaces, our tunnel devices)."""

    def configured(self, fam: Family) -> int:
        return self.vxlan_mtu if fam is V4 else self.vxlan_mtu_v6


@dataclass(frozen=True)
class Uplink:
    name: str
    mtu: int
    why: str


@dataclass(frozen=True)
class MtuDecision:
    workload_mtu: int
    reason: str
    uplinks: dict[Family, Uplink] = field(default_factory=dict)
    device_mtu: dict[Family, int] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "mtu": self.workload_mtu,
            "reason": self.reason,
            "uplinks": {f.name: {"interface": u.name, "mtu": u.mtu, "why": u.why}
                        for f, u in self.uplinks.items()},
            "vxlan": {f.name: {"mtu": m} for f, m in self.device_mtu.items()},
            "problems": list(self.problems),
        }


def _candidates(interfaces: Iterable[HostInterface], settings: MtuSettings) -> list[HostInterface]:
    return [i for i in interfaces if i.name != "lo" and i.mtu > 0 and not i.name.startswith(settings.ignore)]


def _by_pattern(interfaces: Sequence[HostInterface], pattern: str, label: str) -> Uplink | None:
    try:
        regex = re.compile(pattern)
    except re.error:
        return None
    matching = [i for i in interfaces if i.up and regex.search(i.name)]
    if not matching:
        return None
    best = min(matching, key=lambda i: (i.mtu, i.index))
    return Uplink(best.name, best.mtu, f"the smallest MTU of the interfaces matching {label} {pattern!r}")


def _uplink(interfaces: Sequence[HostInterface], address: str | None, settings: MtuSettings) -> Uplink | None:
    if settings.iface_pattern:
        return _by_pattern(interfaces, settings.iface_pattern, "mtuIfacePattern")
    if address is not None:
        ip = address.split("/")[0]
        holder = next((i for i in interfaces if i.holds(ip)), None)
        if holder is not None:
            return Uplink(holder.name, holder.mtu, f"the interface holding this host's address {ip}")
        return None
    return _by_pattern(interfaces, FELIX_DEFAULT_PATTERN, "Felix's default pattern")


def decide(interfaces: Iterable[HostInterface], host_addresses: Iterable[str], vxlan: Iterable[Family],
           settings: MtuSettings) -> MtuDecision:
    found = _candidates(interfaces, settings)
    addresses = {family_of(a): a for a in host_addresses}
    families = [f for f in FAMILIES if f in addresses] or [V4]
    uplinks: dict[Family, Uplink] = {}
    for fam in families:
        uplink = _uplink(found, addresses.get(fam), settings)
        if uplink is not None:
            uplinks[fam] = uplink
    problems: list[str] = []
    if not uplinks:
        where = f"mtuIfacePattern {settings.iface_pattern!r}" if settings.iface_pattern else (
            f"an interface holding {', '.join(addresses.values())}" if addresses else "an uplink")
        problems.append(f"no uplink found ({where}): assuming MTU {DEFAULT_MTU}")
    smallest = min((u.mtu for u in uplinks.values()), default=DEFAULT_MTU)
    host_mtu = {f: uplinks[f].mtu if f in uplinks else smallest for f in FAMILIES}
    device_mtu: dict[Family, int] = {}
    reasons: list[str] = []
    for fam in vxlan:
        configured = settings.configured(fam)
        if configured:
            field_name = "vxlanMTU" if fam is V4 else "vxlanMTUV6"
            mtu, why = configured, f"{field_name} {configured} (FelixConfiguration)"
        else:
            uplink = uplinks.get(fam)
            source = f"{uplink.name} MTU {uplink.mtu}" if uplink is not None else f"MTU {host_mtu[fam]}"
            mtu = host_mtu[fam] - VXLAN_OVERHEAD[fam]
            why = f"{source} - {VXLAN_OVERHEAD[fam]} ({fam.name} VXLAN overhead)"
        if fam is V6 and mtu < IPV6_MIN_MTU:
            problems.append(f"IPv6 VXLAN MTU {mtu} ({why}) is below IPv6's minimum of {IPV6_MIN_MTU}: the "
                            "IPv6 tunnel device is left as it was")
            continue
        device_mtu[fam] = mtu
        reasons.append(f"{mtu} = {why}")
    if device_mtu:
        workload = min(device_mtu.values())
        reason = "VXLAN: " + "; ".join(reasons)
    else:
        fam = min(families, key=lambda f: host_mtu[f])
        workload = host_mtu[fam]
        uplink = uplinks.get(fam)
        reason = (f"no encapsulation: {uplink.name} MTU {uplink.mtu} ({uplink.why})" if uplink is not None
                  else f"no encapsulation: default {DEFAULT_MTU}")
    if V6 in addresses and workload < IPV6_MIN_MTU:
        problems.append(f"workload MTU {workload} is below IPv6's minimum of {IPV6_MIN_MTU}")
    return MtuDecision(workload, reason, uplinks, device_mtu, tuple(problems))
