"""IP family as a value: the one place that knows how IPv4 and IPv6 differ.

Code that would branch on `version == 6`, `":" in text`, "/32" vs "/128" or "ip" vs "ip6" asks a
`Family` instead:

    fam = family_of(value)         # an address, network, interface, address/CIDR text, or 4 / 6
    fam.host_prefix                # 32 / 128
    fam.host_cidr(addr)            # "10.0.0.5/32" / "fd00::5/128"
    fam.default_block_size         # 26 / 122 (Calico's IPPool blockSize default)
    fam.nft                        # "ip" / "ip6" (nftables payload protocol, address family)
    fam.icmp_protocol, fam.echo_request   # 1, 8 / 58, 128

Contract:

* `V4` and `V6` are the only instances; `FAMILIES` lists them in the order reports sort by (IPv4
  first). A `Family` is hashable and compares by identity of its version.
* `family_of` on text looks only for a ':' (an IPv6 address always has one, an IPv4 address, CIDR or
  range never does); it does not validate. Parsing lives in `Family.address` / `Family.network` and
  `parse_address` / `parse_network`, which raise ValueError with the reason.
* `IPAddress`, `IPNetwork`, `IPInterface` are the type aliases every module uses.

Stdlib only: the CNI launcher imports it.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True, eq=False, repr=False)
class Family:
    """One IP family. See the module docstring."""

    version: int  # 4 / 6
    name: str  # "IPv4" / "IPv6"
    host_prefix: int  # address length in bits: 32 / 128 (a host route's prefix length)
    address_type: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
    network_type: type[ipaddress.IPv4Network] | type[ipaddress.IPv6Network]
    interface_type: type[ipaddress.IPv4Interface] | type[ipaddress.IPv6Interface]
    default_block_size: int  # Calico IPPool blockSize default: 26 / 122
    block_size_range: tuple[int, int]  # Calico's allowed blockSize: 20-32 / 116-128
    link_local: IPNetwork  # 169.254.0.0/16 / fe80::/10
    unspecified: IPAddress  # 0.0.0.0 / ::
    af: int  # socket.AF_INET / socket.AF_INET6 (netlink and socket address family)
    nft: str  # "ip" / "ip6": nftables payload protocol and table family
    nft_addr_type: str  # "ipv4_addr" / "ipv6_addr": nftables set element type
    key: str  # "ipv4" / "ipv6": Calico IPAM key segment, BIRD channel, /proc/sys/net directory
    ip_flag: str  # "-4" / "-6": iproute2's family option
    icmp_protocol: int  # 1 (ICMP) / 58 (ICMPv6)
    icmp_name: str  # "icmp" / "icmpv6": the protocol's name (nft, `tortie policy trace`)
    echo_request: int  # ICMP type of an echo request: 8 (RFC 792) / 128 (RFC 4443)
    echo_reply: int  # 0 / 129
    dad: bool  # duplicate address detection on new addresses (IPv6 only; `nodad` skips it)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Family) and other.version == self.version

    def __hash__(self) -> int:
        return self.version

    def __repr__(self) -> str:
        return f"V{self.version}"

    def __str__(self) -> str:
        return self.name

    def address(self, text: str) -> IPAddress:
        """`text` as an address of this family (ValueError naming the family otherwise)."""
        return parse_address(text, self)

    def network(self, text: str, *, strict: bool = True) -> IPNetwork:
        """`text` as a network of this family; a bare address is a host network."""
        return parse_network(text, strict=strict, family=self)

    def host_network(self, addr: IPAddress | str) -> IPNetwork:
        """The single-address network of `addr` (10.0.0.5 -> 10.0.0.5/32)."""
        return ipaddress.ip_network(f"{addr}/{self.host_prefix}")

    def host_cidr(self, addr: IPAddress | str) -> str:
        """Canonical text of `addr`'s host network ("10.0.0.5/32", "fd00::5/128"); no validation."""
        return f"{addr}/{self.host_prefix}"

    def is_host(self, net: IPNetwork) -> bool:
        """True when `net` holds exactly one address."""
        return net.prefixlen == self.host_prefix

    def bracketed(self, addr: IPAddress | str) -> str:
        """`addr` as it stands before ":port" in a URL or a dnsmasq option ("[fd00::1]", "10.0.0.1")."""
        return f"[{addr}]" if self.version == 6 else str(addr)


