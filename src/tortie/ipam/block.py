"""Pure IPAM block maths: no I/O, no clock, no randomness.

Inputs are `ipaddress` networks/addresses and plain values; outputs are new values. Two parts:

* Address arithmetic. A pool CIDR is carved into equal blocks of prefix length `block_prefix`
  (the pool's `blockSize`); block number `i` of a pool starts at `pool.network_address + i * 2**(bits -
  block_prefix)`. Inside a block an address has an *ordinal*: its offset from the block's first address.
  `iter_free_block_indices` walks a pool's blocks lazily from a start index, wrapping, so that huge IPv6
  pools are never enumerated.
* `Block`, the value of one IPAM block (Calico's AllocationBlock), and its transitions `assign`,
  `assign_ordinal` and `release`, each returning a new `Block`.

Block invariants (checked by `Block.problems()`, kept by every transition):

* `allocations` has one entry per address; `None` = free, else an index into `attributes`.
* `unallocated` lists exactly the free ordinals, each once. It is a FIFO: allocation takes from the front
  and freed ordinals are appended at the end, so a just-released address is reused last.
* Every attribute is referenced by at least one allocation (released ones are compacted away).
* `sequence_number` increases on every transition; `sequence_number_for_allocation[str(ordinal)]` records
  the block sequence number at which that ordinal was allocated (Calico's ABA guard).

Ordinals excluded by an IPReservation stay in `unallocated` (in place) and are simply skipped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from tortie.common.ipfamily import Family, IPAddress, IPNetwork, address_in, network_within, num_addresses

# --------------------------------------------------------------------------- address arithmetic


def address_at(cidr: IPNetwork, ordinal: int) -> IPAddress:
    """The address with `ordinal` inside `cidr` (0 = the first address). Raises ValueError if out of range."""
    if not 0 <= ordinal < num_addresses(cidr):
        raise ValueError(f"ordinal {ordinal} outside {cidr}")
    return cidr.network_address + ordinal


def ordinal_of(cidr: IPNetwork, ip: IPAddress) -> int:
    """Offset of `ip` inside `cidr`. Raises ValueError if `ip` is not in `cidr` (or of another family)."""
    if not address_in(ip, cidr):
        raise ValueError(f"{ip} is not in {cidr}")
    return int(ip) - int(cidr.network_address)


def block_containing(ip: IPAddress, block_prefix: int) -> IPNetwork:
    """The block of prefix length `block_prefix` that contains `ip`."""
    return ipaddress.ip_network((ip, block_prefix), strict=False)


def check_block_prefix(fam: Family, block_prefix: int, pool: IPNetwork | None = None) -> str | None:
    """Why `block_prefix` is unusable (for `pool` if given), or None when it is fine."""
    low, high = fam.block_size_range
    if not low <= block_prefix <= high:
        return f"block size /{block_prefix} is outside {low}-{high} for {fam.name}"
    if pool is not None and block_prefix < pool.prefixlen:
        return f"block size /{block_prefix} is larger than the pool {pool}"
    return None


def block_count(pool: IPNetwork, block_prefix: int) -> int:
    """Number of blocks `pool` is carved into."""
    return 1 << (block_prefix - pool.prefixlen)


def block_at(pool: IPNetwork, block_prefix: int, index: int) -> IPNetwork:
    """Block number `index` of `pool`."""
    if not 0 <= index < block_count(pool, block_prefix):
        raise ValueError(f"block index {index} outside {pool} split into /{block_prefix}")
    start = pool.network_address + (index << (pool.max_prefixlen - block_prefix))
    return ipaddress.ip_network((start, block_prefix))


def block_index(pool: IPNetwork, block: IPNetwork) -> int:
    """Position of `block` among the blocks of `pool` that have its prefix length."""
    if not network_within(block, pool):
        raise ValueError(f"{block} is not inside {pool}")
    return (int(block.network_address) - int(pool.network_address)) >> (block.max_prefixlen - block.prefixlen)


def host_seed(host: str) -> int:
    """A stable 64-bit number derived from a host name (not Python's salted hash())."""
    import hashlib  # here, not at module level: keeps the CNI plugin's start-up imports small

    return int.from_bytes(hashlib.sha256(host.encode()).digest()[:8], "big")


def iter_block_indices(count: int, start: int) -> Iterator[int]:
    """0..count-1 beginning at `start % count` and wrapping, generated lazily."""
    if count <= 0:
        return
    first = start % count
    for i in range(count):
        yield (first + i) % count


def iter_free_blocks(
    pool: IPNetwork, block_prefix: int, taken: Iterable[IPNetwork], start: int
) -> Iterator[IPNetwork]:
    """Blocks of `pool` not in `taken`, in wrapped order from index `start`.

    Stops after every free block has been produced: the walk is bounded by len(taken in pool) + number
    of free blocks consumed, so a huge pool with few blocks in use costs only a few steps.
    """
    total = block_count(pool, block_prefix)
    used = {b for b in taken if b.prefixlen == block_prefix and network_within(b, pool)}
    free_left = total - len(used)
    if free_left <= 0:
        return
    for index in iter_block_indices(total, start):
        block = block_at(pool, block_prefix, index)
        if block in used:
            continue
        yield block
        free_left -= 1
        if free_left == 0:
            return


def reserved_ordinals(block: IPNetwork, reservations: Iterable[IPNetwork]) -> frozenset[int]:
    """Ordinals of `block` covered by any reserved CIDR (IPReservation.reservedCIDRs)."""
    out: set[int] = set()
    base = int(block.network_address)
    last = int(block.broadcast_address)
    for res in reservations:
        if res.version != block.version:
            continue
        lo = max(base, int(res.network_address))
        hi = min(last, int(res.broadcast_address))
        if lo <= hi:
            out.update(range(lo - base, hi - base + 1))
    return frozenset(out)


def is_reserved(ip: IPAddress, reservations: Iterable[IPNetwork]) -> bool:
    return any(address_in(ip, r) for r in reservations)


# --------------------------------------------------------------------------- the block value


def host_affinity(host: str) -> str:
    """The `affinity` string of a block affine to `host` (Calico: `host:<node>`)."""
    return f"host:{host}"


@dataclass(frozen=True)
class AllocationAttribute:
    """Owner of one or more allocations of a block: the handle and free-form attributes
    (CNI: namespace, pod, node; Neutron: port id...). `secondary` is never mutated."""

    handle_id: str | None
    secondary: Mapping[str, str] = field(default_factory=dict)


class OrdinalInUse(ValueError):
    """`Block.assign_ordinal` on an ordinal that is already allocated."""

    def __init__(self, ordinal: int, owner: AllocationAttribute) -> None:
        super().__init__(f"ordinal {ordinal} already allocated to handle {owner.handle_id!r}")
        self.ordinal = ordinal
        self.owner = owner


@dataclass(frozen=True)
class ReleaseResult:
    """What `Block.release` did: the new block, the ordinals that were not allocated, and per handle the
    ordinals freed (handle None for allocations recorded without a handle)."""

    block: Block
    not_allocated: tuple[int, ...]
    freed: Mapping[str | None, tuple[int, ...]]

    @property
    def freed_count(self) -> int:
        return sum(len(v) for v in self.freed.values())


@dataclass(frozen=True)
class Block:
    """One IPAM block (Calico AllocationBlock). See the module docstring for the invariants."""

    cidr: IPNetwork
    affinity: str | None
    allocations: tuple[int | None, ...]
    unallocated: tuple[int, ...]
    attributes: tuple[AllocationAttribute, ...]
    sequence_number: int = 0
    sequence_number_for_allocation: Mapping[str, int] = field(default_factory=dict)
    deleted: bool = False

    @classmethod
    def new(cls, cidr: IPNetwork, affinity: str | None) -> Block:
        """An empty block: every ordinal free, in ascending order."""
        n = num_addresses(cidr)
        return cls(
            cidr=cidr, affinity=affinity, allocations=(None,) * n, unallocated=tuple(range(n)), attributes=()
        )

    # ---- queries

    @property
    def host(self) -> str | None:
        """The host this block is affine to, or None (no affinity or a virtual one)."""
        if self.affinity is not None and self.affinity.startswith("host:"):
            return self.affinity[len("host:") :]
        return None

    @property
    def size(self) -> int:
        return len(self.allocations)

    @property
    def in_use(self) -> int:
        return sum(1 for a in self.allocations if a is not None)

    @property
    def is_empty(self) -> bool:
        return all(a is None for a in self.allocations)

    def free_count(self, excluded: frozenset[int] = frozenset()) -> int:
        """Free ordinals that may be handed out (reserved ones excluded)."""
        return sum(1 for o in self.unallocated if o not in excluded)

    def attribute_of(self, ordinal: int) -> AllocationAttribute | None:
        """The owner of `ordinal`, or None when it is free."""
        idx = self.allocations[ordinal]
        return None if idx is None else self.attributes[idx]

    def ordinals_of_handle(self, handle: str) -> tuple[int, ...]:
        """Allocated ordinals owned by `handle`, ascending."""
        return tuple(
            o
            for o, idx in enumerate(self.allocations)
            if idx is not None and self.attributes[idx].handle_id == handle
        )

    def handle_counts(self) -> dict[str | None, int]:
        """Number of allocations per handle."""
        out: dict[str | None, int] = {}
        for idx in self.allocations:
            if idx is not None:
                h = self.attributes[idx].handle_id
                out[h] = out.get(h, 0) + 1
        return out

    def address(self, ordinal: int) -> IPAddress:
        return address_at(self.cidr, ordinal)

    def ordinal(self, ip: IPAddress) -> int:
        return ordinal_of(self.cidr, ip)

    def problems(self) -> list[str]:
        """Broken invariants, as sentences (empty when the block is consistent)."""
        out: list[str] = []
        n = num_addresses(self.cidr)
        if len(self.allocations) != n:
            out.append(f"allocations has {len(self.allocations)} entries, expected {n}")
            return out
        free = [o for o, a in enumerate(self.allocations) if a is None]
        if len(set(self.unallocated)) != len(self.unallocated):
            out.append("unallocated lists an ordinal twice")
        if set(self.unallocated) != set(free):
            out.append("unallocated does not match the free allocations")
        bad = sorted({a for a in self.allocations if a is not None and not 0 <= a < len(self.attributes)})
        if bad:
            out.append(f"allocations point at missing attributes {bad}")
        used = {a for a in self.allocations if a is not None}
        if len(used) != len(self.attributes) and not bad:
            out.append(
                f"{len(self.attributes) - len(used)} attribute record(s) are referenced by no allocation"
            )
        return out

    # ---- transitions

    def assign(
        self,
        count: int,
        handle: str | None,
        secondary: Mapping[str, str],
        excluded: frozenset[int] = frozenset(),
    ) -> tuple[Block, tuple[int, ...]]:
        """Take up to `count` ordinals from the front of the free FIFO, skipping `excluded`.

        Returns the new block and the ordinals taken (fewer than `count` when the block runs out; the block
        is returned unchanged when none could be taken)."""
        if count <= 0:
            return self, ()
        taken: list[int] = []
        remaining: list[int] = []
        for o in self.unallocated:
            if len(taken) < count and o not in excluded:
                taken.append(o)
            else:
                remaining.append(o)
        if not taken:
            return self, ()
        return self._with_allocated(taken, tuple(remaining), handle, secondary), tuple(taken)

    def assign_ordinal(self, ordinal: int, handle: str | None, secondary: Mapping[str, str]) -> Block:
        """Allocate one specific ordinal. Raises OrdinalInUse if it is taken, ValueError if out of range."""
        if not 0 <= ordinal < len(self.allocations):
            raise ValueError(f"ordinal {ordinal} outside {self.cidr}")
        owner = self.attribute_of(ordinal)
        if owner is not None:
            raise OrdinalInUse(ordinal, owner)
        remaining = tuple(o for o in self.unallocated if o != ordinal)
        return self._with_allocated([ordinal], remaining, handle, secondary)

    def _with_allocated(
        self, taken: list[int], remaining: tuple[int, ...], handle: str | None, secondary: Mapping[str, str]
    ) -> Block:
        attr = AllocationAttribute(handle, dict(secondary))
        attributes = list(self.attributes)
        try:
            idx = attributes.index(attr)
        except ValueError:
            idx = len(attributes)
            attributes.append(attr)
        allocations = list(self.allocations)
        seq = self.sequence_number + 1
        seq_for = dict(self.sequence_number_for_allocation)
        for o in taken:
            allocations[o] = idx
            seq_for[str(o)] = seq
        return Block(
            self.cidr,
            self.affinity,
            tuple(allocations),
            remaining,
            tuple(attributes),
            seq,
            seq_for,
            self.deleted,
        )

    def release(self, ordinals: Iterable[int]) -> ReleaseResult:
        """Free `ordinals` (duplicates ignored); freed ordinals go to the END of the free FIFO.

        Ordinals that were not allocated (or are out of range) are reported in `not_allocated`; when nothing
        was freed the block is returned unchanged."""
        allocations = list(self.allocations)
        not_allocated: list[int] = []
        freed: dict[str | None, list[int]] = {}
        order: list[int] = []
        seen: set[int] = set()
        for o in ordinals:
            if o in seen:
                continue
            seen.add(o)
            if not 0 <= o < len(allocations) or allocations[o] is None:
                not_allocated.append(o)
                continue
            idx = allocations[o]
            assert idx is not None
            freed.setdefault(self.attributes[idx].handle_id, []).append(o)
            allocations[o] = None
            order.append(o)
        frozen_freed = {h: tuple(v) for h, v in freed.items()}
        if not order:
            return ReleaseResult(self, tuple(not_allocated), frozen_freed)
        seq_for = {k: v for k, v in self.sequence_number_for_allocation.items() if int(k) not in seen}
        # Compact the attribute table: drop records no allocation points at any more, renumber the rest.
        referenced = sorted({a for a in allocations if a is not None})
        remap = {old: new for new, old in enumerate(referenced)}
        attributes = tuple(self.attributes[old] for old in referenced)
        allocations = [None if a is None else remap[a] for a in allocations]
        block = Block(
            self.cidr,
            self.affinity,
            tuple(allocations),
            self.unallocated + tuple(order),
            attributes,
            self.sequence_number + 1,
            seq_for,
            self.deleted,
        )
        return ReleaseResult(block, tuple(not_allocated), frozen_freed)

    def release_handle(self, handle: str) -> ReleaseResult:
        """Free every ordinal owned by `handle`."""
        return self.release(self.ordinals_of_handle(handle))

    def with_affinity(self, affinity: str | None) -> Block:
        return Block(
            self.cidr,
            affinity,
            self.allocations,
            self.unallocated,
            self.attributes,
            self.sequence_number + 1,
            self.sequence_number_for_allocation,
            self.deleted,
        )
