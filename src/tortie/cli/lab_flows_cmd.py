"""`tortie lab flows` and `tortie lab ui`: a lab's flow records and web view, every host together.

    tortie lab flows [--name L] [filters and output as `tortie flows`] [--follow]
    tortie lab ui [--name L] [--listen 127.0.0.1:9810]

Each lab host's agent writes its flow records under the lab's workdir (`Datacenter.flow_dirs`);
`flows` reads them all, merged by time (`--follow` then prints new records of every host as they
come); `ui` serves `tortie.flows.web` on them, with the lab's datastore and each host's BIRD.
"""

from __future__ import annotations

import argparse
import queue
import threading
from typing import TYPE_CHECKING

from tortie.cli.flows_cmd import add_filter_arguments, flow_filter, merged, print_records, warn_skipped
from tortie.cli.lab_cmd import lab_name_option
from tortie.cli.ui_cmd import add_server_arguments, serve
from tortie.cli.verbs import verb_group
from tortie.flows.records import FlowRecord
from tortie.flows.store import ReadReport, follow, read_records

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers


def register(sub: SubParsers) -> None:
    verbs = verb_group(sub, "lab", help="a virtual datacenter in network namespaces (hosts, ToR, workloads)")
    p = verbs.add_parser("flows", help="flow records of every lab host (filters as `tortie flows`)")
    lab_name_option(p)
    add_filter_arguments(p)
    p.set_defaults(func=_flows)
    p = verbs.add_parser("ui", help="serve the web view of a lab")
    lab_name_option(p)
    add_server_arguments(p)
    p.set_defaults(func=_ui)


def _flows(args: argparse.Namespace) -> int:
    from tortie.lab.datacenter import Datacenter

    dirs = Datacenter.open(args.lab_name).flow_dirs()
    selector = flow_filter(args)
    report = ReadReport()
    streams = [read_records(d, report, selector.since) for d in dirs.values() if d.is_dir()]
    print_records((r for r in merged(streams) if selector.matches(r)), args.output)
    warn_skipped(report)
    if not args.follow:
        return 0
    found: queue.SimpleQueue[FlowRecord] = queue.SimpleQueue()
    stop = threading.Event()
    for directory in dirs.values():
        def tail(d=directory) -> None:  # type: ignore[no-untyped-def]
            for record in follow(d, report, stop=stop.is_set):
                found.put(record)

        threading.Thread(target=tail, daemon=True).start()
    try:
        while True:
            record = found.get()
            if selector.matches(record):
                print_records([record], args.output)
    except KeyboardInterrupt:
        stop.set()
        return 0


def _ui(args: argparse.Namespace) -> int:
    from tortie.flows.ui_sources import lab_sources
    from tortie.lab.datacenter import Datacenter

    Datacenter.open(args.lab_name)  # a clear error now when there is no such lab
    return serve(lab_sources(args.lab_name), args)
