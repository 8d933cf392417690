"""Calico's IPAM objects as stored, and their one codec: every reader decodes them here.

    /calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26    block     -> Block (BlockHead: routing's part)
    /calico/ipam/v2/host/<host>/ipv4/block/10.0.0.0-26   affinity  -> Affinity
    /calico/ipam/v2/handle/<handle-id>                   handle    -> Handle

The JSON uses Calico's backend-model field names (libcalico-go `model.AllocationBlock`,
`BlockAffinity`, `IPAMHandle`), so a Calico tool sharing the etcd reads the same objects:

    block     {"cidr", "affinity", "allocations", "unallocated",
               "attributes": [{"handle_id", "secondary", "releasedAt" (RFC 3339, cooling addresses only)}],
               "sequenceNumber", "sequenceNumberForAllocation", "deleted"}; "hostAffinity" (Calico's
               deprecated spelling of a host affinity) is read too
    affinity  {"state": "pending"|"confirmed"|"pendingDeletion", "deleted"}  + tortie extras "node", "cidr"
              (Calico's v3 BlockAffinity spec names; Calico's decoder ignores unknown fields) and
              "claimTime" (epoch seconds when the claim started); no state means confirmed (older Calico)
    handle    {"block": {"<cidr>": count}, "deleted"}  + tortie extra "handleID" (Calico keeps it in the key)

Readers: the IPAM allocator and audit (full blocks), the calc and the BGP view (`decode_block_head`:
the CIDR, affinity and deleted flag only, so thousands of remote blocks cost no allocation parsing).
The key's facts (a block's CIDR, an affinity's host and CIDR, a handle's id) are passed in by the
caller, which parsed the key (`tortie.ipam.keys`); a value that disagrees with its key is invalid.

Decoders raise `tortie.common.errors.InvalidRecord` naming the object and the field; a reader treats
such an object as absent (with a warning) or reports it (`tortie ipam check`). Encoders produce plain
JSON objects. The v3 kinds IPAMBlock, BlockAffinity and IPAMHandle (`specs_ipam`) take their affinity
states from `AffinityState` here.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tortie.common.errors import InvalidRecord
from tortie.common.ipfamily import IPNetwork
from tortie.model.ipam_block import HOST_AFFINITY_PREFIX, AllocationAttribute, Block, BlockHead


class AffinityState(enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    PENDING_DELETION = "pendingDeletion"


@dataclass(frozen=True)
class Affinity:
    """A host's claim on a block. `claim_time` (wall-clock seconds, tortie's extra field "claimTime")
    tells an in-flight claim from one abandoned by a crash."""

    host: str
    cidr: IPNetwork
    state: AffinityState
    deleted: bool = False
    claim_time: float | None = None

    @property
    def confirmed(self) -> bool:
        """The claim is complete and not being withdrawn: the block is the host's."""
        return self.state is AffinityState.CONFIRMED and not self.deleted


@dataclass(frozen=True)
class Handle:
    """Addresses held by one handle, counted per block CIDR (string form, e.g. "10.0.0.0/26")."""

    handle_id: str
    blocks: Mapping[str, int] = field(default_factory=dict)
    deleted: bool = False

    @property
    def total(self) -> int:
        return sum(self.blocks.values())

    def adjusted(self, cidr: IPNetwork, delta: int) -> Handle:
        """The handle with `delta` added to the count of `cidr` (entries reaching 0 are dropped)."""
        blocks = dict(self.blocks)
        n = blocks.get(str(cidr), 0) + delta
        if n > 0:
            blocks[str(cidr)] = n
        else:
            blocks.pop(str(cidr), None)
        return Handle(self.handle_id, blocks, self.deleted)


# --------------------------------------------------------------------------- field helpers


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(f"{what}: expected an integer, got {value!r}")
    return value


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidRecord(f"{what}: expected a string map, got {value!r}")
    return dict(value)


def _block_cidr(value: Any, key_cidr: IPNetwork | None) -> IPNetwork:
    if key_cidr is not None and value == str(key_cidr):  # the common case: canonical, as written
        return key_cidr
    if not isinstance(value, str):
        raise InvalidRecord(f"block cidr: expected a CIDR string, got {value!r}")
    try:
        cidr = ipaddress.ip_network(value)
    except ValueError as exc:
        raise InvalidRecord(f"block cidr: {exc}") from None
    if key_cidr is not None and cidr != key_cidr:
        raise InvalidRecord(f"block {key_cidr}: cidr {value!r} does not match the key")
    return cidr


# --------------------------------------------------------------------------- block


def decode_block_head(obj: Mapping[str, Any], key_cidr: IPNetwork | None = None) -> BlockHead:
    """The CIDR, affinity and deleted flag of a block (its allocations are not read). `key_cidr` is
    the CIDR named by the block's key, when the caller read one: the value must agree with it."""
    cidr = _block_cidr(obj.get("cidr"), key_cidr)
    affinity = obj.get("affinity")
    if affinity is None and isinstance(obj.get("hostAffinity"), str):  # Calico's deprecated spelling
        affinity = HOST_AFFINITY_PREFIX + obj["hostAffinity"]
    if affinity is not None and not isinstance(affinity, str):
        raise InvalidRecord(f"block {cidr}: affinity must be a string or null")
    return BlockHead(cidr, affinity, bool(obj.get("deleted", False)))


