"""Addresses of the host's interfaces, for host endpoints that give `expectedIPs` but no interfaceName.

Calico enforces such a HostEndpoint on the host interface that carries one of its expected IPs;
the policy manager asks this driver which interface that is.

Protocol `HostAddressDriver`: `interface_addresses()` -> {interface name: frozenset of canonical
addresses} for every interface of the namespace (IPv4 and IPv6, any scope). Raises `KernelError`
when the kernel cannot be asked.

Real implementation `NetlinkHostAddresses(netns=None)`: one RTM_GETADDR dump and one RTM_GETLINK
dump (for the names) on an rtnetlink socket (`tortie.kernel.rtnl.Rtnl`) opened for the call, in the
namespace (a `NetnsWorker` when one is named; the calling thread's own namespace otherwise). Rare
calls (a host endpoint changes, an interface comes or goes, the periodic refresh), so nothing is
kept open.
`StaticHostAddresses(mapping)` serves tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from tortie.common.errors import KernelError, NetlinkError
from tortie.kernel.netns import NetnsWorker
from tortie.kernel.rtnl import Rtnl


class HostAddressDriver(Protocol):
    def interface_addresses(self) -> dict[str, frozenset[str]]: ...


def _read() -> dict[str, frozenset[str]]:
    with Rtnl() as rtnl:
        names = {link.ifindex: link.name for link in rtnl.links()}
        found: dict[str, set[str]] = {}
        for addr in rtnl.addrs():
            name = names.get(addr.ifindex)
            if name is not None:
                found.setdefault(name, set()).add(str(addr.address.ip))
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
        except NetlinkError as exc:
            raise KernelError(f"listing interface addresses failed: {exc}", exc.errno) from exc


class StaticHostAddresses:
    def __init__(self, addresses: Mapping[str, frozenset[str] | set[str]] | None = None) -> None:
        self.addresses = {name: frozenset(addrs) for name, addrs in (addresses or {}).items()}
        self.calls = 0

    def interface_addresses(self) -> dict[str, frozenset[str]]:
        self.calls += 1
        return dict(self.addresses)
