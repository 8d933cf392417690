"""Addresses of the host's interfaces, for host endpoints that give `expectedIPs` but no interfaceName.

Calico enforces such a HostEndpoint on the host interface that carries one of its expected IPs;
the policy manager asks this driver which interface that is.

Protocol `HostAddressDriver`: `interface_addresses()` -> {interface name: frozenset of canonical
addresses} for every interface of the namespace (IPv4 and IPv6, any scope). Raises `KernelError`
when the kernel cannot be asked.

Real implementation `NetlinkHostAddresses(netns=None)`: one RTM_GETADDR dump and one RTM_GETLINK
dump (for the names) on a raw rtnetlink socket opened for the call, in the namespace (a
`NetnsWorker` when one is named; the calling thread's own namespace otherwise). Rare calls (a host
endpoint changes, an interface comes or goes, the periodic refresh), so nothing is kept open.
`StaticHostAddresses(mapping)` serves tests.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Mapping
from typing import Protocol

from tortie.dataplane.drivers.errors import KernelError
from tortie.dataplane.drivers.netns_worker import NetnsWorker
from tortie.dataplane.drivers.rtnetlink import RtnlSocket, parse_attrs

RTM_NEWADDR = 20
RTM_GETADDR = 22
IFA_ADDRESS = 1
IFA_LOCAL = 2
_IFADDRMSG = struct.Struct("=BBBBI")


class HostAddressDriver(Protocol):
    def interface_addresses(self) -> dict[str, frozenset[str]]: ...


class _AddressSocket(RtnlSocket):
    """An rtnetlink socket that can also dump addresses."""

    def dump_addresses(self) -> list[tuple[int, str]]:
        """(interface index, address) of every address in the namespace."""
        body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        out = []
        for kind, data, start, end in self._dump(RTM_GETADDR, body):
            if kind != RTM_NEWADDR:
                continue
            family, _plen, _flags, _scope, index = _IFADDRMSG.unpack_from(data, start)
            attrs = parse_attrs(data, start + _IFADDRMSG.size, end)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is not None and family in (socket.AF_INET, socket.AF_INET6):
                out.append((index, str(ipaddress.ip_address(raw))))
        return out


def _read() -> dict[str, frozenset[str]]:
    sock = _AddressSocket()
    try:
        names = {link.index: link.name for link in sock.dump_links()}
        found: dict[str, set[str]] = {}
        for index, addr in sock.dump_addresses():
            name = names.get(index)
            if name is not None:
                found.setdefault(name, set()).add(addr)
    finally:
        sock.close()
    return {name: frozenset(addrs) for name, addrs in found.items()}


class NetlinkHostAddresses:
    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def interface_addresses(self) -> dict[str, frozenset[str]]:
        try:
            if self.netns is None:
                return _read()
            worker = NetnsWorker(self.netns, name="host-addresses")
            try:
                return worker.call(_read)
            finally:
                worker.close()
        except OSError as exc:
            raise KernelError(f"listing interface addresses failed: {exc}", exc.errno) from exc


class StaticHostAddresses:
    def __init__(self, addresses: Mapping[str, frozenset[str] | set[str]] | None = None) -> None:
        self.addresses = {name: frozenset(addrs) for name, addrs in (addresses or {}).items()}
        self.calls = 0

    def interface_addresses(self) -> dict[str, frozenset[str]]:
        self.calls += 1
        return dict(self.addresses)
