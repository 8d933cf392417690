"""`tortie dhcp run --hostname H`: DHCP for this host's VMs (dnsmasq, configured from the datastore).

    tortie [--datastore URL] dhcp run --hostname H [--state-dir DIR] [--region R]
        [--interface-prefix tap] [--alias-interface tdhcp0] [--dnsmasq PATH] [--lease-seconds N]
        [--mtu-file PATH]

Runs `tortie.dhcp.service.DhcpService` in the foreground in the current network namespace until
SIGTERM/SIGINT, then stops dnsmasq and exits 0. One per host. State (dnsmasq's hosts, options and
lease files, its log) goes to `--state-dir` (default /var/lib/tortie/dhcp/<hostname>). VMs are told
the smaller of their network's MTU and the workload MTU the agent publishes in `--mtu-file`
(default: $TORTIE_MTU_FILE, else /var/lib/tortie/mtu, as `tortie node run`; "" to ignore it).
"""

from __future__ import annotations

import argparse
import os
import socket
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from tortie.cli.context import open_store
from tortie.cli.verbs import run_in_foreground, verb_group
from tortie.common.mtu_file import DEFAULT_MTU_FILE

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers


def register(sub: SubParsers) -> None:
    verbs = verb_group(sub, "dhcp", help="DHCP service for this host's VMs (dnsmasq)")
    p = verbs.add_parser("run", help="serve DHCP on this host's tap interfaces (foreground)")
    p.add_argument("--hostname", default=None, help="this host's name (default: the OS host name)")
    p.add_argument("--state-dir", default=None,
                   help="directory for dnsmasq's files (default: /var/lib/tortie/dhcp/<hostname>)")
    p.add_argument("--region", default="", help="OpenStack region of the subnet records (default: none)")
    p.add_argument("--interface-prefix", action="append", default=None,
                   help="prefix of the VM interfaces to serve (repeatable or comma-separated; default: tap)")
    p.add_argument("--alias-interface", default="tdhcp0",
                   help="interface created to hold the subnets' gateway addresses (default: %(default)s)")
    p.add_argument("--dnsmasq", default="dnsmasq", help="dnsmasq binary (default: %(default)s)")
    p.add_argument("--lease-seconds", type=int, default=86400, help="DHCP lease time (default: %(default)s)")
    p.add_argument("--mtu-file", default=os.environ.get("TORTIE_MTU_FILE", DEFAULT_MTU_FILE),
                   help="the agent's workload MTU file: VMs get the smaller of it and their network's MTU "
                   '("" to ignore it; default: %(default)s)')
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tortie.dhcp.service import DhcpOptions, DhcpService, split_prefixes

    hostname = args.hostname or socket.gethostname()
    state_dir = Path(args.state_dir) if args.state_dir else Path("/var/lib/tortie/dhcp") / hostname
    options = DhcpOptions(
        hostname=hostname,
        state_dir=state_dir,
        region=args.region,
        interface_prefixes=split_prefixes(args.interface_prefix or []),
        alias_interface=args.alias_interface,
        dnsmasq=args.dnsmasq,
        lease_seconds=args.lease_seconds,
        mtu_file=args.mtu_file,
    )
    with closing(open_store(args)) as ds:
        service = DhcpService(ds, options)
        return run_in_foreground(service.run, service.stop)
