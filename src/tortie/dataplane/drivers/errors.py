"""Errors raised by the kernel drivers (translated from netlink/OS errors at the seam).

All subclass `tortie.common.errors.DataplaneError`; `errno` keeps the kernel's error number when
there was one, so callers can tell "already gone" from "broken" without knowing netlink.
"""

from __future__ import annotations

from tortie.common.errors import DataplaneError


class KernelError(DataplaneError):
    """A netlink request or /proc/sys access failed."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class LinkNotFound(KernelError):
    """The interface named in a request does not exist (in the driver's network namespace)."""


class NetnsNotFound(KernelError):
    """The named network namespace (/run/netns/<name>) does not exist."""
