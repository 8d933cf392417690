"""The one exception hierarchy of tortie.

Foreign errors (etcd, sqlite, netlink, nft, subprocess) are translated into these at the seam where
they arise and never further in. Every class carries a human message; user-facing ones say what was
wrong, where, and what to do.

CLI exit codes follow the class: `UserError` subclasses -> 1, `DatastoreUnavailable` -> 2.
"""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class TortieError(Exception):
    """Base of every error tortie raises on purpose."""

    exit_code = 1


class UserError(TortieError):
    """The caller asked for something invalid (bad input, missing resource, stale version)."""


class DatastoreError(TortieError):
    """A datastore operation failed."""


class NotFound(DatastoreError, UserError):
    """The key or resource does not exist."""


class AlreadyExists(DatastoreError, UserError):
    """A create found the key already present."""


class Conflict(DatastoreError, UserError):
    """A compare-and-swap failed: the stored revision is not the one the caller expected."""


class DatastoreUnavailable(DatastoreError):
    """The datastore could not be reached (after the backend's own retries/failover)."""

    exit_code = 2


class LeaseExpired(DatastoreError):
    """The lease named in an operation no longer exists."""


class InvalidRecord(DatastoreError, ValueError):
    """An object read from the datastore does not have the shape its key promises (corrupt or foreign
    data). Readers treat it as absent, with a warning, or report it (`tortie ipam check`)."""


class DataplaneError(TortieError):
    """Programming the kernel (netlink, nftables, sysctl) failed."""




class KernelError(DataplaneError):
    """A request to the kernel failed (netlink, setns, /proc/sys); `errno` is the kernel's error number
    when there was one, so callers tell "already gone" (ENOENT, ESRCH, ENODEV) from "broken"."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class NetlinkError(KernelError):
    """The kernel refused a netlink request: `errno` is always set, `reason` is the kernel's text
    (strerror, plus its extended-ack message when it gave one)."""

    def __init__(self, what: str, errno: int, reason: str) -> None:
        super().__init__(f"{what}: {reason}", errno)
        self.reason = reason


class LinkNotFound(KernelError):
    """The interface named in a request does not exist (in the namespace asked)."""


def kernel_call(what: str, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` with a refused netlink request re-raised as `LinkNotFound` (ENODEV) or `KernelError`,
    its message prefixed by `what` (the drivers' one translation of `NetlinkError`)."""
    try:
        return fn(*args)
    except NetlinkError as exc:
        if exc.errno == errno_mod.ENODEV:
            raise LinkNotFound(f"{what}: {exc.reason}", exc.errno) from exc
        raise KernelError(f"{what}: {exc.reason}", exc.errno) from exc


class NetnsNotFound(KernelError, UserError):
    """The network namespace does not exist or is not a network namespace (a user error too: CNI reports
    it as "container unknown")."""
