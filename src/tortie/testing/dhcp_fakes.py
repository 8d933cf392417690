"""Fakes of the DHCP service's two seams with the host, for unit tests of `tortie.dhcp.service`.

    FakeAliasInterface   stands for `IpAliasInterface`: `addresses` holds what `ensure` was last given
                         (canonical text), `calls` how often it was called
    FakeDnsmasq          stands for `DnsmasqProcess`: `apply` takes the same decisions (started,
                         restarted, reloaded, stopped, unchanged) and records them in `actions`
"""

from __future__ import annotations

from collections.abc import Sequence

from tortie.dhcp.alias_interface import canonical_addresses
from tortie.dhcp.dnsmasq_config import DnsmasqConfig


class FakeAliasInterface:
    def __init__(self, name: str = "tdhcp0") -> None:
        self.name = name
        self.addresses: set[str] = set()
        self.calls = 0

    def ensure(self, addresses: Sequence[str]) -> None:
        self.calls += 1
        self.addresses = canonical_addresses(addresses)


class FakeDnsmasq:
    def __init__(self) -> None:
        self.running = False
        self.argv: list[str] | None = None
        self.config: DnsmasqConfig | None = None
        self.actions: list[str] = []

    def apply(self, config: DnsmasqConfig, argv: list[str]) -> str:
        if not config.serves_anything:
            action = "stopped" if self.running else "unchanged"
            self.running = False
            self.argv = None
        elif not self.running or argv != self.argv:
            action = "restarted" if self.running else "started"
            self.running, self.argv = True, list(argv)
        elif self.config is not None and (config.hosts, config.opts) != (self.config.hosts, self.config.opts):
            action = "reloaded"
        else:
            action = "unchanged"
        self.config = config
        self.actions.append(action)
        return action

    def alive(self) -> bool:
        return self.running

    def stop(self) -> None:
        self.running = False
