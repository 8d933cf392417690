"""What one node should say over BGP, computed purely from a datastore `Snapshot`.

Input: `records.Snapshot` (nodes, BGPConfigurations, BGPPeers, IPPools, IPAM blocks), the local host
name and `ViewOptions` (agent route protocol, workload interface prefixes, timers, secret lookup).
Output: `ViewResult` = a `NodeView` (or None while this node has no BGP address) plus the problems
found (peers skipped and why). `tortie.bgp.render` turns the view into bird.conf text.

Semantics (Calico's, reference §1.3-1.6 and §4):

* Local AS = Node.spec.bgp.asNumber, else `default` BGPConfiguration asNumber, else 64512 (a
  `node.<name>` configuration does not change the AS). listenPort, logSeverityScreen, communities,
  prefixAdvertisements and ignoredInterfaces take the `node.<name>` value when set, else `default`'s.
* Full iBGP mesh among all nodes unless `default` has nodeToNodeMeshEnabled=false; one session per
  address family both ends have. Sessions are named `Mesh_<ip>`.
* A BGPPeer applies to this node when `node` names it, `nodeSelector` matches its labels, or neither
  is set (global). With `peerIP`: one session to that address (`Global_<ip>` / `Node_<ip>`). With
  `peerSelector`: one session to every other node the selector matches; and, unless
  reversePeering=Manual, the nodes the selector matches peer back with every node in the peer's
  scope. A node with a routeReflectorClusterID reflects (`rr client`) to iBGP peers whose cluster ID
  differs from its own.
* Two definitions of the same neighbour (address, port) give one session: explicit peerIP peers win
  over selector peerings, which win over the mesh; ties go to the BGPPeer name that sorts first.
* Between two tortie nodes only the lower address opens the connection (the other side is passive),
  so the pair never races two TCP connections.
* A peer that names a password whose secret cannot be read is skipped (never downgraded to an
  unauthenticated session); a peer that names a BGPFilter that does not exist is skipped (never run
  unfiltered). Both show up as problems (status.json, `tortie node status`).
* BGPPeer `localWorkloadSelector`: one session per workload of this node it selects (and family),
  from the `default` BGPConfiguration's localWorkloadPeeringIPV4/IPV6, which the daemon puts on this
  node's loopback (`NodeView.workload_peering`). `reachableBy`: a static /32 (/128) route to the
  peer via that gateway (`NodeView.peer_routes`). bindMode NodeIP (`default` only): every session is
  bound to the node's address (`strict bind`), so BIRD listens on that address only.
* Own blocks = IPAM blocks affine to this host; they are advertised as aggregates and never imported.
  Export pools = enabled pools without disableBGPExport. Service CIDRs (`default` serviceClusterIPs,
  serviceExternalIPs, serviceLoadBalancerIPs) are advertised from every node, as Calico advertises
  cluster IPs (tortie has no Service objects, so never per-service /32s).

Invariants: same input -> same output (sessions sorted by name); session names are unique.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tortie.bgp.peering import Peering, SecretLookup, merged, password_ok
from tortie.bgp.records import DEFAULT_AS_NUMBER, BgpConfig, Filter, SecretRef, Snapshot
from tortie.bgp.session import PeerType, Session
from tortie.common.ipfamily import FAMILIES, Family, IPAddress, IPNetwork, sort_key
from tortie.dataplane.interfaces import DEFAULT_INTERFACE_PREFIXES

# The kernel route protocol number the agent uses for workload routes (rtm_protocol; the agent's
# `tortie.dataplane.drivers.routes.TORTIE_ROUTE_PROTOCOL`, checked equal by a unit test). BIRD exports
# kernel routes of this protocol that lie in an export pool and outside this node's own blocks.
DEFAULT_AGENT_ROUTE_PROTOCOL = 77
# Workload interfaces are never BGP next hops or peering interfaces: BIRD's direct protocol skips
# them. The agent's own prefix plus OpenStack's `tap` (the Neutron driver's interfaces).
DEFAULT_WORKLOAD_IFACE_PREFIXES = (*DEFAULT_INTERFACE_PREFIXES, "tap")


@dataclass(frozen=True)
class Timers:
    """BGP/BIRD timers in seconds. Defaults are Calico's; tests use `Timers.fast()`."""

    connect_delay: int = 2
    connect_retry: int = 5
    error_wait_min: int = 5
    error_wait_max: int = 30
    kernel_scan: int = 2
    device_scan: int = 2
    graceful_restart_wait: int = 30
    """How long a restarted BIRD waits for its sessions to converge before it syncs the kernel
    (`graceful restart wait`; BIRD's default, 240 s, would hold every route change away from this
    host's kernel for four minutes while any peer is down)."""
    hold_time: int | None = None
    """Every session's hold time (keepalive a third of it); None: BIRD's default (240 s, negotiated)."""
    graceful_restart_time: int | None = None
    """The restart time every session announces unless its peer sets one (maxRestartTime): how long
    peers keep this host's routes after its BGP went away; None: BIRD's default, 120 s."""

    @classmethod
    def fast(cls) -> Timers:
        """Test labs: sessions up at once, a dead peer noticed in 9 s, a host that does not come back
        from a restart withdrawn after 20 s, recovery bounded by 10 s."""
        return cls(connect_delay=0, connect_retry=1, error_wait_min=1, error_wait_max=4,
                   graceful_restart_wait=10, hold_time=9, graceful_restart_time=20)


