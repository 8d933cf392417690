"""CNI error codes and the one exception the plugins report to their runtime.

The CNI spec reserves codes 0-99 (1.0/1.1 "well-known error codes"); plugin-specific codes are 100+.
A plugin that fails prints `{"cniVersion", "code", "msg", "details"}` on stdout and exits non-zero.

`CniError` carries the code. `classify(exc)` turns any tortie error into one, at the plugin's edge:

    DatastoreUnavailable, Conflict, IpamContention  -> 11  try again later
    NetnsNotFound                                   -> 3   container unknown (ADD/CHECK)
    PoolExhausted, NoSuitablePool, AddressNotAvail. -> 100 no address available
    other UserError                                 -> 7   invalid network configuration
    DataplaneError, OSError                         -> 101 kernel plumbing failed
    anything else                                   -> 999 internal
"""

from __future__ import annotations

from tortie.common.errors import TortieError

# Well-known codes (CNI spec 1.0/1.1).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50  # STATUS: the plugin cannot serve ADDs now
PLUGIN_NOT_AVAILABLE_LIMITED = 51  # STATUS: ... and existing containers may be affected
INTERNAL = 999

# tortie-specific codes (>= 100).
NO_ADDRESS_AVAILABLE = 100
DATAPLANE_FAILURE = 101
CHECK_FAILED = 102


class CniError(TortieError):
    """A failure to report to the runtime with a CNI error code."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{msg}: {details}" if details else msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_wire(self, cni_version: str) -> dict[str, object]:
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def classify(exc: BaseException) -> CniError:
    """The CniError to report for `exc` (see the module docstring for the mapping)."""
    if isinstance(exc, CniError):
        return exc
    # Imported here: only the failure path pays for these modules.
    from tortie.common.errors import Conflict, DataplaneError, DatastoreUnavailable, NetnsNotFound, UserError

    text = str(exc) or type(exc).__name__
    try:
        from tortie.ipam.errors import AddressNotAvailable, IpamContention, NoSuitablePool, PoolExhausted
    except ImportError:  # pragma: no cover - IPAM is part of the package
        ipam_busy: tuple[type[BaseException], ...] = ()
        ipam_none: tuple[type[BaseException], ...] = ()
    else:
        ipam_busy = (IpamContention,)
        ipam_none = (PoolExhausted, NoSuitablePool, AddressNotAvailable)
    if isinstance(exc, (DatastoreUnavailable, Conflict, *ipam_busy)):
        return CniError(TRY_AGAIN_LATER, "datastore busy or unreachable; try again later", text)
    if isinstance(exc, NetnsNotFound):
        return CniError(UNKNOWN_CONTAINER, "container network namespace not found", text)
    if isinstance(exc, ipam_none):
        return CniError(NO_ADDRESS_AVAILABLE, "no IP address available", text)
    if isinstance(exc, UserError):
        return CniError(INVALID_NETWORK_CONFIG, "invalid request", text)
    if isinstance(exc, (DataplaneError, OSError)):
        return CniError(DATAPLANE_FAILURE, "programming the kernel failed", text)
    return CniError(INTERNAL, "internal error", f"{type(exc).__name__}: {text}")
