"""Fill the CalicoNodeStatus objects that name this node, as Calico's node does.

    NodeStatusReporter.start(): its own thread calls step(now) every second (so a slow BIRD never
    holds up the node service's supervision loop)
      a Syncer on the caliconodestatuses prefix keeps every request whose spec.node is this host
      a request is due when it was never filled here, or when updatePeriodSeconds > 0 and that many
      seconds have passed since this reporter last filled it
      due -> read BIRD (show status, show protocols all, show route) over this node's control socket
             and the agent's state (node.json) -> `build_status` -> written back with the object's
             resourceVersion (someone else changed it meanwhile: retried on the next tick)

`build_status` is pure: the requested classes of Calico's status, from what BIRD said.

    agent   birdV4 / birdV6: state Ready (BIRD answers) or NotReady, version, routerID,
            lastBootTime, lastReconfigurationTime (one BIRD serves both families; a family this
            node has no BGP address for is left out)
    bgp     numberEstablishedV4/V6, numberNotEstablishedV4/V6, peersV4/V6: peerIP, type (NodeMesh,
            NodePeer, GlobalPeer, LocalWorkload), state (BIRD's BGP state), since
    routes  routesV4/V6: type (FIB for the route in use, RIB for the others), destination, gateway
            (or N/A), interface (blackhole / unreachable for such routes), learnedFrom {sourceType
            Kernel / Static / Direct / NodeMesh / BGPPeer, peerIP for the last two}

Invariants: a request for another node is never written; a failed write (conflict, datastore down)
never stops the loop; BIRD being down is reported in the status (NotReady), not raised.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tortie.bgp.control import BirdControl, BirdNotRunning, Reply
from tortie.bgp.daemon import RunPaths
from tortie.bgp.session import PeerType
from tortie.bgp.status import PeerStatus, decode_peer_name, parse_protocols, peer_rows
from tortie.common.errors import TortieError
from tortie.datastore.api import Datastore
from tortie.datastore.resources import ResourceStore
from tortie.datastore.syncer import Delete, Syncer, SyncEvent, Update
from tortie.model import Resource, ValidationError, parse_resource
from tortie.model.kinds import kind_info
from tortie.model.specs_node_status import CalicoNodeStatusSpec

log = logging.getLogger(__name__)

PREFIX = kind_info("CalicoNodeStatus").list_prefix()
_PEER_TYPES = {PeerType.MESH: "NodeMesh", PeerType.NODE: "NodePeer", PeerType.GLOBAL: "GlobalPeer",
               PeerType.LOCAL_WORKLOAD: "LocalWorkload"}
_STATUS_LINES = {"Router ID is ": "routerID", "Last reboot on ": "lastBootTime",
                 "Last reconfiguration on ": "lastReconfigurationTime"}
_ROUTE_HEAD = re.compile(r"^(?P<dst>\S+)?\s+(?P<kind>\w+)\s+\[(?P<proto>\S+)[^\]]*\]\s*(?P<primary>\*)?")
_VIA = re.compile(r"^via (?P<gw>\S+) on (?P<iface>\S+)")
_DEV = re.compile(r"^dev (?P<iface>\S+)")


@dataclass
class BirdFacts:
    """What BIRD said, raw enough to test `build_status` without BIRD."""

    running: bool = False
    version: str = ""
    status: dict[str, str] = field(default_factory=dict)  # routerID, lastBootTime, ...
    peers: list[PeerStatus] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)  # with "family": 4 | 6


def parse_show_status(replies: Sequence[Reply]) -> tuple[str, dict[str, str]]:
    """(version, {routerID, lastBootTime, lastReconfigurationTime}) from `show status`."""
    version = ""
    out: dict[str, str] = {}
    for reply in replies:
        if reply.code == 1000:
            version = reply.text.strip()
        for prefix, key in _STATUS_LINES.items():
            if reply.text.startswith(prefix):
                out[key] = reply.text[len(prefix):].strip()
    return version, out


def _learned_from(proto: str) -> dict[str, str]:
    decoded = decode_peer_name(proto)
    if decoded is not None:
        peer_type, address = decoded
        return {"sourceType": "NodeMesh" if peer_type is PeerType.MESH else "BGPPeer", "peerIP": address}
    if proto.startswith("kernel"):
        return {"sourceType": "Kernel"}
    if proto.startswith("direct"):
        return {"sourceType": "Direct"}
    return {"sourceType": "Static"}


def parse_show_route(replies: Sequence[Reply]) -> list[dict[str, Any]]:
    """Every route of `show route` (BIRD 2 layout: `Table masterN:`, a line per route with the
    destination written on the first route of a prefix, `via GW on IF` / `dev IF` lines after it)."""
    routes: list[dict[str, Any]] = []
    family = 4
    dest = ""
    for reply in replies:
        if reply.code not in (1007, 1008):
            continue
        text = reply.text
        if text.startswith("Table "):
            family = 6 if text.rstrip(":").endswith("6") else 4
            continue
        stripped = text.strip()
        if not stripped:
            continue
        if text.startswith("\t"):
            if routes:
                via, dev = _VIA.match(stripped), _DEV.match(stripped)
                if via:
                    routes[-1].update(gateway=via["gw"], interface=via["iface"])
                elif dev and routes[-1]["interface"] == "":
                    routes[-1]["interface"] = dev["iface"]
            continue
        head = _ROUTE_HEAD.match(text)
        if head is None:
            continue
        if head["dst"]:
            dest = head["dst"]
        kind = head["kind"]
        routes.append({
            "family": family, "type": "FIB" if head["primary"] else "RIB", "destination": dest,
            "gateway": "N/A", "interface": kind if kind in ("blackhole", "unreachable", "prohibit") else "",
            "learnedFrom": _learned_from(head["proto"]),
        })
    return routes


def query_bird(socket_path: str) -> BirdFacts:
    """Everything `build_status` needs from BIRD; `running=False` when it does not answer."""
    try:
        with BirdControl(socket_path, timeout=2.0) as ctl:
            version, status = parse_show_status(ctl.command("show status"))
            peers = peer_rows(parse_protocols(ctl.command("show protocols all")))
            routes = parse_show_route(ctl.command("show route"))
    except BirdNotRunning:
        return BirdFacts()
    return BirdFacts(True, version, status, peers, routes)


def _peer_state(peer: PeerStatus) -> str:
    if peer.established:
        return "Established"
    return peer.info.split()[0] if peer.info else ""


def build_status(classes: Sequence[str], facts: BirdFacts, families: Sequence[int],
                 now: datetime.datetime) -> dict[str, Any]:
    """The `status` of a CalicoNodeStatus asking for `classes` (see the module docstring)."""
    out: dict[str, Any] = {"lastUpdated": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if "Agent" in classes:
        daemon = {"state": "Ready" if facts.running else "NotReady"}
        if facts.running:
            daemon["version"] = facts.version
            daemon.update(facts.status)
        out["agent"] = {f"birdV{v}": dict(daemon) for v in families}
    if "BGP" in classes:
        bgp: dict[str, Any] = {}
        for v in (4, 6):
            rows = [p for p in facts.peers if (":" in p.address) == (v == 6)]
            up = sum(1 for p in rows if p.established)
            bgp[f"numberEstablishedV{v}"] = up
            bgp[f"numberNotEstablishedV{v}"] = len(rows) - up
            bgp[f"peersV{v}"] = [{"peerIP": p.address, "type": _type_of(p), "state": _peer_state(p),
                                  "since": p.since} for p in rows]
        out["bgp"] = bgp
    if "Routes" in classes:
        out["routes"] = {f"routesV{v}": [{k: r[k] for k in ("type", "destination", "gateway", "interface",
                                                            "learnedFrom")}
                                         for r in facts.routes if r["family"] == v] for v in (4, 6)}
    return out


def _type_of(peer: PeerStatus) -> str:
    decoded = decode_peer_name(peer.name)
    return _PEER_TYPES.get(decoded[0], "GlobalPeer") if decoded else "GlobalPeer"


Clock = Callable[[], float]


class NodeStatusReporter:
    """See the module docstring. `start()` / `stop()`; `step(now)` is one pass (tests call it)."""

    def __init__(self, ds: Datastore, hostname: str, run_dir: str, families: Sequence[int],
                 *, query: Callable[[str], BirdFacts] = query_bird) -> None:
        self.ds = ds
        self.hostname = hostname
        self.socket = RunPaths(run_dir).socket
        self.families = tuple(families)
        self.query = query
        self._lock = threading.Lock()
        self._requests: dict[str, Resource] = {}  # key -> CalicoNodeStatus naming this node
        self._filled: dict[str, float] = {}  # key -> when this reporter last wrote it
        self._syncer = Syncer(ds, (PREFIX,), self._on_event)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="node-status", daemon=True)

    def start(self) -> None:
        self._syncer.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)
        self._syncer.stop()

    def sync(self, timeout: float = 0.0) -> None:
        """Take in the datastore's changes without the thread (tests drive the reporter this way)."""
        if not self._syncer.in_sync:
            self._syncer.run_once_until_in_sync()
        self._syncer.poll(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.step(time.time())
            except Exception:  # one bad pass must not end status reporting
                log.exception("CalicoNodeStatus reporting failed; retrying")

    def _on_event(self, event: SyncEvent) -> None:
        if isinstance(event, Update):
            try:
                # The stored value carries no resourceVersion: the key's revision is it, and the
                # write-back is conditional on it (a concurrent edit of the spec is never undone).
                res = parse_resource(event.value, source=event.key).replace_metadata(
                    resource_version=str(event.revision))
            except ValidationError as exc:
                log.warning("ignoring invalid CalicoNodeStatus key=%s problem=%s", event.key, exc)
                res = None
            with self._lock:
                if res is not None and isinstance(res.spec, CalicoNodeStatusSpec) \
                        and res.spec.node == self.hostname:
                    self._requests[event.key] = res
                else:
                    self._requests.pop(event.key, None)
        elif isinstance(event, Delete):
            with self._lock:
                self._requests.pop(event.key, None)
                self._filled.pop(event.key, None)

    def due(self, now: float) -> list[Resource]:
        with self._lock:
            requests = dict(self._requests)
        out = []
        for key, res in requests.items():
            assert isinstance(res.spec, CalicoNodeStatusSpec)
            last = self._filled.get(key)
            period = res.spec.effective_update_period_seconds
            if last is None or (period > 0 and now - last >= period):
                out.append(res)
        return out

    def step(self, now: float) -> int:
        """Fill every request that is due; returns how many were written."""
        requests = self.due(now)
        if not requests:
            return 0
        facts = self.query(self.socket)
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC)
        store = ResourceStore(self.ds)
        written = 0
        for res in requests:
            assert isinstance(res.spec, CalicoNodeStatusSpec)
            status = build_status(res.spec.classes, facts, self.families, stamp)
            try:
                stored = store.update(dataclasses.replace(res, status=status))
            except TortieError as exc:  # changed or deleted meanwhile, or the datastore is down
                log.info("CalicoNodeStatus not written name=%s error=%s", res.metadata.name, exc)
                continue
            with self._lock:  # our own write is the newest version (the watch confirms it later)
                if self._requests.get(res.key) is res:
                    self._requests[res.key] = stored
            self._filled[res.key] = now
            written += 1
        return written


def families_of(registered: Mapping[str, Any]) -> list[int]:
    """The address families a registered Node has BGP addresses for (node.json `node`)."""
    return [v for v, key in ((4, "ipv4Address"), (6, "ipv6Address")) if registered.get(key)]
