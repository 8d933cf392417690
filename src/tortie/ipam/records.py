"""JSON codec of the IPAM objects, using Calico's backend-model field names so that a Calico tool
sharing the etcd could read them (libcalico-go `model.AllocationBlock`, `BlockAffinity`, `IPAMHandle`,
`IPAMConfig`).

    block     {"cidr", "affinity", "allocations", "unallocated", "attributes": [{"handle_id", "secondary"}],
               "sequenceNumber", "sequenceNumberForAllocation", "deleted"}
    affinity  {"state": "pending"|"confirmed"|"pendingDeletion", "deleted"}  + tortie extras "node", "cidr"
              (Calico's v3 BlockAffinity spec names; Calico's decoder ignores unknown fields) and
              "claimTime" (epoch seconds when the claim started)
    handle    {"block": {"<cidr>": count}, "deleted"}  + tortie extra "handleID" (Calico keeps it in the key)
    config    {"strict_affinity", "auto_allocate_blocks", "maxBlocksPerHost"}  (Calico's JSON tags; tortie
              also reads "max_blocks_per_host")

Decoders raise `InvalidRecord` on malformed input; encoders produce plain JSON objects.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tortie.common.ipfamily import IPNetwork
from tortie.ipam.block import AllocationAttribute, Block
from tortie.ipam.errors import InvalidIpamRequest, InvalidRecord

log = logging.getLogger(__name__)

# Calico: maxBlocksPerHost 0 means "use the default cap" of 20 blocks per host.
DEFAULT_MAX_BLOCKS_PER_HOST = 20


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


@dataclass(frozen=True)
class IpamConfig:
    """Cluster-wide IPAM settings. `max_blocks_per_host` 0 = Calico's default cap (20)."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0

    @property
    def effective_max_blocks_per_host(self) -> int:
        return self.max_blocks_per_host or DEFAULT_MAX_BLOCKS_PER_HOST

    def problems(self) -> list[str]:
        """Calico's cross-field rules (reference §1.2), as sentences."""
        out: list[str] = []
        if self.max_blocks_per_host < 0:
            out.append("maxBlocksPerHost must be >= 0")
        elif self.max_blocks_per_host > 0 and not self.strict_affinity:
            out.append("a per-host block limit (maxBlocksPerHost > 0) requires strictAffinity=true")
        if not self.strict_affinity and not self.auto_allocate_blocks:
            out.append("autoAllocateBlocks=false requires strictAffinity=true (nothing could be allocated)")
        return out


# --------------------------------------------------------------------------- helpers


def _network(value: Any, what: str) -> IPNetwork:
    if not isinstance(value, str):
        raise InvalidRecord(f"{what}: expected a CIDR string, got {value!r}")
    try:
        return ipaddress.ip_network(value)
    except ValueError as exc:
        raise InvalidRecord(f"{what}: {exc}") from None


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


# --------------------------------------------------------------------------- block


def encode_block(block: Block) -> dict[str, Any]:
    return {
        "cidr": str(block.cidr),
        "affinity": block.affinity,
        "allocations": list(block.allocations),
        "unallocated": list(block.unallocated),
        "attributes": [
            {"handle_id": a.handle_id, "secondary": dict(a.secondary) or None} for a in block.attributes
        ],
        "sequenceNumber": block.sequence_number,
        "sequenceNumberForAllocation": dict(block.sequence_number_for_allocation) or None,
        "deleted": block.deleted,
    }


def decode_block(obj: Mapping[str, Any]) -> Block:
    """Decode a block; structural problems raise InvalidRecord (consistency is `Block.problems()`)."""
    cidr = _network(obj.get("cidr"), "block cidr")
    affinity = obj.get("affinity")
    if affinity is None and isinstance(obj.get("hostAffinity"), str):  # Calico's deprecated spelling
        affinity = "host:" + obj["hostAffinity"]
    if affinity is not None and not isinstance(affinity, str):
        raise InvalidRecord(f"block {cidr}: affinity must be a string or null")
    raw_allocs = obj.get("allocations") or []
    raw_unalloc = obj.get("unallocated") or []
    raw_attrs = obj.get("attributes") or []
    if (
        not isinstance(raw_allocs, list)
        or not isinstance(raw_unalloc, list)
        or not isinstance(raw_attrs, list)
    ):
        raise InvalidRecord(f"block {cidr}: allocations/unallocated/attributes must be lists")
    allocations = tuple(None if a is None else _int(a, f"block {cidr} allocation") for a in raw_allocs)
    unallocated = tuple(_int(o, f"block {cidr} unallocated ordinal") for o in raw_unalloc)
    attributes: list[AllocationAttribute] = []
    for a in raw_attrs:
        if not isinstance(a, dict):
            raise InvalidRecord(f"block {cidr}: attribute must be an object")
        handle = a.get("handle_id")
        if handle is not None and not isinstance(handle, str):
            raise InvalidRecord(f"block {cidr}: handle_id must be a string")
        attributes.append(
            AllocationAttribute(handle, _str_map(a.get("secondary"), f"block {cidr} secondary"))
        )
    seq_for_raw = obj.get("sequenceNumberForAllocation") or {}
    if not isinstance(seq_for_raw, dict):
        raise InvalidRecord(f"block {cidr}: sequenceNumberForAllocation must be an object")
    seq_for = {str(k): _int(v, f"block {cidr} sequence number") for k, v in seq_for_raw.items()}
    return Block(
        cidr=cidr,
        affinity=affinity,
        allocations=allocations,
        unallocated=unallocated,
        attributes=tuple(attributes),
        sequence_number=_int(obj.get("sequenceNumber", 0), f"block {cidr} sequenceNumber"),
        sequence_number_for_allocation=seq_for,
        deleted=bool(obj.get("deleted", False)),
    )


