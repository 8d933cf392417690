"""Kernel parameters under /proc/sys, read and written in the process's or a named network namespace.

Keys are paths relative to /proc/sys with `/` separators (`net/ipv4/conf/tort1a2b/proxy_arp`), not the
dotted `sysctl` notation: interface names may contain dots (`eth0.100`), which the dotted form cannot
express without escaping. `sysctl_key("net.ipv4.ip_forward")` converts a dotted name that contains no
interface name. Values are strings as the kernel prints them, trailing newline removed.

`read_sysctl` returns None when the key does not exist (IPv6 disabled, interface gone);
`write_sysctl` raises `KernelError` with the errno when the key is missing (ENOENT) or the value is
rejected (EINVAL). Both act in the namespace of the CALLING THREAD (/proc/sys/net follows the opener);
`Sysctls(netns)` does its file I/O on a `NetnsWorker` inside `netns`.

`ipv6_absence(read)` says why the kernel cannot carry IPv6 (None when it can): the agent and the
node service ask it once at start and, on a host without IPv6, serve IPv4 alone and say so.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Callable

from tortie.common.errors import KernelError
from tortie.kernel.netns import NetnsWorker

PROC_SYS = "/proc/sys"
IPV6_PROBE_KEY = "net/ipv6/conf/all/forwarding"  # exists whenever the kernel has IPv6


def sysctl_key(dotted: str) -> str:
    """`net.ipv4.ip_forward` -> `net/ipv4/ip_forward` (only for names without interface names)."""
    return dotted.replace(".", "/")


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid sysctl key {key!r} (want e.g. net/ipv4/ip_forward)")
    return key


def read_sysctl(key: str, *, root: str = PROC_SYS) -> str | None:
    path = os.path.join(root, check_key(key))
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KernelError(f"read sysctl {path}: {exc.strerror}", exc.errno) from exc


def write_sysctl(key: str, value: str, *, root: str = PROC_SYS) -> None:
    path = os.path.join(root, check_key(key))
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(value)
    except FileNotFoundError:
        raise KernelError(f"write sysctl {path}: no such parameter", _errno.ENOENT) from None
    except OSError as exc:
        raise KernelError(f"write sysctl {path}={value!r}: {exc.strerror}", exc.errno) from exc


def ipv6_absence(read: Callable[[str], str | None] = read_sysctl) -> str | None:
    """Why this kernel (in the reader's namespace) has no IPv6, None when it has: /proc/sys/net/ipv6
    is missing when the kernel was booted with `ipv6.disable=1` or built without IPv6."""
    if read(IPV6_PROBE_KEY) is None:
        return (
            f"the kernel has no IPv6 ({PROC_SYS}/{IPV6_PROBE_KEY} is missing: booted with ipv6.disable=1 "
            "or built without IPv6)"
        )
    return None


class Sysctls:
    """/proc/sys of the process's namespace (`netns=None`: direct I/O) or of a named one (a worker)."""

    def __init__(self, netns: str | None = None, *, root: str = PROC_SYS) -> None:
        self._root = root
        self._worker = NetnsWorker(netns, name="sysctl") if netns is not None else None

    @property
    def netns(self) -> str | None:
        return self._worker.netns if self._worker is not None else None

    def read_sysctl(self, key: str) -> str | None:
        if self._worker is None:
            return read_sysctl(key, root=self._root)
        return self._worker.call(lambda: read_sysctl(key, root=self._root))

    def write_sysctl(self, key: str, value: str) -> None:
        if self._worker is None:
            write_sysctl(key, value, root=self._root)
        else:
            self._worker.call(lambda: write_sysctl(key, value, root=self._root))

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
