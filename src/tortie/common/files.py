"""Small files other processes read while we rewrite them (status files, the MTU file, configs)."""

from __future__ import annotations

import os
import threading


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` so that readers see the old or the new file, never a mix; the file
    has `mode` from its creation on, whatever the umask (0o600 for anything holding a secret)."""
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
