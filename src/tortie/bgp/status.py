"""Parse BIRD's answers into peer status rows and advertised prefixes (pure parsing + two queries).

Input: `control.Reply` lines of `show protocols all` and `show route ...` (or a `BirdControl`).
Output: `ProtocolStatus` per BIRD protocol, `PeerStatus` per BGP session tortie configured (names
`Mesh_`, `Node_`, `Global_`, `Local_Workload_` as in Calico) and the prefixes this node originates.

The peer type comes from the protocol's `description` (tortie writes the `PeerType` value there), so
route-reflector sessions are told apart from plain node-specific ones; without a description the
name prefix decides. Info is `Established` for a working session, else BIRD's BGP state followed by
the last error (e.g. `Active  Socket: Connection refused`), i.e. the reason it is not Established.

Invariants: parsing never raises on unexpected lines (they are ignored); the peer address is taken
from `Neighbor address:` when BIRD printed it, else decoded from the protocol name.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from tortie.bgp.control import BirdControl, Reply
from tortie.bgp.session import NAME_PREFIX, PeerType

_NAME_RE = re.compile(r"^(Global|Node|Mesh|Local_Workload)_(.+?)(?:_port_(\d+))?$")
_TYPE_BY_PREFIX = {prefix: peer_type for peer_type, prefix in NAME_PREFIX.items()}
_TYPE_BY_VALUE = {t.value: t for t in PeerType}
# `show protocols` row: name proto table state since(date time or time) info
_ROW_RE = re.compile(
    r"^(?P<name>\S+)\s+(?P<proto>\S+)\s+(?P<table>\S+)\s+(?P<state>\S+)\s+"
    r"(?P<since>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\S+)\s*(?P<info>.*)$"
)


@dataclass(frozen=True)
class ProtocolStatus:
    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str
    details: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def description(self) -> str | None:
        return self.details.get("Description")


@dataclass(frozen=True)
class PeerStatus:
    name: str
    address: str
    peer_type: str
    state: str  # BIRD protocol state: up / start / down ...
    since: str
    info: str
    established: bool

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name, "peerAddress": self.address, "peerType": self.peer_type, "state": self.state,
            "since": self.since, "info": self.info, "established": self.established,
        }


def parse_protocols(replies: list[Reply]) -> list[ProtocolStatus]:
    """`show protocols [all]` -> one ProtocolStatus per protocol (details from the `all` form)."""
    out: list[ProtocolStatus] = []
    current: dict[str, str] | None = None
    head: re.Match[str] | None = None

    def flush() -> None:
        if head is not None and current is not None:
            out.append(ProtocolStatus(
                head["name"], head["proto"], head["table"], head["state"], head["since"],
                head["info"].strip(), dict(current),
            ))

    for reply in replies:
        if reply.code == 1002:
            flush()
            head = _ROW_RE.match(reply.text)
            current = {} if head else None
        elif reply.code == 1006 and current is not None:
            key, sep, value = reply.text.strip().partition(":")
            if sep and key and key not in current:
                current[key.strip()] = value.strip()
    flush()
    return out


def decode_peer_name(name: str) -> tuple[PeerType, str] | None:
    """`Mesh_10_0_0_2` -> (MESH, "10.0.0.2"); IPv6 names have colons turned into underscores."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    raw = m.group(2)
    candidates = [raw.replace("_", "."), raw.replace("_", ":")]
    for text in candidates:
        try:
            return _TYPE_BY_PREFIX[m.group(1)], str(ipaddress.ip_address(text))
        except ValueError:
            continue
    return _TYPE_BY_PREFIX[m.group(1)], raw


def peer_rows(protocols: list[ProtocolStatus]) -> list[PeerStatus]:
    """The BGP sessions tortie configured, as status rows."""
    rows: list[PeerStatus] = []
    for p in protocols:
        if p.proto != "BGP":
            continue
        decoded = decode_peer_name(p.name)
        if decoded is None:
            continue
        peer_type, address = decoded
        address = p.details.get("Neighbor address", address)
        desc = p.description
        type_text = _TYPE_BY_VALUE[desc].value if desc in _TYPE_BY_VALUE else peer_type.value
        bgp_state = p.details.get("BGP state", "")
        established = bgp_state == "Established" or p.info.startswith("Established")
        if established:
            info = "Established"
        else:
            reason = p.details.get("Last error", "")
            first = bgp_state or (p.info.split()[0] if p.info else "")
            if not reason and p.info:
                reason = p.info[len(first):].strip() if p.info.startswith(first) else p.info
            info = f"{first}  {reason}".strip() if reason else first
        rows.append(PeerStatus(p.name, address, type_text, p.state, p.since, info, established))
    return rows


def parse_route_prefixes(replies: list[Reply]) -> list[str]:
    """The distinct prefixes in a `show route` answer, in order of appearance."""
    seen: dict[str, None] = {}
    for reply in replies:
        if reply.code not in (1007, 1008):
            continue
        text = reply.text
        if not text or text[0].isspace():
            continue
        token = text.split(None, 1)[0]
        if "/" in token:
            try:
                seen[str(ipaddress.ip_network(token, strict=False))] = None
            except ValueError:
                continue
    return list(seen)


def query_peers(ctl: BirdControl) -> list[PeerStatus]:
    return peer_rows(parse_protocols(ctl.command("show protocols all")))


def query_advertised(ctl: BirdControl) -> list[str]:
    """Prefixes this node originates (its block aggregates and borrowed workload addresses), read from
    BIRD with the same functions the export filter uses."""
    protocols = {p.name for p in parse_protocols(ctl.command("show protocols"))}
    out: list[str] = []
    for f in ("v4", "v6"):
        if f"kernel_{f}" in protocols:
            out.extend(parse_route_prefixes(ctl.command(f"show route where tortie_local_route_{f}()")))
    return out
