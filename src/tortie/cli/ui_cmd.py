"""`tortie ui`: the web view of this node (flows, nodes with BGP state, workloads, policies).

    tortie ui [--listen 127.0.0.1:9810] [--dir DIR] [--hostname H] [--run-dir DIR]
              [--allow-remote --token-file FILE]

Serves `tortie.flows.web` until SIGTERM / Ctrl-C: this node's flow store (`--dir`, as `tortie
flows`), the datastore (`--datastore` / $TORTIE_DATASTORE) for nodes, workloads, policies and
traces, and this node's BIRD (its run directory) for BGP sessions. Loopback only unless
`--allow-remote` and a token (`--token-file`, or $TORTIE_UI_TOKEN) are given. `tortie lab ui` serves
a lab's view. Prints the URL once listening.
"""

from __future__ import annotations

import argparse
import os
import socket
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from tortie.cli.context import open_store
from tortie.cli.flows_cmd import DEFAULT_DIR
from tortie.cli.verbs import run_in_foreground
from tortie.common.errors import UserError

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers
    from tortie.flows.ui_sources import UiSources

DEFAULT_LISTEN = "127.0.0.1:9810"


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """The listening options `tortie ui` and `tortie lab ui` share."""
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help="address to serve on (default: %(default)s; port 0 picks a free one)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --listen address (needs a token)")
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="file holding the access token (else $TORTIE_UI_TOKEN)")


def register(sub: SubParsers) -> None:
    p = sub.add_parser("ui", help="serve the web view of this node (flows, nodes, workloads, policies)")
    add_server_arguments(p)
    p.add_argument("--dir", default=None,
                   help=f"flow store (default: $TORTIE_FLOW_LOGS_DIR or {DEFAULT_DIR})")
    p.add_argument("--hostname", default=None, help="this node's name (default: the system host name)")
    p.add_argument("--run-dir", default=None,
                   help="this node's run directory (default: /var/run/tortie/<host>)")
    p.set_defaults(func=_ui)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip() or None
        except OSError as exc:
            raise UserError(f"--token-file {args.token_file}: {exc.strerror}") from None
    return os.environ.get("TORTIE_UI_TOKEN") or None


def serve(sources: UiSources, args: argparse.Namespace) -> int:
    from tortie.flows.web import WebServer, check_listen, is_loopback, make_app, parse_listen

    host, port = parse_listen(args.listen)
    token = _token(args)
    check_listen(host, args.allow_remote, token)
    loopback = is_loopback(host)
    server = WebServer(make_app(sources, token=None if loopback and not args.allow_remote else token,
                                loopback=loopback), host, port)
    print(f"serving the web view on {server.url}", flush=True)
    return run_in_foreground(lambda: server.run(), server.stop)


def _ui(args: argparse.Namespace) -> int:
    from tortie.bgp.daemon import default_run_dir
    from tortie.flows.ui_sources import node_sources

    hostname = args.hostname or socket.gethostname()
    store = Path(args.dir or os.environ.get("TORTIE_FLOW_LOGS_DIR") or DEFAULT_DIR)
    run_dir = args.run_dir or default_run_dir(hostname)
    sources = node_sources(store, hostname, run_dir, partial(open_store, args))
    return serve(sources, args)