def _no_secrets(_ref: SecretRef) -> str | None:
    return None


@dataclass(frozen=True)
class ViewOptions:
    agent_route_protocol: int = DEFAULT_AGENT_ROUTE_PROTOCOL
    workload_iface_prefixes: tuple[str, ...] = DEFAULT_WORKLOAD_IFACE_PREFIXES
    timers: Timers = field(default_factory=Timers)
    secrets: SecretLookup = _no_secrets


@dataclass(frozen=True)
class CommunityRule:
    """Communities to add to our own routes inside `cidr`."""

    cidr: IPNetwork
    standard: tuple[tuple[int, int], ...] = ()
    large: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class NodeView:
    hostname: str
    router_id: ipaddress.IPv4Address
    as_number: int
    ipv4: ipaddress.IPv4Interface | None
    ipv6: ipaddress.IPv6Interface | None
    listen_port: int
    log_severity: str  # Debug / Info / Warning / Error / Fatal
    sessions: tuple[Session, ...]
    export_pools: tuple[IPNetwork, ...]
    own_blocks: tuple[IPNetwork, ...]
    communities: tuple[CommunityRule, ...]
    ignored_interfaces: tuple[str, ...]
    workload_iface_prefixes: tuple[str, ...]
    agent_route_protocol: int
    timers: Timers
    filters: tuple[Filter, ...] = ()  # the BGPFilters some session uses, by name
    services: tuple[IPNetwork, ...] = ()  # service CIDRs this node advertises
    peer_routes: tuple[tuple[IPAddress, IPAddress], ...] = ()  # (peer, gateway): BGPPeer reachableBy
    workload_peering: tuple[IPAddress, ...] = ()  # local addresses workloads peer with (on loopback)

    def families(self) -> tuple[Family, ...]:
        """Address families BIRD should run: those this node has a BGP address for."""
        ifaces = (self.ipv4, self.ipv6)
        return tuple(fam for fam, iface in zip(FAMILIES, ifaces, strict=True) if iface is not None)


@dataclass(frozen=True)
class ViewResult:
    view: NodeView | None
    problems: tuple[str, ...] = ()


def derived_router_id(hostname: str) -> ipaddress.IPv4Address:
    """A stable router ID for a node without an IPv4 address (hash of the host name, never 0)."""
    n = int.from_bytes(hashlib.sha256(hostname.encode()).digest()[:4], "big")
    return ipaddress.IPv4Address(n or 1)


_STD_COMMUNITY = re.compile(r"^(\d+):(\d+)$")
_LARGE_COMMUNITY = re.compile(r"^(\d+):(\d+):(\d+)$")


# --------------------------------------------------------------------------- the view


def compute_view(snapshot: Snapshot, hostname: str, options: ViewOptions | None = None) -> ViewResult:
    """This node's BGP view; see the module docstring for the rules."""
    opts = options or ViewOptions()
    me = snapshot.node(hostname)
    if me is None:
        return ViewResult(None, (f"no Node {hostname!r} in the datastore",))
    if me.ipv4 is None and me.ipv6 is None:
        return ViewResult(None, (f"Node {hostname!r} has no BGP address (spec.bgp.ipv4Address/ipv6Address)",))

    default = snapshot.config("default")
    node_cfg = snapshot.config(f"node.{hostname}")
    # asNumber is cluster-wide (`default`) with a per-Node override; a `node.<name>` configuration does
    # not change it, so every node computes every other node's AS the same way.
    default_as = DEFAULT_AS_NUMBER
    if default is not None and default.as_number is not None:
        default_as = default.as_number
    peering = Peering(snapshot, me, default, default_as, opts.secrets)

    # 1. the full mesh (rank 2: weakest)
    if default is None or default.node_to_node_mesh_enabled is not False:
        _add_mesh(peering)
    # 2. BGPPeer resources
    peering.add_peers()
    sessions = peering.found.sessions()

    problems = peering.problems
    communities = _community_rules(default, node_cfg, problems)
    ignored = merged(default, node_cfg, "ignored_interfaces")
    severity = merged(default, node_cfg, "log_severity_screen")
    router_id = me.ipv4.ip if me.ipv4 is not None else derived_router_id(hostname)
    export_pools = tuple(sorted((p.cidr for p in snapshot.pools if p.exported), key=sort_key))
    own_blocks = tuple(sorted({b.cidr for b in snapshot.blocks if b.host == hostname}, key=sort_key))
    used = {name for s in sessions for name in s.filters}
    view = NodeView(
        hostname=hostname,
        router_id=router_id,
        as_number=peering.local_as,
        ipv4=me.ipv4,
        ipv6=me.ipv6,
        listen_port=peering.listen_port_of(hostname),
        log_severity=str(severity) if severity else "Info",
        sessions=sessions,
        export_pools=export_pools,
        own_blocks=own_blocks,
        communities=communities,
        ignored_interfaces=tuple(ignored) if isinstance(ignored, tuple) else (),
        workload_iface_prefixes=opts.workload_iface_prefixes,
        agent_route_protocol=opts.agent_route_protocol,
        timers=opts.timers,
        filters=tuple(f for f in snapshot.filters if f.name in used),
        services=_services(default),
        peer_routes=_peer_routes(peering, sessions),
        workload_peering=tuple(sorted({s.local_address for s in sessions if s.local_address is not None
                                       and s.peer_type is PeerType.LOCAL_WORKLOAD}, key=sort_key)),
    )
    return ViewResult(view, tuple(problems))


