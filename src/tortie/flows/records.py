"""Flow records: one aggregated flow of one flush interval on one host, and its JSON form.

A record is what the flow logger writes (one JSON object per line), `tortie flows` prints, and the
web view serves at /api/flows. Its fields (version 1):

    v                 1
    start, end        the interval, epoch seconds
    host              the reporting node
    reporter          "src": the egress policy of a local source decided; "dst": the ingress policy
                      of a local destination (a flow between two local endpoints has both records)
    source, destination
                      {"kind": "workload", "name", "namespace", "labels", "ip"}
                      {"kind": "hostendpoint", "name", "labels", "ip"}
                      {"kind": "networkset", "name", "namespace" ("" if global), "labels", "net", "ip"}
                      {"kind": "net", "ip"}                       (an address known to nothing)
                      ("ip": the address the flow used; "name" of a workload: its spec.workload)
    protocol, port    "tcp", "udp", "sctp", "icmp", "icmpv6" or the number as text; the
                      destination port (null for protocols without ports)
    action            "allow" or "deny": what the dataplane did
    policies          the rules that decided, per tier in order: "tier|policy|rule|action"
    pending_action, pending_policies
                      what the policies would decide with the staged policies applied
                      (equal to action/policies when no staged policy is involved)
    packets, bytes    {"src_to_dst": n, "dst_to_src": n}: from conntrack's counters for allowed
                      flows; for denied flows the packets the kernel logged (rate-limited)
    connections       {"started": n, "completed": n, "live": n}: connections (denied: attempts,
                      as distinct connection tuples) in the interval

Addresses are text of either family; nothing here is IPv4-specific. `decode` refuses anything that
is not a complete version-1 record (`InvalidRecord`: torn lines, other versions, missing fields).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class InvalidRecord(ValueError):
    """A line of the flow store that is not a complete version-1 record."""

VERSION = 1
PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite"}
PROTOCOL_NUMBERS = {name: number for number, name in PROTOCOL_NAMES.items()}
PEER_KINDS = ("workload", "hostendpoint", "networkset", "net")
ACTIONS = ("allow", "deny")
REPORTERS = ("src", "dst")


def protocol_name(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


@dataclass(frozen=True)
class Peer:
    """One end of a flow (see the module docstring for the kinds)."""

    kind: str
    name: str = ""
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    ip: str = ""  # the address the flow used (endpoints have one per family: records are per address)
    net: str = ""  # kind "networkset": the network that matched

    @property
    def label(self) -> str:
        """How tables show it: `ns/name`, `name`, or the address."""
        if self.kind == "net":
            return self.ip
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.namespace, self.name, self.ip)

    def to_json(self) -> dict[str, Any]:
        if self.kind == "net":
            return {"kind": "net", "ip": self.ip}
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.kind != "hostendpoint":
            out["namespace"] = self.namespace
        out["labels"] = dict(self.labels)
        if self.kind == "networkset":
            out["net"] = self.net
        out["ip"] = self.ip
        return out

    @classmethod
    def from_json(cls, raw: object) -> Peer:
        if not isinstance(raw, Mapping) or raw.get("kind") not in PEER_KINDS:
            raise InvalidRecord("a flow end must be a mapping with a known kind")
        labels = raw.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise InvalidRecord("labels must be a mapping")
        return cls(str(raw["kind"]), str(raw.get("name", "")), str(raw.get("namespace", "")),
                   {str(k): str(v) for k, v in labels.items()}, str(raw.get("ip", "")),
                   str(raw.get("net", "")))


@dataclass(frozen=True)
class Counts:
    src_to_dst: int = 0
    dst_to_src: int = 0

    def to_json(self) -> dict[str, int]:
        return {"src_to_dst": self.src_to_dst, "dst_to_src": self.dst_to_src}


@dataclass(frozen=True)
class FlowRecord:
    start: float
    end: float
    host: str
    reporter: str
    source: Peer
    destination: Peer
    protocol: str
    port: int | None
    action: str
    policies: tuple[str, ...]
    pending_action: str
    pending_policies: tuple[str, ...]
    packets: Counts = Counts()
    bytes: Counts = Counts()
    started: int = 0
    completed: int = 0
    live: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "host": self.host,
            "reporter": self.reporter,
            "source": self.source.to_json(),
            "destination": self.destination.to_json(),
            "protocol": self.protocol,
            "port": self.port,
            "action": self.action,
            "policies": list(self.policies),
            "pending_action": self.pending_action,
            "pending_policies": list(self.pending_policies),
            "packets": self.packets.to_json(),
            "bytes": self.bytes.to_json(),
            "connections": {"started": self.started, "completed": self.completed, "live": self.live},
        }

    def encode(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)


def _counts(raw: object) -> Counts:
    if not isinstance(raw, Mapping):
        raise InvalidRecord("packets and bytes must be mappings")
    return Counts(int(raw.get("src_to_dst", 0)), int(raw.get("dst_to_src", 0)))


def from_json(raw: object) -> FlowRecord:
    """A record from its JSON object; `InvalidRecord` when it is not a complete version-1 record."""
    if not isinstance(raw, Mapping):
        raise InvalidRecord("a flow record must be a JSON object")
    if raw.get("v") != VERSION:
        raise InvalidRecord(f"unknown record version {raw.get('v')!r} (this tortie reads {VERSION})")
    try:
        conns = raw.get("connections") or {}
        port = raw.get("port")
        record = FlowRecord(
            start=float(raw["start"]),
            end=float(raw["end"]),
            host=str(raw["host"]),
            reporter=str(raw["reporter"]),
            source=Peer.from_json(raw["source"]),
            destination=Peer.from_json(raw["destination"]),
            protocol=str(raw["protocol"]),
            port=None if port is None else int(port),
            action=str(raw["action"]),
            policies=tuple(str(p) for p in raw["policies"]),
            pending_action=str(raw["pending_action"]),
            pending_policies=tuple(str(p) for p in raw["pending_policies"]),
            packets=_counts(raw["packets"]),
            bytes=_counts(raw["bytes"]),
            started=int(conns.get("started", 0)),
            completed=int(conns.get("completed", 0)),
            live=int(conns.get("live", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRecord(f"incomplete flow record: {exc!r}") from None
    if record.action not in ACTIONS or record.reporter not in REPORTERS:
        raise InvalidRecord(f"bad action {record.action!r} or reporter {record.reporter!r}")
    return record


def decode(line: str) -> FlowRecord:
    """One line of the store; `InvalidRecord` for a torn or foreign line."""
    try:
        raw = json.loads(line)
    except ValueError:
        raise InvalidRecord("not a JSON object (a torn or foreign line)") from None
    return from_json(raw)
