"""Pure IPAM block maths against naive set/list-based references (Hypothesis)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tortie.common.ipfamily import V4, V6, IPNetwork, network_within
from tortie.ipam.block import (
    block_at,
    block_containing,
    block_count,
    block_index,
    check_block_prefix,
    host_seed,
    iter_free_blocks,
    reserved_ordinals,
)
from tortie.model.ipam_block import Block, OrdinalInUse, address_at, ordinal_of
from tortie.model.ipam_records import decode_block, encode_block

# ----------------------------------------------------------------------------- strategies


@st.composite
def pools_and_prefix(draw: st.DrawFn) -> tuple[IPNetwork, int]:
    """A small pool (at most 256 blocks) and a block prefix inside it, IPv4 or IPv6."""
    if draw(st.booleans()):
        block_prefix = draw(st.integers(24, 32))
        plen = draw(st.integers(max(8, block_prefix - 8), block_prefix))
        addr = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
    else:
        block_prefix = draw(st.integers(116, 128))
        plen = draw(st.integers(block_prefix - 8, block_prefix))
        addr = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
    return ipaddress.ip_network((addr, plen), strict=False), block_prefix


@st.composite
def small_blocks(draw: st.DrawFn) -> IPNetwork:
    if draw(st.booleans()):
        plen = draw(st.integers(27, 32))
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(
            draw(st.integers(0, 2**32 - 1))
        )
    else:
        plen = draw(st.integers(123, 128))
        addr = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
    return ipaddress.ip_network((addr, plen), strict=False)


# ----------------------------------------------------------------------------- address arithmetic


@given(pools_and_prefix(), st.data())
def test_block_enumeration_matches_ipaddress_subnets(pp: tuple[IPNetwork, int], data: st.DataObject) -> None:
    pool, prefix = pp
    naive = list(pool.subnets(new_prefix=prefix))
    assert block_count(pool, prefix) == len(naive)
    i = data.draw(st.integers(0, len(naive) - 1))
    assert block_at(pool, prefix, i) == naive[i]
    assert block_index(pool, naive[i]) == i
    assert network_within(naive[i], pool)


@given(small_blocks(), st.data())
def test_ordinals_match_address_list(block: IPNetwork, data: st.DataObject) -> None:
    addrs = list(block)  # includes network/broadcast: Linux blocks reserve nothing
    o = data.draw(st.integers(0, len(addrs) - 1))
    assert address_at(block, o) == addrs[o]
    assert ordinal_of(block, addrs[o]) == o
    assert block_containing(addrs[o], block.prefixlen) == block


def test_ordinal_errors() -> None:
    block = ipaddress.ip_network("10.0.0.0/30")
    with pytest.raises(ValueError):
        address_at(block, 4)
    with pytest.raises(ValueError):
        ordinal_of(block, ipaddress.ip_address("10.0.0.4"))
    with pytest.raises(ValueError):
        ordinal_of(block, ipaddress.ip_address("::1"))


def test_block_prefix_bounds() -> None:
    assert check_block_prefix(V4, 26) is None
    assert check_block_prefix(V4, 19) is not None
    assert check_block_prefix(V6, 122) is None
    assert check_block_prefix(V6, 129) is not None
    assert check_block_prefix(V4, 26, ipaddress.ip_network("10.0.0.0/28")) is not None


@given(pools_and_prefix(), st.data())
def test_iter_free_blocks_yields_each_free_block_once_from_start(
    pp: tuple[IPNetwork, int], data: st.DataObject
) -> None:
    pool, prefix = pp
    naive = list(pool.subnets(new_prefix=prefix))
    taken = set(data.draw(st.lists(st.sampled_from(naive), max_size=len(naive))))
    start = data.draw(st.integers(0, 10_000))
    got = list(iter_free_blocks(pool, prefix, taken, start))
    want = [naive[(start + i) % len(naive)] for i in range(len(naive))]
    assert got == [b for b in want if b not in taken]


def test_iter_free_blocks_is_lazy_on_huge_pools() -> None:
    pool = ipaddress.ip_network("fd00::/48")
    first = next(iter_free_blocks(pool, 122, [], host_seed("node-a")))
    assert first.prefixlen == 122 and network_within(first, pool)
    assert host_seed("node-a") != host_seed("node-b")
    assert host_seed("node-a") == host_seed("node-a")


@given(small_blocks(), st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 64)), max_size=4))
def test_reserved_ordinals_match_naive(block: IPNetwork, specs: list[tuple[int, int]]) -> None:
    # reservations around and inside the block, of both families
    base = int(block.network_address)
    res: list[IPNetwork] = []
    for offset, plen_delta in specs:
        plen = max(0, block.max_prefixlen - (plen_delta % (block.max_prefixlen + 1)))
        addr = type(block.network_address)((base + offset - 2**15) % 2**block.max_prefixlen)
        res.append(ipaddress.ip_network((addr, plen), strict=False))
    res.append(
        ipaddress.ip_network("192.0.2.0/24") if block.version == 6 else ipaddress.ip_network("2001:db8::/32")
    )
    naive = {o for o, a in enumerate(block) if any(a.version == r.version and a in r for r in res)}
    assert reserved_ordinals(block, res) == frozenset(naive)


# ------------------------------------------------------------------ the Block value vs a naive model


@dataclass
class NaiveBlock:
    """Reference: who owns each ordinal, and the free FIFO as a plain list."""

    size: int
    owner: dict[int, tuple[str | None, dict[str, str]]] = field(default_factory=dict)
    free: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.free = list(range(self.size))

    def assign(self, count: int, handle: str | None, attrs: dict[str, str], excluded: set[int]) -> list[int]:
        taken = [o for o in self.free if o not in excluded][:count]
        for o in taken:
            self.free.remove(o)
            self.owner[o] = (handle, attrs)
        return taken

    def release(self, ordinals: list[int]) -> tuple[list[int], dict[str | None, list[int]]]:
        not_allocated: list[int] = []
        freed: dict[str | None, list[int]] = {}
        seen: set[int] = set()
        for o in ordinals:
            if o in seen:
                continue
            seen.add(o)
            if o not in self.owner:
                not_allocated.append(o)
                continue
            freed.setdefault(self.owner.pop(o)[0], []).append(o)
            self.free.append(o)
        return not_allocated, freed


HANDLES = st.sampled_from(["h1", "h2", "h3", None])
ATTRS = st.sampled_from([{}, {"node": "n1"}, {"namespace": "ns", "pod": "p"}])


def ops(size: int) -> st.SearchStrategy[list[tuple[object, ...]]]:
    ordinal = st.integers(0, size - 1)
    return st.lists(
        st.one_of(
            st.tuples(
                st.just("assign"), st.integers(0, size + 2), HANDLES, ATTRS, st.sets(ordinal, max_size=4)
            ),
            st.tuples(st.just("assign_ordinal"), ordinal, HANDLES, ATTRS),
            st.tuples(st.just("release"), st.lists(st.integers(0, size + 1), max_size=6)),
            st.tuples(st.just("release_handle"), HANDLES.filter(lambda h: h is not None)),
        ),
        max_size=25,
    )


def check_same(block: Block, ref: NaiveBlock) -> None:
    assert block.problems() == []
    assert list(block.unallocated) == ref.free
    for o in range(ref.size):
        attr = block.attribute_of(o)
        if o in ref.owner:
            assert attr is not None and (attr.handle_id, dict(attr.secondary)) == ref.owner[o]
        else:
            assert attr is None
    counts: dict[str | None, int] = {}
    for handle, _ in ref.owner.values():
        counts[handle] = counts.get(handle, 0) + 1
    assert block.handle_counts() == counts
    assert decode_block(encode_block(block)) == block


@settings(max_examples=150)
@given(st.data())
def test_block_transitions_match_naive_reference(data: st.DataObject) -> None:
    cidr = data.draw(
        st.sampled_from([ipaddress.ip_network("10.1.2.0/29"), ipaddress.ip_network("fd00::10/124")])
    )
    block = Block.new(cidr, "host:n1")
    ref = NaiveBlock(block.size)
    seq = block.sequence_number
    for op in data.draw(ops(block.size)):
        if op[0] == "assign":
            _, count, handle, attrs, excluded = op
            new, taken = block.assign(count, handle, attrs, frozenset(excluded))  # type: ignore[arg-type]
            assert list(taken) == ref.assign(count, handle, attrs, excluded)  # type: ignore[arg-type]
        elif op[0] == "assign_ordinal":
            _, o, handle, attrs = op
            if o in ref.owner:
                with pytest.raises(OrdinalInUse):
                    block.assign_ordinal(o, handle, attrs)  # type: ignore[arg-type]
                new = block
            else:
                new = block.assign_ordinal(o, handle, attrs)  # type: ignore[arg-type]
                ref.free.remove(o)  # type: ignore[arg-type]
                ref.owner[o] = (handle, attrs)  # type: ignore[index, assignment]
        elif op[0] == "release":
            res = block.release(op[1])  # type: ignore[arg-type]
            not_alloc, freed = ref.release(op[1])  # type: ignore[arg-type]
            assert list(res.not_allocated) == not_alloc
            assert {h: list(v) for h, v in res.freed.items()} == freed
            new = res.block
        else:
            want = sorted(o for o, (h, _) in ref.owner.items() if h == op[1])
            res = block.release_handle(op[1])  # type: ignore[arg-type]
            ref.release(want)
            assert sorted(res.freed.get(op[1], ())) == want  # type: ignore[arg-type]
            new = res.block
        if new is not block:
            assert new.sequence_number > seq
            seq = new.sequence_number
        block = new
        check_same(block, ref)


def test_freed_addresses_are_reused_last() -> None:
    block = Block.new(ipaddress.ip_network("10.0.0.0/30"), None)
    block, first = block.assign(2, "a", {})
    assert first == (0, 1)
    block = block.release([0]).block
    block, nxt = block.assign(3, "b", {})
    assert nxt == (2, 3, 0)  # 0 was freed most recently: handed out after the never-used ones


def test_attributes_are_shared_and_compacted() -> None:
    block = Block.new(ipaddress.ip_network("10.0.0.0/29"), None)
    block, _ = block.assign(2, "a", {"pod": "x"})
    block, _ = block.assign(1, "b", {})
    block, _ = block.assign(1, "a", {"pod": "x"})
    assert len(block.attributes) == 2  # identical owner records are shared
    block = block.release_handle("a").block
    assert len(block.attributes) == 1 and block.attributes[0].handle_id == "b"
    assert block.problems() == []


def test_problems_detects_corruption() -> None:
    block = Block.new(ipaddress.ip_network("10.0.0.0/30"), None)
    block, _ = block.assign(1, "a", {})
    broken = Block(block.cidr, None, block.allocations, (0, 1, 2, 3), block.attributes)
    assert any("unallocated" in p for p in broken.problems())
    dangling = Block(block.cidr, None, (5, None, None, None), (1, 2, 3), block.attributes)
    assert any("missing attributes" in p for p in dangling.problems())
    short = Block(block.cidr, None, (None,), (0,), ())
    assert short.problems()
