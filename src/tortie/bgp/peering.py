"""Who this node peers with: the node-to-node mesh and every BGPPeer, as `Session` values.

Used by `tortie.bgp.view.compute_view`, which holds the semantics in its docstring; this module is
the mechanics. `Peering` carries what every rule needs (this node, the snapshot, the local AS, the
problems found so far) and `SessionSet` keeps one session per neighbour (address, port) by rank:
explicit peerIP peers (0) win over selector peerings (1), which win over the mesh (2); ties go to
the BGPPeer name that sorts first.

BGPPeer options carried onto its sessions: password (a peer whose secret cannot be read is
skipped, never run unauthenticated), filters (a peer naming a BGPFilter that does not exist is
skipped, never run unfiltered: fail closed), ttlSecurity, numAllowedLocalASNumbers, keepaliveTime,
maxRestartTime, nextHopMode / keepOriginalNextHop, sourceAddress, localASNumber, reachableBy (kept
by the view as a static route). Workload peering (localWorkloadSelector) opens one session per
selected workload of this node and family, from BGPConfiguration localWorkloadPeeringIPV4/IPV6.

Invariants: pure (snapshot in, sessions and problems out); session names are unique.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from tortie.bgp.records import DEFAULT_LISTEN_PORT, BgpConfig, Node, Peer, SecretRef, Snapshot, Workload
from tortie.bgp.session import NAME_PREFIX, PeerType, Session, protocol_name
from tortie.common.ipfamily import FAMILIES, Family, IPAddress, family_of
from tortie.selector import parse as parse_selector

SecretLookup = Callable[[SecretRef], str | None]


class SessionSet:
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


def merged(default: BgpConfig | None, node_cfg: BgpConfig | None, attr: str) -> object:
    """A BGPConfiguration field: the `node.<name>` value when set, else `default`'s."""
    for cfg in (node_cfg, default):
        if cfg is not None and getattr(cfg, attr) is not None:
            return getattr(cfg, attr)
    return None


def port_or_none(port: int | None) -> int | None:
    return None if port is None or port == DEFAULT_LISTEN_PORT else port


def password_ok(password: str) -> bool:
    """BIRD strings cannot carry quotes, backslashes or control characters safely."""
    return bool(password) and not any(c in password for c in '"\\') and password.isprintable()


def ref_text(ref: SecretRef) -> str:
    return f"{ref.name}/{ref.key}"


def _next_hop(peer: Peer | None) -> str | None:
    if peer is None:
        return None
    if peer.next_hop_mode == "Self":
        return "self"
    if peer.next_hop_mode == "Keep" or peer.keep_original_next_hop:
        return "keep"
    return None


