"""VXLAN resolver: IP pools, Nodes and IPAM blocks -> tunnel endpoints and routes to other hosts'
blocks (Felix's VXLANResolver and the VXLAN half of its L3 route resolver, reference §3.5, §3.11).

Inputs (from the dispatcher): parsed IPPools, Nodes and IPAM `BlockHead`s (None when gone or invalid).
Outputs, on the sequencer (`tortie.dataplane.messages.encap`):

* `EncapUpdate` (one key): the families some pool encapsulates with VXLAN (disabled pools count:
  their existing blocks still route), this host's underlay addresses, and problems;
* `VtepUpdate` per (node, family) while that family has a VXLAN pool and the Node has an underlay
  address (`spec.bgp.ipv4Address` / `ipv6Address`), a tunnel address and a MAC
  (`ipv4VXLANTunnelAddr` + `vxlanTunnelMACAddr`, `ipv6VXLANTunnelAddr` + `vxlanTunnelMACAddrV6`);
* `RemoteBlockRouteUpdate` per block affine to another host whose pool (the most specific pool
  holding the block) has vxlanMode Always or CrossSubnet: Always -> via the host's tunnel address;
  CrossSubnet -> natively via the host's underlay address when it lies in this host's subnet (the
  prefix of this host's own `ipv4Address` / `ipv6Address`), through the tunnel otherwise. A route
  needs the remote VTEP (no tunnel address yet: no route). Blocks in Never pools are BGP's.

These routes come from IPAM block affinities in the datastore, so VXLAN works with no BGP at all.

Keeping the last good state: when the route of a block cannot be decided — its pool is CrossSubnet
and this host's subnet is unknown (its Node has no address of that family), or pools overlapping it
disagree about vxlanMode — nothing is queued for that block (the dataplane keeps what it had; a new
agent programs nothing for it) and the reason goes into `EncapUpdate.problems`.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from tortie.calc.event_sequencer import Channel, EventSequencer
from tortie.common.ipfamily import FAMILIES, V4, V6, Family, IPInterface, IPNetwork, family_of, network_within
from tortie.dataplane.messages import (
    EncapUpdate,
    RemoteBlockRouteRemove,
    RemoteBlockRouteUpdate,
    VtepRemove,
    VtepUpdate,
)
from tortie.model import Resource
from tortie.model.ipam_block import BlockHead
from tortie.model.specs_bgp import NodeSpec
from tortie.model.specs_ipam import IPPoolSpec

log = logging.getLogger(__name__)

ENCAP = "encap"
VTEPS = "vteps"
REMOTE_ROUTES = "remote_routes"
_ENCAP_KEY = "encap"

CHANNELS = (
    Channel(ENCAP, 60, lambda _key: EncapUpdate()),
    Channel(VTEPS, 62, lambda key: VtepRemove(*key)),  # type: ignore[misc]
    Channel(REMOTE_ROUTES, 64, lambda key: RemoteBlockRouteRemove(str(key))),
)


@dataclass(frozen=True)
class _Pool:
    name: str
    net: IPNetwork
    mode: str  # Never | Always | CrossSubnet


@dataclass(frozen=True)
class _Vtep:
    parent: str
    tunnel: str
    mac: str


@dataclass(frozen=True)
class _Node:
    addresses: dict[Family, IPInterface]
    vteps: dict[Family, _Vtep]


def _node_of(spec: NodeSpec) -> _Node:
    addresses: dict[Family, IPInterface] = {}
    if spec.bgp is not None:
        for fam, text in ((V4, spec.bgp.ipv4_address), (V6, spec.bgp.ipv6_address)):
            if text:
                addresses[fam] = ipaddress.ip_interface(text)
    vteps: dict[Family, _Vtep] = {}
    for tunnel, mac in ((spec.ipv4_vxlan_tunnel_addr, spec.vxlan_tunnel_mac_addr),
                        (spec.ipv6_vxlan_tunnel_addr, spec.vxlan_tunnel_mac_addr_v6)):
        if tunnel and mac:
            fam = family_of(tunnel)
            parent = addresses.get(fam)
            if parent is not None:
                vteps[fam] = _Vtep(str(parent.ip), str(ipaddress.ip_address(tunnel)), mac.lower())
    return _Node(addresses, vteps)


class VxlanResolver:
    def __init__(self, hostname: str, sequencer: EventSequencer) -> None:
        self._host = hostname
        self._seq = sequencer
        self._pools: dict[str, _Pool] = {}  # key -> pool
        self._nodes: dict[str, _Node] = {}  # node name -> facts
        self._blocks: dict[str, tuple[IPNetwork, str | None]] = {}  # block key -> (cidr, host)
        self._by_host: dict[str | None, set[str]] = {}  # host -> block keys
        self._problems: dict[str, str] = {}  # block cidr -> why its route is kept as it was
        self._encap = EncapUpdate()

    # -- inputs ---------------------------------------------------------------------------------------
    def on_pool(self, key: str, value: object | None) -> None:
        pool = None
        if isinstance(value, Resource):
            spec = value.spec_as(IPPoolSpec)
            pool = _Pool(value.metadata.name, spec.network, spec.effective_vxlan_mode)
        if self._pools.get(key) == pool:
            return
        if pool is None:
            self._pools.pop(key, None)
        else:
            self._pools[key] = pool
        self._refresh_all()

    def on_node(self, key: str, value: object | None) -> None:
        name = key.rsplit("/", 1)[-1]
        node = _node_of(value.spec_as(NodeSpec)) if isinstance(value, Resource) else None
        if self._nodes.get(name) == node:
            return
        if node is None:
            self._nodes.pop(name, None)
        else:
            self._nodes[name] = node
        self._refresh_vteps(name)
        if name == self._host:
            self._refresh_all()  # this host's subnet decides every CrossSubnet route
        else:
            for block_key in sorted(self._by_host.get(name, ())):
                self._refresh_block(block_key)
            self._refresh_encap()

    def on_block(self, key: str, value: object | None) -> None:
        old = self._blocks.pop(key, None)
        if old is not None:
            self._by_host.get(old[1], set()).discard(key)
        if isinstance(value, BlockHead) and not value.deleted:
            self._blocks[key] = (value.cidr, value.host)
            self._by_host.setdefault(value.host, set()).add(key)
        if old is not None and (key not in self._blocks or self._blocks[key][0] != old[0]):
            self._problems.pop(str(old[0]), None)
            self._seq.queue_remove(REMOTE_ROUTES, str(old[0]))
        self._refresh_block(key)
        self._refresh_encap()

    # -- derivation ------------------------------------------------------------------------------------
    def _vxlan_families(self) -> tuple[Family, ...]:
        used = {family_of(p.net) for p in self._pools.values() if p.mode != "Never"}
        return tuple(f for f in FAMILIES if f in used)

    def _pool_mode(self, cidr: IPNetwork) -> tuple[str | None, str | None]:
        """(vxlanMode of the most specific pool holding `cidr`, or a problem when pools disagree)."""
        holders = [p for p in self._pools.values() if family_of(p.net) == family_of(cidr)
                   and network_within(cidr, p.net)]
        if not holders:
            return None, None
        best = max(p.net.prefixlen for p in holders)
        modes = {p.mode for p in holders if p.net.prefixlen == best}
        if len(modes) > 1:
            names = ", ".join(sorted(f"{p.name} ({p.mode})" for p in holders if p.net.prefixlen == best))
            return None, f"IP pools {names} overlap with different vxlanMode"
        return modes.pop(), None

    def _route(self, cidr: IPNetwork, host: str | None) -> RemoteBlockRouteUpdate | str | None:
        """The route of a block: a message, None (no route of ours), or a problem (keep the last
        route; the text names what is wrong, not the block: blocks with one reason are reported once)."""
        if host is None or host == self._host:
            return None
        mode, problem = self._pool_mode(cidr)
        if problem is not None:
            return problem
        if mode in (None, "Never"):
            return None
        fam = family_of(cidr)
        node = self._nodes.get(host)
        vtep = node.vteps.get(fam) if node is not None else None
        if mode == "CrossSubnet":
            me = self._nodes.get(self._host)
            local = me.addresses.get(fam) if me is not None else None
            if local is None:
                return (f"vxlanMode CrossSubnet: this host's subnet cannot be determined: Node {self._host} "
                        f"has no spec.bgp.{fam.key}Address")
            remote = node.addresses.get(fam) if node is not None else None
            if remote is not None and remote.ip in local.network:
                return RemoteBlockRouteUpdate(str(cidr), host, "none", str(remote.ip))
        if vtep is None:
            return None
        return RemoteBlockRouteUpdate(str(cidr), host, "vxlan", vtep.tunnel)

    def _refresh_block(self, key: str) -> None:
        held = self._blocks.get(key)
        if held is None:
            return
        cidr, host = held
        route = self._route(cidr, host)
        if isinstance(route, str):
            self._problems[str(cidr)] = route
            return
        self._problems.pop(str(cidr), None)
        if route is None:
            self._seq.queue_remove(REMOTE_ROUTES, str(cidr))
        else:
            self._seq.queue_update(REMOTE_ROUTES, str(cidr), route)

    def _refresh_vteps(self, name: str) -> None:
        families = self._vxlan_families()
        node = self._nodes.get(name)
        for fam in FAMILIES:
            vtep = node.vteps.get(fam) if node is not None and fam in families else None
            if vtep is None:
                self._seq.queue_remove(VTEPS, (name, fam))
            else:
                self._seq.queue_update(VTEPS, (name, fam), VtepUpdate(
                    name, fam, vtep.parent, vtep.tunnel, vtep.mac, local=name == self._host))

    def _refresh_encap(self) -> None:
        me = self._nodes.get(self._host)
        addresses = tuple(str(me.addresses[f]) for f in FAMILIES if me is not None and f in me.addresses)
        families = self._vxlan_families()
        by_reason: dict[str, list[str]] = {}
        for cidr, reason in sorted(self._problems.items()):
            by_reason.setdefault(reason, []).append(cidr)
        problems = []
        for reason, cidrs in sorted(by_reason.items()):
            shown = ", ".join(cidrs[:3]) + (f" and {len(cidrs) - 3} more" if len(cidrs) > 3 else "")
            problems.append(f"{reason}: the routes of blocks {shown} are kept as they were")
        for fam in families:
            if me is None or fam not in me.addresses:
                problems.insert(0, f"{fam.name} VXLAN: Node {self._host} has no spec.bgp.{fam.key}Address "
                                   "(the tunnel's underlay address); no tunnel device")
            elif fam not in me.vteps:
                problems.insert(0, f"{fam.name} VXLAN: Node {self._host} has no {fam.name} tunnel address "
                                   "and MAC yet (allocated by `tortie node run`); no tunnel device")
        encap = EncapUpdate(families, addresses, tuple(problems))
        if encap == self._encap:
            return
        for problem in sorted(set(encap.problems) - set(self._encap.problems)):
            log.warning("encapsulation problem host=%s problem=%r", self._host, problem)
        self._encap = encap
        if encap == EncapUpdate():
            self._seq.queue_remove(ENCAP, _ENCAP_KEY)
        else:
            self._seq.queue_update(ENCAP, _ENCAP_KEY, encap)

    def _refresh_all(self) -> None:
        for name in sorted(self._nodes):  # a Node that went had its VTEPs removed then
            self._refresh_vteps(name)
        for key in sorted(self._blocks):
            self._refresh_block(key)
        self._refresh_encap()

    @property
    def problems(self) -> tuple[str, ...]:
        return self._encap.problems
