"""Encapsulation messages: VXLAN tunnel endpoints, routes to other hosts' blocks, and this host's
encapsulation state (Felix's VXLANTunnelEndpointUpdate, RouteUpdate for remote blocks, and the
encapsulation resolver's answer).

* `VtepUpdate(node, family, parent_address, tunnel_address, mac, local)` / `VtepRemove(node,
  family)`, keyed by (node, family key): one host's VXLAN tunnel endpoint for one family, sent while
  some IP pool of that family uses VXLAN and the host's Node holds a tunnel address, a MAC and an
  underlay address. `local` marks this host's own: the parameters of its device.
* `RemoteBlockRouteUpdate(cidr, node, encap, gateway)` / `RemoteBlockRouteRemove(cidr)`, keyed by the
  block's canonical CIDR: a block affine to another host in a VXLAN pool. `encap` "vxlan": via the
  remote tunnel address through the family's VXLAN device (onlink); "none" (a CrossSubnet pool and
  the remote host on this host's subnet): via the remote host's underlay address.
* `EncapUpdate(vxlan, host_addresses, problems)`, a single key: the families with a VXLAN pool
  (their device exists; their MTU overhead applies), this host's underlay addresses with prefix
  length (they name the uplink whose MTU counts), and why something could not be done as asked
  (shown by `tortie node status`).

Order (sequencer ranks): the encapsulation state first, VTEPs before the routes that use them on
update, routes before their VTEPs on remove.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tortie.common.ipfamily import Family

Encap = Literal["vxlan", "none"]


@dataclass(frozen=True)
class VtepUpdate:
    node: str
    family: Family
    parent_address: str
    tunnel_address: str
    mac: str
    local: bool = False


@dataclass(frozen=True)
class VtepRemove:
    node: str
    family: Family


@dataclass(frozen=True)
class RemoteBlockRouteUpdate:
    cidr: str
    node: str
    encap: Encap
    gateway: str


@dataclass(frozen=True)
class RemoteBlockRouteRemove:
    cidr: str


@dataclass(frozen=True)
class EncapUpdate:
    vxlan: tuple[Family, ...] = ()
    host_addresses: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
