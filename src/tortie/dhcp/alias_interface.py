"""The alias interface that holds the served subnets' gateway addresses (in this network namespace).

dnsmasq needs an interface with an address in each subnet it serves; the VMs' taps carry no
address (routed model, reference §8.6). The alias is a port-less Linux bridge (this kernel has no
`dummy` driver) named e.g. `tdhcp0`, never one of the agent's workload prefixes. Each gateway is
added with `noprefixroute`, so the host gains the gateway as a local address (VMs resolve their
default gateway by ARP to the host) but no subnet route: traffic to other VMs still follows the
agent's /32 routes and BGP.

`IpAliasInterface.ensure(addresses)` creates the bridge if missing, brings it up and makes its
global addresses exactly `addresses` (adds missing, removes others); it shells out to iproute2
(`ip -j`) and raises `DataplaneError` with the command's stderr on failure. Its fake
(`tortie.testing.dhcp_fakes.FakeAliasInterface`) records the same for unit tests. The interface is
left in place on exit: VMs keep using the gateway address while the service restarts.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence
from typing import Protocol

from tortie.common.errors import DataplaneError
from tortie.common.ipfamily import family_of


class AliasInterface(Protocol):
    name: str

    def ensure(self, addresses: Sequence[str]) -> None: ...


def canonical_addresses(addresses: Sequence[str]) -> set[str]:
    """Interface addresses (address/prefix) in canonical text."""
    return {str(ipaddress.ip_interface(a)) for a in addresses}


class IpAliasInterface:
    def __init__(self, name: str = "tdhcp0") -> None:
        self.name = name

    @staticmethod
    def _ip(*args: str) -> str:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise DataplaneError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def _exists(self) -> bool:
        proc = subprocess.run(["ip", "link", "show", "dev", self.name], capture_output=True, text=True,
                              timeout=30, check=False)
        return proc.returncode == 0

    def current(self) -> set[str]:
        data = json.loads(self._ip("-j", "addr", "show", "dev", self.name) or "[]")
        out: set[str] = set()
        for link in data:
            for info in link.get("addr_info", []):
                if info.get("scope") == "global":
                    out.add(str(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")))
        return out

    def ensure(self, addresses: Sequence[str]) -> None:
        if not self._exists():
            self._ip("link", "add", self.name, "type", "bridge")
        self._ip("link", "set", self.name, "up")
        wanted = canonical_addresses(addresses)
        have = self.current()
        for addr in sorted(have - wanted):
            self._ip("addr", "del", addr, "dev", self.name)
        for addr in sorted(wanted - have):
            extra = ["nodad"] if family_of(addr).dad else []
            self._ip("addr", "add", addr, "dev", self.name, "noprefixroute", *extra)
