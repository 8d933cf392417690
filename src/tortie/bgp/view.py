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
  unauthenticated session).
* Own blocks = IPAM blocks affine to this host; they are advertised as aggregates and never imported.
  Export pools = enabled pools without disableBGPExport.

Invariants: same input -> same output (sessions sorted by name); session names are unique.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tortie.bgp.records import (
    DEFAULT_AS_NUMBER,
    DEFAULT_LISTEN_PORT,
    BgpConfig,
    Node,
    Peer,
    SecretRef,
    Snapshot,
)
from tortie.common.ipfamily import FAMILIES, Family, IPAddress, IPNetwork, family_of, sort_key
from tortie.dataplane.interfaces import DEFAULT_INTERFACE_PREFIXES
from tortie.selector import parse as parse_selector

# The kernel route protocol number the agent uses for workload routes (rtm_protocol; the agent's
# `tortie.dataplane.drivers.routes.TORTIE_ROUTE_PROTOCOL`, checked equal by a unit test). BIRD exports
# kernel routes of this protocol that lie in an export pool and outside this node's own blocks.
DEFAULT_AGENT_ROUTE_PROTOCOL = 77
# Workload interfaces are never BGP next hops or peering interfaces: BIRD's direct protocol skips
# them. The agent's own prefix plus OpenStack's `tap` (the Neutron driver's interfaces).
DEFAULT_WORKLOAD_IFACE_PREFIXES = (*DEFAULT_INTERFACE_PREFIXES, "tap")


class PeerType(enum.Enum):
    """How a session came about; the value is what `tortie node status` prints."""

    MESH = "node-to-node mesh"
    GLOBAL = "global"
    NODE = "node specific"
    ROUTE_REFLECTOR = "route reflector"  # the remote node reflects routes to us
    RR_CLIENT = "route reflector client"  # we reflect routes to the remote node


# Name prefix of each peer type (`calicoctl node status` relies on Mesh_/Node_/Global_).
_NAME_PREFIX = {
    PeerType.MESH: "Mesh",
    PeerType.GLOBAL: "Global",
    PeerType.NODE: "Node",
}


@dataclass(frozen=True)
class Timers:
    """BGP/BIRD timers in seconds. Defaults are Calico's; tests use `Timers.fast()`."""

    connect_delay: int = 2
    connect_retry: int = 5
    error_wait_min: int = 5
    error_wait_max: int = 30
    kernel_scan: int = 2
    device_scan: int = 2

    @classmethod
    def fast(cls) -> Timers:
        return cls(connect_delay=0, connect_retry=1, error_wait_min=1, error_wait_max=4)


SecretLookup = Callable[[SecretRef], str | None]


def _no_secrets(_ref: SecretRef) -> str | None:
    return None


@dataclass(frozen=True)
class ViewOptions:
    agent_route_protocol: int = DEFAULT_AGENT_ROUTE_PROTOCOL
    workload_iface_prefixes: tuple[str, ...] = DEFAULT_WORKLOAD_IFACE_PREFIXES
    timers: Timers = field(default_factory=Timers)
    secrets: SecretLookup = _no_secrets


@dataclass(frozen=True)
class Session:
    """One BGP session this node runs (one BIRD `protocol bgp`, one address family)."""

    name: str
    peer_type: PeerType
    neighbor: IPAddress
    remote_as: int
    local_as: int
    neighbor_port: int | None = None  # None = 179
    local_address: IPAddress | None = None
    password: str | None = None
    passive: bool = False
    rr_client: bool = False
    rr_cluster_id: str | None = None
    next_hop: str | None = None  # "self" / "keep" / None (BGP default)
    restart_time: int | None = None
    keepalive_time: int | None = None
    multihop: bool = False  # eBGP only: the neighbour is not on a directly connected subnet
    origin: str = ""  # "mesh" or the BGPPeer name, for comments

    @property
    def family(self) -> Family:
        return family_of(self.neighbor)

    @property
    def ebgp(self) -> bool:
        return self.remote_as != self.local_as


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

    def families(self) -> tuple[Family, ...]:
        """Address families BIRD should run: those this node has a BGP address for."""
        ifaces = (self.ipv4, self.ipv6)
        return tuple(fam for fam, iface in zip(FAMILIES, ifaces, strict=True) if iface is not None)


