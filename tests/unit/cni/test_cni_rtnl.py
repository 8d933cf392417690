"""The rtnetlink wire codec of `tortie.cni.rtnl` (pure parts; the kernel tests are in integration)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tortie.cni import rtnl


def test_attr_is_padded_and_parses_back() -> None:
    data = rtnl.attr_str(rtnl.IFLA_IFNAME, "eth0") + rtnl.attr_u32(rtnl.IFLA_MTU, 1450)
    assert len(data) % 4 == 0
    assert struct.unpack_from("=HH", data, 0) == (4 + 5, rtnl.IFLA_IFNAME)
    attrs = rtnl.parse_attrs(data)
    assert attrs[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", attrs[rtnl.IFLA_MTU])[0] == 1450


@given(
    st.lists(st.tuples(st.integers(1, 0x3FFF), st.binary(max_size=40)), max_size=8, unique_by=lambda t: t[0])
)
def test_any_attribute_list_round_trips(items: list[tuple[int, bytes]]) -> None:
    data = b"".join(rtnl.attr(kind, payload) for kind, payload in items)
    assert rtnl.parse_attrs(data) == dict(items)


def test_nested_attributes_mask_the_nested_flag() -> None:
    inner = rtnl.attr(rtnl.IFLA_INFO_KIND, b"veth\0")
    outer = rtnl.attr(rtnl.IFLA_LINKINFO | 0x8000, inner)
    assert rtnl.parse_attrs(rtnl.parse_attrs(outer)[rtnl.IFLA_LINKINFO]) == {rtnl.IFLA_INFO_KIND: b"veth\0"}


def test_truncated_buffers_do_not_loop() -> None:
    assert rtnl.parse_attrs(b"\x02\x00\x01\x00") == {}
    assert rtnl.parse_attrs(b"\x01") == {}


def test_mac_text() -> None:
    assert rtnl.format_mac(rtnl.parse_mac("EE:ee:0:1:02:ff")) == "ee:ee:00:01:02:ff"
    with pytest.raises(ValueError):
        rtnl.parse_mac("ee:ee")
