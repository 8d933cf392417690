"""Warnings about whole objects that tortie accepts but that do less than they seem to (issue 18).

`KIND_WARNINGS`: kinds accepted only for compatibility (one warning per object, fields unchecked).
`RESOURCE_NOTICES`: per kind, a function from an accepted `Resource` to (field path, message) pairs
for combinations the field table cannot express: fields Calico reads only from the cluster-wide
`default` BGPConfiguration, BGPPeers that name no peer, FelixConfigurations scoped by selector,
Kubernetes NetworkPolicy rules their policyTypes leave out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tortie.model.resource import Resource

KIND_WARNINGS: dict[str, str] = {
    "KubeControllersConfiguration": (
        "accepted but has no effect: tortie runs no Kubernetes controllers (node, policy, workload "
        "endpoint, service account, namespace or load balancer); it stores the object so that manifests "
        "written for Calico apply unchanged"),
}

# BGPConfiguration fields Calico reads from `default` only; set on node.<name> they do nothing.
_BGP_DEFAULT_ONLY = (
    ("node_to_node_mesh_enabled", "nodeToNodeMeshEnabled"),
    ("as_number", "asNumber"),
    ("bind_mode", "bindMode"),
    ("node_mesh_password", "nodeMeshPassword"),
    ("node_mesh_max_restart_time", "nodeMeshMaxRestartTime"),
    ("service_cluster_ips", "serviceClusterIPs"),
    ("service_external_ips", "serviceExternalIPs"),
    ("service_load_balancer_ips", "serviceLoadBalancerIPs"),
    ("service_load_balancer_aggregation", "serviceLoadBalancerAggregation"),
    ("local_workload_peering_ipv4", "localWorkloadPeeringIPV4"),
    ("local_workload_peering_ipv6", "localWorkloadPeeringIPV6"),
    ("program_cluster_routes", "programClusterRoutes"),
)


def _bgp_configuration(resource: Resource) -> list[tuple[str, str]]:
    if resource.metadata.name == "default":
        return []
    out = []
    for attr, wire in _BGP_DEFAULT_ONLY:
        value = getattr(resource.spec, attr)
        if value is not None and value != ():
            out.append((f"spec.{wire}", "accepted but has no effect: as in Calico, only the `default` "
                        "BGPConfiguration sets this field (a per-node AS number belongs in the Node's "
                        "spec.bgp.asNumber)"))
    return out


def _bgp_peer(resource: Resource) -> list[tuple[str, str]]:
    spec = resource.spec
    peer_ip = getattr(spec, "peer_ip", None)
    if peer_ip is None and getattr(spec, "peer_selector", None) is None \
            and getattr(spec, "local_workload_selector", None) is None:
        return [("spec", "this BGPPeer names no peer (peerIP, peerSelector or localWorkloadSelector): "
                 "it creates no BGP session")]
    if peer_ip is not None and getattr(spec, "as_number", None) is None:
        return [("spec.asNumber", f"is not set: no session is brought up with {peer_ip} until the peer's AS "
                 "number is given")]
    return []


def _felix_configuration(resource: Resource) -> list[tuple[str, str]]:
    name = resource.metadata.name
    if name == "default" or name.startswith("node."):
        return []
    return [("metadata.name", "accepted but has no effect yet: the agent reads FelixConfiguration `default` "
             "and `node.<hostname>` only; configurations that apply to nodes chosen by spec.nodeSelector "
             "are not implemented yet")]


def _kubernetes_network_policy(resource: Resource) -> list[tuple[str, str]]:
    """Rules of a direction policyTypes leaves out: Kubernetes ignores them, and so does tortie."""
    spec = resource.spec
    out: list[tuple[str, str]] = []
    types = getattr(spec, "effective_policy_types", ())
    for direction, wire in (("Ingress", "ingress"), ("Egress", "egress")):
        if getattr(spec, wire, ()) and direction not in types:
            out.append((f"spec.{wire}", f"accepted but has no effect: policyTypes does not list {direction} "
                        "(Kubernetes ignores these rules too)"))
    return out


RESOURCE_NOTICES: dict[str, Callable[[Resource], list[tuple[str, str]]]] = {
    "BGPConfiguration": _bgp_configuration,
    "BGPPeer": _bgp_peer,
    "FelixConfiguration": _felix_configuration,
    "NetworkPolicy.networking.k8s.io": _kubernetes_network_policy,
}
