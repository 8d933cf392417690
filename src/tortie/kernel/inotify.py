"""Waiting for a directory to change: inotify(7) through libc, for short-lived watchers.

    DirWatch(path)        watches `path` for files created, written and closed, or renamed into it
      .wait(timeout)      True when something happened (events drained), False on timeout
      .close()

Used by the CNI plugin to wait for the agent's endpoint status file without polling. Each watch is
one inotify instance (a descriptor), limited per user by fs.inotify.max_user_instances (128 by
default, shared with every other program of root): `DirWatch` raises `KernelError` when none is left
(or the directory is missing), and callers fall back to polling.
"""

from __future__ import annotations

import errno as _errno
import os
import select
from typing import TYPE_CHECKING

from tortie.common.errors import KernelError

if TYPE_CHECKING:
    import ctypes

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_CHANGES = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        import ctypes

        lib = ctypes.CDLL(None, use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        _libc = lib
    return _libc


def _errno_now() -> int:
    import ctypes

    return ctypes.get_errno()


class DirWatch:
    """See the module docstring."""

    def __init__(self, path: str) -> None:
        lib = _lib()
        fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = _errno_now()
            raise KernelError(f"inotify_init1 failed: {os.strerror(err)}", err)
        if lib.inotify_add_watch(fd, os.fsencode(path), _CHANGES) < 0:
            err = _errno_now()
            os.close(fd)
            raise KernelError(f"cannot watch {path}: {os.strerror(err)}", err)
        self._fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float) -> bool:
        if not self._poll.poll(max(0, int(timeout * 1000))):
            return False
        while True:
            try:
                if not os.read(self._fd, 1 << 16):
                    break
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != _errno.EINTR:
                    raise KernelError(f"reading inotify events failed: {exc.strerror}", exc.errno) from None
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DirWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
