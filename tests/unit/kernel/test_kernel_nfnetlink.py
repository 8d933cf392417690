"""The raw nfnetlink element encoder (`tortie.kernel.nfnetlink`) without a kernel: message layout, key
encodings, what cannot be encoded. The kernel's agreement is tested in tests/integration/test_nft_driver.py
(round trips through `nft list`, real packets)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from tortie.kernel.nfnetlink import (
    NFT_SET_ELEM_INTERVAL_END,
    ElementOp,
    SetLayout,
    UnsupportedElement,
    batch_messages,
    encode_elements,
    key_bytes,
)

NLA = struct.Struct("=HH")
ADDR4 = SetLayout(("ipv4_addr",), interval=True)
ADDR6 = SetLayout(("ipv6_addr",), interval=True)
PORTS4 = SetLayout(("ipv4_addr", "inet_proto", "inet_service"))
VMAP = SetLayout(("ifname",), verdict_map=True)


def attrs(data: bytes) -> list[tuple[int, bytes]]:
    out, offset = [], 0
    while offset + 4 <= len(data):
        length, kind = NLA.unpack_from(data, offset)
        out.append((kind, data[offset + 4 : offset + length]))
        offset += (length + 3) & ~3
    return out


def elements(op: ElementOp) -> list[dict[str, Any]]:
    """Each LIST_ELEM as {key, flags, data?, userdata?}."""
    found = []
    for kind, body in attrs(encode_elements(op)):
        assert kind & 0x8000 and kind & 0x7FFF == 1  # nested LIST_ELEM
        parts = {k & 0x7FFF: v for k, v in attrs(body)}
        key = dict((k & 0x7FFF, v) for k, v in attrs(parts[1]))[1]
        found.append(
            {
                "key": key,
                "flags": struct.unpack(">I", parts[3])[0] if 3 in parts else 0,
                "data": parts.get(2),
                "userdata": parts.get(6),
            }
        )
    return found


def test_interval_elements_are_a_start_and_an_end_past_the_last_address() -> None:
    op = ElementOp(
        True,
        "s",
        ADDR4,
        ("10.0.0.1", {"prefix": {"addr": "10.1.0.0", "len": 16}}, {"range": ["10.2.0.5", "10.2.0.9"]}),
    )
    got = [(e["key"], e["flags"]) for e in elements(op)]
    end = NFT_SET_ELEM_INTERVAL_END
    assert got == [
        (bytes([10, 0, 0, 1]), 0),
        (bytes([10, 0, 0, 2]), end),
        (bytes([10, 1, 0, 0]), 0),
        (bytes([10, 2, 0, 0]), end),
        (bytes([10, 2, 0, 5]), 0),
        (bytes([10, 2, 0, 10]), end),
    ]


def test_a_range_to_the_top_has_no_end_and_is_marked_open_like_nft_does() -> None:
    added = elements(ElementOp(True, "s", ADDR4, ({"prefix": {"addr": "255.255.255.0", "len": 24}},)))
    assert [(e["key"], e["flags"]) for e in added] == [(bytes([255, 255, 255, 0]), 0)]
    assert added[0]["userdata"] == bytes((1, 4)) + struct.pack("=I", 1)
    deleted = elements(ElementOp(False, "s", ADDR6, ({"prefix": {"addr": "::", "len": 0}},)))
    assert [(e["key"], e["flags"], e["userdata"]) for e in deleted] == [(bytes(16), 0, None)]


def test_concatenations_pad_every_part_to_four_bytes() -> None:
    key = key_bytes(PORTS4, {"concat": ["10.0.0.1", "tcp", 80]})
    assert key == bytes([10, 0, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0])
    assert key_bytes(PORTS4, {"concat": ["10.0.0.1", 17, 53]})[4:] == bytes([17, 0, 0, 0, 0, 53, 0, 0])


def test_verdict_map_elements_carry_the_chain_and_deletes_only_the_key() -> None:
    (added,) = elements(ElementOp(True, "to-wl", VMAP, (["tort-a", {"goto": {"target": "tw-tort-a"}}],)))
    assert added["key"] == b"tort-a" + bytes(10)
    (verdict,) = attrs(added["data"])
    inner = {k & 0x7FFF: v for k, v in attrs(verdict[1])}
    assert struct.unpack(">i", inner[1])[0] == -4 and inner[2] == b"tw-tort-a\0"  # NFT_GOTO
    (deleted,) = elements(ElementOp(False, "to-wl", VMAP, ("tort-a",)))
    assert deleted["key"] == added["key"] and deleted["data"] is None


@pytest.mark.parametrize(
    ("layout", "value"),
    [
        (ADDR4, "fd00::1"),  # wrong family
        (ADDR4, {"concat": ["10.0.0.1", 6, 80]}),
        (PORTS4, {"concat": ["10.0.0.1", 6]}),
        (PORTS4, {"concat": ["10.0.0.1", "gre", 80]}),
        (VMAP, ["an-interface-name-too-long", {"goto": {"target": "x"}}]),
        (VMAP, ["tort-a", {"queue": None}]),
    ],
)
def test_what_cannot_be_encoded_is_refused_before_sending(layout: SetLayout, value: Any) -> None:
    with pytest.raises(UnsupportedElement):
        encode_elements(ElementOp(True, "s", layout, (value,)))


def test_a_batch_is_begin_ops_end_and_only_the_last_op_asks_for_an_ack() -> None:
    ops = [ElementOp(False, "a", ADDR4, ("10.0.0.1",)), ElementOp(True, "b", ADDR4, ("10.0.0.1",))]
    parts = batch_messages("tortie", ops)
    assert [(kind, flags) for kind, flags, _body in parts] == [
        (0x10, 0),  # batch begin
        ((10 << 8) | 14, 0),  # DELSETELEM, no ack
        ((10 << 8) | 12, 0x4 | 0x400),  # NEWSETELEM: create, ack (index len(ops))
        (0x11, 0),  # batch end
    ]
    assert parts[0][2] == parts[-1][2] == bytes((0, 0, 0, 10))  # nfgenmsg: AF_UNSPEC, res_id NFTABLES (be16)
    body = parts[2][2]
    assert body[:4] == bytes((1, 0, 0, 0))  # NFPROTO_INET
    assert [(kind & 0x7FFF, value) for kind, value in attrs(body[4:])][:2] == [(1, b"tortie\0"), (2, b"b\0")]
    with pytest.raises(ValueError):
        batch_messages("tortie", [])


def test_set_layouts_from_their_json_descriptions() -> None:
    assert SetLayout.of("ipv4_addr", ["interval"]) == ADDR4
    assert SetLayout.of(["ipv4_addr", "inet_proto", "inet_service"]) == PORTS4
    assert SetLayout.of("ifname", (), "verdict") == VMAP
    assert SetLayout.of("ether_addr") is None
    assert SetLayout.of(["ipv4_addr", "inet_service"], ["interval"]) is None  # concatenated ranges
    assert SetLayout.of("ifname", (), "ipv4_addr") is None
