"""Sysctl driver: the dataplane's seam for kernel parameters under /proc/sys.

`SysctlDriver` is the Protocol the managers use (`tortie.testing` has the fake); `ProcSysctlDriver`
is the real one, `tortie.kernel.sysctl.Sysctls`: keys are /proc/sys-relative paths
(`net/ipv4/conf/tort1a2b/proxy_arp`), `read_sysctl` returns None for a missing key, `write_sysctl`
raises `KernelError` with the errno, and `ProcSysctlDriver(netns="name")` does its I/O on a worker
thread inside that namespace (see tortie.kernel.sysctl for the reasons).
"""

from __future__ import annotations

from typing import Protocol

from tortie.kernel.sysctl import Sysctls


class SysctlDriver(Protocol):
    def read_sysctl(self, key: str) -> str | None:
        """The current value, or None when the key does not exist."""
        ...

    def write_sysctl(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


class ProcSysctlDriver(Sysctls):
    """`SysctlDriver` over /proc/sys of the process's or a named network namespace."""
