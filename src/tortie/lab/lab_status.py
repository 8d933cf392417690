"""`tortie lab status`: one JSON-able picture of a lab, gathered without changing anything.

Sources: lab.json (hosts, workloads, routers, etcd members, recorded processes), each host's node.json
(the node service: agent and BGP daemon health), each host's BIRD control socket (sessions), the ToR's
own CLI (its neighbours and RIB size), the fabric's ports, the etcd members' keepers. Output (`collect`):

    {"name", "workdir", "datastore": {"kind", "url", "clientUrl"}, "subnets", "pools", "pool",
     "hosts": [{"name", "netns", "address", "addresses", "fabric": "connected" | "partitioned",
                "node": {"running", "pid", "ready",
                         "agent": {"running", "pid", "ready", "restarts"},
                         "bgp": {"running", "ready", "bird": {"running", "pid", "restarts"}}},
                "bgpSessions": [{"peer", "type", "state", "info", "established"}] | null}],
     "workloads": [{"name", "host", "netns", "namespace", "ips", "labels", "ports", "interface", "endpoint"}],
     "routers": [{"name", "kind", "asn", "address", "addresses", "running", "neighbors", "ribPrefixes"}],
     "etcd": [{"name", "address", "addresses", "running", "pid", "healthy", "restarts"}]}

The truth, not the records: a process counts as running only when /proc shows it alive (with the
start time recorded for it, or inside the host's namespace for the agent and BIRD, whose pids come
from node.json), and a node.json left behind by a node service that is gone is ignored, so after
`tortie lab kill`, `restart`, `partition` or a restart by hand the status shows what runs now.
`bgpSessions` is null when BIRD does not run or does not answer on that host. Addresses are per
family: `addresses` (hosts, routers, etcd members: fabric addresses with prefix length) and a
workload's `ips` list every family; `address` is the first of them and `pool` the first of `pools`
(the IPv4 ones on a dual-stack lab).
"""

from __future__ import annotations

from typing import Any

from tortie.lab.datacenter import Datacenter
from tortie.lab.etcd_members import keeper_state, member_healthy, member_pid
from tortie.lab.keeper import read_state
from tortie.lab.state import WorkloadRecord


def workload_json(w: WorkloadRecord) -> dict[str, Any]:
    """One workload as `status` and `tortie lab workload add -o json` show it."""
    return {
        "name": w.name,
        "host": w.host,
        "netns": w.netns,
        "namespace": w.namespace or "default",
        "ips": list(w.ips),
        "labels": dict(w.labels),
        "ports": list(w.ports),
        "interface": w.host_ifname,
        "endpoint": w.endpoint,
        "pod": w.pod or None,
    }


def collect(dc: Datacenter) -> dict[str, Any]:
    lab = dc.lab
    state = lab.state
    record = dc.record
    hosts = []
    for name, host in state.hosts.items():
        pid = dc.nodes.pid(name)
        node = dc.nodes.live_status(name) or {}
        components = node.get("components") or {}
        agent = components.get("agent") or {}
        bgp = components.get("bgp") or {}
        bird = bgp.get("bird") or {}
        agent_pid = dc.nodes.component_pid(name, "agent")
        bird_pid = dc.nodes.component_pid(name, "bgp")
        peers = dc.nodes.bgp_peers(name) if bird_pid is not None else None
        hosts.append(
            {
                "name": name,
                "netns": host.netns,
                "address": host.address,
                "addresses": list(host.addresses),
                "fabric": "connected" if lab.fabric.port_up(name) else "partitioned",
                "node": {
                    "running": pid is not None,
                    "pid": pid,
                    "ready": bool(pid is not None and node.get("ready")),
                    "agent": {
                        "running": agent_pid is not None,
                        "pid": agent_pid,
                        "ready": bool(agent_pid is not None and agent.get("ready")),
                        "restarts": agent.get("restarts"),
                    },
                    "bgp": {
                        "running": bool(bgp.get("running")) and bird_pid is not None,
                        "ready": bool(bird_pid is not None and bgp.get("ready")),
                        "bird": {"running": bird_pid is not None, "pid": bird_pid,
                                 "restarts": bird.get("restarts")},
                    },
                },
                "bgpSessions": None
                if peers is None
                else [
                    {
                        "peer": p["peerAddress"],
                        "type": p["peerType"],
                        "state": p["state"],
                        "info": p["info"],
                        "established": p["established"],
                    }
                    for p in peers
                ],
            }
        )
    workloads = [workload_json(w) for w in sorted(state.workloads.values(), key=lambda w: w.name)]
    routers = []
    etcd = []
    for name, appliance in state.appliances.items():
        role = f"router/{name}" if appliance.role == "router" else f"etcd/{name}"
        proc = lab.processes.by_role(role)
        running = proc is not None and lab.processes.alive(proc)
        if appliance.role == "router":
            from tortie.lab.routers import neighbors, rib_prefixes

            routers.append(
                {
                    "name": name,
                    "kind": appliance.kind,
                    "asn": appliance.asn,
                    "address": appliance.address,
                    "addresses": list(appliance.addresses),
                    "running": running,
                    "neighbors": neighbors(lab, appliance) if running else {},
                    "ribPrefixes": sorted(rib_prefixes(lab, appliance)) if running else [],
                }
            )
        else:
            member = member_pid(lab, name)
            keeper = read_state(keeper_state(lab, name)) or {}
            etcd.append(
                {
                    "name": name,
                    "address": appliance.address,
                    "addresses": list(appliance.addresses),
                    "running": member is not None,
                    "pid": member,
                    "healthy": member is not None and member_healthy(lab, name),
                    "restarts": keeper.get("restarts"),
                }
            )
    return {
        "name": dc.name,
        "workdir": str(lab.workdir),
        "datastore": {
            "kind": record.datastore_kind,
            "url": record.datastore_url,
            "clientUrl": record.client_url,
        },
        "subnets": list(state.subnets),
        "pools": list(record.pools),
        "pool": record.pools[0] if record.pools else "",
        "hosts": hosts,
        "workloads": workloads,
        "routers": routers,
        "etcd": etcd,
    }