@dataclass(frozen=True)
class ViewResult:
    view: NodeView | None
    problems: tuple[str, ...] = ()


# --------------------------------------------------------------------------- helpers


def protocol_name(prefix: str, address: IPAddress, port: int | None = None) -> str:
    """`Mesh`, 10.0.0.2 -> `Mesh_10_0_0_2`; IPv6 colons become underscores too; a non-default port is
    appended as `_port_<n>`."""
    text = f"{prefix}_{str(address).replace('.', '_').replace(':', '_')}"
    if port is not None and port != DEFAULT_LISTEN_PORT:
        text += f"_port_{port}"
    return text


def derived_router_id(hostname: str) -> ipaddress.IPv4Address:
    """A stable router ID for a node without an IPv4 address (hash of the host name, never 0)."""
    n = int.from_bytes(hashlib.sha256(hostname.encode()).digest()[:4], "big")
    return ipaddress.IPv4Address(n or 1)


_STD_COMMUNITY = re.compile(r"^(\d+):(\d+)$")
_LARGE_COMMUNITY = re.compile(r"^(\d+):(\d+):(\d+)$")


def _selector_matches(text: str, labels: dict[str, str], problems: list[str], what: str) -> bool:
    try:
        return bool(parse_selector(text).evaluate(labels))
    except Exception as exc:  # a bad selector in one peer must not stop the others
        problems.append(f"{what}: invalid selector {text!r}: {exc}")
        return False


def _merged(default: BgpConfig | None, node_cfg: BgpConfig | None, attr: str) -> object:
    for cfg in (node_cfg, default):
        if cfg is not None and getattr(cfg, attr) is not None:
            return getattr(cfg, attr)
    return None


