"""The two IPAM objects the calc reads, parsed from Calico's backend JSON (reference §1.16, §5).

    /calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26   {"cidr": "10.0.0.0/26", "affinity": "host:n1", ...}
    /calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26      {"state": "confirmed", ...}

Only the fields routing needs are read (a block's allocations are left alone: parsing them for
thousands of remote blocks would cost for nothing). Parsing checks that the value agrees with its key;
any mismatch raises `InvalidRecord` and the validation filter treats the object as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tortie.ipam.keys import parse_affinity_key, parse_block_key


class InvalidRecord(ValueError):
    """An IPAM object that does not have the expected shape."""


@dataclass(frozen=True)
class BlockRecord:
    cidr: str  # canonical, e.g. "10.0.0.0/26"
    affinity_host: str | None  # from "host:<name>"; None when unaffine or not a host affinity
    deleted: bool = False


@dataclass(frozen=True)
class AffinityRecord:
    host: str
    cidr: str
    state: str  # "confirmed", "pending", "pendingDeletion" (Calico's empty state means confirmed)
    deleted: bool = False

    @property
    def confirmed(self) -> bool:
        return self.state == "confirmed" and not self.deleted


def parse_block(key: str, value: Mapping[str, Any]) -> BlockRecord:
    cidr = parse_block_key(key)
    if cidr is None:
        raise InvalidRecord(f"{key}: not a block key")
    if str(value.get("cidr", "")) != str(cidr):
        raise InvalidRecord(f"{key}: cidr {value.get('cidr')!r} does not match the key")
    affinity = value.get("affinity")
    host: str | None = None
    if affinity is not None:
        if not isinstance(affinity, str):
            raise InvalidRecord(f"{key}: affinity must be a string")
        if affinity.startswith("host:") and len(affinity) > len("host:"):
            host = affinity[len("host:"):]
    return BlockRecord(str(cidr), host, bool(value.get("deleted", False)))


def parse_affinity(key: str, value: Mapping[str, Any]) -> AffinityRecord:
    parsed = parse_affinity_key(key)
    if parsed is None:
        raise InvalidRecord(f"{key}: not a block affinity key")
    host, cidr = parsed
    state = value.get("state") or "confirmed"  # older Calico wrote no state for confirmed affinities
    if state not in ("confirmed", "pending", "pendingDeletion"):
        raise InvalidRecord(f"{key}: unknown affinity state {state!r}")
    return AffinityRecord(host, str(cidr), str(state), bool(value.get("deleted", False)))
