"""IPAMConfiguration ipCooldownSeconds: a released address is not handed out again before its cool-down.

The block keeps a released address allocated to an attribute without handle that records the release
time (Calico's `releasedAt`); the next write of the block after the cool-down frees it. Time is the
wall clock (`time.time`), moved forward here by a fake clock.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tortie.datastore.memory import MemoryDatastore
from tortie.ipam import AddressNotAvailable, InvalidIpamRequest, Ipam, PoolExhausted, keys
from tortie.ipam.audit import check
from tortie.ipam.report import describe_ip, pool_usage
from tortie.ipam.snapshot import take_snapshot
from tortie.model.ipam_block import Block
from tortie.model.ipam_records import decode_block, encode_block
from tortie.model.kinds import kind_info

BLOCK = ipaddress.ip_network("10.0.0.0/30")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()
    monkeypatch.setattr(time, "time", c)
    yield c


@pytest.fixture
def ds() -> MemoryDatastore:
    store = MemoryDatastore()
    store.put(
        kind_info("IPPool").key("p"),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "p"},
            "spec": {"cidr": "10.0.0.0/29", "blockSize": 30},
        },
    )
    store.put(
        kind_info("Node").key("n1"),
        {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "n1"}, "spec": {}},
    )
    return store


def one(ipam: Ipam, handle: str, host: str = "n1") -> Any:
    return ipam.auto_assign(1, 0, handle, host).v4[0].ip


# ----------------------------------------------------------------------------- the block value


def test_release_with_a_time_keeps_the_address_cooling_until_expired() -> None:
    block, taken = Block.new(BLOCK, "host:n1").assign(2, "h", {"node": "n1", "pod": "p"})
    res = block.release([taken[0]], released_at=100.0)
    cooled = res.block
    assert res.freed == {"h": (taken[0],)}
    assert cooled.problems() == []
    assert taken[0] not in cooled.unallocated and cooled.in_use == 1 and not cooled.is_empty
    assert cooled.cooling() == {taken[0]: 100.0}
    assert cooled.handle_counts() == {"h": 1}
    attr = cooled.attribute_of(taken[0])
    assert attr is not None and attr.handle_id is None and attr.secondary["pod"] == "p"
    # released twice: the second finds nothing allocated
    assert cooled.release([taken[0]], released_at=150.0).not_allocated == (taken[0],)
    assert cooled.expire_cooldown(129.9, 30) is cooled
    free = cooled.expire_cooldown(130.0, 30)
    assert free.problems() == [] and free.cooling() == {}
    assert free.unallocated[-1] == taken[0]  # back at the END of the FIFO: reused last
    assert free.sequence_number == cooled.sequence_number + 1


def test_cooling_attribute_round_trips_as_calicos_released_at() -> None:
    block, taken = Block.new(BLOCK, "host:n1").assign(1, "h", {"node": "n1"})
    cooled = block.release(taken, released_at=1_700_000_000.25).block
    wire = encode_block(cooled)
    assert wire["attributes"] == [
        {"handle_id": None, "secondary": {"node": "n1"}, "releasedAt": "2023-11-14T22:13:20.250000Z"}
    ]
    assert decode_block(wire, BLOCK) == cooled
    wire["attributes"][0]["releasedAt"] = "2023-11-14T22:13:20Z"  # Calico's form without fraction
    assert decode_block(wire, BLOCK).cooling() == {taken[0]: 1_700_000_000.0}


# ----------------------------------------------------------------------------- the allocator


def test_released_address_waits_for_the_cooldown(ds: MemoryDatastore, clock: Clock) -> None:
    ipam = Ipam(ds)
    ipam.configure(strict_affinity=True, max_blocks_per_host=1, ip_cooldown_seconds=60)
    first = [one(ipam, f"h{i}") for i in range(4)]  # the host's only block (4 addresses) is full
    assert ipam.release_by_handle("h0") == [first[0]]
    assert ipam.get_assignment(first[0]) is None  # held by nobody ...
    with pytest.raises(PoolExhausted):  # ... and handed out to nobody either
        one(ipam, "x")
    with pytest.raises(AddressNotAvailable, match="cools down"):
        ipam.assign_ip(first[0], "explicit", "n1")
    snap = take_snapshot(ds)
    # the three held addresses have no endpoint here (leaks); the cooling one is no leak
    assert {f.subject for f in check(snap)} == {str(a) for a in first[1:]}
    (usage,) = pool_usage(snap)
    assert (usage.in_use, usage.cooling) == (3, 1)
    rep = describe_ip(snap, first[0])
    assert not rep.allocated and rep.released_at == clock.now
    clock.now += 59
    with pytest.raises(PoolExhausted):
        one(ipam, "x")
    clock.now += 1
    assert one(ipam, "x") == first[0]


def test_without_cooldown_release_frees_at_once(ds: MemoryDatastore, clock: Clock) -> None:
    ipam = Ipam(ds)
    ipam.configure(strict_affinity=True, max_blocks_per_host=1)
    first = [one(ipam, f"h{i}") for i in range(4)]
    ipam.release_ips([first[2]])
    assert one(ipam, "x") == first[2]


def test_release_ips_cools_down_too_and_later_release_frees_due_addresses(
    ds: MemoryDatastore, clock: Clock
) -> None:
    ipam = Ipam(ds)
    ipam.configure(ip_cooldown_seconds=10)
    a, b = one(ipam, "a"), one(ipam, "b")
    assert ipam.release_ips([a]) == []
    assert ipam.release_ips([a]) == [a]  # cooling: not allocated any more
    clock.now += 11
    ipam.release_by_handle("b")  # this write of the block also frees a, now due
    block = Ipam(ds).store.get_block(ipaddress.ip_network(f"{a}/30", strict=False))
    assert block is not None
    assert block.value.cooling() == {int(b) - int(block.value.cidr.network_address): clock.now}


def test_block_without_affinity_is_kept_while_an_address_cools(ds: MemoryDatastore, clock: Clock) -> None:
    ipam = Ipam(ds)
    ipam.configure(ip_cooldown_seconds=5)
    free = ipaddress.ip_network("10.0.0.4/30")
    ds.create(keys.block_key(free), encode_block(Block.new(free, None)))
    ipam.assign_ip("10.0.0.5", "y", "n2")
    ipam.release_by_handle("y")
    assert ds.get(keys.block_key(free)) is not None  # deleting it would forget the cool-down


def test_cooldown_comes_from_an_applied_resource_and_is_bounded(ds: MemoryDatastore) -> None:
    ds.put(
        keys.CONFIG_RESOURCE_KEY,
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPAMConfiguration",
            "metadata": {"name": "default"},
            "spec": {"strictAffinity": False, "ipCooldownSeconds": 120},
        },
    )
    ipam = Ipam(ds)
    assert ipam.get_config().ip_cooldown_seconds == 120
    with pytest.raises(InvalidIpamRequest, match="ipCooldownSeconds"):
        ipam.configure(ip_cooldown_seconds=1201)
    ipam.configure(ip_cooldown_seconds=30)
    stored = ds.get(keys.CONFIG_KEY)
    mirror = ds.get(keys.CONFIG_RESOURCE_KEY)
    assert stored is not None and stored.value["ipCooldownSeconds"] == 30
    assert mirror is not None and mirror.value["spec"]["ipCooldownSeconds"] == 30