class _Builder:
    """Accumulates sessions with the de-duplication rule of the module docstring."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[IPAddress, int | None], tuple[int, str, Session]] = {}

    def offer(self, rank: int, tiebreak: str, session: Session) -> None:
        key = (session.neighbor, session.neighbor_port)
        current = self.by_key.get(key)
        if current is None or (rank, tiebreak) < (current[0], current[1]):
            self.by_key[key] = (rank, tiebreak, session)

    def sessions(self) -> tuple[Session, ...]:
        out = [s for _r, _t, s in self.by_key.values()]
        names: dict[str, int] = {}
        for s in out:
            names[s.name] = names.get(s.name, 0) + 1
        assert all(n == 1 for n in names.values()), "session names must be unique"
        return tuple(sorted(out, key=lambda s: s.name))


# --------------------------------------------------------------------------- the view


def compute_view(snapshot: Snapshot, hostname: str, options: ViewOptions | None = None) -> ViewResult:
    """This node's BGP view; see the module docstring for the rules."""
    opts = options or ViewOptions()
    problems: list[str] = []
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

    def as_of(node: Node) -> int:
        return node.as_number if node.as_number is not None else default_as

    local_as = as_of(me)

    def listen_port_of(name: str) -> int:
        port = _merged(default, snapshot.config(f"node.{name}"), "listen_port")
        return int(port) if isinstance(port, int) else DEFAULT_LISTEN_PORT

    mesh_enabled = default is None or default.node_to_node_mesh_enabled is not False
    builder = _Builder()
    my_labels = dict(me.labels)

    def node_session(
        kind: PeerType, peer: Node, fam: Family, origin: str, *, password: str | None,
        restart_time: int | None, extra: Peer | None,
    ) -> Session | None:
        local_ip = me.address(fam)
        remote_ip = peer.address(fam)
        if local_ip is None or remote_ip is None or remote_ip == local_ip:
            return None
        remote_as = as_of(peer)
        session_local_as = extra.local_as_number if extra and extra.local_as_number else local_as
        peer_type = kind
        rr_client = False
        if (kind is not PeerType.MESH and me.rr_cluster_id and remote_as == session_local_as
                and peer.rr_cluster_id != me.rr_cluster_id):
            rr_client = True
            peer_type = PeerType.RR_CLIENT
        elif peer.rr_cluster_id and peer.rr_cluster_id != me.rr_cluster_id and kind is not PeerType.MESH:
            peer_type = PeerType.ROUTE_REFLECTOR
        prefix = _NAME_PREFIX[kind]
        return Session(
            name=protocol_name(prefix, remote_ip, None),
            peer_type=peer_type,
            neighbor=remote_ip,
            neighbor_port=_port_or_none(listen_port_of(peer.name)),
            remote_as=remote_as,
            local_as=session_local_as,
            local_address=None if extra and extra.source_address == "None" else local_ip,
            password=password,
            passive=int(local_ip) > int(remote_ip),
            rr_client=rr_client,
            rr_cluster_id=me.rr_cluster_id if rr_client else None,
            next_hop=_next_hop(extra),
            restart_time=restart_time,
            keepalive_time=extra.keepalive_time if extra else None,
            multihop=not _on_link(me, remote_ip),
            origin=origin,
        )

    # 1. the full mesh (rank 2: weakest)
    if mesh_enabled:
        mesh_password: str | None = None
        mesh_ok = True
        if default is not None and default.node_mesh_password is not None:
            mesh_password = opts.secrets(default.node_mesh_password)
            if mesh_password is None or not _password_ok(mesh_password):
                ref = _ref_text(default.node_mesh_password)
                problems.append(f"node-to-node mesh: password secret {ref} unreadable or invalid; skipped")
                mesh_ok = False
        if mesh_ok:
            restart = default.node_mesh_max_restart_time if default is not None else None
            for other in snapshot.nodes:
                if other.name == hostname:
                    continue
                for fam in FAMILIES:
                    s = node_session(PeerType.MESH, other, fam, "mesh", password=mesh_password,
                                     restart_time=restart, extra=None)
                    if s is not None:
                        builder.offer(2, "", s)

    # 2. BGPPeer resources
    for peer in sorted(snapshot.peers, key=lambda p: p.name):
        what = f"BGPPeer {peer.name}"
        kind = PeerType.GLOBAL if peer.is_global else PeerType.NODE
        applies_here = _applies_to(peer, me, problems, what)
        targets: dict[str, Node] = {}
        if peer.peer_selector is not None:
            if applies_here:
                for other in snapshot.nodes:
                    if other.name != hostname and _selector_matches(
                            peer.peer_selector, dict(other.labels), problems, what):
                        targets[other.name] = other
            if peer.reverse_peering != "Manual" and _selector_matches(
                    peer.peer_selector, my_labels, problems, what):
                for other in snapshot.nodes:
                    if other.name != hostname and _applies_to(peer, other, problems, what):
                        targets[other.name] = other
        elif not applies_here:
            continue
        password: str | None = None
        if peer.password is not None and (targets or peer.peer_selector is None):
            password = opts.secrets(peer.password)
            if password is None or not _password_ok(password):
                problems.append(f"{what}: password secret {_ref_text(peer.password)} unreadable or invalid; "
                                "peer skipped")
                continue
        if peer.peer_selector is not None:
            for other in sorted(targets.values(), key=lambda n: n.name):
                for fam in FAMILIES:
                    s = node_session(kind, other, fam, peer.name, password=password,
                                     restart_time=peer.max_restart_time, extra=peer)
                    if s is not None:
                        builder.offer(1, peer.name, s)
            continue
        if peer.peer_ip is None or peer.as_number is None:
            problems.append(f"{what}: needs peerIP and asNumber, or peerSelector; skipped")
            continue
        fam = family_of(peer.peer_ip)
        local_ip = me.address(fam)
        if local_ip is None:
            problems.append(f"{what}: peer {peer.peer_ip} is {fam.name} but this node has no {fam.name} "
                            "BGP address; skipped")
            continue
        if peer.peer_ip == local_ip:
            continue  # a global peer that is this node itself
        session_local_as = peer.local_as_number or local_as
        reflect = bool(me.rr_cluster_id) and peer.as_number == session_local_as
        builder.offer(0, peer.name, Session(
            name=protocol_name(_NAME_PREFIX[kind], peer.peer_ip, peer.peer_port),
            peer_type=kind,
            neighbor=peer.peer_ip,
            neighbor_port=_port_or_none(peer.peer_port),
            remote_as=peer.as_number,
            local_as=session_local_as,
            local_address=None if peer.source_address == "None" else local_ip,
            password=password,
            passive=False,
            rr_client=reflect,
            rr_cluster_id=me.rr_cluster_id if reflect else None,
            next_hop=_next_hop(peer),
            restart_time=peer.max_restart_time,
            keepalive_time=peer.keepalive_time,
            multihop=not _on_link(me, peer.peer_ip),
            origin=peer.name,
        ))

    communities = _community_rules(default, node_cfg, problems)
    ignored = _merged(default, node_cfg, "ignored_interfaces")
    severity = _merged(default, node_cfg, "log_severity_screen")
    router_id = me.ipv4.ip if me.ipv4 is not None else derived_router_id(hostname)
    export_pools = tuple(sorted((p.cidr for p in snapshot.pools if p.exported), key=sort_key))
    own_blocks = tuple(sorted({b.cidr for b in snapshot.blocks if b.host == hostname}, key=sort_key))
    view = NodeView(
        hostname=hostname,
        router_id=router_id,
        as_number=local_as,
        ipv4=me.ipv4,
        ipv6=me.ipv6,
        listen_port=listen_port_of(hostname),
        log_severity=str(severity) if severity else "Info",
        sessions=builder.sessions(),
        export_pools=export_pools,
        own_blocks=own_blocks,
        communities=communities,
        ignored_interfaces=tuple(ignored) if isinstance(ignored, tuple) else (),
        workload_iface_prefixes=opts.workload_iface_prefixes,
        agent_route_protocol=opts.agent_route_protocol,
        timers=opts.timers,
    )
    return ViewResult(view, tuple(problems))