def _add_mesh(peering: Peering) -> None:
    default = peering.default
    mesh_password: str | None = None
    if default is not None and default.node_mesh_password is not None:
        mesh_password = peering.secrets(default.node_mesh_password)
        if mesh_password is None or not password_ok(mesh_password):
            ref = default.node_mesh_password
            peering.problems.append(f"node-to-node mesh: password secret {ref.name}/{ref.key} unreadable "
                                    "or invalid; skipped")
            return
    restart = default.node_mesh_max_restart_time if default is not None else None
    for other in peering.snapshot.nodes:
        if other.name == peering.me.name:
            continue
        for fam in FAMILIES:
            s = peering.node_session(PeerType.MESH, other, fam, password=mesh_password,
                                     restart_time=restart, extra=None)
            if s is not None:
                peering.found.offer(2, "", s)


def _services(default: BgpConfig | None) -> tuple[IPNetwork, ...]:
    if default is None:
        return ()
    cidrs = {*default.service_cluster_ips, *default.service_external_ips, *default.service_load_balancer_ips}
    return tuple(sorted(cidrs, key=sort_key))


def _peer_routes(peering: Peering, sessions: Iterable[Session]) -> tuple[tuple[IPAddress, IPAddress], ...]:
    """(peer, gateway) of every BGPPeer with reachableBy whose session this node runs."""
    running = {(s.origin, s.neighbor) for s in sessions}
    routes = {(p.peer_ip, p.reachable_by) for p in peering.snapshot.peers
              if p.reachable_by is not None and p.peer_ip is not None and (p.name, p.peer_ip) in running}
    return tuple(sorted(routes, key=lambda r: sort_key(r[0])))


def _community_rules(default: BgpConfig | None, node_cfg: BgpConfig | None,
                     problems: list[str]) -> tuple[CommunityRule, ...]:
    named_raw = merged(default, node_cfg, "communities")
    adverts_raw = merged(default, node_cfg, "prefix_advertisements")
    named = {c.name: c.value for c in named_raw} if isinstance(named_raw, tuple) else {}
    rules: list[CommunityRule] = []
    for adv in adverts_raw if isinstance(adverts_raw, tuple) else ():
        standard: list[tuple[int, int]] = []
        large: list[tuple[int, int, int]] = []
        for item in adv.communities:
            value = named.get(item, item)
            parsed = _parse_community(value)
            if parsed is None:
                problems.append(f"prefixAdvertisement {adv.cidr}: community {item!r} is neither a defined "
                                "name nor a valid aa:nn / aa:nn:mm value; ignored")
            elif len(parsed) == 2:
                standard.append((parsed[0], parsed[1]))
            else:
                large.append((parsed[0], parsed[1], parsed[2]))
        if standard or large:
            rules.append(CommunityRule(adv.cidr, tuple(standard), tuple(large)))
    return tuple(rules)


def _parse_community(value: str) -> tuple[int, ...] | None:
    m = _STD_COMMUNITY.match(value)
    if m:
        parts = tuple(int(x) for x in m.groups())
        return parts if all(p <= 0xFFFF for p in parts) else None
    m = _LARGE_COMMUNITY.match(value)
    if m:
        parts = tuple(int(x) for x in m.groups())
        return parts if all(p <= 0xFFFFFFFF for p in parts) else None
    return None


def sessions_by_family(view: NodeView, fam: Family) -> Iterable[Session]:
    return (s for s in view.sessions if s.family is fam)
