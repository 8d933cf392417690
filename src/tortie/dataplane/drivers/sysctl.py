"""Sysctl driver: read and write kernel parameters under /proc/sys.

Keys are paths relative to /proc/sys with `/` separators (`net/ipv4/conf/tort1a2b/proxy_arp`),
not the dotted `sysctl` notation: interface names may contain dots (`eth0.100`), which the dotted
form cannot express without escaping. `sysctl_key("net.ipv4.ip_forward")` converts a dotted name
that contains no interface name.

Namespaces: `/proc/sys/net/...` resolves against the network namespace of the THREAD that opens
the file, so `ProcSysctlDriver(netns="name")` does its I/O on a worker thread that entered that
namespace (see netns_worker). With `netns=None` it reads and writes directly.

Values are strings as the kernel prints them, trailing newline removed. `read_sysctl` returns
None when the key does not exist (e.g. IPv6 disabled, interface gone); `write_sysctl` raises
`KernelError` (with errno) when the key is missing (ENOENT) or the value is rejected (EINVAL).
"""

from __future__ import annotations

import errno
import os
from typing import Protocol

from tortie.dataplane.drivers.errors import KernelError
from tortie.dataplane.drivers.netns_worker import NetnsWorker

PROC_SYS = "/proc/sys"


def sysctl_key(dotted: str) -> str:
    """`net.ipv4.ip_forward` -> `net/ipv4/ip_forward` (only for names without interface names)."""
    return dotted.replace(".", "/")


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid sysctl key {key!r} (want e.g. net/ipv4/ip_forward)")
    return key


class SysctlDriver(Protocol):
    def read_sysctl(self, key: str) -> str | None:
        """The current value, or None when the key does not exist."""
        ...

    def write_sysctl(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KernelError(f"read sysctl {path}: {exc.strerror}", exc.errno) from exc


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(value)
    except FileNotFoundError:
        raise KernelError(f"write sysctl {path}: no such parameter", errno.ENOENT) from None
    except OSError as exc:
        raise KernelError(f"write sysctl {path}={value!r}: {exc.strerror}", exc.errno) from exc


class ProcSysctlDriver:
    """`SysctlDriver` over /proc/sys of the process's or a named network namespace."""

    def __init__(self, netns: str | None = None, *, root: str = PROC_SYS) -> None:
        self._root = root
        self._worker = NetnsWorker(netns, name="sysctl-driver") if netns is not None else None

    @property
    def netns(self) -> str | None:
        return self._worker.netns if self._worker is not None else None

    def _path(self, key: str) -> str:
        return os.path.join(self._root, check_key(key))

    def read_sysctl(self, key: str) -> str | None:
        path = self._path(key)
        if self._worker is None:
            return _read(path)
        return self._worker.call(_read, path)

    def write_sysctl(self, key: str, value: str) -> None:
        path = self._path(key)
        if self._worker is None:
            _write(path, value)
        else:
            self._worker.call(_write, path, value)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
