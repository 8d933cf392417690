"""What `tortie ipam show` reports, computed purely from an `IpamSnapshot`.

Outputs (frozen values, with `as_dict()` for `-o json`):

* `pool_usage`: per IPPool, addresses total / in use / reserved (IPReservation, not in use) / cooling
  (released, waiting for ipCooldownSeconds) / free;
* `block_usage`: per block, its host affinity, pool, the same counts and how many addresses are
  borrowed (held for a node other than the block's host);
* `describe_ip`: everything known about one address: pool, block and its host, reservation, the
  allocation's handle and attributes, and who uses it (WorkloadEndpoints, node tunnels).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tortie.common.ipfamily import IPAddress, IPNetwork, address_in, network_within, num_addresses, sort_key
from tortie.ipam.block import is_reserved, reserved_ordinals
from tortie.ipam.pools import pool_containing
from tortie.ipam.snapshot import IpamSnapshot
from tortie.model.ipam_records import format_timestamp


@dataclass(frozen=True, kw_only=True)
class _Usage:
    """Counts shared by pools and blocks; `as_dict` gives the fields in camelCase, then `free`."""

    total: int
    in_use: int
    reserved: int
    cooling: int = 0

    @property
    def free(self) -> int:
        return max(0, self.total - self.in_use - self.reserved - self.cooling)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            head, *rest = f.name.split("_")
            out[head + "".join(w.title() for w in rest)] = str(value) if f.name == "cidr" else value
        out["free"] = self.free
        return out


@dataclass(frozen=True, kw_only=True)
class PoolUsage(_Usage):
    name: str
    cidr: IPNetwork
    disabled: bool
    blocks: int


@dataclass(frozen=True, kw_only=True)
class BlockUsage(_Usage):
    cidr: IPNetwork
    affinity: str | None
    pool: str | None
    borrowed: int


@dataclass(frozen=True)
class IpReport:
    ip: IPAddress
    pool: str | None
    block: IPNetwork | None
    block_affinity: str | None
    reserved: bool
    allocated: bool
    handle: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)
    used_by: tuple[str, ...] = ()
    released_at: float | None = None  # released and cooling down since then (not allocated)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ip": str(self.ip),
            "pool": self.pool,
            "block": None if self.block is None else str(self.block),
            "blockAffinity": self.block_affinity,
            "reserved": self.reserved,
            "allocated": self.allocated,
            "handle": self.handle,
            "attributes": dict(self.attrs),
            "usedBy": list(self.used_by),
            "releasedAt": None if self.released_at is None else format_timestamp(self.released_at),
        }


def _union_size(cidr: IPNetwork, nets: Iterable[IPNetwork]) -> int:
    """Number of addresses of `cidr` covered by the union of `nets`."""
    lo, hi = int(cidr.network_address), int(cidr.broadcast_address)
    spans = sorted(
        (max(lo, int(n.network_address)), min(hi, int(n.broadcast_address)))
        for n in nets
        if n.version == cidr.version
    )
    total, cur_end = 0, lo - 1
    for start, end in spans:
        if start > end:
            continue
        start = max(start, cur_end + 1)
        if start <= end:
            total += end - start + 1
            cur_end = end
    return total


def block_usage(snap: IpamSnapshot) -> list[BlockUsage]:
    out: list[BlockUsage] = []
    for cidr, block in snap.blocks.items():
        excluded = reserved_ordinals(cidr, snap.reservations)
        reserved = sum(1 for o in excluded if block.allocations[o] is None) if not block.problems() else 0
        borrowed = 0
        for idx in block.allocations:
            if idx is not None and idx < len(block.attributes) and block.attributes[idx].released_at is None:
                node = block.attributes[idx].secondary.get("node")
                if node is not None and node != block.host:
                    borrowed += 1
        pool = next((p.name for p in snap.pools if network_within(cidr, p.cidr)), None)
        cooling = len(block.cooling()) if not block.problems() else 0
        out.append(
            BlockUsage(cidr=cidr, affinity=block.affinity, pool=pool, total=block.size, in_use=block.in_use,
                       reserved=reserved, borrowed=borrowed, cooling=cooling)
        )
    return sorted(out, key=lambda b: sort_key(b.cidr))


def pool_usage(snap: IpamSnapshot) -> list[PoolUsage]:
    out: list[PoolUsage] = []
    for pool in snap.pools:
        blocks = [b for c, b in snap.blocks.items() if network_within(c, pool.cidr)]
        in_use = sum(b.in_use for b in blocks)
        cooling = sum(len(b.cooling()) for b in blocks if not b.problems())
        # reserved and free: reserved addresses minus those allocated anyway (before the reservation)
        reserved_total = _union_size(pool.cidr, snap.reservations)
        reserved_in_use = 0
        for c, b in snap.blocks.items():
            if network_within(c, pool.cidr) and not b.problems():
                reserved_in_use += sum(
                    1 for o in reserved_ordinals(c, snap.reservations) if b.allocations[o] is not None
                )
        total = num_addresses(pool.cidr)
        out.append(
            PoolUsage(name=pool.name, cidr=pool.cidr, disabled=pool.disabled, total=total, in_use=in_use,
                      reserved=reserved_total - reserved_in_use, blocks=len(blocks), cooling=cooling)
        )
    return sorted(out, key=lambda p: (sort_key(p.cidr), p.name))


def describe_ip(snap: IpamSnapshot, ip: IPAddress) -> IpReport:
    pool = pool_containing(snap.pools, ip)
    block_cidr = next((c for c in snap.blocks if address_in(ip, c)), None)
    users = tuple(u.describe() for u in snap.users.get(ip, ()))
    reserved = is_reserved(ip, snap.reservations)
    if block_cidr is None:
        return IpReport(ip, pool.name if pool else None, None, None, reserved, False, used_by=users)
    block = snap.blocks[block_cidr]
    attr = block.attribute_of(block.ordinal(ip)) if not block.problems() else None
    released_at = None if attr is None else attr.released_at
    held = attr is not None and released_at is None
    return IpReport(
        ip,
        pool.name if pool else None,
        block_cidr,
        block.affinity,
        reserved,
        held,
        handle=attr.handle_id if held and attr is not None else None,
        attrs=dict(attr.secondary) if held and attr is not None else {},
        used_by=users,
        released_at=released_at,
    )
