"""Entry point of the `tortie` command.

    tortie [--datastore URL] [--log-level L] <verb> ...

Each verb group lives in its own module exposing `register(subparsers)`; handlers take the parsed
arguments and return the process exit code. Errors are mapped here, once:

    0  success
    1  user error (bad input, not found, conflict, validation failure)
    2  datastore unreachable
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tortie.common.errors import TortieError

# Verb-group modules, imported lazily so that `tortie --help` and fast paths stay cheap.
_COMMAND_MODULES = (
    "tortie.cli.resource_cmd",
    "tortie.cli.ipam_cmd",
    "tortie.cli.version_cmd",
    "tortie.cli.agent_cmd",
    "tortie.cli.bgp_cmd",
    "tortie.cli.node_status_cmd",
    "tortie.cli.cni_cmd",
    "tortie.cli.policy_cmd",
    "tortie.cli.node_run_cmd",
    "tortie.cli.lab_cmd",
    "tortie.cli.dhcp_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tortie",
        description="tortie: pure Layer-3 networking for VMs and containers (Calico-compatible).",
    )
    parser.add_argument(
        "--datastore",
        metavar="URL",
        help="datastore URL: sqlite:///path.db (default: embedded), etcd://h1:2379,h2:2379?cacert=..; "
        "also from TORTIE_DATASTORE",
    )
    parser.add_argument("--log-level", default="warning", help="log level (debug, info, warning, error)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a verb group not built yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 1
    try:
        rc = func(args)
    except TortieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
