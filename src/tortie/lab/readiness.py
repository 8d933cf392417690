"""When is a datacenter lab ready? Every node ready, every BGP session up, every remote workload routed.

    wait_ready(nodes, timeout, progress, hosts)    stages, each waited for in turn:
      1. node.json of every host says ready (agent /readiness and the BGP daemon's `ready`)
      2. every BIRD session Established (sessions towards hosts taken down are not waited for; a host
         with nobody to peer with needs none)
      3. every remote workload address, in every family, routed through its own host's fabric address
         of that family by a BGP-learned kernel route (`ip -j route show proto bird`, longest match)
         — `missing_routes`
    LabError naming what is still missing after `timeout`.

`hosts` defaults to the hosts whose node service runs. Read-only: nothing here changes the lab.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence

from tortie.common.ipfamily import family_of
from tortie.lab.errors import LabError
from tortie.lab.node_services import NodeServices

Progress = Callable[[str], None]


def missing_routes(nodes: NodeServices, hosts: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Per host, the remote workloads (on other up hosts) it does not route via their host."""
    state = nodes.lab.state
    hosts = list(hosts) if hosts is not None else nodes.running_hosts()
    missing: dict[str, list[str]] = {}
    for host in hosts:
        routes = {
            fam: {ipaddress.ip_network(dst): gw for dst, gw in nodes.bird_routes(host, fam).items()}
            for fam in state.families
        }
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


# A stage looks once and returns (what is still missing, "" when nothing; what to report when done).
Stage = Callable[[NodeServices, Sequence[str]], tuple[str, str]]


def _nodes_stage(nodes: NodeServices, hosts: Sequence[str]) -> tuple[str, str]:
    waiting = [h for h in hosts if not (nodes.status(h) or {}).get("ready")]
    done = f"nodes ready: {len(hosts)}/{len(hosts)} (agent + BGP daemon + BIRD)"
    return (f"nodes not ready: {', '.join(waiting)}" if waiting else ""), done


def _sessions_stage(nodes: NodeServices, hosts: Sequence[str]) -> tuple[str, str]:
    state = nodes.lab.state
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
