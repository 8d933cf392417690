"""`tortie bgp run --hostname H`: render BIRD's configuration from the datastore and supervise BIRD.
`tortie bgp render --hostname H`: print the configuration `run` would write now (problems on stderr).

Runs `tortie.bgp.daemon.BgpDaemon` in the foreground until SIGTERM/SIGINT, then stops BIRD and exits 0.
Files go to the run directory (`--run-dir`, default `/var/run/tortie/<hostname>`): bird.conf, bird.ctl
(control socket read by `tortie node status`), bird.log, status.json (health). `--bird-netns NS` runs
only BIRD inside network namespace NS (the daemon itself stays where it is, e.g. next to an etcd on
loopback).
"""

from __future__ import annotations

import argparse
import socket
import sys
from contextlib import closing
from typing import TYPE_CHECKING

from tortie.bgp.daemon import BgpDaemon, DaemonConfig
from tortie.bgp.render import render
from tortie.bgp.secrets import DEFAULT_SECRETS_DIR, FileSecrets
from tortie.bgp.snapshot import read_snapshot
from tortie.bgp.view import (
    DEFAULT_AGENT_ROUTE_PROTOCOL,
    DEFAULT_WORKLOAD_IFACE_PREFIXES,
    Timers,
    ViewOptions,
    compute_view,
)
from tortie.cli.context import open_store
from tortie.cli.node_status_cmd import add_host_arguments, resolve_run_dir
from tortie.cli.verbs import run_in_foreground, verb_group

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers


def _view_arguments(p: argparse.ArgumentParser) -> None:
    """The options that shape the rendered configuration (shared by run and render)."""
    p.add_argument("--secrets-dir", default=DEFAULT_SECRETS_DIR,
                   help="directory of BGP password secrets: <dir>/<secret name>/<key> (default: %(default)s)")
    p.add_argument("--agent-route-protocol", type=int, default=DEFAULT_AGENT_ROUTE_PROTOCOL,
                   help="kernel route protocol number of the agent's workload routes (default: %(default)s)")
    p.add_argument("--workload-interface-prefix", action="append", default=None,
                   help="prefix of workload interface names, excluded from BIRD's direct protocol "
                        "(repeatable; default: {})".format(", ".join(DEFAULT_WORKLOAD_IFACE_PREFIXES)))
    p.add_argument("--fast-timers", action="store_true",
                   help="connect delay 0 s, retry 1 s, error wait 1-4 s (labs and tests)")


def register(sub: SubParsers) -> None:
    verbs = verb_group(sub, "bgp", help="BGP daemon (BIRD 2) of this host")
    r = verbs.add_parser("render", help="print the bird.conf `tortie bgp run` would write for this host now")
    r.add_argument("--hostname", default=None, help="the Node to render for (default: the system host name)")
    _view_arguments(r)
    r.set_defaults(func=_render)
    p = verbs.add_parser("run", help="render bird.conf from the datastore and supervise BIRD (foreground)")
    add_host_arguments(p)
    _view_arguments(p)
    p.add_argument("--bird", default="bird", help="BIRD 2 binary (default: %(default)s)")
    p.add_argument("--bird-netns", default=None,
                   help="run BIRD inside this network namespace (ip netns name)")
    p.set_defaults(func=_run)


def _options(args: argparse.Namespace) -> ViewOptions:
    return ViewOptions(
        agent_route_protocol=args.agent_route_protocol,
        workload_iface_prefixes=tuple(args.workload_interface_prefix or DEFAULT_WORKLOAD_IFACE_PREFIXES),
        timers=Timers.fast() if args.fast_timers else Timers(),
        secrets=FileSecrets(args.secrets_dir),
    )


def _render(args: argparse.Namespace) -> int:
    hostname = args.hostname or socket.gethostname()
    with closing(open_store(args)) as ds:
        result = compute_view(read_snapshot(ds, hostname), hostname, _options(args))
    for problem in result.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if result.view is None:
        print(f"error: nothing to render for {hostname}", file=sys.stderr)
        return 1
    sys.stdout.write(render(result.view))
    return 0


def _run(args: argparse.Namespace) -> int:
    hostname, run_dir = resolve_run_dir(args)
    options = _options(args)
    prefix = ("ip", "netns", "exec", args.bird_netns) if args.bird_netns else ()
    config = DaemonConfig(hostname=hostname, run_dir=run_dir, view_options=options, bird_binary=args.bird,
                          bird_command_prefix=prefix)
    with closing(open_store(args)) as ds:
        daemon = BgpDaemon(ds, config)
        return run_in_foreground(daemon.run, daemon.stop)
