"""`tortie node status [-o table|json]`: this host's BGP sessions and advertised prefixes.

Reads BIRD's control socket in the host's run directory (`--run-dir`, default
`/var/run/tortie/<hostname>`; `bird.ctl` there), the BGP daemon's `status.json` and the node
service's `node.json`. Prints, like `calicoctl node status`, whether the agent, the daemon and BIRD
are running, then one row per peer: address, type (node-to-node mesh / route reflector / route
reflector client / global / node specific / local workload), BIRD state, since, info (Established,
or the BGP state and the reason it is not Established), the prefixes this node originates, and the
problems the BGP daemon found (a peer skipped because its BGPFilter or password secret is missing),
and what of Calico's QoS this kernel cannot do (`kernel.tc.probe_shaping`, the agent's own probe: a
missing qdisc or device kind, and the qosControls fields this node's agent therefore refuses;
docs/design/qos.md). The probe needs root (it unshares a throwaway namespace); without it the kernel
is reported as not probed.

The node's MTU, as its agent decided and published it for the CNI plugin: the workload MTU, why (the
uplink and its MTU, the encapsulation overhead or the configured vxlanMTU), and the encapsulation
problems the agent found (read from `<mtu file>.json`; the node service's node.json names the file).
A node service run with `--bgp none` has no BIRD: its status is the agent and the MTU only.

Exit code 1 when BIRD is not running (and BGP is not turned off), or when the node service
(`tortie node run`) manages an agent that is not running (its node.json says so, or has not been
refreshed for `NODE_STATUS_STALE` seconds: the node service itself is gone). Without a node.json
(BGP run on its own, `tortie bgp run`) the agent is reported as not managed here and does not decide
the exit code.

The `node` verb group is shared with `tortie node run` (node_run_cmd.py). Any module adds a verb with

    from tortie.cli.node_status_cmd import node_subparsers
    def register(sub):
        p = node_subparsers(sub).add_parser("run", help=...)
        p.set_defaults(func=...)

`node_subparsers(sub)` creates the `node` group the first time and returns the same sub-parsers
object afterwards, whichever module registers first.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

from tortie.bgp.control import BirdControl, BirdNotRunning
from tortie.bgp.daemon import RunPaths, default_run_dir, read_health
from tortie.bgp.status import PeerStatus, query_advertised, query_peers
from tortie.cli.verbs import verb_group
from tortie.common.ipfamily import FAMILIES, family_of
from tortie.node.service import STATUS_INTERVAL, read_node_status

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers


NODE_STATUS_STALE = 3 * STATUS_INTERVAL


def node_subparsers(sub: SubParsers) -> SubParsers:
    """The sub-parsers of the `node` verb group, created on first use (see the module docstring)."""
    return verb_group(sub, "node", help="this host as a cluster node: status (BGP peers, routes), run")


def add_host_arguments(p: argparse.ArgumentParser) -> None:
    """--hostname and --run-dir, shared by the node and bgp verbs."""
    p.add_argument("--hostname", default=None, help="this host's Node name (default: the system host name)")
    p.add_argument("--run-dir", default=None,
                   help="runtime directory of this host's BGP daemon (default: /var/run/tortie/<hostname>)")


def resolve_run_dir(args: argparse.Namespace) -> tuple[str, str]:
    hostname = args.hostname or socket.gethostname()
    return hostname, args.run_dir or default_run_dir(hostname)


def register(sub: SubParsers) -> None:
    p = node_subparsers(sub).add_parser("status", help="BGP peers and advertised prefixes of this host")
    add_host_arguments(p)
    p.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(func=_run)


def agent_state(run_dir: str, now: float | None = None) -> dict[str, Any]:
    """The agent as the node service reports it: {"managed", "running", "reason"}."""
    node = read_node_status(run_dir)
    if node is None:
        return {"managed": False, "running": None,
                "reason": "no node service status here (node.json): the agent is not managed by this run "
                          "directory"}
    agent = (node.get("components") or {}).get("agent")
    if agent is None:
        return {"managed": False, "running": None, "reason": "the node service runs without an agent"}
    age = (now if now is not None else time.time()) - float(node.get("updated") or 0)
    if node.get("stopping") or age > NODE_STATUS_STALE:
        return {"managed": True, "running": False,
                "reason": f"the node service is not running (node.json last updated {age:.0f}s ago)"}
    running = bool(agent.get("running"))
    return {"managed": True, "running": running, "ready": agent.get("ready"),
            "reason": "" if running else f"the agent has exited (last exit code {agent.get('lastExitCode')})"}


def kernel_support() -> dict[str, Any]:
    """What of tc shaping this kernel has, and the qosControls fields the agent refuses for it."""
    from tortie.dataplane.managers.qos import unsupported_fields
    from tortie.kernel.tc import probe_shaping

    parts = probe_shaping()
    if all(r is not None and r.startswith("could not be probed") for r in parts.values()):
        reason = next(iter(parts.values()))
        return {"probed": False, "reason": reason, "shaping": parts, "refusedQosFields": {}}
    return {"probed": True, "shaping": parts,
            "refusedQosFields": unsupported_fields(parts, tc=True, nft=True)}


def _kernel_lines(kernel: dict[str, Any]) -> list[str]:
    if not kernel["probed"]:
        return [f"Kernel traffic control: not probed ({kernel['reason']})."]
    missing = {part: why for part, why in kernel["shaping"].items() if why is not None}
    if not missing:
        return ["Kernel traffic control: tbf, ifb, ingress and u32 mirred work (qosControls bandwidth limits "
                "are programmed)."]
    lines = [f"Kernel lacks {part}: {why}" for part, why in missing.items()]
    refused = ", ".join(sorted(kernel["refusedQosFields"]))
    return [*lines, f"Endpoints asking for {refused} are refused on this node."]


def mtu_state(run_dir: str) -> dict[str, Any] | None:
    """The agent's MTU decision as published beside its MTU file (None when unknown)."""
    from tortie.dataplane.managers.host_mtu import read_status

    node = read_node_status(run_dir) or {}
    mtu_file = node.get("mtuFile")
    return read_status(str(mtu_file)) if mtu_file else None


