"""`tortie lab status`: one JSON-able picture of a lab, gathered without changing anything.

Sources: lab.json (hosts, workloads, routers, etcd members, recorded processes), each host's node.json
(the node service: agent and BGP daemon health), each host's BIRD control socket (sessions), the ToR's
own CLI (its neighbours and RIB size). Output (`collect`):

    {"name", "workdir", "datastore": {"kind", "url", "clientUrl"}, "subnets", "pools", "pool",
     "hosts": [{"name", "netns", "address", "addresses", "node": {"running", "pid", "ready", "agent", "bgp"},
                "bgpSessions": [{"peer", "type", "state", "info", "established"}] | null}],
     "workloads": [{"name", "host", "netns", "namespace", "ips", "labels", "ports", "interface", "endpoint"}],
     "routers": [{"name", "kind", "asn", "address", "addresses", "running", "neighbors", "ribPrefixes"}],
     "etcd": [{"name", "address", "addresses", "running"}]}

`bgpSessions` is null when BIRD does not answer on that host. Addresses are per family: `addresses`
(hosts, routers, etcd members: fabric addresses with prefix length) and a workload's `ips` list every
family; `address` is the first of them and `pool` the first of `pools` (the IPv4 ones on a
dual-stack lab).
"""

from __future__ import annotations

from typing import Any

from tortie.lab.datacenter import Datacenter
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
        node = dc.nodes.status(name) or {}
        pid = dc.nodes.pid(name)
        components = node.get("components") or {}
        agent = components.get("agent") or {}
        bgp = components.get("bgp") or {}
        peers = dc.nodes.bgp_peers(name) if pid is not None else None
        hosts.append(
            {
                "name": name,
                "netns": host.netns,
                "address": host.address,
                "addresses": list(host.addresses),
                "node": {
                    "running": pid is not None,
                    "pid": pid,
                    "ready": bool(pid is not None and node.get("ready")),
                    "agent": {
                        "running": bool(agent.get("running")) and pid is not None,
                        "pid": agent.get("pid"),
                        "ready": agent.get("ready"),
                        "restarts": agent.get("restarts"),
                    },
                    "bgp": {
                        "running": bool(bgp.get("running")) and pid is not None,
                        "ready": bgp.get("ready"),
                        "bird": bgp.get("bird"),
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
            etcd.append(
                {
                    "name": name,
                    "address": appliance.address,
                    "addresses": list(appliance.addresses),
                    "running": running,
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
