"""`tortie lab ...`: a virtual datacenter in network namespaces on this machine (needs root).

    tortie lab up [--name N] [--hosts K] [--workloads-per-host W] [--datastore sqlite|etcd] [--etcd-tls]
                  [--tor gobgp|frr|none] [--route-reflectors R] [--ip-family dual|ipv4|ipv6]
                  [--encapsulation none|vxlan|vxlan-cross-subnet] [--subnets N] [--bgp bird|none]
    tortie lab status [-o table|json]
    tortie lab workload add NAME --host H [--labels k=v,..] [--namespace NS] [--ports name:proto:port,..]
                                          [-o text|json]
    tortie lab workload del NAME
    tortie lab exec WORKLOAD|HOST|ROUTER -- CMD...
    tortie lab probe SRC DST [--protocol tcp|udp|icmp] [--port P] [--timeout S] [--ip-family 4|6]
    tortie lab matrix [--protocol tcp,udp,..] [--port 80,81,..] [--timeout S] [--ip-family 4|6]
                      [-o table|json]            (every protocol x port, probed in parallel)
    tortie lab env
    tortie lab down [--name N]
    tortie lab restart|kill|partition|heal ...   fault injection (lab_faults_cmd.py)

Every verb takes `--name N` (alias `--lab`; default $TORTIE_LAB, else "tortie"). Exit codes: 0 success;
1 user error (a lab of that name exists, no such lab/host/workload, bad value, the build failed);
`exec` passes the command's code through; `probe` prints `allowed` (0) or `denied` (1), and exits 2
when it could not probe (e.g. an unknown name). `down` succeeds when there is nothing to remove.
Probes go to the destination's address of `--ip-family` (default: its first, IPv4 on a dual-stack
lab); a DST given as an address is probed in its own family.
The lab's files live in /run/tortie/lab/<name> ($TORTIE_LAB_ROOT overrides the root).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from tortie.cli.verbs import verb_group

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers
    from tortie.common.ipfamily import Family
    from tortie.lab.datacenter import Datacenter

EXIT_PROBE_ERROR = 2


def lab_name_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        "--lab",
        dest="lab_name",
        default=os.environ.get("TORTIE_LAB") or "tortie",
        help="lab name (default: $TORTIE_LAB, else tortie)",
    )


def register(sub: SubParsers) -> None:
    verbs = verb_group(sub, "lab", help="a virtual datacenter in network namespaces (hosts, ToR, workloads)")

    p = verbs.add_parser("up", help="build a lab: fabric, hosts running tortie node run, ToR, workloads")
    lab_name_option(p)
    p.add_argument("--hosts", type=int, default=3, help="number of hosts (default: %(default)s)")
    p.add_argument("--workloads-per-host", type=int, default=0, help="workloads created on each host via CNI")
    p.add_argument(
        "--datastore",
        dest="lab_datastore",
        choices=("sqlite", "etcd"),
        default="sqlite",
        help="sqlite file (default) or a 3-member etcd cluster on the fabric",
    )
    p.add_argument(
        "--etcd-tls",
        action="store_true",
        help="etcd over HTTPS with client certificates and authentication (user tortie, a password "
        "file): the secure setup",
    )
    p.add_argument(
        "--tor",
        choices=("gobgp", "frr", "none"),
        default="none",
        help="top-of-rack router peering with every host (default: %(default)s)",
    )
    p.add_argument(
        "--route-reflectors",
        type=int,
        default=0,
        help="make the first R hosts route reflectors and turn the full mesh off",
    )
    p.add_argument(
        "--ip-family",
        choices=("dual", "ipv4", "ipv6"),
        default="dual",
        help="fabric, pools and workloads: dual stack (default), IPv4 only or IPv6 only",
    )
    p.add_argument(
        "--encapsulation",
        choices=("none", "vxlan", "vxlan-cross-subnet"),
        default="none",
        help="none (default: pure layer 3); vxlan (pools vxlanMode Always, the fabric drops packets from "
        "workload addresses); vxlan-cross-subnet (CrossSubnet, hosts in several subnets joined by a router "
        "that routes host addresses only)",
    )
    p.add_argument(
        "--subnets", type=int, default=None,
        help="host subnets with --encapsulation vxlan-cross-subnet (default 2; hosts spread evenly)",
    )
    p.add_argument(
        "--bgp", choices=("bird", "none"), default="bird",
        help="bird (default) or none: the nodes run without BGP (routes to other hosts come from the "
        "agents: VXLAN pools only)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    p.set_defaults(func=_up)

    p = verbs.add_parser("status", help="hosts, workloads, BGP sessions, agent health")
    lab_name_option(p)
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=_status)

    wverbs = verb_group(verbs, "workload", help="add or delete a workload (through the CNI plugin)")
    p = wverbs.add_parser("add", help="create a workload on a host; prints its IP")
    p.add_argument("workload")
    p.add_argument("--host", required=True)
    p.add_argument("--labels", default="", help="k=v,k2=v2")
    p.add_argument(
        "--namespace",
        default=None,
        help="make the workload a Kubernetes pod in this namespace (CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME:"
        " endpoint <host>-k8s-<name>-eth0, profile kns.<namespace>; the Namespace object is created if"
        " missing); default: a plain container in namespace default",
    )
    p.add_argument("--ports", default="", help="named ports name:proto:port,... (e.g. http:tcp:80)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    lab_name_option(p)
    p.set_defaults(func=_workload_add)
    p = wverbs.add_parser("del", help="delete a workload (CNI DEL, then its namespace)")
    p.add_argument("workload")
    lab_name_option(p)
    p.set_defaults(func=_workload_del)

    p = verbs.add_parser("exec", help="run a command in a workload's, host's or router's namespace")
    lab_name_option(p)
    p.add_argument("target")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p.set_defaults(func=_exec)

    for verb, text in (
        ("probe", "is traffic from SRC to DST allowed? prints allowed/denied, exit 0/1"),
        ("matrix", "probe every workload pair"),
    ):
        p = verbs.add_parser(verb, help=text)
        lab_name_option(p)
        if verb == "probe":
            p.add_argument("src", help="workload, host or router")
            p.add_argument("dst", help="workload, host, router or IP address")
        if verb == "probe":
            p.add_argument("--protocol", choices=("tcp", "udp", "icmp"), default="tcp")
            p.add_argument("--port", type=int, default=80, help="tcp/udp port (default: %(default)s)")
        else:
            p.add_argument(
                "--protocol", type=_protocols, default=["tcp"], help="tcp, udp, icmp or a list: tcp,udp"
            )
            p.add_argument(
                "--port", type=_ports, default=[80], help="tcp/udp port or a list: 80,81 (default: 80)"
            )
        p.add_argument(
            "--timeout", type=float, default=2.0, help="seconds before denied (default: %(default)s)"
        )
        p.add_argument(
            "--ip-family",
            dest="probe_family",
            choices=("4", "6"),
            default=None,
            help="probe the destinations' IPv4 or IPv6 addresses (default: each one's first address)",
        )
        if verb == "matrix":
            p.add_argument("-o", "--output", choices=("table", "json"), default="table")
        p.set_defaults(func=_probe if verb == "probe" else _matrix)

    p = verbs.add_parser("env", help="print `export TORTIE_DATASTORE=...` for this lab")
    lab_name_option(p)
    p.set_defaults(func=_env)

    p = verbs.add_parser("down", help="remove everything the lab made (safe to repeat)")
    lab_name_option(p)
    p.set_defaults(func=_down)


def _need_root() -> None:
    from tortie.common.errors import UserError

    if os.geteuid() != 0:
        raise UserError("tortie lab needs root (network namespaces)")


def _open(args: argparse.Namespace) -> Datacenter:
    from tortie.lab.datacenter import Datacenter

    _need_root()
    return Datacenter.open(args.lab_name)


def _say(line: str) -> None:
    print(line, flush=True)


def _up(args: argparse.Namespace) -> int:
    from tortie.lab.datacenter import Datacenter
    from tortie.lab.spec import LabSpec

    _need_root()
    spec = LabSpec(
        name=args.lab_name,
        hosts=args.hosts,
        workloads_per_host=args.workloads_per_host,
        datastore=args.lab_datastore,
        etcd_tls=args.etcd_tls,
        tor=args.tor,
        route_reflectors=args.route_reflectors,
        ip_family=args.ip_family,
        encapsulation=args.encapsulation,
        subnets_count=args.subnets,
        bgp=args.bgp,
    )
    tor = f", ToR {spec.tor}" if spec.tor != "none" else ""
    rr = f", {spec.route_reflectors} route reflectors" if spec.route_reflectors else ""
    _say(
        f"building lab {spec.name}: {spec.hosts} hosts, {spec.workloads_per_host} workloads per host, "
        f"datastore {spec.datastore}{tor}{rr}, {spec.ip_family} stack, encapsulation {spec.encapsulation}"
        + (f" over {spec.segments} subnets" if spec.segments > 1 else "")
        + (", no BGP" if spec.bgp == "none" else "")
    )
    dc = Datacenter.up(spec, progress=_say, timeout=args.timeout)
    _say(f'use it: eval "$(tortie lab env --name {dc.name})"; tortie lab status --name {dc.name}')
    return 0


def _status(args: argparse.Namespace) -> int:
    from tortie.lab.lab_status import collect

    data = collect(_open(args))
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    _print_status(data)
    return 0


def _print_status(data: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    ds = data["datastore"]
    console.print(
        f"lab {data['name']}  datastore {ds['kind']} {ds['clientUrl']}  pools {', '.join(data['pools'])}"
    )
    hosts = Table(title="hosts", title_justify="left", box=box.ASCII)
    for col in ("HOST", "ADDRESS", "FABRIC", "NODE", "AGENT", "BGP", "SESSIONS"):
        hosts.add_column(col)
    for h in data["hosts"]:
        node = h["node"]
        sessions = h["bgpSessions"]
        up = sum(1 for s in sessions or [] if s["established"])
        hosts.add_row(
            h["name"],
            " ".join(h["addresses"]),
            h["fabric"],
            "running" if node["running"] else "stopped",
            _health(node["agent"]),
            _health(node["bgp"]),
            "BIRD down" if sessions is None else f"{up}/{len(sessions)} established",
        )
    console.print(hosts)
    bgp = Table(title="BGP sessions", title_justify="left", box=box.ASCII)
    for col in ("HOST", "PEER", "TYPE", "STATE", "INFO"):
        bgp.add_column(col)
    for h in data["hosts"]:
        for s in h["bgpSessions"] or []:
            bgp.add_row(h["name"], s["peer"], s["type"], s["state"], s["info"])
    console.print(bgp)
    wls = Table(title="workloads", title_justify="left", box=box.ASCII)
    for col in ("NAME", "HOST", "NAMESPACE", "IPS", "LABELS"):
        wls.add_column(col)
    for w in data["workloads"]:
        wls.add_row(
            w["name"],
            w["host"],
            w["namespace"],
            ",".join(w["ips"]),
            ",".join(f"{k}={v}" for k, v in sorted(w["labels"].items())),
        )
    console.print(wls)
    for r in data["routers"]:
        established = sum(
            1 for state in r["neighbors"].values() if str(state).lower() in ("established", "6")
        )
        console.print(
            f"router {r['name']} ({r['kind']}, AS {r['asn']}, {' '.join(r['addresses'])}): "
            f"{'running' if r['running'] else 'stopped'}, {established}/{len(r['neighbors'])} "
            f"neighbours established, prefixes: {', '.join(r['ribPrefixes']) or '(none)'}"
        )
    for e in data["etcd"]:
        state = f"running (pid {e['pid']}, {'healthy' if e['healthy'] else 'not healthy'})" if e["running"] \
            else "stopped"
        console.print(f"etcd {e['name']} {' '.join(e['addresses'])}: {state}, restarts {e['restarts'] or 0}")


def _health(component: dict[str, Any]) -> str:
    if not component.get("running"):
        return "stopped"
    return "ready" if component.get("ready") else "not ready"


def _workload_add(args: argparse.Namespace) -> int:
    from tortie.lab.cni_workloads import parse_labels
    from tortie.lab.datacenter import Datacenter

    _need_root()
    labels = parse_labels(args.labels)
    ports = [p for p in args.ports.split(",") if p.strip()]
    with Datacenter.locked(args.lab_name):
        dc = Datacenter.open(args.lab_name)
        record = dc.workloads.add(
            args.workload, args.host, labels=labels, namespace=args.namespace, ports=ports
        )
    if args.output == "json":
        from tortie.lab.lab_status import workload_json

        print(json.dumps(workload_json(record)))
    else:
        print(" ".join(record.ips))
    return 0


def _workload_del(args: argparse.Namespace) -> int:
    from tortie.lab.datacenter import Datacenter

    _need_root()
    with Datacenter.locked(args.lab_name):
        Datacenter.open(args.lab_name).workloads.delete(args.workload)
    return 0


def _exec(args: argparse.Namespace) -> int:
    from tortie.common.errors import UserError

    cmd = list(args.cmd)
    # `--name N` between the target and `--` lands in the remainder: take it back out.
    if "--" in cmd:
        head, cmd = cmd[: cmd.index("--")], cmd[cmd.index("--") + 1 :]
        while head:
            option = head.pop(0)
            if option in ("--name", "--lab") and head:
                args.lab_name = head.pop(0)
            elif option.startswith(("--name=", "--lab=")):
                args.lab_name = option.split("=", 1)[1]
            else:
                raise UserError(f"unexpected {option!r} before `--` (usage: tortie lab exec TARGET -- CMD)")
    if not cmd:
        raise UserError("nothing to run: tortie lab exec TARGET -- CMD ARGS...")
    dc = _open(args)
    try:
        netns = dc.lab.netns(args.target)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    sys.stdout.flush()
    os.execvp("ip", ["ip", "netns", "exec", netns, *cmd])
    return 127  # pragma: no cover - execvp does not return


def _family(args: argparse.Namespace) -> Family | None:
    from tortie.common.ipfamily import family

    return family(int(args.probe_family)) if args.probe_family else None


def _probe(args: argparse.Namespace) -> int:
    from tortie.common.errors import TortieError

    try:
        allowed = _open(args).probe(
            args.src, args.dst, args.protocol, args.port, args.timeout, family=_family(args)
        )
    except (TortieError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBE_ERROR
    print("allowed" if allowed else "denied")
    return 0 if allowed else 1


def _protocols(text: str) -> list[str]:
    items = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not items or any(p not in ("tcp", "udp", "icmp") for p in items):
        raise argparse.ArgumentTypeError(f"{text!r}: give tcp, udp, icmp or a comma-separated list of them")
    return list(dict.fromkeys(items))


def _ports(text: str) -> list[int]:
    try:
        items = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        items = []
    if not items or any(not 1 <= p <= 65535 for p in items):
        raise argparse.ArgumentTypeError(f"{text!r}: give a port 1-65535 or a comma-separated list of them")
    return list(dict.fromkeys(items))


def _checks(protocols: list[str], ports: list[int]) -> list[tuple[str, int]]:
    """Every protocol with every port (icmp once, it has no port)."""
    return [(p, 0) for p in protocols if p == "icmp"] + [
        (p, port) for p in protocols if p != "icmp" for port in ports
    ]


def _matrix(args: argparse.Namespace) -> int:
    dc = _open(args)
    fam = _family(args)
    checks = _checks(args.protocol, args.port)
    results = dc.matrices(checks, args.timeout, family=fam)
    names = list(next(iter(results.values())))
    if args.output == "json":
        tables: list[dict[str, Any]] = [
            {"protocol": protocol, "port": port if protocol != "icmp" else None, "allowed": result}
            for (protocol, port), result in results.items()
        ]
        data: dict[str, Any] = {"ipFamily": fam.version if fam else None, "workloads": names}
        # one check: its fields at the top level, as before lists were accepted
        data.update(tables[0] if len(tables) == 1 else {"matrices": tables})
        print(json.dumps(data, indent=2))
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table

    for (protocol, port), result in results.items():
        what = protocol if protocol == "icmp" else f"{protocol}/{port}"
        what += f" over {fam}" if fam else ""
        table = Table(title=f"{what}: rows connect to columns", title_justify="left", box=box.ASCII)
        table.add_column("FROM \\ TO")
        for name in names:
            table.add_column(name, justify="center")
        for src in names:
            table.add_row(
                src, *("-" if src == dst else ("allow" if result[src][dst] else "deny") for dst in names)
            )
        Console(width=max(80, 12 * (len(names) + 1))).print(table)
        allowed = sum(1 for s in names for d in names if s != d and result[s][d])
        print(f"{what}: {allowed}/{len(names) * (len(names) - 1)} pairs allowed")
    return 0


def _env(args: argparse.Namespace) -> int:
    for line in _open(args).env_lines():
        print(line)
    return 0


def _down(args: argparse.Namespace) -> int:
    from tortie.lab.datacenter import down

    _need_root()
    if down(args.lab_name):
        print(f"lab {args.lab_name} removed")
    else:
        print(f"no lab named {args.lab_name}; nothing to remove")
    return 0
