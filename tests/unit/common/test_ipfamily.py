"""tortie.common.ipfamily: the IP family as a value."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tortie.common import ipfamily
from tortie.common.ipfamily import FAMILIES, V4, V6, family, family_of, family_of_af


def test_the_two_families_carry_what_the_code_branches_on() -> None:
    assert (V4.version, V4.name, V4.host_prefix, V4.default_block_size, V4.block_size_range) == (
        4, "IPv4", 32, 26, (20, 32))
    assert (V6.version, V6.name, V6.host_prefix, V6.default_block_size, V6.block_size_range) == (
        6, "IPv6", 128, 122, (116, 128))
    assert (V4.nft, V6.nft) == ("ip", "ip6")
    assert (V4.nft_addr_type, V6.nft_addr_type) == ("ipv4_addr", "ipv6_addr")
    assert (V4.af, V6.af) == (socket.AF_INET, socket.AF_INET6)
    assert (V4.key, V6.key) == ("ipv4", "ipv6")
    assert (V4.ip_flag, V6.ip_flag) == ("-4", "-6")
    assert (V4.icmp_protocol, V6.icmp_protocol) == (1, 58)
    assert (V4.icmp_name, V6.icmp_name) == ("icmp", "icmpv6")
    assert (V4.echo_request, V4.echo_reply, V6.echo_request, V6.echo_reply) == (8, 0, 128, 129)
    assert (V4.dad, V6.dad) == (False, True)
    assert (str(V4.link_local), str(V6.link_local)) == ("169.254.0.0/16", "fe80::/10")
    assert (str(V4.unspecified), str(V6.unspecified)) == ("0.0.0.0", "::")
    assert V4.address_type is ipaddress.IPv4Address and V6.network_type is ipaddress.IPv6Network
    assert V6.interface_type is ipaddress.IPv6Interface
    assert FAMILIES == (V4, V6)


def test_families_are_values() -> None:
    assert family(4) is V4 and family(6) is V6
    assert V4 != V6 and len({V4, V6, family(4)}) == 2
    assert (repr(V6), str(V6)) == ("V6", "IPv6")
    with pytest.raises(ValueError, match="4 or 6"):
        family(5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1", V4),
        ("10.0.0.0/8", V4),
        ("10.0.0.1-10.0.0.9", V4),
        ("fd00::1", V6),
        ("::/0", V6),
        (ipaddress.ip_address("10.0.0.1"), V4),
        (ipaddress.ip_network("fd00::/64"), V6),
        (ipaddress.ip_interface("fd00::5/64"), V6),
        (4, V4),
        (6, V6),
    ],
)
def test_family_of_every_kind_of_value(value: object, expected: ipfamily.Family) -> None:
    assert family_of(value) is expected  # type: ignore[arg-type]


def test_family_of_af() -> None:
    assert family_of_af(socket.AF_INET) is V4 and family_of_af(socket.AF_INET6) is V6
    with pytest.raises(ValueError, match="neither"):
        family_of_af(socket.AF_UNIX)


def test_host_networks() -> None:
    assert V4.host_cidr("10.0.0.5") == "10.0.0.5/32"
    assert V6.host_cidr(ipaddress.ip_address("fd00::5")) == "fd00::5/128"
    assert V6.host_network("fd00::5") == ipaddress.ip_network("fd00::5/128")
    assert V4.is_host(ipaddress.ip_network("10.0.0.5/32"))
    assert not V4.is_host(ipaddress.ip_network("10.0.0.4/31"))
    assert ipfamily.is_host_cidr("10.0.0.5/32") and ipfamily.is_host_cidr("fd00::5/128")
    assert not ipfamily.is_host_cidr("fd00::/32") and not ipfamily.is_host_cidr("10.0.0.0/24")


def test_parsing_names_the_family_and_the_reason() -> None:
    assert V4.address("10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    with pytest.raises(ValueError, match="not an IPv4 address"):
        V4.address("fd00::1")
    with pytest.raises(ValueError, match="not an IPv6 CIDR"):
        V6.network("10.0.0.0/8")
    assert V6.network("fd00::1") == ipaddress.ip_network("fd00::1/128")
    with pytest.raises(ValueError, match="not an IP address"):
        ipfamily.parse_address("fe80::1%eth0")
    with pytest.raises(ValueError, match="not a valid IP address"):
        ipfamily.parse_address("10.0.0")
    with pytest.raises(ValueError, match=r"strictly masked.*did you mean 10\.0\.0\.0/24"):
        ipfamily.parse_network("10.0.0.1/24", strict=True)
    assert ipfamily.parse_network("10.0.0.1/24", strict=False) == ipaddress.ip_network("10.0.0.0/24")
    with pytest.raises(ValueError, match="prefix length 33 is more than 32"):
        ipfamily.parse_network("10.0.0.0/33", strict=False)
    with pytest.raises(ValueError, match="must be a number"):
        ipfamily.parse_network("10.0.0.0/x", strict=False)


def test_canonical_and_host_cidr_text() -> None:
    assert ipfamily.canonical_cidr("10.0.0.1") == "10.0.0.1/32"
    assert ipfamily.canonical_cidr("FD00:0::/64") == "fd00::/64"
    with pytest.raises(ValueError):
        ipfamily.canonical_cidr("10.0.0.1/24")
    assert ipfamily.canonical_cidr("10.0.0.1/24", strict=False) == "10.0.0.0/24"
    assert ipfamily.host_cidr("10.0.0.1") == ipfamily.host_cidr("10.0.0.1/32") == "10.0.0.1/32"
    assert ipfamily.host_cidr("FD00::1") == "fd00::1/128"
    with pytest.raises(ValueError, match="more than one address"):
        ipfamily.host_cidr("10.0.0.0/24")
    with pytest.raises(ValueError, match="not a valid IP address"):
        ipfamily.host_cidr("10.0.0.300")


@given(st.ip_addresses(v=6), st.sampled_from(["", "/128"]), st.booleans())
def test_ipv6_host_cidr_fast_path_is_ipaddress_canonical_form(
    addr: ipaddress.IPv6Address, suffix: str, upper: bool
) -> None:
    text = addr.exploded.upper() if upper else addr.exploded
    assert ipfamily.host_cidr(text + suffix) == f"{addr}/128"  # what ipaddress prints, mapped ones too


@pytest.mark.parametrize("text", ["::ffff:1.2.3.4", "::1.2.3.4", "fd00::1%eth0", "fd00::g", "fd00:::1", ":"])
def test_ipv6_host_cidr_edge_cases(text: str) -> None:
    try:
        expected = str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        with pytest.raises(ValueError):
            ipfamily.host_cidr(text)
        return
    if "%" in text:  # a zone is no part of an endpoint address
        with pytest.raises(ValueError):
            ipfamily.host_cidr(text)
        return
    assert ipfamily.host_cidr(text) == expected


@given(st.lists(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), min_size=2, max_size=6))
def test_text_sort_key_orders_as_sort_key(addrs: list[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> None:
    nets = [ipaddress.ip_network(a) for a in addrs]
    texts = [str(n) for n in nets]
    assert sorted(texts, key=ipfamily.text_sort_key) == [str(n) for n in sorted(nets, key=ipfamily.sort_key)]


def test_bracketed() -> None:
    assert V4.bracketed("10.0.0.1") == "10.0.0.1"
    assert V6.bracketed(ipaddress.ip_address("fd00::1")) == "[fd00::1]"


def test_sort_key_orders_numerically_ipv4_first() -> None:
    nets = [ipaddress.ip_network(n) for n in ("fd00::/64", "10.0.0.0/24", "9.0.0.0/8", "10.0.0.0/16")]
    assert [str(n) for n in sorted(nets, key=ipfamily.sort_key)] == [
        "9.0.0.0/8", "10.0.0.0/16", "10.0.0.0/24", "fd00::/64"]
    addrs = [ipaddress.ip_address(a) for a in ("::1", "10.0.0.10", "10.0.0.9")]
    assert [str(a) for a in sorted(addrs, key=ipfamily.sort_key)] == ["10.0.0.9", "10.0.0.10", "::1"]


def test_containment_across_families_is_false_not_an_error() -> None:
    v4net, v6net = ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::/0")
    assert ipfamily.address_in(ipaddress.ip_address("10.1.2.3"), v4net)
    assert not ipfamily.address_in(ipaddress.ip_address("10.1.2.3"), v6net)
    assert ipfamily.network_within(ipaddress.ip_network("10.1.0.0/16"), v4net)
    assert not ipfamily.network_within(ipaddress.ip_network("10.1.0.0/16"), v6net)
    assert not ipfamily.network_within(v4net, ipaddress.ip_network("10.1.0.0/16"))
    assert ipfamily.num_addresses(ipaddress.ip_network("fd00::/122")) == 64


_addresses = st.one_of(
    st.ip_addresses(v=4).map(lambda a: (V4, a)), st.ip_addresses(v=6).map(lambda a: (V6, a))
)


@given(_addresses)
def test_text_and_value_agree_on_the_family(pair: tuple[ipfamily.Family, ipfamily.IPAddress]) -> None:
    fam, addr = pair
    assert family_of(str(addr)) is family_of(addr) is fam
    assert family_of(fam.host_cidr(addr)) is fam
    assert ipfamily.host_cidr(str(addr)) == fam.host_cidr(addr) == str(fam.host_network(addr))
    assert ipfamily.canonical_cidr(str(addr)) == fam.host_cidr(addr)
    assert fam.is_host(fam.host_network(addr))
