"""When is a datacenter lab ready? Every node ready, every BGP session up, every remote workload routed.

    wait_ready(nodes, timeout, progress, hosts)    stages, each waited for in turn:
      1. node.json of every host, written by its running node service, says ready (agent /readiness
         and the BGP daemon's `ready`)
      2. every BIRD session Established (sessions towards hosts taken down are not waited for; a host
         with nobody to peer with needs none)
      3. every remote workload address, in every family, routed through its own host (longest match):
         by a BGP-learned kernel route via its fabric address (`ip -j route show proto bird`), or by
         the agent's route via its fabric address (CrossSubnet, same subnet) or via its VXLAN tunnel
         address (`proto 77`) — `missing_routes`
    LabError naming what is still missing after `timeout`.

`hosts` defaults to the hosts whose node service runs. Read-only: nothing here changes the lab.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence

from tortie.common.ipfamily import Family, IPNetwork, family_of
from tortie.lab.errors import LabError
from tortie.lab.node_services import NodeServices
from tortie.lab.state import LabState

Progress = Callable[[str], None]


def missing_routes(nodes: NodeServices, hosts: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Per host, the remote workloads (on other up hosts) it does not route via their host."""
    state = nodes.lab.state
    hosts = list(hosts) if hosts is not None else nodes.running_hosts()
    missing: dict[str, list[str]] = {}
    tunnels = nodes.tunnel_addresses() if _encapsulated(nodes) else {}
    for host in hosts:
        routes: dict[Family, dict[IPNetwork, str]] = {}
        for fam in state.families:
            table = {ipaddress.ip_network(dst): gw for dst, gw in nodes.bird_routes(host, fam).items()}
            if tunnels:  # the agent's routes win over BGP's (lower metric); VXLAN pools are not in BGP
                table.update({ipaddress.ip_network(dst): _via(gw, dev, tunnels, state, fam)
                              for dst, (gw, dev) in nodes.agent_routes(host, fam).items()})
            routes[fam] = table
        for wl in state.workloads.values():
            if wl.host == host or wl.host not in hosts:
                continue
            for ip in wl.ips:
                address = ipaddress.ip_address(ip)
                fam = family_of(address)
                table = routes.get(fam, {})
                best = max((n for n in table if address in n), key=lambda n: n.prefixlen, default=None)
                if best is None or table[best] != state.host_ip(wl.host, fam):
                    missing.setdefault(host, []).append(f"{wl.name} ({address})")
    return missing


def _encapsulated(nodes: NodeServices) -> bool:
    return nodes.record.encapsulation != "none"


def _via(gateway: str, dev: str, tunnels: dict[str, dict[Family, str]], state: LabState, fam: Family) -> str:
    """The fabric address of the host an agent route leads to (a tunnel address stands for its host)."""
    if dev.startswith("vxlan"):
        owner = next((h for h, by_fam in tunnels.items() if by_fam.get(fam) == gateway), None)
        return state.host_ip(owner, fam) if owner in state.hosts else f"tunnel {gateway}"
    return gateway


# A stage looks once and returns (what is still missing, "" when nothing; what to report when done).
Stage = Callable[[NodeServices, Sequence[str]], tuple[str, str]]


def _nodes_stage(nodes: NodeServices, hosts: Sequence[str]) -> tuple[str, str]:
    waiting = [h for h in hosts if not (nodes.live_status(h) or {}).get("ready")]
    done = f"nodes ready: {len(hosts)}/{len(hosts)} (agent + BGP daemon + BIRD)"
    return (f"nodes not ready: {', '.join(waiting)}" if waiting else ""), done


def _sessions_stage(nodes: NodeServices, hosts: Sequence[str]) -> tuple[str, str]:
    state = nodes.lab.state
    if nodes.record.bgp == "none":
        return "", "BGP: not run (--bgp none); the agents route other hosts' blocks from IPAM"
    sessions = {h: nodes.bgp_peers(h) or [] for h in hosts}
    stopped = {  # the addresses of hosts taken down
        address.split("/")[0] for h in state.hosts if h not in hosts for address in state.hosts[h].addresses
    }
    down = [
        f"{h}->{p['peerAddress']}"
        for h, s in sessions.items()
        for p in s
        if not p["established"] and p["peerAddress"] not in stopped
    ]
    routers = [a for a in state.appliances.values() if a.role == "router"]
    lonely = len(state.hosts) + len(routers) == 1  # nobody to peer with
    down += [] if lonely else [h for h, s in sessions.items() if not s]
    done = f"BGP sessions established: {sum(len(s) for s in sessions.values())}"
    return (f"BGP sessions not established: {', '.join(down)}" if down else ""), done


def _routes_stage(nodes: NodeServices, hosts: Sequence[str]) -> tuple[str, str]:
    missing = missing_routes(nodes, hosts)
    what = "; ".join(f"{h} lacks {', '.join(w)}" for h, w in missing.items())
    done = (
        "routes converged: every host routes every remote workload "
        f"({len(nodes.lab.state.workloads)} workloads)"
    )
    return (f"routes missing: {what}" if missing else ""), done


STAGES: tuple[Stage, ...] = (_nodes_stage, _sessions_stage, _routes_stage)


def wait_ready(
    nodes: NodeServices,
    timeout: float = 60.0,
    progress: Progress | None = None,
    hosts: Sequence[str] | None = None,
) -> None:
    """See the module docstring."""
    lab = nodes.lab
    deadline = time.monotonic() + timeout
    hosts = list(hosts) if hosts is not None else nodes.running_hosts()
    stages = list(STAGES)
    while stages:
        missing, done = stages[0](nodes, hosts)
        if not missing:
            stages.pop(0)
            if progress:
                progress(done)
            continue
        if time.monotonic() > deadline:
            raise LabError(
                f"lab {lab.name} not ready after {timeout:.0f}s: {missing} (logs: {lab.workdir}/logs)"
            )
        time.sleep(0.1)
