"""One IPAM block as stored (Calico's AllocationBlock) and the transitions that keep its invariants.

`Block` is the value of the JSON at `/calico/ipam/v2/assignment/ipvN/block/<cidr>` (decoded and encoded
by `tortie.model.ipam_records`); `BlockHead` is the part routing needs (CIDR, affinity, deleted).
The transitions `assign`, `assign_ordinal` and `release` each return a new `Block`;
which block to use, and the compare-and-swap that stores it, are IPAM's (`tortie.ipam`).

Invariants (checked by `Block.problems()`, kept by every transition):

* `allocations` has one entry per address; `None` = free, else an index into `attributes`. An
  address's *ordinal* is its offset from the block's first address (`address_at`, `ordinal_of`).
* `unallocated` lists exactly the free ordinals, each once. It is a FIFO: allocation takes from the front
  and freed ordinals are appended at the end, so a just-released address is reused last.
* Every attribute is referenced by at least one allocation (released ones are compacted away).
* `sequence_number` increases on every transition; `sequence_number_for_allocation[str(ordinal)]` records
  the block sequence number at which that ordinal was allocated (Calico's ABA guard).
* Cool-down (IPAMConfiguration `ipCooldownSeconds`): an address released with a `released_at` time stays
  in `allocations`, pointing at an attribute without handle that records the release time (Calico's
  `releasedAt`), so no allocator can hand it out; `expire_cooldown` moves it to the end of the free FIFO
  once the cool-down has passed. Such an address is *cooling*: neither in use nor free.

Ordinals excluded by an IPReservation stay in `unallocated` (in place) and are simply skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tortie.common.ipfamily import IPAddress, IPNetwork, address_in, num_addresses

HOST_AFFINITY_PREFIX = "host:"


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


def host_affinity(host: str) -> str:
    """The `affinity` string of a block affine to `host` (Calico: `host:<node>`)."""
    return f"{HOST_AFFINITY_PREFIX}{host}"


def host_of_affinity(affinity: str | None) -> str | None:
    """`host:<node>` -> `<node>`; None for no affinity, an empty host or another kind (`virtual:`)."""
    if affinity is not None and affinity.startswith(HOST_AFFINITY_PREFIX):
        return affinity[len(HOST_AFFINITY_PREFIX):] or None
    return None


@dataclass(frozen=True)
class BlockHead:
    """What routing needs of a block: its CIDR, its `affinity` text and whether it is being deleted."""

    cidr: IPNetwork
    affinity: str | None
    deleted: bool = False

    @property
    def host(self) -> str | None:
        """The host this block is affine to, or None (no affinity or a virtual one)."""
        return host_of_affinity(self.affinity)



@dataclass(frozen=True)
class AllocationAttribute:
    """Owner of one or more allocations of a block: the handle and free-form attributes
    (CNI: namespace, pod, node; Neutron: port id...). `secondary` is never mutated."""

    handle_id: str | None
    secondary: Mapping[str, str] = field(default_factory=dict)
    released_at: float | None = None
    """Wall-clock seconds of the release of a cooling address (None for a live allocation)."""


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
        return host_of_affinity(self.affinity)

    @property
    def head(self) -> BlockHead:
        return BlockHead(self.cidr, self.affinity, self.deleted)

    @property
    def size(self) -> int:
        return len(self.allocations)

    @property
    def in_use(self) -> int:
        """Allocations held by someone (cooling addresses excluded)."""
        return sum(1 for a in self.allocations if a is not None and self.attributes[a].released_at is None)

    @property
    def is_empty(self) -> bool:
        """Nothing allocated and nothing cooling: the block may be given back."""
        return all(a is None for a in self.allocations)

    def cooling(self) -> dict[int, float]:
        """Cooling ordinals and the time each was released."""
        out: dict[int, float] = {}
        for o, idx in enumerate(self.allocations):
            if idx is not None:
                released = self.attributes[idx].released_at
                if released is not None:
                    out[o] = released
        return out

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
            if idx is not None and self.attributes[idx].released_at is None:
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

    def release(self, ordinals: Iterable[int], released_at: float | None = None) -> ReleaseResult:
        """Free `ordinals` (duplicates ignored); freed ordinals go to the END of the free FIFO, or, with
        `released_at`, stay allocated to a cooling attribute recording that time (`expire_cooldown`).

        Ordinals that were not allocated, are cooling already, or are out of range are reported in
        `not_allocated`; when nothing was freed the block is returned unchanged."""
        allocations: list[int | None] = list(self.allocations)
        cooling_attrs: dict[int, int] = {}  # attribute index -> index of its cooling twin
        attributes_ext = list(self.attributes)
        not_allocated: list[int] = []
        freed: dict[str | None, list[int]] = {}
        order: list[int] = []
        seen: set[int] = set()
        for o in ordinals:
            if o in seen:
                continue
            seen.add(o)
            idx = allocations[o] if 0 <= o < len(allocations) else None
            if idx is None or self.attributes[idx].released_at is not None:
                not_allocated.append(o)
                continue
            attr = self.attributes[idx]
            freed.setdefault(attr.handle_id, []).append(o)
            order.append(o)
            if released_at is None:
                allocations[o] = None
            else:
                if idx not in cooling_attrs:
                    cooling_attrs[idx] = len(attributes_ext)
                    attributes_ext.append(AllocationAttribute(None, attr.secondary, released_at))
                allocations[o] = cooling_attrs[idx]
        frozen_freed = {h: tuple(v) for h, v in freed.items()}
        if not order:
            return ReleaseResult(self, tuple(not_allocated), frozen_freed)
        freed_set = set(order)
        seq_for = {k: v for k, v in self.sequence_number_for_allocation.items() if int(k) not in freed_set}
        attributes, allocations = _compacted(attributes_ext, allocations)
        block = Block(
            self.cidr,
            self.affinity,
            tuple(allocations),
            self.unallocated + (tuple(order) if released_at is None else ()),
            attributes,
            self.sequence_number + 1,
            seq_for,
            self.deleted,
        )
        return ReleaseResult(block, tuple(not_allocated), frozen_freed)

    def release_handle(self, handle: str, released_at: float | None = None) -> ReleaseResult:
        """Free every ordinal owned by `handle`."""
        return self.release(self.ordinals_of_handle(handle), released_at)

    def expire_cooldown(self, now: float, cooldown_s: float) -> Block:
        """The block with every address released at least `cooldown_s` before `now` moved to the end of
        the free FIFO (oldest release first); `self` when none has cooled down."""
        due = sorted((t, o) for o, t in self.cooling().items() if t + cooldown_s <= now)
        if not due:
            return self
        allocations: list[int | None] = list(self.allocations)
        for _t, o in due:
            allocations[o] = None
        attributes, allocations = _compacted(list(self.attributes), allocations)
        return Block(
            self.cidr,
            self.affinity,
            tuple(allocations),
            self.unallocated + tuple(o for _t, o in due),
            attributes,
            self.sequence_number + 1,
            dict(self.sequence_number_for_allocation),
            self.deleted,
        )


def _compacted(
    attributes: list[AllocationAttribute], allocations: list[int | None]
) -> tuple[tuple[AllocationAttribute, ...], list[int | None]]:
    """Drop the attribute records no allocation points at and renumber the rest (order kept)."""
    referenced = sorted({a for a in allocations if a is not None})
    remap = {old: new for new, old in enumerate(referenced)}
    renumbered: list[int | None] = [None if a is None else remap[a] for a in allocations]
    return tuple(attributes[old] for old in referenced), renumbered