V4: Final = Family(
    version=4, name="IPv4", host_prefix=32, address_type=ipaddress.IPv4Address,
    network_type=ipaddress.IPv4Network, interface_type=ipaddress.IPv4Interface,
    default_block_size=26, block_size_range=(20, 32), link_local=ipaddress.IPv4Network("169.254.0.0/16"),
    unspecified=ipaddress.IPv4Address("0.0.0.0"), af=socket.AF_INET, nft="ip", nft_addr_type="ipv4_addr",
    key="ipv4", ip_flag="-4", icmp_protocol=1, icmp_name="icmp", echo_request=8, echo_reply=0, dad=False,
)
V6: Final = Family(
    version=6, name="IPv6", host_prefix=128, address_type=ipaddress.IPv6Address,
    network_type=ipaddress.IPv6Network, interface_type=ipaddress.IPv6Interface,
    default_block_size=122, block_size_range=(116, 128), link_local=ipaddress.IPv6Network("fe80::/10"),
    unspecified=ipaddress.IPv6Address("::"), af=socket.AF_INET6, nft="ip6", nft_addr_type="ipv6_addr",
    key="ipv6", ip_flag="-6", icmp_protocol=58, icmp_name="icmpv6", echo_request=128, echo_reply=129,
    dad=True,
)
FAMILIES: Final = (V4, V6)
_BY_VERSION: Final = {4: V4, 6: V6}
_BY_AF: Final[dict[int, Family]] = {int(socket.AF_INET): V4, int(socket.AF_INET6): V6}


def family(version: int) -> Family:
    """The family of IP version 4 or 6 (ValueError for anything else)."""
    try:
        return _BY_VERSION[version]
    except KeyError:
        raise ValueError(f"IP version must be 4 or 6, not {version!r}") from None


def family_of(value: IPAddress | IPNetwork | IPInterface | str | int) -> Family:
    """The family of an address, network, interface, address/CIDR/range text, or version number."""
    if isinstance(value, str):
        return V6 if ":" in value else V4
    if isinstance(value, int):
        return family(value)
    return V6 if value.version == 6 else V4


def family_of_af(af: int) -> Family:
    """The family of a socket / netlink address family number (AF_INET, AF_INET6)."""
    try:
        return _BY_AF[af]
    except KeyError:
        raise ValueError(f"address family {af} is neither AF_INET nor AF_INET6") from None


def parse_address(text: str, family: Family | None = None) -> IPAddress:
    """An address (no prefix length, no zone), of `family` if given; ValueError with the reason."""
    if "%" in text or "/" in text:
        raise ValueError(f"{text!r} is not an IP address")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IP address") from None
    if family is not None and addr.version != family.version:
        raise ValueError(f"{text!r} is not an {family.name} address")
    return addr


def parse_network(text: str, *, strict: bool, family: Family | None = None) -> IPNetwork:
    """A CIDR, of `family` if given; a bare address means its host network. `strict` rejects host
    bits (with a hint). ValueError with the reason."""
    addr_text, slash, plen = text.partition("/")
    if slash and not plen.isdigit():
        raise ValueError(f"{text!r} is not a valid CIDR: the prefix length must be a number")
    addr = parse_address(addr_text)
    if family is not None and addr.version != family.version:
        raise ValueError(f"{text!r} is not an {family.name} CIDR")
    bits = addr.max_prefixlen
    prefix = int(plen) if slash else bits
    if prefix > bits:
        raise ValueError(f"{text!r} is not a valid CIDR: prefix length {prefix} is more than {bits}")
    net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    if strict and net.network_address != addr:
        raise ValueError(f"{text!r} is not strictly masked: host bits are set (did you mean {net}?)")
    return net


