"""Small files other processes read while we rewrite them (status files, the MTU file, configs)."""

from __future__ import annotations

import os
import threading


def write_atomically(path: str, text: str) -> None:
    """Replace `path` with `text` so that readers see the old or the new file, never a mix."""
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
