"""BGP address autodetection (`tortie.node.autodetect`): method parsing and the pure choice."""

from __future__ import annotations

import ipaddress
import json

import pytest

from tortie.common.ipfamily import V4, V6
from tortie.node.autodetect import (
    AutodetectError,
    InterfaceAddresses,
    Method,
    detect,
    parse_ip_addr_json,
    parse_method,
)


def iface(name: str, *addresses: str, up: bool = True) -> InterfaceAddresses:
    return InterfaceAddresses(name, up, tuple(ipaddress.ip_interface(a) for a in addresses))


HOST = [
    iface("lo", "127.0.0.1/8", "::1/128"),
    iface("docker0", "172.17.0.1/16"),
    iface("tort1234567890a"),
    iface("eth0", "169.254.3.3/16", "10.0.0.5/24", "fd00::5/64", "fe80::1/64"),
    iface("eth1", "192.168.7.9/24", "2001:db8::9/64"),
    iface("ens3", "203.0.113.4/28", up=False),
]


def test_parse_methods() -> None:
    assert parse_method("first-found") == Method("first-found")
    assert parse_method(" interface=eth.*,ens.* ") == Method("interface", ("eth.*", "ens.*"))
    assert parse_method("skip-interface=eth0") == Method("skip-interface", ("eth0",))
    assert parse_method("can-reach=8.8.8.8") == Method("can-reach", ("8.8.8.8",))
    assert parse_method("cidr=10.0.0.0/8,192.168.0.0/16") == Method("cidr", ("10.0.0.0/8", "192.168.0.0/16"))
    assert str(parse_method("cidr=10.0.0.0/8")) == "cidr=10.0.0.0/8"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "last-found",
        "first-found=eth0",
        "interface=",
        "interface=(",
        "cidr=10.0.0.0/33",
        "cidr=nope",
        "can-reach=a,b",
    ],
)
def test_bad_methods_are_rejected_with_the_method_named(text: str) -> None:
    with pytest.raises(AutodetectError) as err:
        parse_method(text)
    assert repr(text.strip()) in str(err.value) or "unknown" in str(err.value)


def test_first_found_skips_excluded_down_and_unusable() -> None:
    assert detect(parse_method("first-found"), V4, HOST) == ipaddress.ip_interface("10.0.0.5/24")
    assert detect(parse_method("first-found"), V6, HOST) == ipaddress.ip_interface("fd00::5/64")
    only_docker = [HOST[0], HOST[1], HOST[5]]
    assert detect(parse_method("first-found"), V4, only_docker) is None


def test_interface_regex_matches_anywhere_unless_anchored() -> None:
    assert detect(parse_method("interface=eth1"), V4, HOST) == ipaddress.ip_interface("192.168.7.9/24")
    assert detect(parse_method("interface=th"), V4, HOST) == ipaddress.ip_interface("10.0.0.5/24")
    assert detect(parse_method("interface=^th$"), V4, HOST) is None
    # the interface method takes a down interface too (the operator named it)
    assert detect(parse_method("interface=ens3"), V4, HOST) == ipaddress.ip_interface("203.0.113.4/28")
    assert detect(parse_method("interface=eth1"), V6, HOST) == ipaddress.ip_interface("2001:db8::9/64")


def test_skip_interface_and_cidr() -> None:
    assert detect(parse_method("skip-interface=eth0"), V4, HOST) == ipaddress.ip_interface("192.168.7.9/24")
    assert detect(parse_method("cidr=192.168.0.0/16"), V4, HOST) == ipaddress.ip_interface("192.168.7.9/24")
    assert detect(parse_method("cidr=10.9.0.0/16,192.168.7.0/24"), V4, HOST) == ipaddress.ip_interface(
        "192.168.7.9/24"
    )
    assert detect(parse_method("cidr=2001:db8::/32"), V6, HOST) == ipaddress.ip_interface("2001:db8::9/64")
    assert detect(parse_method("cidr=172.16.0.0/12"), V4, HOST[2:]) is None  # docker0 is not in the list


def test_can_reach_takes_the_kernel_source_and_finds_its_prefix() -> None:
    asked: list[str] = []

    def source_for(dest: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        asked.append(dest)
        return ipaddress.ip_address("192.168.7.9")

    got = detect(parse_method("can-reach=192.168.7.1"), V4, HOST, source_for)
    assert got == ipaddress.ip_interface("192.168.7.9/24") and asked == ["192.168.7.1"]
    assert detect(parse_method("can-reach=x"), V4, HOST, lambda _d: None) is None
    assert detect(parse_method("can-reach=x"), V6, HOST, lambda _d: ipaddress.ip_address("10.0.0.5")) is None


def test_parse_ip_addr_json_orders_by_index_and_keeps_prefixes() -> None:
    text = json.dumps(
        [
            {
                "ifindex": 3,
                "ifname": "eth1",
                "flags": ["BROADCAST", "UP"],
                "addr_info": [{"family": "inet", "local": "192.168.7.9", "prefixlen": 24}],
            },
            {
                "ifindex": 1,
                "ifname": "lo",
                "flags": ["LOOPBACK", "UP"],
                "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}],
            },
            {
                "ifindex": 2,
                "ifname": "eth0",
                "flags": ["BROADCAST"],
                "addr_info": [{"family": "inet6", "local": "fd00::5", "prefixlen": 64}],
            },
        ]
    )
    got = parse_ip_addr_json(text)
    assert [i.name for i in got] == ["lo", "eth0", "eth1"]
    assert got[1] == iface("eth0", "fd00::5/64", up=False)
    assert got[2].addresses == (ipaddress.ip_interface("192.168.7.9/24"),)
