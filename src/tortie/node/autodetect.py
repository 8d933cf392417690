"""BGP address autodetection: which of this host's addresses goes into `Node.spec.bgp.ipv4Address`.

Methods (the syntax of Calico's IP_AUTODETECTION_METHOD, reference §1.6):

    first-found              the first usable address on an interface not excluded by default
    interface=REGEX[,REGEX]  the first usable address on an interface whose name matches a regex
    skip-interface=REGEX,..  like first-found, also skipping interfaces that match a regex
    can-reach=DEST           the source address the kernel picks to reach DEST (an IP or a host name)
    cidr=CIDR[,CIDR]         the first usable address inside one of the CIDRs

Inputs: a parsed `Method`, the IP version, the host's interfaces (`InterfaceAddresses`, in kernel
index order, as `read_interfaces()` returns them from `ip -j addr show`) and, for can-reach, a
`source_for(dest)` lookup. Output: the address WITH its prefix length (`IPv4Interface` /
`IPv6Interface`; the prefix is what Calico's CrossSubnet logic compares), or None when nothing fits.

Rules shared by every method: loopback, link-local (169.254/16, fe80::/10) and multicast addresses are
never chosen; interfaces are visited in kernel index order and addresses in the order the kernel
lists them. Regexes match anywhere in the name (Calico uses Go's `MatchString`), so anchor them
(`interface=^eth0$`) to match one name exactly. `first-found` skips Calico's default exclusion list
plus tortie's own workload interfaces (`tort*`), and down interfaces.

`detect()` is pure; `read_interfaces()` and `kernel_source_for()` are the thin I/O edges.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tortie.common.errors import UserError
from tortie.common.ipfamily import Family, IPAddress, IPInterface, address_in, family_of

# Calico's DEFAULT_INTERFACES_TO_EXCLUDE (node/pkg/lifecycle/startup/autodetection) plus our own prefix.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo$",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^vxlan.calico.*",
    "^vxlan-v6.calico.*",
    "^wireguard.cali.*",
    "^wg-v6.cali.*",
    "^nodelocaldns.*",
    "^tort.*",
)

METHODS = ("first-found", "interface", "skip-interface", "can-reach", "cidr")


class AutodetectError(UserError):
    """An autodetection method is malformed, or found no address."""


@dataclass(frozen=True)
class Method:
    kind: str
    """One of METHODS."""
    values: tuple[str, ...] = ()
    """Regexes (interface, skip-interface), CIDRs (cidr) or one destination (can-reach)."""

    def __str__(self) -> str:
        return self.kind if not self.values else f"{self.kind}={','.join(self.values)}"


@dataclass(frozen=True)
class InterfaceAddresses:
    name: str
    up: bool
    addresses: tuple[IPInterface, ...]


def parse_method(text: str) -> Method:
    """`first-found`, `interface=eth.*`, `cidr=10.0.0.0/8,192.168.0.0/16`, ... (AutodetectError if bad)."""
    raw = text.strip()
    kind, sep, arg = raw.partition("=")
    kind = kind.strip().lower()
    if kind not in METHODS:
        raise AutodetectError(
            f"unknown IP autodetection method {raw!r}; expected one of: first-found, "
            "interface=REGEX, skip-interface=REGEX, can-reach=DEST, cidr=CIDR"
        )
    if kind == "first-found":
        if sep:
            raise AutodetectError(f"IP autodetection method {raw!r}: first-found takes no value")
        return Method(kind)
    values = tuple(v.strip() for v in arg.split(",") if v.strip())
    if not sep or not values:
        raise AutodetectError(f"IP autodetection method {raw!r}: {kind} needs a value ({kind}=...)")
    if kind in ("interface", "skip-interface"):
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise AutodetectError(
                    f"IP autodetection method {raw!r}: bad regex {value!r}: {exc}"
                ) from None
    elif kind == "cidr":
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise AutodetectError(f"IP autodetection method {raw!r}: {value!r} is not a CIDR") from None
    elif len(values) != 1:
        raise AutodetectError(f"IP autodetection method {raw!r}: can-reach takes one destination")
    return Method(kind, values)


def usable(address: IPInterface) -> bool:
    ip = address.ip
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(re.search(p, name) for p in patterns)


def detect(
    method: Method,
    fam: Family,
    interfaces: Sequence[InterfaceAddresses],
    source_for: Callable[[str], IPAddress | None] | None = None,
) -> IPInterface | None:
    """The address `method` picks among `interfaces` for the IP family `fam`; None if none fits."""
    candidates = [
        (iface, addr)
        for iface in interfaces
        for addr in iface.addresses
        if family_of(addr) is fam and usable(addr)
    ]
    if method.kind == "first-found":
        return next((a for i, a in candidates if i.up and not _matches(i.name, DEFAULT_EXCLUDES)), None)
    if method.kind == "skip-interface":
        skip = (*DEFAULT_EXCLUDES, *method.values)
        return next((a for i, a in candidates if i.up and not _matches(i.name, skip)), None)
    if method.kind == "interface":
        return next((a for i, a in candidates if _matches(i.name, method.values)), None)
    if method.kind == "cidr":
        nets = [ipaddress.ip_network(v, strict=False) for v in method.values]
        return next((a for _i, a in candidates if any(address_in(a.ip, n) for n in nets)), None)
    # can-reach: the kernel's choice of source address, then its prefix length from the interface.
    if source_for is None:
        source_for = kernel_source_for
    source = source_for(method.values[0])
    if source is None or family_of(source) is not fam:
        return None
    return next((a for _i, a in candidates if a.ip == source), None)


def kernel_source_for(dest: str) -> IPAddress | None:
    """The local address the kernel would use towards `dest` (a UDP `connect` sends no packet)."""
    try:
        infos = socket.getaddrinfo(dest, 80, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    for family, _type, _proto, _canon, sockaddr in infos:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect(sockaddr)
            except OSError:
                continue
            return ipaddress.ip_address(str(sock.getsockname()[0]).split("%")[0])
    return None


def parse_ip_addr_json(text: str) -> list[InterfaceAddresses]:
    """`ip -j addr show` output -> interfaces in kernel index order."""
    out = []
    for link in sorted(json.loads(text or "[]"), key=lambda item: int(item.get("ifindex", 0))):
        addresses: list[IPInterface] = []
        for info in link.get("addr_info", []):
            if info.get("family") not in ("inet", "inet6") or "local" not in info:
                continue
            addresses.append(ipaddress.ip_interface(f"{info['local']}/{info.get('prefixlen', 32)}"))
        flags = link.get("flags", [])
        out.append(InterfaceAddresses(str(link.get("ifname", "")), "UP" in flags, tuple(addresses)))
    return out


def read_interfaces() -> list[InterfaceAddresses]:
    """This network namespace's interfaces and addresses (iproute2)."""
    try:
        proc = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise AutodetectError(f"cannot list this host's addresses (ip -j addr show): {exc}") from exc
    return parse_ip_addr_json(proc.stdout)


def autodetect(method_text: str, fam: Family) -> IPInterface:
    """Parse, read the kernel, detect; AutodetectError naming the method when nothing fits."""
    method = parse_method(method_text)
    found = detect(method, fam, read_interfaces())
    if found is None:
        raise AutodetectError(f"IP autodetection ({method}) found no {fam.name} address on this host")
    return found