@dataclass
class Peering:
    """The facts every peering rule needs; `problems` collects what was skipped and why."""

    snapshot: Snapshot
    me: Node
    default: BgpConfig | None
    default_as: int
    secrets: SecretLookup
    problems: list[str] = field(default_factory=list)
    found: SessionSet = field(default_factory=SessionSet)

    @property
    def local_as(self) -> int:
        return self.as_of(self.me)

    @property
    def bind_node_ip(self) -> bool:
        """bindMode NodeIP (read from `default` only, as Calico does)."""
        return self.default is not None and self.default.bind_mode == "NodeIP"

    def as_of(self, node: Node) -> int:
        return node.as_number if node.as_number is not None else self.default_as

    def listen_port_of(self, name: str) -> int:
        port = merged(self.default, self.snapshot.config(f"node.{name}"), "listen_port")
        return int(port) if isinstance(port, int) else DEFAULT_LISTEN_PORT

    def selector_matches(self, text: str, labels: dict[str, str], what: str) -> bool:
        try:
            return bool(parse_selector(text).evaluate(labels))
        except Exception as exc:  # a bad selector in one peer must not stop the others
            self.problems.append(f"{what}: invalid selector {text!r}: {exc}")
            return False

    def applies_to(self, peer: Peer, node: Node, what: str) -> bool:
        if peer.node is not None:
            return peer.node == node.name
        if peer.node_selector is not None:
            return self.selector_matches(peer.node_selector, dict(node.labels), what)
        return True

    def on_link(self, address: IPAddress) -> bool:
        fam = family_of(address)
        iface = self.me.interface(fam)
        return iface is not None and address in iface.network and not fam.is_host(iface.network)

    def _with_options(self, session: Session, peer: Peer | None) -> Session:
        """`session` with the fields every BGPPeer session takes from its peer (the mesh takes none)."""
        if peer is None:
            return dataclasses.replace(session, strict_bind=self.bind_node_ip)
        return dataclasses.replace(
            session, next_hop=_next_hop(peer), restart_time=peer.max_restart_time,
            keepalive_time=peer.keepalive_time, origin=peer.name, filters=peer.filters,
            ttl_security=peer.ttl_security or None, allow_local_as=peer.num_allowed_local_as or None,
            strict_bind=self.bind_node_ip)

    def _local_address(self, peer: Peer | None, local_ip: IPAddress) -> IPAddress | None:
        # bindMode NodeIP binds every session to the node address (BIRD's `strict bind` needs one).
        if peer is not None and peer.source_address == "None" and not self.bind_node_ip:
            return None
        return local_ip

    def node_session(self, kind: PeerType, peer_node: Node, fam: Family, *, password: str | None,
                     restart_time: int | None, extra: Peer | None) -> Session | None:
        """A session with another tortie node (mesh or selector peering), None when either end lacks
        an address of `fam`."""
        local_ip = self.me.address(fam)
        remote_ip = peer_node.address(fam)
        if local_ip is None or remote_ip is None or remote_ip == local_ip:
            return None
        remote_as = self.as_of(peer_node)
        session_local_as = extra.local_as_number if extra and extra.local_as_number else self.local_as
        peer_type = kind
        rr_client = False
        if (kind is not PeerType.MESH and self.me.rr_cluster_id and remote_as == session_local_as
                and peer_node.rr_cluster_id != self.me.rr_cluster_id):
            rr_client = True
            peer_type = PeerType.RR_CLIENT
        elif (peer_node.rr_cluster_id and peer_node.rr_cluster_id != self.me.rr_cluster_id
              and kind is not PeerType.MESH):
            peer_type = PeerType.ROUTE_REFLECTOR
        session = Session(
            name=protocol_name(NAME_PREFIX[kind], remote_ip, None),
            peer_type=peer_type,
            neighbor=remote_ip,
            neighbor_port=port_or_none(self.listen_port_of(peer_node.name)),
            remote_as=remote_as,
            local_as=session_local_as,
            local_address=self._local_address(extra, local_ip),
            password=password,
            passive=int(local_ip) > int(remote_ip),
            rr_client=rr_client,
            rr_cluster_id=self.me.rr_cluster_id if rr_client else None,
            multihop=not self.on_link(remote_ip),
        )
        return dataclasses.replace(self._with_options(session, extra), restart_time=restart_time,
                                   origin=extra.name if extra else "mesh")

    # -- BGPPeer resources -------------------------------------------------------------------
    def add_peers(self) -> None:
        for peer in sorted(self.snapshot.peers, key=lambda p: p.name):
            self._add_peer(peer)

    def _missing_filters(self, peer: Peer) -> list[str]:
        return [name for name in peer.filters if self.snapshot.filter(name) is None]

    def _add_peer(self, peer: Peer) -> None:
        what = f"BGPPeer {peer.name}"
        kind = PeerType.GLOBAL if peer.is_global else PeerType.NODE
        applies_here = self.applies_to(peer, self.me, what)
        targets: dict[str, Node] = {}
        if peer.local_workload_selector is not None:
            if applies_here:
                workloads = self._selected_workloads(peer, what)
                if workloads and self._usable(peer, what):
                    self._add_workload_sessions(peer, workloads, what)
            return
        if peer.peer_selector is not None:
            if applies_here:
                for other in self.snapshot.nodes:
                    if other.name != self.me.name and self.selector_matches(
                            peer.peer_selector, dict(other.labels), what):
                        targets[other.name] = other
            if peer.reverse_peering != "Manual" and self.selector_matches(
                    peer.peer_selector, dict(self.me.labels), what):
                for other in self.snapshot.nodes:
                    if other.name != self.me.name and self.applies_to(peer, other, what):
                        targets[other.name] = other
            if not targets or not self._usable(peer, what):
                return
            usable, password = self._password(peer, what)
            if not usable:
                return
            for other in sorted(targets.values(), key=lambda n: n.name):
                for fam in FAMILIES:
                    s = self.node_session(kind, other, fam, password=password,
                                          restart_time=peer.max_restart_time, extra=peer)
                    if s is not None:
                        self.found.offer(1, peer.name, s)
            return
        if not applies_here:
            return
        if peer.peer_ip is None or peer.as_number is None:
            self.problems.append(f"{what}: needs peerIP and asNumber, peerSelector or localWorkloadSelector; "
                                 "skipped")
            return
        if not self._usable(peer, what):
            return
        usable, password = self._password(peer, what)
        if usable:
            self._add_address_peer(peer, kind, password, what)

    def _usable(self, peer: Peer, what: str) -> bool:
        missing = self._missing_filters(peer)
        if missing:
            names = ", ".join(repr(n) for n in missing)
            self.problems.append(f"{what}: BGPFilter {names} does not exist; peer not brought up "
                                 "(it would run unfiltered)")
            return False
        return True

    def _password(self, peer: Peer, what: str) -> tuple[bool, str | None]:
        """(usable, password): the peer's password (None when it has none); not usable when its secret
        cannot be read (the peer is skipped, with a problem)."""
        if peer.password is None:
            return True, None
        password = self.secrets(peer.password)
        if password is None or not password_ok(password):
            self.problems.append(f"{what}: password secret {ref_text(peer.password)} unreadable or invalid; "
                                 "peer skipped")
            return False, None
        return True, password

    def _add_address_peer(self, peer: Peer, kind: PeerType, password: str | None, what: str) -> None:
        assert peer.peer_ip is not None and peer.as_number is not None
        fam = family_of(peer.peer_ip)
        local_ip = self.me.address(fam)
        if local_ip is None:
            self.problems.append(f"{what}: peer {peer.peer_ip} is {fam.name} but this node has no {fam.name} "
                                 "BGP address; skipped")
            return
        if peer.peer_ip == local_ip:
            return  # a global peer that is this node itself
        session_local_as = peer.local_as_number or self.local_as
        reflect = bool(self.me.rr_cluster_id) and peer.as_number == session_local_as
        self.found.offer(0, peer.name, self._with_options(Session(
            name=protocol_name(NAME_PREFIX[kind], peer.peer_ip, peer.peer_port),
            peer_type=kind,
            neighbor=peer.peer_ip,
            neighbor_port=port_or_none(peer.peer_port),
            remote_as=peer.as_number,
            local_as=session_local_as,
            local_address=self._local_address(peer, local_ip),
            password=password,
            passive=False,
            rr_client=reflect,
            rr_cluster_id=self.me.rr_cluster_id if reflect else None,
            multihop=not self.on_link(peer.peer_ip),
        ), peer))

    # -- workload peering --------------------------------------------------------------------
    def _selected_workloads(self, peer: Peer, what: str) -> list[Workload]:
        assert peer.local_workload_selector is not None
        return [w for w in self.snapshot.workloads if w.node == self.me.name
                and self.selector_matches(peer.local_workload_selector, dict(w.labels), what)]

    def peering_address(self, fam: Family) -> IPAddress | None:
        """BGPConfiguration `default` localWorkloadPeeringIPV4/IPV6 (None when not set)."""
        if self.default is None:
            return None
        if fam.version == 4:
            return self.default.local_workload_peering_ipv4
        return self.default.local_workload_peering_ipv6

    def _add_workload_sessions(self, peer: Peer, workloads: list[Workload], what: str) -> None:
        if peer.as_number is None:
            return  # the model requires asNumber with localWorkloadSelector
        usable, password = self._password(peer, what)
        if not usable:
            return
        local_as = peer.local_as_number or self.local_as
        for fam in FAMILIES:
            addresses = [(w, w.address(fam)) for w in sorted(workloads, key=lambda w: w.name)]
            addresses = [(w, a) for w, a in addresses if a is not None]
            if not addresses:
                continue
            local = self.peering_address(fam)
            if local is None:
                self.problems.append(f"{what}: BGPConfiguration default sets no localWorkloadPeeringIPV"
                                     f"{fam.version}; {fam.name} workload peering skipped")
                continue
            for _workload, address in addresses:
                assert address is not None
                self.found.offer(0, peer.name, self._with_options(Session(
                    name=protocol_name(NAME_PREFIX[PeerType.LOCAL_WORKLOAD], address),
                    peer_type=PeerType.LOCAL_WORKLOAD,
                    neighbor=address,
                    remote_as=peer.as_number,
                    local_as=local_as,
                    local_address=local,
                    password=password,
                    multihop=True,  # the workload is behind a /32 device route, not on a shared subnet
                ), peer))
