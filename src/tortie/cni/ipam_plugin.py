"""`tortie-ipam`: the CNI IPAM plugin executable (reference §5.6), usable under any main plugin.

    CNI_COMMAND=ADD ... tortie-ipam < netconf   ->  {"cniVersion", "ips": [{"address": "10.0.0.5/32"}]}

Run as `python -m tortie.cni.ipam_plugin` (`tortie cni install` writes a launcher named tortie-ipam).
The verbs live in `tortie.cni.ipam_verbs`; this module only speaks the CNI protocol on stdin/stdout.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from tortie.cni.ipam_verbs import TortieIpamPlugin
    from tortie.cni.runner import run

    outcome = run(os.environ, sys.stdin.buffer.read(), TortieIpamPlugin().handlers())
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
