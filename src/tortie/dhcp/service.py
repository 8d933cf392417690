"""`tortie dhcp run`: DHCP for this host's VMs, configured from the datastore (no Neutron RPC).

    datastore --Syncer--> WorkloadEndpoints (all namespaces) + /calico/dhcp/v2/<region>/subnet/*
              --> view (this host's endpoints with a MAC; subnet records)
              --> dnsmasq_config.render (pure) --> alias interface addresses (gateways)
                                               --> dnsmasq: start / SIGHUP / restart / stop

One service and one dnsmasq per host, run in the host's network namespace. Nothing is applied
before the first complete listing (InSync); after that, changes are applied at most every
`min_apply_interval` seconds (coalescing bursts), and dnsmasq is checked on every loop so a
crashed dnsmasq is started again. Invalid endpoint or subnet objects are skipped with a warning.

MTU: with `mtu_file` set (the agent's MTU file, `tortie.common.mtu_file`), each subnet's VMs are
told the smaller of their network's MTU and the number in the file. The file is checked on every
loop by `os.stat` (re-read only when its inode, size or mtime changed) and a changed value re-renders
the options file (dnsmasq reloads with SIGHUP, as for any options change) and, when IPv6 subnets
are served, the router advertisements' MTU (a command-line option: dnsmasq restarts); a missing or
unusable file means "no workload MTU" (the network's MTU alone).
`stop()` (or SIGTERM via the CLI) stops dnsmasq; the alias interface stays (see alias_interface).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tortie.common.errors import TortieError
from tortie.common.mtu_file import read_mtu_file
from tortie.datastore.api import Datastore
from tortie.datastore.syncer import Delete, InSync, Syncer, SyncEvent, Update
from tortie.dhcp.alias_interface import AliasInterface, IpAliasInterface
from tortie.dhcp.dnsmasq_config import (
    DEFAULT_LEASE_SECONDS,
    DnsmasqConfig,
    DnsmasqPaths,
    LocalEndpoint,
    command,
    endpoint_from_wire,
    render,
)
from tortie.dhcp.dnsmasq_process import DnsmasqProcess, paths_in
from tortie.dhcp.records import DhcpSubnet, subnet_prefix
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)


class DnsmasqRunner(Protocol):
    def apply(self, config: DnsmasqConfig, argv: list[str]) -> str: ...

    def alive(self) -> bool: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class DhcpOptions:
    hostname: str
    state_dir: Path
    region: str = ""
    interface_prefixes: tuple[str, ...] = ("tap",)
    alias_interface: str = "tdhcp0"
    dnsmasq: str = "dnsmasq"
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    min_apply_interval: float = 0.2
    mtu_file: str = ""
    """The agent's MTU file; "" = none (VMs get their network's MTU only)."""


@dataclass
class _View:
    endpoints: dict[str, LocalEndpoint] = field(default_factory=dict)
    subnets: dict[str, DhcpSubnet] = field(default_factory=dict)


class DhcpService:
    def __init__(self, ds: Datastore, options: DhcpOptions, *, alias: AliasInterface | None = None,
                 runner: DnsmasqRunner | None = None, paths: DnsmasqPaths | None = None) -> None:
        self.ds = ds
        self.options = options
        options.state_dir.mkdir(parents=True, exist_ok=True)
        self.paths = paths or paths_in(options.state_dir)
        self.alias = alias or IpAliasInterface(options.alias_interface)
        self.runner: DnsmasqRunner = runner or DnsmasqProcess(self.paths)
        self._wep_prefix = kind_info("WorkloadEndpoint").prefix
        self._subnet_prefix = subnet_prefix(options.region)
        self._view = _View()
        self._dirty = False
        self._in_sync = False
        self._stop = threading.Event()
        self.syncer = Syncer(ds, [self._wep_prefix, self._subnet_prefix], self._on_event)
        self.last_config: DnsmasqConfig | None = None
        self._mtu_file_seen: tuple[int, int, int] | None = None
        self.workload_mtu: int | None = None
        self.check_mtu_file()

    # -- events -> view ----------------------------------------------------------------------------------
    def _on_event(self, event: SyncEvent) -> None:
        if isinstance(event, InSync):
            self._in_sync = True
            self._dirty = True
        elif isinstance(event, Update):
            self._dirty |= self._update(event.key, event.value)
        elif isinstance(event, Delete):
            removed = self._view.endpoints.pop(event.key, None) or self._view.subnets.pop(event.key, None)
            self._dirty |= removed is not None

    def _update(self, key: str, value: dict[str, object]) -> bool:
        if key.startswith(self._subnet_prefix):
            try:
                subnet = DhcpSubnet.from_json(value, key=key)
            except TortieError as exc:
                log.warning("skipping invalid DHCP subnet record: %s", exc)
                return self._view.subnets.pop(key, None) is not None
            changed = self._view.subnets.get(key) != subnet
            self._view.subnets[key] = subnet
            return changed
        endpoint = endpoint_from_wire(value, self.options.hostname)
        if endpoint is None:
            return self._view.endpoints.pop(key, None) is not None
        changed = self._view.endpoints.get(key) != endpoint
        self._view.endpoints[key] = endpoint
        return changed

    def check_mtu_file(self) -> bool:
        """Re-read the MTU file if it changed on disk; True when the workload MTU changed."""
        if not self.options.mtu_file:
            return False
        try:
            st = os.stat(self.options.mtu_file)
            seen: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            seen = None
        if seen == self._mtu_file_seen:
            return False
        self._mtu_file_seen = seen
        mtu = read_mtu_file(self.options.mtu_file) if seen is not None else None
        if mtu == self.workload_mtu:
            return False
        log.info("dhcp workload mtu=%s file=%s", mtu, self.options.mtu_file)
        self.workload_mtu = mtu
        self._dirty = True
        return True

    # -- view -> dnsmasq ------------------------------------------------------------------------------------
    def desired(self) -> DnsmasqConfig:
        return render(self._view.endpoints.values(), self._view.subnets.values(),
                      lease_seconds=self.options.lease_seconds, workload_mtu=self.workload_mtu)

    def apply(self) -> str:
        config = self.desired()
        self.alias.ensure(config.gateway_addresses)
        argv = command(config, self.paths, alias=self.alias.name,
                       interface_prefixes=self.options.interface_prefixes, dnsmasq=self.options.dnsmasq)
        action = self.runner.apply(config, argv)
        self.last_config = config
        self._dirty = False
        if action != "unchanged":
            log.info("dhcp applied host=%s action=%s subnets=%d hosts=%d", self.options.hostname, action,
                     len(config.ranges), config.hosts.count("\n"))
        return action

    # -- loop ----------------------------------------------------------------------------------------------
    def sync_once(self) -> str:
        """List everything and apply (used by tests and at start)."""
        self.syncer.run_once_until_in_sync()
        return self.apply()

    def run(self) -> None:
        """Run until `stop()`: apply on change (coalesced), restart dnsmasq if it died."""
        self.syncer.run_once_until_in_sync()
        last_apply = 0.0
        while not self._stop.is_set():
            self.check_mtu_file()
            crashed = (self.last_config is not None and self.last_config.serves_anything
                       and not self.runner.alive())
            if self._in_sync and (self._dirty or crashed):
                wait = self.options.min_apply_interval - (time.monotonic() - last_apply)
                if wait <= 0:
                    try:
                        self.apply()
                    except TortieError as exc:
                        log.warning("dhcp apply failed; retrying error=%s", exc)
                    last_apply = time.monotonic()
            self.syncer.poll(timeout=self.options.min_apply_interval if self._dirty else 0.5)
        self.syncer.stop()
        self.runner.stop()

    def stop(self) -> None:
        self._stop.set()
        self.syncer.stop()


def split_prefixes(values: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        out += [p.strip() for p in value.split(",") if p.strip()]
    return tuple(out) or ("tap",)
