"""What the CLI's verb-group modules share: declaring a group, running a service in the foreground.

    verbs = verb_group(sub, "lab", help="...")     # `tortie lab` alone prints the group's help, exit 1
    p = verbs.add_parser("up", help="..."); p.set_defaults(func=handler)
    return run_in_foreground(service.run, service.stop)   # SIGTERM / SIGINT call stop()

`verb_group` returns the same sub-parsers when the group exists already, so several modules can add
verbs to one group (`node status` and `node run`) whichever registers first. Every handler takes
the parsed arguments and returns the exit code; errors are mapped to exit codes in cli/main.py.
"""

from __future__ import annotations

import argparse
import signal
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def verb_group(sub: SubParsers, name: str, help: str, metavar: str = "VERB") -> SubParsers:
    """The sub-parsers of verb group `name`, created on first use (see the module docstring)."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help)
        group = parser.add_subparsers(dest=f"{name}_command", metavar=metavar)
        usage_of = parser

        def _usage(_args: argparse.Namespace) -> int:
            usage_of.print_help(sys.stderr)
            return 1

        parser.set_defaults(func=_usage)
        return group
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: SubParsers = action
            return found
    raise RuntimeError(f"the `{name}` command has no sub-commands")  # pragma: no cover


def run_in_foreground(run: Callable[[], int | None], stop: Callable[[], None]) -> int:
    """Run a service until it returns; SIGTERM and SIGINT ask it to stop. Returns its exit code."""

    def _on_signal(_signum: int, _frame: types.FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return int(run() or 0)