def _port_or_none(port: int | None) -> int | None:
    return None if port is None or port == DEFAULT_LISTEN_PORT else port


def _applies_to(peer: Peer, node: Node, problems: list[str], what: str) -> bool:
    if peer.node is not None:
        return peer.node == node.name
    if peer.node_selector is not None:
        return _selector_matches(peer.node_selector, dict(node.labels), problems, what)
    return True


def _on_link(me: Node, address: IPAddress) -> bool:
    iface = me.interface(family_of(address))
    return iface is not None and address in iface.network and not family_of(address).is_host(iface.network)


def _next_hop(peer: Peer | None) -> str | None:
    if peer is None:
        return None
    if peer.next_hop_mode == "Self":
        return "self"
    if peer.next_hop_mode == "Keep" or peer.keep_original_next_hop:
        return "keep"
    return None


def _password_ok(password: str) -> bool:
    """BIRD strings cannot carry quotes, backslashes or control characters safely."""
    return bool(password) and not any(c in password for c in '"\\') and password.isprintable()


def _ref_text(ref: SecretRef) -> str:
    return f"{ref.name}/{ref.key}"


def _community_rules(default: BgpConfig | None, node_cfg: BgpConfig | None,
                     problems: list[str]) -> tuple[CommunityRule, ...]:
    named_raw = _merged(default, node_cfg, "communities")
    adverts_raw = _merged(default, node_cfg, "prefix_advertisements")
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
