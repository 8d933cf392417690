"""Host-level kernel settings the design needs, set once after InSync and kept (drift repair).

Input: the settings to enforce (key -> value, keys as in drivers/sysctl: `net/ipv4/ip_forward`),
`resync()`. Output: each setting read back and written only when different; every change is
logged at INFO with the old value, and `settings()` reports what the kernel holds now.

Defaults (`DEFAULT_HOST_SYSCTLS`): `net.ipv4.ip_forward=1` and `net.ipv6.conf.all.forwarding=1` —
the host routes between workloads and the fabric (Felix does the same when IPForwarding is
Enabled). Per-interface settings are the endpoint manager's; the agent passes `settings={}` when
configured with ip_forwarding=Disabled. With `ipv6=False`, or when the kernel has no IPv6 (key
missing), IPv6 keys are skipped (warned once).

Construction: `HostSysctlsManager(sysctls, settings=None, ipv6=True)`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.sysctl import SysctlDriver
from tortie.dataplane.managers.manager_api import ApplyIncomplete
from tortie.dataplane.messages import Message
from tortie.kernel.sysctl import check_key

log = logging.getLogger(__name__)

DEFAULT_HOST_SYSCTLS: Mapping[str, str] = {
    "net/ipv4/ip_forward": "1",
    "net/ipv6/conf/all/forwarding": "1",
}


class HostSysctlsManager:
    """See the module docstring."""

    name = "host_sysctls"
    handles: frozenset[type] = frozenset()  # no input: configuration changes restart the agent

    def __init__(
        self, sysctls: SysctlDriver, settings: Mapping[str, str] | None = None, *, ipv6: bool = True
    ) -> None:
        chosen = DEFAULT_HOST_SYSCTLS if settings is None else settings
        self._sysctls = sysctls
        self._wanted = {
            check_key(key): value for key, value in chosen.items() if ipv6 or not key.startswith("net/ipv6/")
        }
        self._current: dict[str, str] = {}
        self._pending = True
        self._warned: set[str] = set()

    def on_update(self, msg: Message) -> None:
        raise TypeError(f"{self.name} takes no messages, not {type(msg).__name__}")

    def on_link_event(self, event: LinkEvent) -> None:
        raise TypeError(f"{self.name} takes no link events")

    def resync(self) -> None:
        self._pending = True

    @property
    def needs_apply(self) -> bool:
        return self._pending

    def apply(self) -> None:
        failures: list[str] = []
        for key, value in sorted(self._wanted.items()):
            try:
                current = self._sysctls.read_sysctl(key)
                if current is None:
                    if key not in self._warned:
                        self._warned.add(key)
                        log.warning("host sysctl not available; skipping key=%s", key)
                    continue
                if current != value:
                    self._sysctls.write_sysctl(key, value)
                    log.info("host sysctl set key=%s old=%s new=%s", key, current, value)
                    current = value
                self._current[key] = current
            except DataplaneError as exc:
                failures.append(f"{key}: {exc}")
        if failures:
            raise ApplyIncomplete(self.name, failures)
        self._pending = False

    def settings(self) -> Mapping[str, str]:
        """The managed settings as last read/written (missing keys absent)."""
        return dict(self._current)

    def stats(self) -> Mapping[str, int]:
        return {"host_sysctls": len(self._current)}
