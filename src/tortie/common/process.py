"""Child processes that must not outlive the thread that started them (Linux PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int) -> Callable[[], None]:
    """A `preexec_fn` that makes the child receive `sig` when the *thread* that forked it exits (the
    kernel's rule: start such children only from a thread that lives as long as they should)."""

    def preexec() -> None:  # pragma: no cover - runs in the forked child
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec
