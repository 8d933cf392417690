"""The one entry point of both CNI executables: `tortie` (the plugin) and `tortie-ipam` (the IPAM plugin).

    runtime --(CNI_COMMAND=ADD|DEL|CHECK|VERSION|STATUS|GC, CNI_*, stdin netconf)--> launcher --> stdout
    launcher (written by `tortie cni install`):  tortie.cni.launcher.launch("tortie")
        -> the node's CNI service (tortie.cni.service), or in this process: serve("tortie", env, stdin)
    or, the same from a shell:                  python -I -m tortie.cni.main tortie|tortie-ipam

The verbs live in `tortie.cni.workload` (the plugin, reference §7) and `tortie.cni.ipam_verbs` (the IPAM
plugin, reference §5.6); only the one being run is imported. This module only speaks the CNI protocol
on stdin/stdout through `tortie.cni.runner`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tortie.cni.runner import Handler

PLUGINS = ("tortie", "tortie-ipam")


def handlers(plugin: str) -> dict[str, Handler]:
    """The verb handlers of `plugin` (one of PLUGINS)."""
    if plugin == "tortie":
        from tortie.cni.workload import TortiePlugin

        return TortiePlugin().handlers()
    if plugin == "tortie-ipam":
        from tortie.cni.ipam_verbs import TortieIpamPlugin

        return TortieIpamPlugin().handlers()
    raise ValueError(f"unknown CNI plugin {plugin!r} (want one of {', '.join(PLUGINS)})")


def serve(plugin: str, env: Mapping[str, str], stdin: bytes, *, notice: str = "") -> int:
    """Serve one CNI call of `plugin` in this process and print its answer; returns the exit code.
    `notice` (why the node's CNI service did not take the call) is logged as a warning once the
    configuration's logging is set up."""
    from tortie.cni.runner import run

    outcome = run(env, stdin, handlers(plugin), notice=notice)
    if outcome.stdout:
        sys.stdout.write(outcome.stdout + "\n")
    sys.stdout.flush()
    return outcome.exit_code


def main(plugin: str) -> int:
    """One CNI call of `plugin` from the environment and stdin, through the launcher."""
    from tortie.cni.launcher import launch

    return launch(plugin)


if __name__ == "__main__":
    import gc

    if len(sys.argv) != 2 or sys.argv[1] not in PLUGINS:
        sys.stderr.write(f"usage: python -m tortie.cni.main {'|'.join(PLUGINS)}\n")
        sys.exit(2)
    gc.disable()  # one call per process (see tortie.cni.install)
    code = main(sys.argv[1])
    gc.freeze()
    sys.exit(code)
