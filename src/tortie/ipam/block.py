"""Pure IPAM block maths: no I/O, no clock, no randomness.

Inputs are `ipaddress` networks/addresses and plain values; outputs are new values. A pool CIDR is
carved into equal blocks of prefix length `block_prefix` (the pool's `blockSize`); block number `i` of
a pool starts at `pool.network_address + i * 2**(bits - block_prefix)`. `iter_free_blocks` walks a
pool's blocks lazily from a start index, wrapping, so that huge IPv6 pools are never enumerated.
Reserved ordinals (IPReservation) are computed per block.

The block value itself (allocations, the free FIFO, attributes and the transitions that keep their
invariants) is `tortie.model.ipam_block.Block`: it is the stored record every reader shares.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from tortie.common.ipfamily import Family, IPAddress, IPNetwork, address_in, network_within

# --------------------------------------------------------------------------- address arithmetic



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
