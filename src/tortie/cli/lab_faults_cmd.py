"""`tortie lab restart|kill|partition|heal`: rehearse failures on a lab (tortie.lab.faults).

    tortie lab restart HOST              the host's node service stopped and started (agent and BIRD),
                                         as `systemctl restart` would; waits until the host is ready
    tortie lab kill HOST agent|bgp       SIGKILL the host's agent / BIRD; the node service restarts it
    tortie lab kill MEMBER etcd          SIGKILL etcd member MEMBER (e1, e2, ...); its keeper restarts it
    tortie lab partition HOST            cut the host off the fabric (its node service keeps running)
    tortie lab heal HOST                 put it back; waits until every running host is ready again

Common options: `--name N` (the lab), `--no-wait` (return right after the fault), `--timeout S` (the
wait; default 60), `-o text|json` (json: {"action", "pid", "newPid", "seconds"}). `tortie lab status`
shows the result: processes as /proc sees them, a host's fabric `connected` or `partitioned`.
Exit codes: 0 done (and back, unless --no-wait); 1 no such lab/host/member, the component was not
running, or it was not back within the timeout.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from tortie.cli.lab_cmd import lab_name_option
from tortie.cli.verbs import verb_group

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers
    from tortie.lab.faults import FaultResult


def _common(p: argparse.ArgumentParser, wait: bool = True) -> None:
    lab_name_option(p)
    if wait:
        p.add_argument("--no-wait", dest="wait", action="store_false",
                       help="return right after the fault, without waiting for the recovery")
        p.add_argument("--timeout", type=float, default=60.0,
                       help="seconds to wait for the recovery (default: %(default)s)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")


def register(sub: SubParsers) -> None:
    verbs = verb_group(sub, "lab", help="a virtual datacenter in network namespaces (hosts, ToR, workloads)")
    p = verbs.add_parser("restart", help="restart a host's node service (agent and BIRD), as systemd would")
    p.add_argument("host")
    _common(p)
    p.set_defaults(func=_restart)
    p = verbs.add_parser("kill", help="SIGKILL a host's agent or BIRD, or an etcd member; its supervisor "
                                      "restarts it")
    p.add_argument("target", help="a host (agent, bgp) or an etcd member such as e1 (etcd)")
    p.add_argument("component", choices=("agent", "bgp", "etcd"))
    _common(p)
    p.set_defaults(func=_kill)
    p = verbs.add_parser("partition", help="cut a host off the fabric")
    p.add_argument("host")
    _common(p, wait=False)
    p.set_defaults(func=_partition)
    p = verbs.add_parser("heal", help="put a partitioned host back on the fabric")
    p.add_argument("host")
    _common(p)
    p.set_defaults(func=_heal)


def _report(args: argparse.Namespace, result: FaultResult) -> int:
    if args.output == "json":
        print(json.dumps(result.to_json()))
        return 0
    line = result.action + (f": pid {result.pid}" if result.pid is not None else "")
    if result.seconds is not None:
        line += (f"; back as pid {result.new_pid}" if result.new_pid is not None else "; ready")
        line += f" after {result.seconds:.2f}s"
    print(line)
    return 0


def _restart(args: argparse.Namespace) -> int:
    from tortie.cli.lab_cmd import _open
    from tortie.lab.datacenter import Datacenter
    from tortie.lab.faults import restart_node

    dc = _open(args)
    with Datacenter.locked(args.lab_name):  # it records the new node service's process
        return _report(args, restart_node(dc, args.host, wait=args.wait, timeout=args.timeout))


def _kill(args: argparse.Namespace) -> int:
    from tortie.cli.lab_cmd import _open
    from tortie.lab.faults import kill

    return _report(args, kill(_open(args), args.target, args.component, wait=args.wait,
                              timeout=args.timeout))


def _partition(args: argparse.Namespace) -> int:
    from tortie.cli.lab_cmd import _open
    from tortie.lab.faults import partition

    return _report(args, partition(_open(args), args.host))


def _heal(args: argparse.Namespace) -> int:
    from tortie.cli.lab_cmd import _open
    from tortie.lab.faults import heal

    return _report(args, heal(_open(args), args.host, wait=args.wait, timeout=args.timeout))
