"""Errors raised by tortie.ipam.

Every class extends the project hierarchy in `tortie.common.errors`:

* `IpamError` (a `UserError`, CLI exit 1) and its subclasses: the request cannot be satisfied as asked
  (pool exhausted, address taken, address outside every pool or reserved, no pool usable by this host).
* `IpamContention` (a `DatastoreError`): compare-and-swap kept failing after the bounded retries.

A stored IPAM object that does not decode raises `tortie.common.errors.InvalidRecord` (see
`tortie.model.ipam_records`); the audit reports these instead of raising.
"""

from __future__ import annotations

from tortie.common.errors import DatastoreError, UserError


class IpamError(UserError):
    """An IPAM request could not be satisfied."""


class PoolExhausted(IpamError):
    """Fewer free addresses than requested in the pools this host may use."""


class NoSuitablePool(IpamError):
    """No enabled IPPool matches the host, the use and the pools the caller named."""


class AddressInUse(IpamError):
    """A specific address was requested but is already assigned; `owner_handle` is its handle."""

    def __init__(self, message: str, owner_handle: str | None = None) -> None:
        super().__init__(message)
        self.owner_handle = owner_handle


class AddressNotAvailable(IpamError):
    """A specific address is outside every IPPool, in a disabled pool, or reserved by an IPReservation."""


class InvalidIpamRequest(IpamError):
    """Malformed arguments: bad handle or host name, negative counts, bad configuration values."""


class IpamContention(DatastoreError):
    """Compare-and-swap on an IPAM object failed on every one of the bounded retries."""
