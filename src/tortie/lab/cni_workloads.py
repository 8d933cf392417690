"""Lab workloads created the way a container runtime creates them: through the tortie CNI plugin.

    add:  record the workload + its namespace in lab.json   (so `down()` finds it whatever happens)
          ip netns add <lab>-<name>
          nsenter --net=/run/netns/<lab>-<host>  <cni_bin>/tortie   (CNI_COMMAND=ADD, env + stdin JSON,
                                                                    exactly as a runtime execs it)
          -> veth, addresses, host routes (proto 77), WorkloadEndpoint <host>-cni-<name>-eth0
          record the IPs and host interface from the CNI result
    del:  the plugin's DEL (interface, endpoint, addresses released), then the namespace

Inputs: a `Lab`, the directory holding the installed plugin launchers, the network configuration
values for one host (datastore URL as seen from inside the host, node name, IPAM lock file) and the
datastore URL as seen from this process (`CniWorkloads.for_lab` takes them from the lab's
`DatacenterRecord`; the IPAM section asks for one address per IP family of the lab's pools, so a
dual-stack lab's workloads get both). Labels travel as CNI `args.cni.labels`, the endpoint namespace
as the netconf `namespace`; named ports are not a CNI concept, so `add` writes them onto the
endpoint afterwards (through the datastore) and undoes the ADD when that fails. `add_many` runs
several ADDs at once.

The container ID is the workload name, so the endpoint is `<host>-cni-<name>-eth0` (Calico's
`-`-doubling applies). A workload added with a namespace is a Kubernetes pod: the ADD and DEL carry
`K8S_POD_NAMESPACE=<namespace>;K8S_POD_NAME=<name>` in CNI_ARGS, as kubelet's do, so the plugin names
the endpoint `<host>-k8s-<name>-eth0` and gives it profile `kns.<namespace>`; `add` first creates the
`v1` Namespace object if there is none (Kubernetes has a pod's namespace before the pod), without
labels — `tortie apply` of a Namespace sets them. Failures raise `CniFailed` with the plugin's code
and message; an ADD that failed leaves nothing behind (the plugin undoes its own steps; the network
namespace is deleted here).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tortie.common.ipfamily import FAMILIES, V4, Family, family_of
from tortie.lab.errors import LabError, NoSuchLab
from tortie.lab.lab import Lab
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
    mtu: int = 0
    """0: the plugin reads the host's MTU file (`<run_root>/<host>/mtu`, written by its agent)."""
    interface_prefix: str = "tort"
    families: tuple[Family, ...] = (V4,)
    """The IP families a workload gets one address of (`ipam.assign_ipv4` / `assign_ipv6`)."""
    run_root: str = ""
    """The hosts' run directories (`<run_root>/<host>`): each host's node serves CNI calls on
    `cni.sock` there and its agent writes `endpoint-status/` there. "" = no node services: the plugin
    works on its own and does not wait for an agent."""

    def for_host(self, host: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": CNI_VERSION,
            "name": NETWORK,
            "type": "tortie",
            "datastore": self.datastore_url,
            "nodename": host,
            **({"mtu": self.mtu} if self.mtu else {}),
            **({"mtu_file": os.path.join(self.run_root, host, "mtu")} if self.run_root else {}),
            "interface_prefix": self.interface_prefix,
            "ipam_lock_file": os.path.join(self.ipam_lock_dir, f"{host}.lock"),
            "namespace": namespace,
            "ipam": {
                "type": "tortie-ipam",
                **{f"assign_{fam.key}": "true" if fam in self.families else "false" for fam in FAMILIES},
            },
        }
        if self.run_root:  # served by the host's node service; ADD waits for its agent (policy first)
            conf["service_socket"] = cni_socket(self.run_root, host)
            conf["endpoint_status_dir"] = os.path.join(self.run_root, host, "endpoint-status")
        else:  # no node services: the plugin alone, nobody to wait for
            conf["service_socket"] = ""
            conf["policy_setup_timeout_seconds"] = 0
        if labels:
            conf["args"] = {"cni": {"labels": [{"key": k, "value": v} for k, v in sorted(labels.items())]}}
        return conf


