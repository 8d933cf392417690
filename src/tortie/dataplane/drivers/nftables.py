"""nftables driver: list one table, run one atomic batch (libnftables JSON).

Protocol `NftDriver`: `list_table(name)` returns the table's objects as `nft -j list table inet
<name>` prints them (sets with elements, maps, chains, rules; metainfo and the table object
dropped), or None when the table does not exist; `run(commands)` sends `{"nftables": commands}` as
ONE transaction (all or nothing, the kernel's own atomicity); `close()`.

Real implementation `NftablesDriver(netns=None)`: a ctypes binding of libnftables.so.1 (the library
`nft` itself uses; no Python package needed), driven from a `NetnsWorker` thread that entered the
namespace before creating the context, so its netlink socket lives there. If the library cannot
be loaded it falls back to running `nft -j -f -` (inside the namespace via `ip netns exec`).
Errors become `NftError` (a DataplaneError) carrying nft's message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import subprocess
from typing import Any, Protocol

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.netns_worker import NetnsWorker

log = logging.getLogger(__name__)

FAMILY = "inet"
_NFT_CTX_OUTPUT_JSON = 1 << 4
_LIB_NAMES = ("libnftables.so.1", "libnftables.so")


class NftError(DataplaneError):
    """An nftables command or batch was rejected (message: nft's error text)."""


class NftDriver(Protocol):
    def list_table(self, name: str) -> list[dict[str, Any]] | None: ...

    def run(self, commands: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def table_objects(output: str) -> list[dict[str, Any]]:
    """The objects of a `list table` JSON answer, without metainfo and the table itself."""
    data = json.loads(output) if output.strip() else {"nftables": []}
    return [obj for obj in data.get("nftables", []) if "metainfo" not in obj and "table" not in obj]


def _list_command(name: str) -> dict[str, Any]:
    return {"nftables": [{"list": {"table": {"family": FAMILY, "name": name}}}]}


def _is_missing(error: str) -> bool:
    return "No such file or directory" in error


class _LibNftables:
    """A libnftables context (create and use it on one thread, in the target namespace)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise NftError("libnftables: nft_ctx_new failed")
        self._ctx = ctx
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        lib.nft_ctx_output_set_flags(ctx, lib.nft_ctx_output_get_flags(ctx) | _NFT_CTX_OUTPUT_JSON)

    def run(self, text: str) -> tuple[int, str, str]:
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
        out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
        err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    def free(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None


def load_libnftables() -> ctypes.CDLL | None:
    for name in (*_LIB_NAMES, ctypes.util.find_library("nftables")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    return None


class NftablesDriver:
    """See the module docstring. `use_library=False` forces the `nft` command."""

    def __init__(self, netns: str | None = None, *, use_library: bool = True) -> None:
        self.netns = netns
        self._worker = NetnsWorker(netns, name="nftables")
        lib = load_libnftables() if use_library else None
        self._nft: _LibNftables | None = None
        if lib is not None:
            self._nft = self._worker.call(_LibNftables, lib)
            self._worker.on_close(self._nft.free)
        else:
            log.info("libnftables not loadable; using the nft command netns=%s", netns or "self")

    @property
    def backend(self) -> str:
        return "libnftables" if self._nft is not None else "nft-command"

    def _exec(self, text: str) -> tuple[int, str, str]:
        if self._nft is not None:
            nft = self._nft
            return self._worker.call(nft.run, text)
        argv = ["nft", "-j", "-f", "-"]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"running nft failed: {exc}") from exc
        return (0 if proc.returncode == 0 else -1), proc.stdout, proc.stderr

    def list_table(self, name: str) -> list[dict[str, Any]] | None:
        rc, out, err = self._exec(json.dumps(_list_command(name)))
        if rc != 0:
            if _is_missing(err):
                return None
            raise NftError(f"nft list table {FAMILY} {name} failed: {err.strip()}")
        return table_objects(out)

    def run(self, commands: list[dict[str, Any]]) -> None:
        if not commands:
            return
        rc, _out, err = self._exec(json.dumps({"nftables": commands}))
        if rc != 0:
            raise NftError(f"nft batch of {len(commands)} command(s) rejected: {err.strip()[:2000]}")

    def close(self) -> None:
        self._worker.close()
