"""`tortie flows`: the flow records of this node (the agent's local flow store).

    tortie flows [--dir DIR] [--action allow|deny] [--policy NAME] [--namespace NS]
                 [--endpoint NAME|NS/NAME|IP] [--since 10m|TIME] [--staged] [--follow] [-o table|json]

Reads `--dir` (default: $TORTIE_FLOW_LOGS_DIR, else the agent's default /var/log/tortie/flows), oldest
records first, and prints those the filters keep (`tortie.flows.query`): a table (time, host,
reporter, source -> destination, protocol/port, action, the deciding rule, pending action when it
differs, packets and bytes each way), or JSON lines (`-o json`: one record per line, the store's
own form). `--follow` then keeps printing records as the agent writes them (Ctrl-C ends).
Unreadable lines (a record torn by a crash, a foreign file) are skipped with a warning naming the
file and how many. `tortie lab flows` shows every lab host's records with the same options.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tortie.common.errors import UserError
from tortie.flows.query import FlowFilter, parse_since
from tortie.flows.records import FlowRecord
from tortie.flows.store import ReadReport, follow, read_records

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers

DEFAULT_DIR = "/var/log/tortie/flows"


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    """The filters and output options `tortie flows` and `tortie lab flows` share."""
    p.add_argument("--action", choices=("allow", "deny"), default=None, help="only allowed or denied flows")
    p.add_argument("--policy", default=None, metavar="NAME",
                   help="flows a rule of this policy decided (name, namespace/name or Kind(ns/name); a "
                        "Kubernetes policy also by its own name)")
    p.add_argument("--namespace", default=None, metavar="NS", help="flows with an end in this namespace")
    p.add_argument("--endpoint", default=None, metavar="NAME|NS/NAME|IP", help="flows with this end")
    p.add_argument("--since", default=None, metavar="DURATION|TIME",
                   help="records ending after this: 90s, 10m, 1h30m, 2d, an ISO time or epoch seconds")
    p.add_argument("--staged", action="store_true",
                   help="only flows a staged policy would change (pending action differs)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")


def register(sub: SubParsers) -> None:
    p = sub.add_parser("flows", help="flow records with their policy verdicts (this node's flow store)")
    p.add_argument("--dir", default=None, help=f"flow store directory (default: $TORTIE_FLOW_LOGS_DIR or "
                   f"{DEFAULT_DIR})")
    add_filter_arguments(p)
    p.set_defaults(func=_flows)


def flow_filter(args: argparse.Namespace) -> FlowFilter:
    now = time.time()
    return FlowFilter(action=args.action, policy=args.policy, namespace=args.namespace,
                      endpoint=args.endpoint, since=parse_since(args.since, now) if args.since else None,
                      staged=args.staged)


def _rule(policies: Iterable[str]) -> str:
    """The deciding rule: the last hit (earlier ones are passes of earlier tiers)."""
    hits = list(policies)
    return hits[-1] if hits else "-"


def table_row(r: FlowRecord) -> str:
    when = datetime.fromtimestamp(r.end).strftime("%H:%M:%S")
    port = f"{r.protocol}/{r.port}" if r.port is not None else r.protocol
    pending = ""
    if r.pending_action != r.action:
        pending = f" (pending {r.pending_action}: {_rule(r.pending_policies)})"
    traffic = (f"{r.packets.src_to_dst}p/{r.bytes.src_to_dst}B -> "
               f"{r.packets.dst_to_src}p/{r.bytes.dst_to_src}B <-")
    return (f"{when} {r.host} {r.reporter} {r.source.label} -> {r.destination.label} {port} "
            f"{r.action.upper()} {_rule(r.policies)}{pending} {traffic}")


def print_records(records: Iterable[FlowRecord], output: str) -> int:
    count = 0
    for r in records:
        print(r.encode() if output == "json" else table_row(r), flush=True)
        count += 1
    return count


def warn_skipped(report: ReadReport) -> None:
    for path, count in sorted(report.skipped.items()):
        print(f"warning: {path}: skipped {count} unreadable line(s) (torn or foreign records)",
              file=sys.stderr)


def store_dir(args: argparse.Namespace) -> Path:
    directory = Path(args.dir or os.environ.get("TORTIE_FLOW_LOGS_DIR") or DEFAULT_DIR)
    if not directory.is_dir():
        raise UserError(f"no flow store at {directory}: is the agent running with flow logs enabled here? "
                        "(--dir DIR names another store)")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise UserError(f"cannot read the flow store at {directory}: permission denied")
    return directory


def merged(streams: list[Iterator[FlowRecord]]) -> Iterator[FlowRecord]:
    """Records of several stores, by end time."""
    records = [r for stream in streams for r in stream]
    records.sort(key=lambda r: (r.end, r.host))
    return iter(records)


def _flows(args: argparse.Namespace) -> int:
    selector = flow_filter(args)
    directory = store_dir(args)
    report = ReadReport()
    print_records((r for r in read_records(directory, report, selector.since) if selector.matches(r)),
                  args.output)
    warn_skipped(report)
    if args.follow:
        try:
            print_records((r for r in follow(directory, report) if selector.matches(r)), args.output)
        except KeyboardInterrupt:
            return 0
    return 0


