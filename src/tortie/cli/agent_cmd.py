"""`tortie agent run`: start the per-host agent in the foreground (the node service supervises it).

    tortie agent run --hostname H [--datastore URL] [--config FILE]

Every other setting comes from the agent's configuration table (environment TORTIE_<NAME>, the
config file, FelixConfiguration; see docs/reference/agent-config.md). The agent logs at
`log_severity_screen` (the global --log-level does not apply to it). Exit codes: 0 after SIGTERM or
SIGINT, 1 on a configuration error, 2 if the datastore is unusable, 3 if the kernel cannot be
programmed persistently (the supervisor restarts it).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tortie.cli.verbs import verb_group

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers


def register(sub: SubParsers) -> None:
    verbs = verb_group(
        sub, "agent", help="the per-host agent (programs this host's kernel)", metavar="ACTION"
    )
    run = verbs.add_parser("run", help="run the agent in the foreground until SIGTERM")
    run.add_argument("--hostname",
                     help="this host's name (default: TORTIE_HOSTNAME, config file, OS host name)")
    run.add_argument("--datastore", dest="agent_datastore", metavar="URL",
                     help="datastore URL (also the global --datastore, TORTIE_DATASTORE)")
    run.add_argument("--config", dest="config_file", metavar="FILE",
                     help="agent config file (INI, [agent] section; default /etc/tortie/agent.cfg)")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tortie.agent.main import run_agent

    cli_values = {
        "hostname": args.hostname,
        "datastore": args.agent_datastore or getattr(args, "datastore", None),
        "config_file": args.config_file,
    }
    return run_agent(cli_values)
