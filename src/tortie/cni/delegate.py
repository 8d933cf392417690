"""Delegated IPAM: run another CNI IPAM plugin (e.g. host-local) the way a runtime would.

Used when the network config names an `ipam.type` other than `tortie-ipam` (which runs in-process).
Inputs: the plugin type, the verb, the caller's environment and the network config bytes. Output: the
plugin's parsed stdout (a result for ADD, nothing for the other verbs) or a `CniError` carrying the
delegate's own code and message. The executable is looked up in CNI_PATH, as the spec prescribes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from tortie.cni.errors import INVALID_NETWORK_CONFIG, CniError

_TIMEOUT_S = 60.0


def find_plugin(plugin_type: str, path: Sequence[str]) -> str:
    if "/" in plugin_type or not plugin_type:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid IPAM plugin type", repr(plugin_type))
    for directory in path:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(
        INVALID_NETWORK_CONFIG,
        f"IPAM plugin {plugin_type!r} not found",
        f"searched CNI_PATH: {':'.join(path) or '(empty)'}",
    )


def run_delegate(
    plugin_type: str, command: str, env: Mapping[str, str], path: Sequence[str], conf: Mapping[str, Any]
) -> dict[str, Any] | None:
    import subprocess

    exe = find_plugin(plugin_type, path)
    child_env = dict(env)
    child_env["CNI_COMMAND"] = command
    proc = subprocess.run(
        [exe],
        input=json.dumps(conf).encode(),
        env=child_env,
        capture_output=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    out = proc.stdout.strip()
    parsed: dict[str, Any] | None = None
    if out:
        try:
            value = json.loads(out)
            parsed = value if isinstance(value, dict) else None
        except ValueError:
            parsed = None
    if proc.returncode != 0:
        if parsed is not None and isinstance(parsed.get("code"), int):
            raise CniError(
                parsed["code"],
                f"IPAM plugin {plugin_type}: {parsed.get('msg', '')}",
                str(parsed.get("details", "")),
            )
        raise CniError(
            999,
            f"IPAM plugin {plugin_type} failed (exit {proc.returncode})",
            (proc.stderr or proc.stdout).decode(errors="replace").strip()[:2000],
        )
    return parsed
