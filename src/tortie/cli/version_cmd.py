"""`tortie version`: client version, and the datastore it would use."""

from __future__ import annotations

import argparse

import tortie


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("version", help="print the tortie version")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print(f"tortie {tortie.__version__}")
    return 0