# --------------------------------------------------------------------------- affinity


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


def decode_affinity(host: str, cidr: IPNetwork, obj: Mapping[str, Any]) -> Affinity:
    """Host and CIDR come from the key (authoritative); the value gives the state."""
    try:
        state = AffinityState(obj.get("state", "confirmed"))
    except ValueError:
        raise InvalidRecord(f"affinity {host}/{cidr}: unknown state {obj.get('state')!r}") from None
    claim_time = obj.get("claimTime")
    if not isinstance(claim_time, (int, float)) or isinstance(claim_time, bool):
        claim_time = None
    return Affinity(host, cidr, state, bool(obj.get("deleted", False)), claim_time)


# --------------------------------------------------------------------------- handle


def encode_handle(handle: Handle) -> dict[str, Any]:
    return {"handleID": handle.handle_id, "block": dict(handle.blocks), "deleted": handle.deleted}


def decode_handle(handle_id: str, obj: Mapping[str, Any]) -> Handle:
    raw = obj.get("block") or {}
    if not isinstance(raw, dict):
        raise InvalidRecord(f"handle {handle_id}: block must be an object")
    blocks = {str(k): _int(v, f"handle {handle_id} count") for k, v in raw.items()}
    return Handle(handle_id, blocks, bool(obj.get("deleted", False)))


# --------------------------------------------------------------------------- config


def encode_config(cfg: IpamConfig) -> dict[str, Any]:
    return {
        "strict_affinity": cfg.strict_affinity,
        "auto_allocate_blocks": cfg.auto_allocate_blocks,
        "maxBlocksPerHost": cfg.max_blocks_per_host,
    }


def decode_config(obj: Mapping[str, Any] | None) -> IpamConfig:
    """Missing fields take tortie's defaults (auto-allocate on, strict off, cap 0 = 20)."""
    if obj is None:
        return IpamConfig()
    max_blocks = obj.get("maxBlocksPerHost", obj.get("max_blocks_per_host", 0)) or 0
    cfg = IpamConfig(
        strict_affinity=bool(obj.get("strict_affinity", False)),
        auto_allocate_blocks=bool(obj.get("auto_allocate_blocks", True)),
        max_blocks_per_host=_int(max_blocks, "IPAM config maxBlocksPerHost"),
    )
    return cfg


def config_from_resource(obj: Mapping[str, Any]) -> IpamConfig | None:
    """The settings of a v3 `IPAMConfiguration` resource (as `tortie apply` stores it), or None when it
    does not validate (an invalid resource is treated as absent, with a warning)."""
    from tortie.model import ValidationError, parse_resource

    try:
        spec = parse_resource(obj).spec
    except ValidationError as exc:
        log.warning("ignoring invalid IPAMConfiguration resource: %s", exc)
        return None
    return IpamConfig(
        strict_affinity=bool(getattr(spec, "strict_affinity", None)),
        auto_allocate_blocks=getattr(spec, "auto_allocate_blocks", None) is not False,
        max_blocks_per_host=int(getattr(spec, "max_blocks_per_host", None) or 0),
    )


def newest_config(
    backend: tuple[int, Mapping[str, Any]] | None, resource: tuple[int, Mapping[str, Any]] | None
) -> IpamConfig:
    """The effective configuration from Calico's backend key and the v3 resource key, each given as
    (mod_revision, value): the most recently written valid one wins; defaults when neither exists."""
    candidates: list[tuple[int, IpamConfig]] = []
    if backend is not None:
        candidates.append((backend[0], decode_config(backend[1])))
    if resource is not None:
        cfg = config_from_resource(resource[1])
        if cfg is not None:
            candidates.append((resource[0], cfg))
    return max(candidates, key=lambda c: c[0])[1] if candidates else IpamConfig()


def validated_config(cfg: IpamConfig) -> IpamConfig:
    problems = cfg.problems()
    if problems:
        raise InvalidIpamRequest("invalid IPAM configuration: " + "; ".join(problems))
    return cfg
