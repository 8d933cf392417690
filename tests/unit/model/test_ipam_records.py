"""tortie.model.ipam_records: the one decoder of Calico's stored IPAM objects (block, affinity, handle)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tortie.common.errors import DatastoreError, InvalidRecord
from tortie.ipam import keys
from tortie.model.ipam_block import Block, BlockHead, host_affinity, host_of_affinity
from tortie.model.ipam_records import (
    Affinity,
    AffinityState,
    Handle,
    decode_affinity,
    decode_block,
    decode_block_head,
    decode_handle,
    encode_affinity,
    encode_block,
    encode_handle,
)

NET = ipaddress.ip_network("10.0.0.0/30")


def _stored_block(**changes: Any) -> dict[str, Any]:
    block, _ = Block.new(NET, host_affinity("n1")).assign(2, "h1", {"pod": "p"})
    return {**encode_block(block), **changes}


def test_invalid_record_is_one_error_for_every_reader() -> None:
    assert issubclass(InvalidRecord, DatastoreError) and issubclass(InvalidRecord, ValueError)


def test_head_and_full_decoding_agree() -> None:
    stored = _stored_block()
    block = decode_block(stored, NET)
    assert decode_block_head(stored, NET) == block.head == BlockHead(NET, "host:n1", False)
    assert block.head.host == block.host == "n1"
    assert block.ordinals_of_handle("h1") == (0, 1)
    assert decode_block(encode_block(block)) == block


def test_head_reads_no_allocations() -> None:
    head = decode_block_head(_stored_block(allocations="not a list"), NET)
    assert head.cidr == NET
    with pytest.raises(InvalidRecord, match="must be lists"):
        decode_block(_stored_block(allocations="not a list"), NET)


def test_value_must_agree_with_its_key() -> None:
    other = ipaddress.ip_network("10.0.0.4/30")
    with pytest.raises(InvalidRecord, match="does not match the key"):
        decode_block_head(_stored_block(), other)
    with pytest.raises(InvalidRecord, match="does not match the key"):
        decode_block(_stored_block(), other)
    with pytest.raises(InvalidRecord, match="expected a CIDR string"):
        decode_block_head({"affinity": None})
    with pytest.raises(InvalidRecord, match="block cidr"):
        decode_block_head({"cidr": "10.0.0.1/30"})


def test_affinity_spellings() -> None:
    assert decode_block_head({"cidr": str(NET), "hostAffinity": "n2"}).host == "n2"  # Calico's old field
    assert decode_block_head({"cidr": str(NET), "affinity": "virtual:x"}).host is None
    assert decode_block_head({"cidr": str(NET), "affinity": "host:"}).host is None
    with pytest.raises(InvalidRecord, match="affinity must be a string"):
        decode_block_head({"cidr": str(NET), "affinity": 7})
    assert host_of_affinity(host_affinity("n3")) == "n3" and host_of_affinity(None) is None


def test_affinity_states() -> None:
    assert decode_affinity("n1", NET, {}).state is AffinityState.CONFIRMED
    assert decode_affinity("n1", NET, {"state": ""}).confirmed  # older Calico wrote no state
    pending = decode_affinity("n1", NET, {"state": "pending", "claimTime": 12.5})
    assert (pending.state, pending.claim_time, pending.confirmed) == (AffinityState.PENDING, 12.5, False)
    assert not decode_affinity("n1", NET, {"state": "confirmed", "deleted": True}).confirmed
    assert decode_affinity("n1", NET, {"claimTime": True}).claim_time is None
    with pytest.raises(InvalidRecord, match="unknown state 'gone'"):
        decode_affinity("n1", NET, {"state": "gone"})
    aff = Affinity("n1", NET, AffinityState.PENDING_DELETION, claim_time=3.0)
    assert decode_affinity("n1", NET, encode_affinity(aff)) == aff


def test_handles() -> None:
    handle = Handle("h1").adjusted(NET, 2)
    assert decode_handle("h1", encode_handle(handle)) == handle and handle.total == 2
    assert handle.adjusted(NET, -2).blocks == {}
    with pytest.raises(InvalidRecord, match="block must be an object"):
        decode_handle("h1", {"block": ["10.0.0.0/30"]})
    with pytest.raises(InvalidRecord, match="expected an integer"):
        decode_handle("h1", {"block": {str(NET): "2"}})


def test_decoding_at_a_key() -> None:
    assert keys.block_head_at(keys.block_key(NET), _stored_block()).host == "n1"
    assert keys.affinity_at(keys.affinity_key("n1", NET), {"state": "confirmed"}).confirmed
    with pytest.raises(InvalidRecord, match="not a block key"):
        keys.block_head_at("/calico/ipam/v2/assignment/ipv4/block/nonsense", _stored_block())
    with pytest.raises(InvalidRecord, match="not a block affinity key"):
        keys.affinity_at("/calico/ipam/v2/host/n1", {})


@given(st.integers(0, 3), st.booleans(), st.sampled_from([None, "host:a", "virtual:b"]))
def test_roundtrip(count: int, deleted: bool, affinity: str | None) -> None:
    block, _ = Block.new(NET, affinity).assign(count, "h", {"k": "v"})
    block = Block(block.cidr, block.affinity, block.allocations, block.unallocated, block.attributes,
                  block.sequence_number, block.sequence_number_for_allocation, deleted)
    stored = encode_block(block)
    assert decode_block(stored, NET) == block
    assert decode_block_head(stored, NET) == block.head
