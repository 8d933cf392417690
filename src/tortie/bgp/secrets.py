"""Read BGP passwords from secret files (tortie's stand-in for Kubernetes secrets).

Input: a directory laid out like a mounted Kubernetes secret volume, one directory per secret and one
file per key: `<secrets-dir>/<secret name>/<key>`. Output: the key's text without its trailing
newline, or None when the file is missing, unreadable, empty, or the name/key would leave the
directory. A BGPPeer's `password: {secretKeyRef: {name: bgp-secrets, key: rack1}}` therefore reads
`<secrets-dir>/bgp-secrets/rack1`.

Invariants: never raises for a bad reference (the view reports the peer as skipped); never follows
a name containing '/' or '..'.
"""

from __future__ import annotations

import logging
import os

from tortie.bgp.records import SecretRef

log = logging.getLogger(__name__)

DEFAULT_SECRETS_DIR = "/etc/tortie/secrets"


class FileSecrets:
    """Callable secret lookup over a directory (see the module docstring)."""

    def __init__(self, root: str = DEFAULT_SECRETS_DIR) -> None:
        self.root = root

    def path(self, ref: SecretRef) -> str | None:
        for part in (ref.name, ref.key):
            if not part or "/" in part or part in (".", ".."):
                return None
        return os.path.join(self.root, ref.name, ref.key)

    def __call__(self, ref: SecretRef) -> str | None:
        path = self.path(ref)
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            log.debug("secret unreadable path=%s error=%s", path, exc)
            return None
        text = text.rstrip("\r\n")
        return text or None
