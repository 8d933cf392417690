"""A dedicated thread that lives in one network namespace and runs kernel I/O for a driver.

Why a thread: `setns(2)` with CLONE_NEWNET moves only the calling thread, and both netlink sockets
and `/proc/sys/net/...` resolve against the namespace of the thread that opens them. A worker that
entered the namespace once can open sockets and sysctl files there for the rest of its life,
without forking (pyroute2's `IPRoute(netns=...)` forks a helper per socket) and without moving any
other thread of the process. The netlink drivers only open their sockets here (a netlink socket
keeps its namespace whichever thread uses it); the sysctl driver does all its file I/O here.

Input: a namespace name (`/run/netns/<name>`, as `ip netns add` creates) or None for the
process's own namespace. Output: `call(fn, *args)` runs `fn` in the worker and returns its result
or raises its exception in the caller. Invariants: one thread per worker, jobs run in submission
order; a call from the worker thread itself runs inline (no deadlock); `close()` runs the
registered finalisers in the worker, then stops it; calls after close raise `KernelError`.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from tortie.dataplane.drivers.errors import KernelError, NetnsNotFound

log = logging.getLogger(__name__)

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc: ctypes.CDLL | None = None


def netns_path(name: str) -> str:
    """Path of a named namespace; an absolute path (e.g. /proc/<pid>/ns/net) is used as given."""
    if name.startswith("/"):
        return name
    if not name or "/" in name or name in (".", ".."):
        raise NetnsNotFound(f"invalid network namespace name {name!r}")
    return os.path.join(NETNS_RUN_DIR, name)


def enter_netns(name: str) -> None:
    """Move the CALLING THREAD into network namespace `name` (raises NetnsNotFound / KernelError)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    path = netns_path(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsNotFound(f"network namespace {name!r} does not exist ({path})", errno.ENOENT) from None
    except OSError as exc:
        raise KernelError(f"cannot open network namespace {path}: {exc.strerror}", exc.errno) from exc
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise KernelError(f"setns({path}) failed: {os.strerror(err)}", err)
    finally:
        os.close(fd)


class NetnsWorker:
    """One thread in one network namespace, running submitted jobs one at a time."""

    def __init__(self, netns: str | None, name: str = "netns-worker") -> None:
        self.netns = netns
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._finalisers: list[Callable[[], None]] = []
        self._closed = False
        self._lock = threading.Lock()
        ready: Future[None] = Future()
        label = f"{name}[{netns or 'self'}]"
        self._thread = threading.Thread(target=self._run, args=(ready,), name=label, daemon=True)
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._thread.join()
            raise

    def _run(self, ready: Future[None]) -> None:
        try:
            if self.netns is not None:
                enter_netns(self.netns)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        while True:
            item = self._jobs.get()
            if item is None:
                break
            job, result = item
            if not result.set_running_or_notify_cancel():
                continue
            try:
                result.set_result(job())
            except BaseException as exc:
                result.set_exception(exc)
        for finaliser in reversed(self._finalisers):
            try:
                finaliser()
            except Exception:
                log.debug("netns worker finaliser failed", exc_info=True)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the worker thread and return its result (or raise its exception)."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        result: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise KernelError(f"driver for netns {self.netns or 'self'} is closed")
            self._jobs.put((lambda: fn(*args), result))
        return result.result()

    def on_close(self, finaliser: Callable[[], None]) -> None:
        """Register `finaliser` to run in the worker thread when it is closed (e.g. close a socket)."""
        self._finalisers.append(finaliser)

    def close(self) -> None:
        """Run the finalisers and stop the thread; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10.0)
