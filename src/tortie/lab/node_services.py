"""The node service of each lab host: `tortie node run` in the host namespace, and what it reports.

    start(host)   python -m tortie.cli.main node run --hostname <host> --datastore <inner URL>
                    per family of the fabric: --ip|--ip6 autodetect, method interface=^eth0$
                    (--ip none on an IPv6-only fabric) --run-dir <run_root>/<host>
                    --fast-bgp-timers --nodename-file '' --mtu-file <run_dir>/mtu
                    --cni-socket <run_root>/<host>/cni.sock [--bgp none]            (role node/<host>)
                  -> agent (child), BGP daemon (thread) -> BIRD (child)
    stop(host)    SIGTERM: the agent and BIRD stop (BIRD for a graceful restart: peers keep the
                  host's routes for its restart time); the kernel keeps its routes
    take_down / bring_up(host)   cut the host's fabric port and stop the service / the reverse
    status(host)  node.json of the run directory (ready, components: agent, bgp)
    live_status(host)   the same, only when the running service wrote it (not one left by a dead one)
    component_pid(host, "agent"|"bgp")   the agent's / BIRD's pid as live_status names it, believed
                  only when the pid lives in the host's namespace
    bgp_peers(host), bird_routes(host)   BIRD's sessions (control socket), BGP-learned kernel routes
    agent_routes(host), tunnel_addresses()   the agents' routes to other hosts' blocks (VXLAN or
                  native), the Nodes' VXLAN tunnel addresses (from the datastore)

Inputs: a `Lab` built by `tortie lab up` (its `DatacenterRecord` gives the datastore URL as seen from
the hosts and the run root). One component of one host is addressed by host name; the node service
supervises its own agent and BIRD (restarting them), so faults inside a host go through the node's
run directory and pids, not through new lab records.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from tortie.common.ipfamily import FAMILIES, V4, Family
from tortie.lab.cni_workloads import cni_socket
from tortie.lab.errors import LabError
from tortie.lab.lab import Lab
from tortie.lab.processes import in_namespace
from tortie.lab.state import DatacenterRecord

STOP_TIMEOUT = 15.0


_ADDRESS_OPTIONS = {4: "--ip", 6: "--ip6"}  # `tortie node run`'s option per IP version


def node_role(host: str) -> str:
    return f"node/{host}"


def address_options(families: list[Family]) -> list[str]:
    """`tortie node run` options: autodetect on eth0 in each family of the fabric, none in the others."""
    out = []
    for fam in FAMILIES:
        option = _ADDRESS_OPTIONS[fam.version]
        if fam in families:
            out += [option, "autodetect", f"{option}-autodetection-method", "interface=^eth0$"]
        else:
            out += [option, "none"]
    return out


class NodeServices:
    """`tortie node run` on the hosts of one datacenter lab (see the module docstring)."""

    def __init__(self, lab: Lab, record: DatacenterRecord) -> None:
        self.lab = lab
        self.record = record

    def run_dir(self, host: str) -> str:
        return os.path.join(self.record.run_root, host)

    def start(self, host: str) -> int:
        """Start `tortie node run` inside host `host` (BGP address from its eth0); returns the pid."""
        if host not in self.lab.state.hosts:
            raise LabError(f"no host {host!r} in lab {self.lab.name}")
        run_dir = self.run_dir(host)
        os.makedirs(run_dir, exist_ok=True)
        argv = [
            *(sys.executable, "-m", "tortie.cli.main", "node", "run"),
            *("--hostname", host, "--datastore", self.record.datastore_url),
            *address_options(self.lab.state.families),
            *("--run-dir", run_dir),
            *("--fast-bgp-timers", "--nodename-file", "", "--mtu-file", os.path.join(run_dir, "mtu")),
            *("--cni-socket", cni_socket(self.record.run_root, host)),
            # the lab's CNI network holds this host's IPAM lock there (cni_workloads.NetworkConfig)
            *("--ipam-lock-file", os.path.join(os.path.dirname(self.record.cni_bin), f"{host}.lock")),
            *(("--bgp", "none") if self.record.bgp == "none" else ()),
        ]
        env = {k: v for k, v in os.environ.items() if k != "TORTIE_DATASTORE"}
        # the agent (a child of the node service) writes its endpoint status files in the host's run
        # directory: <run_dir>/endpoint-status, the host's CNI endpoint_status_dir
        env["TORTIE_ENDPOINT_STATUS_PATH_PREFIX"] = run_dir
        return self.lab.processes.start(host, argv, env=env, role=node_role(host))

    def pid(self, host: str) -> int | None:
        """The pid of the host's running node service, None when it is not running."""
        record = self.lab.processes.by_role(node_role(host))
        return record.pid if record is not None and self.lab.processes.running(record.pid) else None

    def running_hosts(self) -> list[str]:
        return [h for h in self.lab.state.hosts if self.pid(h) is not None]

    def stop(self, host: str) -> None:
        """SIGTERM the node service of `host` (the agent and BIRD stop; the kernel keeps its routes)."""
        record = self.lab.processes.by_role(node_role(host))
        if record is not None:
            self.lab.processes.stop(record.pid, timeout=STOP_TIMEOUT)

    def take_down(self, host: str) -> None:
        """The host goes away (a power cut): its fabric link is cut, then its node service stopped.
        Its peers notice on their hold timers and withdraw its routes (a clean stop alone would be a
        graceful restart: they would keep them for the restart time)."""
        self.lab.fabric.set_port(host, up=False)
        self.stop(host)

    def bring_up(self, host: str) -> int:
        self.lab.fabric.set_port(host, up=True)
        return self.start(host)

    def status(self, host: str) -> dict[str, Any] | None:
        from tortie.node.service import read_node_status

        return read_node_status(self.run_dir(host))

    def live_status(self, host: str) -> dict[str, Any] | None:
        """node.json of `host` when the running node service wrote it; None when no service runs or
        the file is what a stopped or killed one left behind (it says nothing about now)."""
        status = self.status(host)
        node_pid = self.pid(host)
        live = status is not None and node_pid is not None and status.get("pid") == node_pid
        return status if live else None

    def component_pid(self, host: str, component: str) -> int | None:
        """The pid of `component` ("agent", or "bgp" for BIRD) of `host`, None when it does not run."""
        status = self.live_status(host) or {}
        part = (status.get("components") or {}).get(component) or {}
        if component == "bgp":
            part = part.get("bird") or {}
        pid = part.get("pid")
        if not (isinstance(pid, int) and part.get("running")):
            return None
        return pid if in_namespace(pid, self.lab.state.hosts[host].netns) else None

    def bgp_peers(self, host: str) -> list[dict[str, Any]] | None:
        """BIRD's sessions on `host` (None when BIRD does not answer)."""
        from tortie.bgp.control import BirdControl, BirdNotRunning
        from tortie.bgp.daemon import RunPaths
        from tortie.bgp.status import query_peers

        try:
            with BirdControl(RunPaths(self.run_dir(host)).socket, timeout=2.0) as ctl:
                return [p.to_json() for p in query_peers(ctl)]
        except (BirdNotRunning, OSError):
            return None

    def bird_routes(self, host: str, family: Family = V4) -> dict[str, str]:
        """BGP-learned kernel routes of `host` in `family`: destination -> gateway (or the route type)."""
        argv = ["ip", "-j", family.ip_flag, "route", "show", "proto", "bird"]
        text = self.lab.exec(host, argv, check=False).stdout
        out: dict[str, str] = {}
        for route in json.loads(text or "[]"):
            dst = str(route.get("dst", ""))
            dst = dst if "/" in dst else family.host_cidr(dst)
            out[dst] = str(route.get("gateway") or route.get("type") or "")
        return out

    def agent_routes(self, host: str, family: Family = V4) -> dict[str, tuple[str, str]]:
        """The agent's routes of `host` to other hosts' blocks (protocol 77 with a gateway: through a
        VXLAN device or the uplink): destination -> (gateway, device)."""
        argv = ["ip", "-j", family.ip_flag, "route", "show", "proto", "77"]
        text = self.lab.exec(host, argv, check=False).stdout
        out: dict[str, tuple[str, str]] = {}
        for route in json.loads(text or "[]"):
            if not route.get("gateway"):
                continue
            dst = str(route.get("dst", ""))
            key = dst if "/" in dst else family.host_cidr(dst)
            out[key] = (str(route["gateway"]), str(route.get("dev", "")))
        return out

    def tunnel_addresses(self) -> dict[str, dict[Family, str]]:
        """Node name -> family -> its VXLAN tunnel address, as the Nodes in the datastore say."""
        from tortie.datastore.url import open_datastore
        from tortie.model.kinds import kind_info
        from tortie.node.tunnel_addresses import ADDRESS_FIELD

        ds = open_datastore(self.record.client_url)
        try:
            kvs, _rev = ds.list(kind_info("Node").list_prefix())
        finally:
            ds.close()
        out: dict[str, dict[Family, str]] = {}
        for kv in kvs:
            spec = kv.value.get("spec") or {}
            name = str((kv.value.get("metadata") or {}).get("name", ""))
            out[name] = {fam: str(spec[field]) for fam, field in ADDRESS_FIELD.items() if spec.get(field)}
        return out
