"""`tortie`: the CNI plugin executable (network config `"type": "tortie"`), reference §7.

    runtime --(CNI_COMMAND=ADD|DEL|CHECK|VERSION|STATUS|GC, CNI_*, stdin netconf)--> tortie --> stdout

Run as `python -m tortie.cni.plugin` (`tortie cni install` writes a launcher named `tortie`). The verbs
live in `tortie.cni.workload`; this module only speaks the CNI protocol on stdin/stdout.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from tortie.cni.runner import run
    from tortie.cni.workload import TortiePlugin

    outcome = run(os.environ, sys.stdin.buffer.read(), TortiePlugin().handlers())
    if outcome.stdout:
        sys.stdout.write(outcome.stdout + "\n")
    sys.stdout.flush()
    return outcome.exit_code


if __name__ == "__main__":
    import gc

    gc.disable()  # one call per process (see tortie.cni.install)
    code = main()
    gc.freeze()
    sys.exit(code)
