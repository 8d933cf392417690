"""Names derived from a workload's identity: IPAM handle, WorkloadEndpoint name, host-side veth name.

Inputs: the CNI request (container ID, interface name, K8S_POD_* args) and the network config.
Outputs: a frozen `WorkloadIdentity`. Rules (reference §1.12, §3.4, §5.4):

* orchestrator `k8s` when K8S_POD_NAMESPACE and K8S_POD_NAME are given (workload = pod, namespace =
  pod namespace), else `cni` (workload = container ID, namespace = the config's `namespace`).
* WorkloadEndpoint name `<node>-<orchestrator>-<workload>-<endpoint>`, each '-' inside a component
  doubled, so the name splits back unambiguously (Calico's libcalico-go/lib/names). Characters a
  resource name cannot hold (upper case, '_') are lowered / replaced by '.' in the name only.
* IPAM handle `<network>.<containerID>` (Calico's CNI handle).
* Host veth `<prefix>` + the first hex digits of SHA-1 of `<namespace>.<wep name>`, 15 characters in
  all (IFNAMSIZ - 1). The agent never recomputes it: it reads spec.interfaceName; it only needs the
  same prefix to recognise the interface as a workload's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tortie.cni.netconf import resolve_nodename

if TYPE_CHECKING:
    from hashlib import sha1

    from tortie.cni.netconf import NetConf
    from tortie.cni.request import CniRequest
else:
    try:  # CPython's own SHA-1 (same digest), without hashlib loading OpenSSL: ~3 ms of every CNI call
        from _sha1 import sha1
    except ImportError:  # a build without it
        from hashlib import sha1

MAX_IFNAME = 15
_NOT_NAME_CHARS = re.compile(r"[^a-z0-9.-]")


def escape_component(text: str) -> str:
    """One WEP name component: lower case, '-' doubled, other disallowed characters become '.'."""
    return _NOT_NAME_CHARS.sub(".", text.lower()).replace("-", "--")


def wep_name(node: str, orchestrator: str, workload: str, endpoint: str) -> str:
    return "-".join(escape_component(c) for c in (node, orchestrator, workload, endpoint))


def host_veth_name(prefix: str, namespace: str, name: str) -> str:
    digest = sha1(f"{namespace}.{name}".encode()).hexdigest()
    return prefix + digest[: MAX_IFNAME - len(prefix)]


def ipam_handle(network: str, container_id: str) -> str:
    return f"{network}.{container_id}"


@dataclass(frozen=True)
class WorkloadIdentity:
    node: str
    orchestrator: str
    namespace: str
    workload: str
    endpoint: str
    container_id: str
    network: str
    interface_prefix: str

    @property
    def wep_name(self) -> str:
        return wep_name(self.node, self.orchestrator, self.workload, self.endpoint)

    @property
    def host_ifname(self) -> str:
        return host_veth_name(self.interface_prefix, self.namespace, self.wep_name)

    @property
    def handle(self) -> str:
        return ipam_handle(self.network, self.container_id)

    @property
    def pod(self) -> str | None:
        return self.workload if self.orchestrator == "k8s" else None


def identify(
    *,
    node: str,
    network: str,
    container_id: str,
    ifname: str,
    k8s_pod: tuple[str, str] | None,
    default_namespace: str,
    interface_prefix: str,
) -> WorkloadIdentity:
    if k8s_pod is not None:
        namespace, pod = k8s_pod
        return WorkloadIdentity(node, "k8s", namespace, pod, ifname, container_id, network, interface_prefix)
    return WorkloadIdentity(
        node, "cni", default_namespace, container_id, ifname, container_id, network, interface_prefix
    )


def request_identity(req: CniRequest, conf: NetConf) -> WorkloadIdentity:
    """The identity of the workload a CNI call is about (both plugins name things the same way)."""
    return identify(
        node=resolve_nodename(conf),
        network=conf.name,
        container_id=req.container_id,
        ifname=req.ifname,
        k8s_pod=req.k8s_pod,
        default_namespace=conf.namespace,
        interface_prefix=conf.interface_prefix,
    )
