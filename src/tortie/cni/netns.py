"""Enter a network namespace for a moment, by path (what CNI_NETNS gives: /run/netns/X, /proc/PID/ns/net).

`entered(path)` is a context manager: it switches the calling thread into the namespace with setns(2)
and always switches back to the namespace it came from. Netlink sockets and /proc/sys/net files opened
inside keep referring to that namespace after leaving (netlink(7); /proc/sys/net follows the opener's
namespace), so callers open what they need inside and use it outside.

Python 3.11 has no os.setns, so libc's setns is called through ctypes (imported lazily: ~2 ms).
Errors: a missing or non-namespace path raises `NetnsNotFound` (a UserError) — CNI maps it to
"container unknown" for ADD/CHECK and treats it as already gone for DEL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

from tortie.common.errors import DataplaneError, UserError

CLONE_NEWNET = 0x40000000
_libc: ctypes.CDLL | None = None


class NetnsNotFound(UserError):
    """The network namespace path does not exist or is not a network namespace."""


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def open_netns(path: str) -> int:
    """Open a namespace path read-only (O_CLOEXEC); raises NetnsNotFound when it is not there."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsNotFound(f"network namespace {path} does not exist") from None
    except OSError as e:
        raise NetnsNotFound(f"cannot open network namespace {path}: {e.strerror}") from None


def same_netns(fd: int) -> bool:
    """True if `fd` refers to the namespace this process is in (then no switch is needed)."""
    mine = os.stat("/proc/thread-self/ns/net")
    other = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (other.st_dev, other.st_ino)


@contextlib.contextmanager
def entered(fd: int, path: str = "") -> Iterator[None]:
    """Run the body inside the namespace open as `fd`, then return to the original namespace."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(fd)
        except OSError as e:
            raise NetnsNotFound(f"{path or fd} is not a network namespace: {e.strerror}") from None
        try:
            yield
        finally:
            try:
                _setns(home)
            except OSError as e:  # pragma: no cover - the kernel does not refuse our own namespace
                raise DataplaneError(f"cannot return to the original network namespace: {e}") from e
    finally:
        os.close(home)
