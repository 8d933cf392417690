"""The WorkloadEndpoint (and default Profile) a CNI ADD writes, validated by the model.

Inputs: the workload identity, its addresses, host interface and MAC, labels, profiles and port
mappings. Outputs: `tortie.model.Resource` values written through `tortie.datastore.resources`
(Calico's etcd v3 keys; uid / creationTimestamp / resourceVersion maintained there). The wire form
is built here and validated once by `tortie.model.parse_resource`, like every other writer's input.

Reads on the teardown paths (DEL, GC) use the raw stored JSON on purpose: an endpoint that no longer
validates (written by another tool or version) must still be removable.

Ownership: the endpoint records the CNI network and container ID in annotations
(`cni.tortie.io/network`, `cni.tortie.io/container-id`); DEL and GC remove an endpoint only when the
container ID matches, so a DEL for an old sandbox never deletes the endpoint of a newer one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tortie.cni.naming import WorkloadIdentity
from tortie.cni.netconf import PortMapping
from tortie.common.errors import AlreadyExists, NotFound
from tortie.datastore.api import KV, Datastore, JSONObject

if TYPE_CHECKING:
    from tortie.model import Resource

API_VERSION = "projectcalico.org/v3"
NETWORK_ANNOTATION = "cni.tortie.io/network"
CONTAINER_ANNOTATION = "cni.tortie.io/container-id"
_MODEL_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_PROFILE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def wep_key(namespace: str, name: str) -> str:
    from tortie.model.kinds import kind_info

    return kind_info("WorkloadEndpoint").key(name, namespace)


def wep_prefix() -> str:
    from tortie.model.kinds import kind_info

    return kind_info("WorkloadEndpoint").list_prefix()


def profile_key(name: str) -> str:
    from tortie.model.kinds import kind_info

    return kind_info("Profile").key(name)


@dataclass(frozen=True)
class EndpointData:
    """Everything a WorkloadEndpoint says about one workload interface."""

    identity: WorkloadIdentity
    ip_networks: tuple[str, ...]
    host_ifname: str
    mac: str
    labels: Mapping[str, str]
    profiles: tuple[str, ...]
    ports: tuple[PortMapping, ...] = ()


def validate_early(data: EndpointData) -> None:
    """Validate the endpoint this ADD will write, with placeholders for what only plumbing yields
    (addresses, MAC), before any side effect: a bad namespace, label, port or a name that cannot be a
    resource name fails here (ValidationError, a UserError) instead of after the wiring."""
    from tortie.model import parse_resource

    placeholder = dataclasses.replace(data, ip_networks=("192.0.2.1/32",), mac="02:00:00:00:00:01")
    parse_resource(build_wep(placeholder), source="CNI network configuration")


def build_wep(data: EndpointData) -> JSONObject:
    ident = data.identity
    labels = {
        "projectcalico.org/namespace": ident.namespace,
        "projectcalico.org/orchestrator": ident.orchestrator,
        **data.labels,
    }
    spec: dict[str, Any] = {
        "orchestrator": ident.orchestrator,
        "workload": ident.workload,
        "node": ident.node,
    }
    if _MODEL_CONTAINER_ID.match(ident.container_id):
        spec["containerID"] = ident.container_id
    if ident.pod:
        spec["pod"] = ident.pod
    spec["endpoint"] = ident.endpoint
    spec["ipNetworks"] = list(data.ip_networks)
    if data.profiles:
        spec["profiles"] = list(data.profiles)
    spec["interfaceName"] = data.host_ifname
    if data.mac:
        spec["mac"] = data.mac
    if data.ports:
        ports = []
        for p in data.ports:
            port: dict[str, Any] = {
                "name": f"{p.protocol.lower()}-{p.container_port}",
                "protocol": p.protocol,
                "port": p.container_port,
            }
            if p.host_port:
                port["hostPort"] = p.host_port
            if p.host_ip:
                port["hostIP"] = p.host_ip
            ports.append(port)
        spec["ports"] = ports
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": ident.wep_name,
            "namespace": ident.namespace,
            "labels": labels,
            "annotations": {NETWORK_ANNOTATION: ident.network, CONTAINER_ANNOTATION: ident.container_id},
        },
        "spec": spec,
    }


def write_wep(ds: Datastore, wep: JSONObject) -> KV | None:
    """Validate and create-or-replace the endpoint (conditional on the revision read). Returns the
    previous stored KV, if any, so a rollback can restore it."""
    from tortie.datastore.resources import ResourceStore
    from tortie.model import parse_resource

    resource = parse_resource(wep, source="CNI ADD")
    previous = ds.get(resource.key)
    ResourceStore(ds).apply(resource)
    return previous


def restore_wep(ds: Datastore, namespace: str, name: str, previous: KV | None) -> None:
    """Undo `write_wep`: put the previous object back, or delete the one written."""
    key = wep_key(namespace, name)
    try:
        if previous is None:
            ds.delete(key)
        else:
            ds.put(key, previous.value)
    except NotFound:
        pass


def decode_wep(ds: Datastore, kv: KV) -> Resource:
    """The stored endpoint as a validated Resource (ValidationError if it no longer validates)."""
    from tortie.datastore.resources import ResourceStore

    return ResourceStore(ds).decode(kv)


def container_of(wep_value: Mapping[str, Any]) -> str | None:
    annotations = (wep_value.get("metadata") or {}).get("annotations") or {}
    return annotations.get(CONTAINER_ANNOTATION) or (wep_value.get("spec") or {}).get("containerID")


def network_of(wep_value: Mapping[str, Any]) -> str | None:
    annotations = (wep_value.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(NETWORK_ANNOTATION)
    return value if isinstance(value, str) else None


def read_wep(ds: Datastore, namespace: str, name: str) -> KV | None:
    return ds.get(wep_key(namespace, name))


def delete_wep_if_owned(ds: Datastore, namespace: str, name: str, container_id: str) -> KV | None:
    """Delete the endpoint if it belongs to `container_id` (or records no container). Returns the
    deleted KV; None when absent or owned by another container."""
    key = wep_key(namespace, name)
    kv = ds.get(key)
    if kv is None:
        return None
    owner = container_of(kv.value)
    if owner and owner != container_id:
        return None
    try:
        ds.delete(key, expected_revision=kv.mod_revision)
    except NotFound:
        return None
    return kv


def node_weps(ds: Datastore, node: str, network: str) -> list[KV]:
    """Endpoints on `node` written by this CNI network."""
    kvs, _rev = ds.list(wep_prefix())
    return [
        kv
        for kv in kvs
        if (kv.value.get("spec") or {}).get("node") == node and network_of(kv.value) == network
    ]


def default_profiles(
    network: str, configured: Sequence[str] | None, identity: WorkloadIdentity | None = None
) -> tuple[str, ...]:
    """The endpoint's profiles: the configured ones; else, for a Kubernetes pod, its namespace's
    profile `kns.<namespace>` (Calico's: the Namespace object defines it — its labels for
    namespaceSelectors, allow-all so that a pod no policy selects is unrestricted); else the
    network's own profile (`ensure_network_profile`)."""
    if configured is not None:
        return tuple(configured)
    if identity is not None and identity.orchestrator == "k8s":
        from tortie.k8s.names import NAMESPACE_PROFILE_PREFIX

        return (NAMESPACE_PROFILE_PREFIX + identity.namespace,)
    return (network,) if _PROFILE_NAME.match(network) else ()


def ensure_network_profile(ds: Datastore, network: str) -> bool:
    """Create the network's default Profile if missing (Calico's non-Kubernetes CNI behaviour): egress
    allowed, ingress allowed from endpoints of the same network, whose label `<network>` it applies.
    Returns True if it was created."""
    if not _PROFILE_NAME.match(network) or len(network) > 63:
        return False
    if ds.get(profile_key(network)) is not None:
        return False
    from tortie.datastore.resources import ResourceStore
    from tortie.model import parse_resource

    profile = parse_resource(
        {
            "apiVersion": API_VERSION,
            "kind": "Profile",
            "metadata": {"name": network},
            "spec": {
                "ingress": [{"action": "Allow", "source": {"selector": f"has({network})"}}],
                "egress": [{"action": "Allow"}],
                "labelsToApply": {network: ""},
            },
        },
        source="CNI ADD",
    )
    try:
        ResourceStore(ds).create(profile)
    except AlreadyExists:
        return False
    return True
