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

# Verb-group modules by the top-level command words they register. Only the module(s) of the command
# being run are imported (each costs start-up time: the lab, policy and BGP groups pull in much of
# tortie); help and unknown commands import them all.
_COMMANDS: dict[str, tuple[str, ...]] = {
    **{verb: ("tortie.cli.resource_cmd",)
       for verb in ("apply", "create", "replace", "delete", "get", "patch", "label", "validate")},
    "version": ("tortie.cli.version_cmd",),
    "ipam": ("tortie.cli.ipam_cmd",),
    "agent": ("tortie.cli.agent_cmd",),
    "bgp": ("tortie.cli.bgp_cmd",),
    "node": ("tortie.cli.node_status_cmd", "tortie.cli.node_run_cmd", "tortie.cli.node_delete_cmd"),
    "cni": ("tortie.cli.cni_cmd",),
    "policy": ("tortie.cli.policy_cmd",),
    "flows": ("tortie.cli.flows_cmd",),
    "lab": ("tortie.cli.lab_cmd", "tortie.cli.lab_flows_cmd", "tortie.cli.lab_faults_cmd"),
    "ui": ("tortie.cli.ui_cmd",),
    "dhcp": ("tortie.cli.dhcp_cmd",),
}
_COMMAND_MODULES = tuple(dict.fromkeys(m for mods in _COMMANDS.values() for m in mods))
_GLOBAL_OPTIONS_WITH_VALUE = ("--datastore", "--log-level")


def _command_word(argv: Sequence[str]) -> str | None:
    """The first positional argument (the command), skipping the global options and their values."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the verb groups `argv` needs (all of them when argv is None)."""
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
    word = None if argv is None else _command_word(argv)
    for name in _COMMANDS.get(word or "", _COMMAND_MODULES):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a verb group not built yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
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
