"""Throwaway network namespaces for tests: `with throwaway_netns("dpc") as name: ...`.

The name is `<prefix>-<pid>-<random>` so parallel tests (pytest-xdist) never collide; the
namespace is created with `ip netns add` and always deleted on exit (which destroys every
interface and route in it). Loopback is brought up so local traffic works.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


def unique_name(prefix: str) -> str:
    """`prefix-<pid>-<4 hex>`, short enough for derived interface and namespace names."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(2)}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS...` (iproute2) and return the completed process (stdout/stderr as text)."""
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


@contextmanager
def throwaway_netns(prefix: str = "tt") -> Iterator[str]:
    name = unique_name(prefix)
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        ip("netns", "del", name, check=False)