def canonical_cidr(text: str, *, strict: bool = True) -> str:
    """Canonical text of a CIDR or bare address: "10.0.0.1" -> "10.0.0.1/32", "FD00::/64" ->
    "fd00::/64". With `strict`, host bits set are an error (ValueError)."""
    return str(ipaddress.ip_network(text, strict=strict))


def host_cidr(text: str) -> str:
    """Canonical host network of a single address given bare or with its full-length prefix
    ("10.0.0.1" and "10.0.0.1/32" alike); ValueError when it is not one address.

    Fast paths (a dual-stack cluster parses two addresses per endpoint at start-up): IPv4 through
    `IPv4Address`; IPv6 through the C library's inet_pton/inet_ntop, whose text is RFC 5952's
    canonical form as `ipaddress` prints it (lower case, the longest run of two or more zero groups
    as "::") except for addresses with an embedded IPv4 part, which take the general path."""
    addr, slash, length = text.partition("/")
    if ":" not in addr and (not slash or length == "32") and addr.count(".") == 3:  # IPv4 fast path
        try:
            return f"{ipaddress.IPv4Address(addr)}/32"
        except ValueError:
            raise ValueError(f"{text!r} is not a valid IP address") from None
    if ":" in addr and (not slash or length == "128") and "." not in addr and "%" not in addr:
        try:
            shown = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, addr))
        except OSError:
            raise ValueError(f"{text!r} is not a valid IP address") from None
        if "." not in shown:  # inet_ntop writes IPv4-mapped/compatible addresses dotted
            return f"{shown}/128"
    net = parse_network(text, strict=False)
    if net.prefixlen != net.max_prefixlen:
        raise ValueError(f"{net} holds more than one address")
    return str(net)


def is_host_cidr(text: str) -> bool:
    """True for canonical host-network text ("10.0.0.1/32", "fd00::1/128"); no validation."""
    return text.endswith("/128" if ":" in text else "/32")


def text_sort_key(cidr: str) -> tuple[int, bytes, int]:
    """`sort_key` of canonical CIDR text (IPv4 first, numeric, shorter prefixes first) without
    building ipaddress objects."""
    addr, _slash, length = cidr.partition("/")
    fam = family_of(addr)
    return fam.version, socket.inet_pton(fam.af, addr), int(length or fam.host_prefix)


def sort_key(value: IPAddress | IPNetwork) -> tuple[int, int, int]:
    """Numeric order, IPv4 before IPv6, shorter prefixes first at the same address."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value.version, int(value), value.max_prefixlen
    return value.version, int(value.network_address), value.prefixlen


def address_in(addr: IPAddress, net: IPNetwork) -> bool:
    """`addr in net`, False (not an error) across families."""
    return addr.version == net.version and addr in net


def network_within(inner: IPNetwork, outer: IPNetwork) -> bool:
    """True when `inner` lies entirely inside `outer` (False across families)."""
    return (
        inner.version == outer.version
        and int(outer.network_address) <= int(inner.network_address)
        and int(inner.broadcast_address) <= int(outer.broadcast_address)
    )


def num_addresses(net: IPNetwork) -> int:
    """How many addresses `net` covers."""
    return 1 << (net.max_prefixlen - net.prefixlen)


__all__ = [
    "FAMILIES",
    "V4",
    "V6",
    "Family",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "address_in",
    "canonical_cidr",
    "family",
    "family_of",
    "family_of_af",
    "host_cidr",
    "is_host_cidr",
    "network_within",
    "num_addresses",
    "parse_address",
    "parse_network",
    "sort_key",
    "text_sort_key",
]
