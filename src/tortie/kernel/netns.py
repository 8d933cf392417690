"""Network namespaces: open one by name or path, enter it, run a function inside it, or keep a thread in it.

    netns_path(name)          "lab-h1" -> /run/netns/lab-h1 (as `ip netns add` makes); a path stays as given
    open_netns(name_or_path)  -> a file descriptor (O_CLOEXEC); the caller closes it
    enter_netns(target)       moves the CALLING THREAD for good (a worker thread's first step)
    entered(target)           context manager: the calling thread inside, then back where it was
    run_in_netns(target, fn)  fn() inside, on the calling thread
    NetnsWorker(name)         a thread that lives in one namespace and runs submitted calls there
    unshare_private()         moves the CALLING THREAD into a new, anonymous namespace (a probe's sandbox)

Why threads: `setns(2)` with CLONE_NEWNET moves only the calling thread, and netlink sockets, other
sockets and `/proc/sys/net` files resolve against the namespace of the thread that opens them, then
keep it whichever thread uses them (netlink(7); /proc/sys/net follows the opener). So code opens what
it needs inside and uses it anywhere; nothing forks and no other thread moves.

Errors (tortie.common.errors): a namespace that does not exist, or a path that is not a network
namespace, raises `NetnsNotFound` (errno ENOENT / EINVAL); any other failure `KernelError`. Nothing
here creates a named namespace; `unshare_private` makes an anonymous one that lives only as long as the
thread in it (a kernel feature probe tries things there, never on the host's devices).
Gotcha: a thread inside a namespace keeps it alive after
`ip netns del` (its interfaces survive until the thread exits): close workers before deleting.

Python 3.11 has no os.setns: libc's is called through ctypes (loaded on first use, ~2 ms); the worker's
queue and futures are imported on first use too (the CNI plugin only uses `entered`).
"""

from __future__ import annotations

import contextlib
import errno as _errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from tortie.common.errors import KernelError, NetnsNotFound

if TYPE_CHECKING:
    import ctypes
    import queue
    from concurrent.futures import Future

log = logging.getLogger(__name__)

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
_SELF = "/proc/thread-self/ns/net"

_libc: ctypes.CDLL | None = None


def netns_path(name: str) -> str:
    """Path of a named namespace; an absolute path (e.g. /proc/<pid>/ns/net) is used as given."""
    if name.startswith("/"):
        return name
    if not name or "/" in name or name in (".", ".."):
        raise NetnsNotFound(f"invalid network namespace name {name!r}", _errno.EINVAL)
    return os.path.join(NETNS_RUN_DIR, name)


def open_netns(target: str) -> int:
    """Open a namespace by name or path, read-only; the caller closes the descriptor."""
    path = netns_path(target)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise NetnsNotFound(f"network namespace {target} does not exist", _errno.ENOENT) from None
    except OSError as exc:
        raise KernelError(f"cannot open network namespace {path}: {exc.strerror}", exc.errno) from None


def setns(fd: int, label: str = "") -> None:
    """Move the calling thread into the namespace open as `fd`."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        import ctypes

        err = ctypes.get_errno()
        what = label or f"fd {fd}"
        if err == _errno.EINVAL:
            raise NetnsNotFound(f"{what} is not a network namespace", err)
        raise KernelError(f"setns({what}) failed: {os.strerror(err)}", err)


def unshare_private() -> None:
    """Move the calling thread into a new network namespace of its own (unshare(CLONE_NEWNET)): no
    name, no mount; it disappears when the thread (and every socket opened in it) is gone. The thread
    must not be returned to a pool: it never leaves."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.unshare(CLONE_NEWNET) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise KernelError(f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}", err)


def same_netns(fd: int) -> bool:
    """True if `fd` refers to the namespace the calling thread is in (then no switch is needed)."""
    mine = os.stat(_SELF)
    other = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (other.st_dev, other.st_ino)


def enter_netns(target: str) -> None:
    """Move the CALLING THREAD into the namespace `target` (a name or a path), for good."""
    fd = open_netns(target)
    try:
        setns(fd, target)
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(target: int | str) -> Iterator[None]:
    """Run the body inside the namespace `target` (an open descriptor, a name or a path), then return
    the calling thread to the namespace it was in."""
    fd = target if isinstance(target, int) else open_netns(target)
    label = target if isinstance(target, str) else ""
    try:
        home = os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd, label)
            try:
                yield
            finally:
                try:
                    setns(home, "the original namespace")
                except KernelError as exc:  # pragma: no cover - the kernel does not refuse our own
                    raise KernelError(f"cannot return to the original network namespace: {exc}") from exc
        finally:
            os.close(home)
    finally:
        if fd is not target:
            os.close(fd)


def run_in_netns(target: int | str | None, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` inside the namespace `target` on the calling thread (None: where the thread is)."""
    if target is None:
        return fn(*args)
    with entered(target):
        return fn(*args)


class NetnsWorker:
    """One thread in one network namespace (None: the process's own), running calls one at a time.

    `call(fn, *args)` runs in the worker and returns its result or raises its exception in the caller;
    a call from the worker thread itself runs inline (no deadlock). `on_close(fn)` registers a
    finaliser that `close()` runs in the worker before stopping it; calls after close raise
    `KernelError`. A namespace that cannot be entered fails the constructor."""

    def __init__(self, netns: str | None, name: str = "netns-worker") -> None:
        import queue
        from concurrent.futures import Future

        self.netns = netns
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._finalisers: list[Callable[[], None]] = []
        self._closed = False
        self._lock = threading.Lock()
        self._future = Future
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
        result: Future[T] = self._future()
        with self._lock:
            if self._closed:
                raise KernelError(f"the worker for network namespace {self.netns or 'self'} is closed")
            self._jobs.put((lambda: fn(*args), result))
        return result.result()

    def on_close(self, finaliser: Callable[[], None]) -> None:
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