def decode_block(obj: Mapping[str, Any], key_cidr: IPNetwork | None = None) -> Block:
    """A whole block; structural problems raise InvalidRecord (consistency is `Block.problems()`)."""
    head = decode_block_head(obj, key_cidr)
    cidr = head.cidr
    what = f"block {cidr}"  # formatted once: the per-entry checks below run for every address
    alloc_what, ordinal_what = f"{what} allocation", f"{what} unallocated ordinal"
    secondary_what = f"{what} secondary"
    raw_allocs = obj.get("allocations") or []
    raw_unalloc = obj.get("unallocated") or []
    raw_attrs = obj.get("attributes") or []
    if (
        not isinstance(raw_allocs, list)
        or not isinstance(raw_unalloc, list)
        or not isinstance(raw_attrs, list)
    ):
        raise InvalidRecord(f"{what}: allocations/unallocated/attributes must be lists")
    allocations = tuple(None if a is None else _int(a, alloc_what) for a in raw_allocs)
    unallocated = tuple(_int(o, ordinal_what) for o in raw_unalloc)
    attributes: list[AllocationAttribute] = []
    for a in raw_attrs:
        if not isinstance(a, dict):
            raise InvalidRecord(f"{what}: attribute must be an object")
        handle = a.get("handle_id")
        if handle is not None and not isinstance(handle, str):
            raise InvalidRecord(f"{what}: handle_id must be a string")
        released = a.get("releasedAt")
        attributes.append(
            AllocationAttribute(
                handle,
                _str_map(a.get("secondary"), secondary_what),
                None if released is None else parse_timestamp(released, f"{what} releasedAt"),
            )
        )
    seq_for_raw = obj.get("sequenceNumberForAllocation") or {}
    if not isinstance(seq_for_raw, dict):
        raise InvalidRecord(f"{what}: sequenceNumberForAllocation must be an object")
    seq_for = {str(k): _int(v, f"{what} sequence number") for k, v in seq_for_raw.items()}
    return Block(
        cidr=cidr,
        affinity=head.affinity,
        allocations=allocations,
        unallocated=unallocated,
        attributes=tuple(attributes),
        sequence_number=_int(obj.get("sequenceNumber", 0), f"{what} sequenceNumber"),
        sequence_number_for_allocation=seq_for,
        deleted=head.deleted,
    )


def encode_block(block: Block) -> dict[str, Any]:
    return {
        "cidr": str(block.cidr),
        "affinity": block.affinity,
        "allocations": list(block.allocations),
        "unallocated": list(block.unallocated),
        "attributes": [_encode_attribute(a) for a in block.attributes],
        "sequenceNumber": block.sequence_number,
        "sequenceNumberForAllocation": dict(block.sequence_number_for_allocation) or None,
        "deleted": block.deleted,
    }


def _encode_attribute(a: AllocationAttribute) -> dict[str, Any]:
    out: dict[str, Any] = {"handle_id": a.handle_id, "secondary": dict(a.secondary) or None}
    if a.released_at is not None:
        out["releasedAt"] = format_timestamp(a.released_at)
    return out


def format_timestamp(epoch: float) -> str:
    """RFC 3339 in UTC with microseconds (Kubernetes' MicroTime form), e.g. 2024-01-02T03:04:05.123456Z."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: Any, what: str) -> float:
    """Epoch seconds of an RFC 3339 time ("...Z" or with an offset)."""
    if not isinstance(value, str):
        raise InvalidRecord(f"{what}: expected an RFC 3339 time, got {value!r}")
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRecord(f"{what}: {value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


# --------------------------------------------------------------------------- affinity


def decode_affinity(host: str, cidr: IPNetwork, obj: Mapping[str, Any]) -> Affinity:
    """Host and CIDR come from the key (authoritative); the value gives the state."""
    state_text = obj.get("state") or AffinityState.CONFIRMED.value  # older Calico wrote no state
    try:
        state = AffinityState(state_text)
    except ValueError:
        raise InvalidRecord(f"affinity {host}/{cidr}: unknown state {state_text!r}") from None
    claim_time = obj.get("claimTime")
    if not isinstance(claim_time, (int, float)) or isinstance(claim_time, bool):
        claim_time = None
    return Affinity(host, cidr, state, bool(obj.get("deleted", False)), claim_time)


def encode_affinity(aff: Affinity) -> dict[str, Any]:
    out: dict[str, Any] = {
        "state": aff.state.value,
        "deleted": aff.deleted,
        "node": aff.host,
        "cidr": str(aff.cidr),
    }
    if aff.claim_time is not None:
        out["claimTime"] = aff.claim_time
    return out


# --------------------------------------------------------------------------- handle


def decode_handle(handle_id: str, obj: Mapping[str, Any]) -> Handle:
    raw = obj.get("block") or {}
    if not isinstance(raw, dict):
        raise InvalidRecord(f"handle {handle_id}: block must be an object")
    blocks = {str(k): _int(v, f"handle {handle_id} count") for k, v in raw.items()}
    return Handle(handle_id, blocks, bool(obj.get("deleted", False)))


def encode_handle(handle: Handle) -> dict[str, Any]:
    return {"handleID": handle.handle_id, "block": dict(handle.blocks), "deleted": handle.deleted}
