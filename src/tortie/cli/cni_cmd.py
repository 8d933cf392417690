"""`tortie cni ...`: set up the CNI plugins on a host.

    tortie cni install --dir DIR [--python PATH]    write launchers `tortie` and `tortie-ipam` into DIR

DIR is a CNI plugin directory the runtime searches (e.g. /opt/cni/bin, or one listed in podman's
cni_plugin_dirs). See docs/reference/cni.md for the network configuration the plugins read.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tortie.cli.verbs import verb_group

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers


def register(sub: SubParsers) -> None:
    verbs = verb_group(sub, "cni", help="CNI plugin setup")
    inst = verbs.add_parser(
        "install", help="write the tortie and tortie-ipam plugin launchers into a directory"
    )
    inst.add_argument("--dir", required=True, help="CNI plugin directory (e.g. /opt/cni/bin)")
    inst.add_argument("--python", default=None, help="interpreter the launchers run (default: this one)")
    inst.set_defaults(func=_run_install)


def _run_install(args: argparse.Namespace) -> int:
    from tortie.cni.install import install

    for item in install(args.dir, args.python):
        print(f"installed {item.name}: {item.path}")
    return 0
