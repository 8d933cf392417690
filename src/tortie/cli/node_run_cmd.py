"""`tortie node run`: this host's node service in the foreground (systemd runs it; so does the lab).

    tortie node run --hostname H [--datastore URL] [--ip autodetect|none|CIDR]
        [--ip-autodetection-method M] [--ip6 ...] [--ip6-autodetection-method M] [--as N]
        [--run-dir DIR] [--agent-config FILE] [--agent-health-port P] [--cni-socket PATH] [--bgp bird|none]
        [--ipam-gc-interval S] [--ipam-gc-grace S] [--ipam-lock-file PATH] [--no-agent] [--mtu-file FILE]

Registers/updates the Node (BGP address by autodetection, as Calico's IP_AUTODETECTION_METHOD:
first-found, interface=REGEX, skip-interface=REGEX, can-reach=DEST, cidr=CIDR), then runs the agent, the
CNI service and the BGP daemon and restarts them when they exit. SIGTERM/SIGINT stop them all and leave
the dataplane in place. Exit codes: 0 stopped, 1 configuration problem, 2 datastore URL unusable.
Environment equivalents (used when the option is absent): TORTIE_IP, TORTIE_IP_AUTODETECTION_METHOD,
TORTIE_IP6, TORTIE_IP6_AUTODETECTION_METHOD, TORTIE_AS_NUMBER, TORTIE_HOSTNAME, TORTIE_CNI_SOCKET,
TORTIE_BGP, TORTIE_MTU_FILE.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
from contextlib import closing
from typing import TYPE_CHECKING

from tortie.cli.node_status_cmd import node_subparsers
from tortie.cli.verbs import run_in_foreground
from tortie.cni.launcher import DEFAULT_SOCKET as DEFAULT_CNI_SOCKET
from tortie.cni.netconf import DEFAULT_IPAM_LOCK_FILE
from tortie.common.ipfamily import V4, V6
from tortie.common.mtu_file import DEFAULT_MTU_FILE

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers


def _as_number(text: str) -> int:
    """A plain AS number or asdot (`1.10` = 65546)."""
    try:
        if "." in text:
            high, low = (int(part) for part in text.split(".", 1))
            if not (0 <= high <= 65535 and 0 <= low <= 65535):
                raise ValueError
            return high * 65536 + low
        value = int(text)
        if not 0 < value <= 4294967295:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an AS number (1..4294967295 or asdot)") from None


def register(sub: SubParsers) -> None:
    env = os.environ.get
    p = node_subparsers(sub).add_parser(
        "run", help="register this host and run the agent and BGP daemon (foreground, until SIGTERM)"
    )
    p.add_argument(
        "--hostname",
        default=env("TORTIE_HOSTNAME"),
        help="this host's Node name (default: TORTIE_HOSTNAME, else the system host name)",
    )
    p.add_argument(
        "--datastore",
        dest="node_datastore",
        metavar="URL",
        help="datastore URL (also the global --datastore, TORTIE_DATASTORE)",
    )
    for family, option, default in ((V4, "ip", "autodetect"), (V6, "ip6", "none")):
        variable = f"TORTIE_{option.upper()}"
        p.add_argument(
            f"--{option}",
            default=env(variable, default),
            help=f"{family} BGP address: autodetect, none, or ADDRESS/PREFIXLEN (default: %(default)s)",
        )
        p.add_argument(
            f"--{option}-autodetection-method",
            default=env(f"{variable}_AUTODETECTION_METHOD", "first-found"),
            help=f"how to find the {family} address: first-found, interface=REGEX, skip-interface=REGEX, "
            "can-reach=DEST, cidr=CIDR[,..] (default: %(default)s)",
        )
    p.add_argument(
        "--as",
        dest="as_number",
        type=_as_number,
        default=None,
        help="this node's AS number (default: keep the stored one; else BGPConfiguration's, else 64512)",
    )
    p.add_argument(
        "--run-dir",
        default=None,
        help="runtime directory: BIRD files, status.json, node.json (default: /var/run/tortie/<hostname>)",
    )
    p.add_argument("--agent-config", metavar="FILE", default=None, help="the agent's config file (INI)")
    p.add_argument(
        "--agent-health-port",
        type=int,
        default=9099,
        help="port of the agent's health server on 127.0.0.1, polled for readiness "
        "(0: off; default: %(default)s)",
    )
    p.add_argument(
        "--workload-interface-prefix",
        action="append",
        default=None,
        help="workload interface prefix kept out of BIRD's direct protocol (repeatable; "
        "default: tort and cali)",
    )
    p.add_argument("--secrets-dir", default=None, help="BGP password secrets directory")
    p.add_argument(
        "--fast-bgp-timers", action="store_true", help="short BGP connect/retry timers (labs and tests)"
    )
    p.add_argument("--bird", default="bird", help="BIRD 2 binary (default: %(default)s)")
    p.add_argument(
        "--nodename-file",
        default=env("TORTIE_NODENAME_FILE", "/var/lib/tortie/nodename"),
        help='write the Node name here for the CNI plugin ("" to skip; default: %(default)s)',
    )
    p.add_argument(
        "--mtu-file",
        default=env("TORTIE_MTU_FILE", DEFAULT_MTU_FILE),
        help='where the agent publishes the workload MTU for the CNI plugin and `tortie dhcp run` '
        '("" to skip; default: %(default)s)',
    )
    p.add_argument(
        "--cni-socket",
        default=env("TORTIE_CNI_SOCKET", DEFAULT_CNI_SOCKET),
        help="unix socket on which this node serves the CNI plugin's calls (the network configuration's "
        'service_socket; "" for no CNI service: the plugin then works on its own; default: %(default)s)',
    )
    p.add_argument(
        "--ipam-gc-interval",
        type=float,
        default=float(env("TORTIE_IPAM_GC_INTERVAL", "300")),
        metavar="SECONDS",
        help="seconds between this host's IPAM garbage collection passes (0: none; stretched to 0.5 s "
        "per Node in large clusters; default: %(default)s)",
    )
    p.add_argument(
        "--ipam-gc-grace",
        type=float,
        default=float(env("TORTIE_IPAM_GC_GRACE", "900")),
        metavar="SECONDS",
        help="how long an allocation or endpoint must have been garbage before it is released "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--ipam-lock-file",
        default=env("TORTIE_IPAM_LOCK_FILE", DEFAULT_IPAM_LOCK_FILE),
        metavar="PATH",
        help="the CNI plugin's host IPAM lock file, held while the collector releases (default: %(default)s)",
    )
    p.add_argument("--no-agent", action="store_true", help="do not run the agent")
    p.add_argument(
        "--bgp", choices=("bird", "none"), default=env("TORTIE_BGP", "bird"),
        help="bird (default) or none: no BGP at all; the agents still route VXLAN pools from IPAM block "
        "affinities (TORTIE_BGP)",
    )
    p.add_argument("--no-bgp", action="store_true", help="the same as --bgp none")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tortie.bgp.daemon import default_run_dir
    from tortie.bgp.secrets import DEFAULT_SECRETS_DIR
    from tortie.datastore.url import open_datastore
    from tortie.node.service import NodeConfig, NodeService

    hostname = args.hostname or socket.gethostname()
    url = args.node_datastore or getattr(args, "datastore", None)
    as_env = os.environ.get("TORTIE_AS_NUMBER")
    as_number = args.as_number if args.as_number is not None else (_as_number(as_env) if as_env else None)
    config = NodeConfig(
        hostname=hostname,
        run_dir=args.run_dir or default_run_dir(hostname),
        datastore_url=url,
        ip=args.ip,
        ip_method=args.ip_autodetection_method,
        ip6=args.ip6,
        ip6_method=args.ip6_autodetection_method,
        as_number=as_number,
        run_agent=not args.no_agent,
        run_bgp=not args.no_bgp and args.bgp != "none",
        agent_config_file=args.agent_config,
        agent_health_port=args.agent_health_port,
        workload_interface_prefixes=tuple(args.workload_interface_prefix or ("tort", "cali")),
        fast_bgp_timers=args.fast_bgp_timers,
        bird_binary=args.bird,
        secrets_dir=args.secrets_dir or DEFAULT_SECRETS_DIR,
        nodename_file=args.nodename_file,
        mtu_file=args.mtu_file,
        cni_socket=args.cni_socket,
        ipam_gc_interval=args.ipam_gc_interval,
        ipam_gc_grace=args.ipam_gc_grace,
        ipam_lock_file=args.ipam_lock_file,
    )
    root = logging.getLogger()
    root.setLevel(min(root.level, logging.INFO))  # a service logs its state transitions
    stop = threading.Event()
    with closing(open_datastore(url)) as ds:
        service = NodeService(config, ds)
        return run_in_foreground(lambda: service.run(stop), stop.set)
