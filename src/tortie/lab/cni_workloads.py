"""Lab workloads created the way a container runtime creates them: through the tortie CNI plugin.

    add:  record the workload + its namespace in lab.json   (so `down()` finds it whatever happens)
          ip netns add <lab>-<name>
          nsenter --net=/run/netns/<lab>-<host>  <cni_bin>/tortie   (CNI_COMMAND=ADD, env + stdin JSON,
                                                                    exactly as a runtime execs it)
          -> veth, addresses, host routes (proto 77), WorkloadEndpoint <host>-cni-<name>-eth0
          record the IPs and host interface from the CNI result
    del:  the plugin's DEL (interface, endpoint, addresses released), then the namespace

Inputs: a `Lab`, the directory holding the installed plugin launchers, and the network configuration
values for one host (datastore URL as seen from inside the host, node name, IPAM lock file). Labels
travel as CNI `args.cni.labels`, the endpoint namespace as the netconf `namespace`; named ports are
not a CNI concept, so `set_ports` writes them onto the endpoint afterwards (through the datastore).

The container ID is the workload name, so the endpoint is `<host>-cni-<name>-eth0` (Calico's
`-`-doubling applies). Failures raise `CniFailed` with the plugin's code and message; an ADD that failed
leaves nothing behind (the plugin undoes its own steps; the namespace is deleted here).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tortie.lab.lab import Lab, LabError
from tortie.lab.state import WorkloadRecord

NETWORK = "lab"
CNI_VERSION = "1.0.0"
IFNAME = "eth0"
_PORT_RE = re.compile(r"^([a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?):(tcp|udp|sctp):(\d{1,5})$", re.IGNORECASE)


class CniFailed(LabError):
    """The CNI plugin reported an error (`code`, message from its JSON)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class NetworkConfig:
    datastore_url: str
    ipam_lock_dir: str
    mtu: int = 1500
    interface_prefix: str = "tort"

    def for_host(self, host: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": CNI_VERSION,
            "name": NETWORK,
            "type": "tortie",
            "datastore": self.datastore_url,
            "nodename": host,
            "mtu": self.mtu,
            "interface_prefix": self.interface_prefix,
            "ipam_lock_file": os.path.join(self.ipam_lock_dir, f"{host}.lock"),
            "namespace": namespace,
            "ipam": {"type": "tortie-ipam"},
        }
        if labels:
            conf["args"] = {"cni": {"labels": [{"key": k, "value": v} for k, v in sorted(labels.items())]}}
        return conf


def parse_ports(text: str | Sequence[str]) -> list[dict[str, Any]]:
    """`http:tcp:80,dns:udp:53` -> WorkloadEndpoint `ports` entries (LabError on a malformed item)."""
    items = [i.strip() for i in (text.split(",") if isinstance(text, str) else text) if i.strip()]
    out = []
    for item in items:
        m = _PORT_RE.match(item)
        if m is None or not 1 <= int(m.group(4)) <= 65535:
            raise LabError(
                f"port {item!r}: expected name:proto:port, e.g. http:tcp:80 (proto tcp, udp, sctp)"
            )
        out.append({"name": m.group(1).lower(), "protocol": m.group(3).upper(), "port": int(m.group(4))})
    return out


def parse_labels(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """`app=web,tier=front` -> dict (LabError on an item without '=')."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    out = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LabError(f"label {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


class CniWorkloads:
    """Add and delete CNI workloads of one lab (see the module docstring)."""

    def __init__(self, lab: Lab, cni_bin: str | os.PathLike[str], network: NetworkConfig) -> None:
        self.lab = lab
        self.cni_bin = Path(cni_bin)
        self.network = network

    def _exec(
        self,
        command: str,
        host: str,
        netns: str,
        container_id: str,
        conf: Mapping[str, Any],
        timeout: float = 60.0,
    ) -> dict[str, Any] | None:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/run/netns/{netns}",
            "CNI_IFNAME": IFNAME,
            "CNI_PATH": str(self.cni_bin),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        argv = ["nsenter", f"--net=/run/netns/{self.lab.netns(host)}", str(self.cni_bin / "tortie")]
        try:
            proc = subprocess.run(
                argv, input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise CniFailed(
                f"CNI {command} for {container_id} on {host} timed out after {timeout:.0f}s"
            ) from exc
        out = proc.stdout.decode(errors="replace").strip()
        try:
            result = json.loads(out) if out else None
        except ValueError:
            result = None
        if proc.returncode != 0:
            if isinstance(result, dict) and "code" in result:
                detail = f": {result.get('details')}" if result.get("details") else ""
                raise CniFailed(
                    f"CNI {command} for {container_id} on {host} failed (code {result['code']}): "
                    f"{result.get('msg')}{detail}",
                    int(result["code"]),
                )
            stderr = proc.stderr.decode(errors="replace").strip()[-2000:]
            raise CniFailed(
                f"CNI {command} for {container_id} on {host} failed (exit {proc.returncode}): {out or stderr}"
            )
        return result if isinstance(result, dict) else None

    def add(
        self,
        name: str,
        host: str,
        *,
        labels: Mapping[str, str] | None = None,
        namespace: str = "default",
        ports: Sequence[str] = (),
    ) -> WorkloadRecord:
        if host not in self.lab.state.hosts:
            raise LabError(
                f"no host {host!r} in lab {self.lab.name} (hosts: {', '.join(self.lab.state.hosts)})"
            )
        labels = dict(labels or {})
        netns = f"{self.lab.name}-{name}"
        from tortie.cni.naming import wep_name

        record = WorkloadRecord(
            name=name,
            host=host,
            netns=netns,
            ips=[],
            host_ifname="",
            plumbed_host_side=True,
            via_cni=True,
            namespace=namespace,
            labels=labels,
            ports=list(ports),
            endpoint=wep_name(host, "cni", name, IFNAME),
        )
        try:
            self.lab.record_workload(record, new=True)
        except ValueError as exc:
            raise LabError(str(exc)) from None
        try:
            self.lab.add_namespace(netns)
            result = self._exec("ADD", host, netns, name, self.network.for_host(host, namespace, labels))
        except BaseException:
            self.lab.forget_namespace(netns)
            self.lab.forget_workload(name)
            raise
        result = result or {}
        record.ips = [str(ip["address"]).split("/")[0] for ip in result.get("ips", [])]
        interfaces = result.get("interfaces") or []
        record.host_ifname = str(interfaces[0].get("name", "")) if interfaces else ""
        self.lab.record_workload(record)
        return record

    def delete(self, name: str) -> None:
        record = self.lab.state.workloads.get(name)
        if record is None:
            raise LabError(f"no workload {name!r} in lab {self.lab.name}")
        if record.via_cni:
            conf = self.network.for_host(record.host, record.namespace or "default", record.labels)
            self._exec("DEL", record.host, record.netns, name, conf)
        self.lab.forget_namespace(record.netns)
        self.lab.forget_workload(name)