def bgp_off(run_dir: str) -> bool:
    """The node service runs without BGP (`--bgp none`), as its node.json says."""
    node = read_node_status(run_dir)
    return node is not None and node.get("bgp") == "none"


def collect(run_dir: str) -> dict[str, Any]:
    """Everything `node status` shows, as a JSON-able dict (raises BirdNotRunning)."""
    if bgp_off(run_dir):
        return {"bird": {"running": False, "disabled": True}, "agent": agent_state(run_dir), "daemon": None,
                "peers": [], "advertised": [], "problems": [], "kernel": kernel_support(),
                "mtu": mtu_state(run_dir)}
    health = read_health(run_dir)
    with BirdControl(RunPaths(run_dir).socket, timeout=2.0) as ctl:
        peers = query_peers(ctl)
        advertised = query_advertised(ctl)
        version = ctl.version
    return {
        "bird": {"running": True, "version": version},
        "agent": agent_state(run_dir),
        "daemon": health,
        "peers": [p.to_json() for p in peers],
        "advertised": advertised,
        "problems": list((health or {}).get("problems") or []),
        "kernel": kernel_support(),
        "mtu": mtu_state(run_dir),
    }


def _peer_table(title: str, peers: list[PeerStatus]) -> Table:
    table = Table(title=title, title_justify="left", box=box.ASCII)
    for col in ("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"):
        table.add_column(col)
    for p in peers:
        table.add_row(p.address, p.peer_type, p.state, p.since, p.info)
    return table


def _agent_line(agent: dict[str, Any]) -> str:
    if not agent["managed"]:
        return f"tortie agent: not managed here ({agent['reason']})."
    if agent["running"]:
        return f"tortie agent is running (ready: {str(agent.get('ready')).lower()})."
    return f"tortie agent is NOT running: {agent['reason']}."


def _print_mtu(console: Console, mtu: dict[str, Any] | None) -> None:
    if mtu is None:
        console.print("MTU: not published by the agent (yet).")
        return
    console.print(f"MTU for workloads: {mtu.get('mtu')} ({mtu.get('reason')}).", markup=False)
    for problem in mtu.get("problems") or []:
        console.print(f"Encapsulation problem: {problem}", markup=False)


def _run(args: argparse.Namespace) -> int:
    hostname, run_dir = resolve_run_dir(args)
    try:
        data = collect(run_dir)
    except BirdNotRunning as exc:
        health = read_health(run_dir)
        if args.output == "json":
            print(json.dumps({"bird": {"running": False, "error": str(exc)}, "agent": agent_state(run_dir),
                              "daemon": health, "peers": [], "advertised": [],
                              "problems": list((health or {}).get("problems") or []),
                              "kernel": kernel_support(),
                              "mtu": mtu_state(run_dir)}, indent=2))
        else:
            print(f"BIRD is not running on {hostname}: {exc}", file=sys.stderr)
            print(_agent_line(agent_state(run_dir)), file=sys.stderr)
            for line in _kernel_lines(kernel_support()):
                print(line, file=sys.stderr)
        return 1
    agent_down = data["agent"]["managed"] and not data["agent"]["running"]
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 1 if agent_down else 0
    console = Console(width=160)
    console.print(_agent_line(data["agent"]))
    _print_mtu(console, data["mtu"])
    if data["bird"].get("disabled"):
        console.print("BGP is not run on this node (--bgp none): routes to other hosts come from the agent "
                      "(VXLAN pools, from IPAM block affinities).")
        for line in _kernel_lines(data["kernel"]):
            console.print(line, markup=False)
        return 1 if agent_down else 0
    health = data["daemon"]
    if health is not None:
        state = "running" if health.get("live") else "stopped"
        console.print(f"tortie bgp daemon is {state} (ready: {str(health.get('ready')).lower()}).")
    console.print(f"{data['bird']['version']} is running.")
    peers = [PeerStatus(p["name"], p["peerAddress"], p["peerType"], p["state"], p["since"], p["info"],
                        p["established"]) for p in data["peers"]]
    for fam in FAMILIES:  # an IPv4 table always (Calico's layout), an IPv6 one when there are peers
        rows = [p for p in peers if family_of(p.address) == fam]
        if rows or fam == FAMILIES[0]:
            console.print(_peer_table(f"{fam} BGP status", rows))
    console.print("Advertised prefixes: " + (", ".join(data["advertised"]) or "(none)"))
    for problem in data["problems"]:
        console.print(f"Problem: {problem}", markup=False)
    for line in _kernel_lines(data["kernel"]):
        console.print(line, markup=False)
    return 1 if agent_down else 0
