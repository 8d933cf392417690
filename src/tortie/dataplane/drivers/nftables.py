"""nftables driver: list one table, run one atomic batch (libnftables JSON, raw nfnetlink for elements).

Protocol `NftDriver`: `list_table(name)` returns the table's objects as `nft -j list table inet
<name>` prints them (sets with elements, maps, chains, rules; metainfo and the table object
dropped), or None when the table does not exist; `run(commands)` sends `{"nftables": commands}` as
ONE transaction (all or nothing, the kernel's own atomicity); `generation()` is the namespace's
nftables ruleset generation (incremented by every committed transaction, anyone's), or None when
it cannot be read; `close()`.

Real implementation `NftablesDriver(netns=None)`: a ctypes binding of libnftables.so.1 (the library
`nft` itself uses; no Python package needed), driven from a `NetnsWorker` thread that entered the
namespace before creating the context, so its netlink socket lives there. If the library cannot
be loaded it falls back to running `nft -j -f -` (inside the namespace via `ip netns exec`).
Errors become `NftError` (a DataplaneError) carrying nft's message.

Fast path for element-only batches: a batch made only of `add element` / `delete element`
commands on sets whose layout the driver knows (learned from `list_table` and from the `add set` /
`add map` commands it ran) is sent as one raw nfnetlink batch (`tortie.kernel.nfnetlink`), skipping
libnftables' cache fill (the elements of every interval set, ~100 ms at 1,700 sets). Same
atomicity; if the kernel rejects it, the layouts are forgotten and the batch is retried through
libnftables, whose answer (success or nft's error message) is the result. `raw_elements=False`
disables the fast path; `raw_batches` counts the batches it carried.

Listings, and big batches (more than `command_batch_bytes` of JSON, i.e. an initial load of
thousands of rules), go to a short-lived `nft -j -f -` process even when the library is loaded:
libnftables holds ~25 times the batch size while it parses and evaluates it (450 MB for the 18 MB
load of bench/policy_scale.py), which in-process would set the agent's peak memory.
`list_with_command=False` and a large `command_batch_bytes` keep everything in the library. After a
large exchange the library's context is renewed and the heap trimmed (`_LibNftables`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import shutil
import subprocess
from typing import Any, Protocol

import orjson

from tortie.common.errors import DataplaneError, KernelError
from tortie.kernel.netns import NetnsWorker
from tortie.kernel.nfnetlink import ElementOp, ElementSocket, SetLayout, UnsupportedElement

log = logging.getLogger(__name__)

FAMILY = "inet"
_NFT_CTX_OUTPUT_JSON = 1 << 4
_LIB_NAMES = ("libnftables.so.1", "libnftables.so")
_LARGE_EXCHANGE = 4 << 20  # bytes in + out of one libnftables call after which its context is renewed
_libc: ctypes.CDLL | None = None


class NftError(DataplaneError):
    """An nftables command or batch was rejected (message: nft's error text)."""


class NftDriver(Protocol):
    def list_table(self, name: str) -> list[dict[str, Any]] | None: ...

    def run(self, commands: list[dict[str, Any]]) -> None: ...

    def generation(self) -> int | None: ...

    def close(self) -> None: ...


def table_objects(output: str | bytes) -> list[dict[str, Any]]:
    """The objects of a `list table` JSON answer, without metainfo and the table itself."""
    data = orjson.loads(output) if output.strip() else {"nftables": []}
    return [obj for obj in data.get("nftables", []) if "metainfo" not in obj and "table" not in obj]


def _list_command(name: str) -> dict[str, Any]:
    return {"nftables": [{"list": {"table": {"family": FAMILY, "name": name}}}]}


def _is_missing(error: str) -> bool:
    return "No such file or directory" in error


class _LibNftables:
    """A libnftables context (create and use it on one thread, in the target namespace).

    The context keeps nft's cache of what it parsed and listed; after a large transaction or listing
    (hundreds of MB for a table of 30,000 rules) the context is freed, a fresh one made on next
    use, and glibc asked to return the freed heap to the system (`malloc_trim`), so the agent does
    not keep the peak of its initial load for life."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._ctx: int | None = None
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
        self._context()

    def _context(self) -> int:
        if self._ctx is None:
            lib = self._lib
            ctx = lib.nft_ctx_new(0)
            if not ctx:
                raise NftError("libnftables: nft_ctx_new failed")
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            lib.nft_ctx_output_set_flags(ctx, lib.nft_ctx_output_get_flags(ctx) | _NFT_CTX_OUTPUT_JSON)
            self._ctx = int(ctx)
        return self._ctx

    def run(self, payload: bytes) -> tuple[int, bytes, str]:
        ctx = self._context()
        rc = self._lib.nft_run_cmd_from_buffer(ctx, payload)
        out = self._lib.nft_ctx_get_output_buffer(ctx) or b""
        err = self._lib.nft_ctx_get_error_buffer(ctx) or b""
        if len(payload) + len(out) > _LARGE_EXCHANGE:
            self.free()
            _trim_heap()
        return rc, out, err.decode(errors="replace")

    def free(self) -> None:
        if self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None


def _trim_heap() -> None:
    """Give freed C heap back to the system (glibc's malloc_trim; a no-op elsewhere)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None)
        _libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


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

    def __init__(
        self,
        netns: str | None = None,
        *,
        use_library: bool = True,
        raw_elements: bool = True,
        command_batch_bytes: int = 4 << 20,
        list_with_command: bool = True,
    ) -> None:
        self.netns = netns
        self._worker = NetnsWorker(netns, name="nftables")
        lib = load_libnftables() if use_library else None
        self._nft: _LibNftables | None = None
        if lib is not None:
            self._nft = self._worker.call(_LibNftables, lib)
            self._worker.on_close(self._nft.free)
        else:
            log.info("libnftables not loadable; using the nft command netns=%s", netns or "self")
        self._raw_wanted = raw_elements
        self._command_batch_bytes = command_batch_bytes
        self._list_with_command = list_with_command
        self._nft_command_available = shutil.which("nft") is not None
        self._raw: ElementSocket | None = None
        self._layouts: dict[tuple[str, str], SetLayout] = {}
        self.raw_batches = 0

    @property
    def backend(self) -> str:
        return "libnftables" if self._nft is not None else "nft-command"

    def _exec(self, payload: bytes, *, command: bool = False) -> tuple[int, bytes, str]:
        """Run JSON commands with libnftables, or with the `nft` command when asked (or without the
        library)."""
        if self._nft is not None and not command:
            nft = self._nft
            return self._worker.call(nft.run, payload)
        argv = ["nft", "-j", "-f", "-"]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            proc = subprocess.run(argv, input=payload, capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"running nft failed: {exc}") from exc
        return (0 if proc.returncode == 0 else -1), proc.stdout, proc.stderr.decode(errors="replace")

    def list_table(self, name: str) -> list[dict[str, Any]] | None:
        # Listing is rare (start, repair) and may be big: done by the `nft` command when there is
        # one, so that libnftables' cache of the whole table never lands in the agent.
        command = self._list_with_command and self._nft_command_available
        rc, out, err = self._exec(orjson.dumps(_list_command(name)), command=command)
        if rc != 0:
            if _is_missing(err):
                self._forget_table(name)
                return None
            raise NftError(f"nft list table {FAMILY} {name} failed: {err.strip()}")
        objects = table_objects(out)
        self._forget_table(name)
        for obj in objects:
            self._learn(obj, name)
        return objects

    def run(self, commands: list[dict[str, Any]]) -> None:
        if not commands:
            return
        if self._try_raw(commands):
            return
        payload = orjson.dumps({"nftables": commands})
        # A big batch (an initial load) is parsed by a short-lived `nft` process: libnftables needs
        # ~25x the batch size while it works, which would otherwise set the agent's peak memory.
        command = len(payload) > self._command_batch_bytes and self._nft_command_available
        rc, _out, err = self._exec(payload, command=command)
        if rc != 0:
            raise NftError(f"nft batch of {len(commands)} command(s) rejected: {err.strip()[:2000]}")
        for command_obj in commands:
            self._learn_command(command_obj)

    def close(self) -> None:
        self._worker.close()

    def generation(self) -> int | None:
        try:
            sock = self._element_socket()
            return self._worker.call(sock.generation)
        except KernelError as exc:
            log.debug("nft generation unavailable reason=%s", exc)
            return None

    # -- the raw element path ---------------------------------------------------------------------------
    def _element_socket(self) -> ElementSocket:
        if self._raw is None:
            self._raw = self._worker.call(ElementSocket)
            self._worker.on_close(self._raw.close)
        return self._raw

    def _try_raw(self, commands: list[dict[str, Any]]) -> bool:
        """Carry an element-only batch over raw nfnetlink; False when it is not one (or cannot be)."""
        if not self._raw_wanted:
            return False
        found = element_ops(commands, self._layouts)
        if found is None:
            return False
        table, ops = found
        try:
            sock = self._element_socket()
            self._worker.call(sock.apply, table, ops)
        except UnsupportedElement as exc:
            log.debug("nft element batch not encodable raw; using libnftables reason=%s", exc)
            return False
        except KernelError as exc:
            if exc.errno == errno.EMSGSIZE:  # refused before sending: too big for one datagram
                return False
            # Rejected (the kernel aborted the whole batch) or the socket failed: the layouts may be
            # stale, and libnftables gives the authoritative answer and error message.
            log.info("raw nft element batch failed; retrying with libnftables reason=%s", exc)
            self._layouts.clear()
            return False
        self.raw_batches += 1
        return True

    def _forget_table(self, table: str) -> None:
        for key in [k for k in self._layouts if k[0] == table]:
            del self._layouts[key]

    def _learn(self, obj: dict[str, Any], table: str) -> None:
        for kind in ("set", "map"):
            body = obj.get(kind)
            if isinstance(body, dict) and body.get("family", FAMILY) == FAMILY and "name" in body:
                layout = SetLayout.of(body.get("type"), body.get("flags", ()), body.get("map"))
                if layout is None:
                    self._layouts.pop((table, str(body["name"])), None)
                else:
                    self._layouts[(table, str(body["name"]))] = layout

    def _learn_command(self, command: dict[str, Any]) -> None:
        for verb in ("add", "create"):
            obj = command.get(verb)
            if isinstance(obj, dict):
                for body in obj.values():
                    if isinstance(body, dict) and "table" in body:
                        self._learn(obj, str(body["table"]))
        deleted = command.get("delete") or command.get("destroy")
        if isinstance(deleted, dict):
            for kind, body in deleted.items():
                if not isinstance(body, dict):
                    continue
                if kind in ("set", "map"):
                    self._layouts.pop((str(body.get("table")), str(body.get("name"))), None)
                elif kind == "table":
                    self._forget_table(str(body.get("name")))


def element_ops(
    commands: list[dict[str, Any]], layouts: dict[tuple[str, str], SetLayout]
) -> tuple[str, list[ElementOp]] | None:
    """(table, ops) when every command adds or deletes elements of one inet table's known sets."""
    table: str | None = None
    ops: list[ElementOp] = []
    for command in commands:
        if len(command) != 1:
            return None
        ((verb, obj),) = command.items()
        if verb not in ("add", "delete") or not isinstance(obj, dict) or set(obj) != {"element"}:
            return None
        body = obj["element"]
        if not isinstance(body, dict) or body.get("family") != FAMILY:
            return None
        name, elems = body.get("name"), body.get("elem")
        if table is None:
            table = body.get("table")
        if body.get("table") != table or not isinstance(name, str) or not isinstance(elems, list):
            return None
        layout = layouts.get((str(table), name))
        if layout is None:
            return None
        ops.append(ElementOp(verb == "add", name, layout, tuple(elems)))
    if table is None or not ops:
        return None
    return str(table), ops