def cni_socket(run_root: str, host: str) -> str:
    """Where the node service of lab host `host` serves CNI calls."""
    return os.path.join(run_root, host, "cni.sock")


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

    def __init__(
        self, lab: Lab, cni_bin: str | os.PathLike[str], network: NetworkConfig, client_url: str
    ) -> None:
        self.lab = lab
        self.cni_bin = Path(cni_bin)
        self.network = network
        self.client_url = client_url

    @classmethod
    def for_lab(cls, lab: Lab) -> CniWorkloads:
        """The CNI workloads of a lab built by `tortie lab up` (plugin and datastore from its record)."""
        record = lab.state.datacenter
        if record is None:
            raise NoSuchLab(f"{lab.workdir} holds a lab built by the library, not by `tortie lab up`")
        families = tuple(f for f in FAMILIES if any(family_of(p) == f for p in record.pools))
        network = NetworkConfig(
            record.datastore_url,
            str(Path(record.cni_bin).parent),
            families=families,
            run_root=record.run_root,
        )
        return cls(lab, record.cni_bin, network, record.client_url)

    def _exec(
        self,
        command: str,
        host: str,
        netns: str,
        container_id: str,
        conf: Mapping[str, Any],
        timeout: float = 60.0,
        pod: tuple[str, str] | None = None,
    ) -> dict[str, Any] | None:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/run/netns/{netns}",
            "CNI_IFNAME": IFNAME,
            "CNI_PATH": str(self.cni_bin),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        if pod is not None:  # a Kubernetes pod: what kubelet passes
            env["CNI_ARGS"] = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod[0]};K8S_POD_NAME={pod[1]}"
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

    def add_many(
        self,
        items: Sequence[tuple[str, str]],
        parallel: int = 4,
        progress: Callable[[str], None] | None = None,
    ) -> list[WorkloadRecord]:
        """Create many (name, host) workloads, `parallel` CNI calls at a time."""
        done: list[WorkloadRecord] = []
        step = max(1, len(items) // 5)
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [pool.submit(self.add, name, host) for name, host in items]
            for future in concurrent.futures.as_completed(futures):
                done.append(future.result())
                if progress and (len(done) % step == 0 or len(done) == len(items)):
                    progress(f"workloads created through CNI: {len(done)}/{len(items)}")
        return done

    def _set_ports(self, record: WorkloadRecord, ports: list[dict[str, Any]]) -> None:
        from tortie.datastore.resources import ResourceStore
        from tortie.datastore.url import open_datastore
        from tortie.model import parse_resource

        ds = open_datastore(self.client_url)
        try:
            store = ResourceStore(ds)
            current = store.get("WorkloadEndpoint", record.endpoint, record.namespace or "default")
            wire = current.to_wire()
            wire["spec"]["ports"] = ports
            store.update(parse_resource(wire, source=f"lab workload {record.name}"))
        finally:
            ds.close()

    def _ensure_namespace(self, namespace: str) -> None:
        """Create the `v1` Namespace `namespace` unless it exists (no labels)."""
        from tortie.common.errors import AlreadyExists
        from tortie.datastore.resources import ResourceStore
        from tortie.datastore.url import open_datastore
        from tortie.model import parse_resource

        ns = parse_resource(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            source=f"lab namespace {namespace}",
        )
        ds = open_datastore(self.client_url)
        try:
            if ds.get(ns.key) is None:
                with contextlib.suppress(AlreadyExists):
                    ResourceStore(ds).create(ns)
        finally:
            ds.close()

    def add(
        self,
        name: str,
        host: str,
        *,
        labels: Mapping[str, str] | None = None,
        namespace: str | None = None,
        ports: Sequence[str] = (),
        pod: str | None = None,
    ) -> WorkloadRecord:
        """CNI ADD of workload `name` on `host`; then its named ports (`name:proto:port`) onto the
        endpoint. With a `namespace` the workload is Kubernetes pod `namespace`/`pod` (`pod` defaults
        to `name`; a pod name may be longer than a lab workload name: see the module docstring);
        without, a plain container in namespace `default`. Nothing is left behind when any step fails
        (a Namespace object created for it stays: other pods may share it)."""
        port_specs = parse_ports(list(ports)) if ports else []
        if host not in self.lab.state.hosts:
            raise LabError(
                f"no host {host!r} in lab {self.lab.name} (hosts: {', '.join(self.lab.state.hosts)})"
            )
        labels = dict(labels or {})
        netns = f"{self.lab.name}-{name}"
        from tortie.cni.naming import wep_name

        k8s = (namespace, pod or name) if namespace is not None else None
        namespace = namespace or "default"
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
            endpoint=wep_name(host, "k8s", k8s[1], IFNAME) if k8s else wep_name(host, "cni", name, IFNAME),
            pod=k8s[1] if k8s else "",
        )
        try:
            self.lab.records.record_workload(record, new=True)
        except ValueError as exc:
            raise LabError(str(exc)) from None
        try:
            if k8s is not None:
                self._ensure_namespace(namespace)
            self.lab.fabric.add_namespace(netns)
            conf = self.network.for_host(host, namespace, labels)
            result = self._exec("ADD", host, netns, name, conf, pod=k8s)
        except BaseException:
            self.lab.fabric.delete_namespace(netns)
            self.lab.records.forget_workload(name)
            raise
        result = result or {}
        record.ips = [str(ip["address"]).split("/")[0] for ip in result.get("ips", [])]
        interfaces = result.get("interfaces") or []
        record.host_ifname = str(interfaces[0].get("name", "")) if interfaces else ""
        self.lab.records.record_workload(record)
        if port_specs:
            try:
                self._set_ports(record, port_specs)
            except BaseException:
                self.delete(name)
                raise
        return record

    def delete(self, name: str) -> None:
        record = self.lab.state.workloads.get(name)
        if record is None:
            raise LabError(f"no workload {name!r} in lab {self.lab.name}")
        if record.via_cni:
            conf = self.network.for_host(record.host, record.namespace or "default", record.labels)
            pod = (record.namespace, record.pod) if record.pod else None
            self._exec("DEL", record.host, record.netns, name, conf, pod=pod)
        self.lab.fabric.delete_namespace(record.netns)
        self.lab.records.forget_workload(name)
