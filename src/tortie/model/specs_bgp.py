"""Specs of the BGP kinds: BGPConfiguration, BGPPeer and Node (reference §1.3, §1.4, §1.6).

BGPConfiguration `default` holds cluster-wide settings, `node.<name>` per-node overrides. BGPPeer
exclusivity rules follow Calico's validator (node vs nodeSelector; peerSelector vs peerIP/asNumber;
localWorkloadSelector needs asNumber and excludes peerIP/peerSelector; reachableBy needs a peerIP of
the same family; keepOriginalNextHop is not combined with nextHopMode). Like Calico, a BGPPeer need not
name its peer: one without peerIP, peerSelector or localWorkloadSelector (or with a peerIP but no
asNumber) is valid and brings no session up, which `tortie apply` says in a warning.
"""

import re
from dataclasses import dataclass
from typing import Annotated

from tortie.common.ipfamily import V4, V6, family_of
from tortie.model.fields import (
    AS_NUMBER,
    DURATION,
    INTERFACE_NAME,
    MAC,
    NAME,
    PORT_NUMBER,
    SELECTOR,
    check_community_value,
    cidr_text,
    ip_text,
    is_community_value,
    parse_ip_with_prefix,
    parse_peer_ip,
    peer_address,
)
from tortie.model.problems import Issues, index, join
from tortie.model.schema import Bool, Enum, Int, ListOf, Struct, Text, Wire, uses

LOG_LEVELS = ("Trace", "Debug", "Info", "Warning", "Error", "Fatal")
DEFAULT_AS_NUMBER = 64512
ROUTE_PRIORITY = Int(1, 2**31 - 1)


@dataclass(frozen=True, kw_only=True)
class SecretKeyRef:
    name: Annotated[str, Wire(NAME)]
    key: Annotated[str, Wire(Text(non_empty=True))]
    optional: Annotated[bool | None, Wire(Bool())] = None


@dataclass(frozen=True, kw_only=True)
class BGPPassword:
    """A password taken from a Kubernetes-style secret: `{secretKeyRef: {name, key}}`."""

    secret_key_ref: Annotated[SecretKeyRef, Wire(Struct(SecretKeyRef))]


@dataclass(frozen=True, kw_only=True)
class ServiceCIDR:
    cidr: Annotated[str, Wire(cidr_text())]


@dataclass(frozen=True, kw_only=True)
class Community:
    name: Annotated[str, Wire(Text(non_empty=True))]
    value: Annotated[str, Wire(Text(check_community_value))]


@dataclass(frozen=True, kw_only=True)
class PrefixAdvertisement:
    cidr: Annotated[str, Wire(cidr_text())]
    communities: Annotated[tuple[str, ...], Wire(ListOf(Text(non_empty=True)))] = ()


_IGNORED_IFACE_RE = re.compile(r"^[a-zA-Z0-9_.*-]{1,15}$")


def _check_ignored_interface(text: str) -> str:
    if text == "*":
        raise ValueError("'*' would ignore every interface; list interface names or patterns like 'eth*'")
    if not _IGNORED_IFACE_RE.match(text):
        raise ValueError(f"{text!r} is not a valid interface name or pattern (1-15 of [a-zA-Z0-9_.*-])")
    return text


IGNORED_INTERFACE = Text(_check_ignored_interface)


@dataclass(frozen=True, kw_only=True)
class BGPConfigurationSpec:
    log_severity_screen: Annotated[str | None, Wire(Enum(*LOG_LEVELS))] = None
    node_to_node_mesh_enabled: Annotated[bool | None, Wire(Bool())] = None
    as_number: Annotated[int | None, Wire(AS_NUMBER)] = None
    listen_port: Annotated[int | None, Wire(PORT_NUMBER)] = None
    bind_mode: Annotated[str | None, Wire(Enum("None", "NodeIP"))] = None
    node_mesh_password: Annotated[BGPPassword | None, Wire(Struct(BGPPassword))] = None
    node_mesh_max_restart_time: Annotated[str | None, Wire(DURATION)] = None
    service_cluster_ips: Annotated[
        tuple[ServiceCIDR, ...], Wire(ListOf(Struct(ServiceCIDR)), "serviceClusterIPs")] = ()
    service_external_ips: Annotated[
        tuple[ServiceCIDR, ...], Wire(ListOf(Struct(ServiceCIDR)), "serviceExternalIPs")] = ()
    service_load_balancer_ips: Annotated[
        tuple[ServiceCIDR, ...], Wire(ListOf(Struct(ServiceCIDR)), "serviceLoadBalancerIPs")] = ()
    service_load_balancer_aggregation: Annotated[str | None, Wire(Enum("Enabled", "Disabled"))] = None
    communities: Annotated[tuple[Community, ...], Wire(ListOf(Struct(Community), max_items=500))] = ()
    prefix_advertisements: Annotated[
        tuple[PrefixAdvertisement, ...], Wire(ListOf(Struct(PrefixAdvertisement)))] = ()
    ignored_interfaces: Annotated[tuple[str, ...], Wire(ListOf(IGNORED_INTERFACE))] = ()
    local_workload_peering_ipv4: Annotated[str | None, Wire(ip_text(V4), "localWorkloadPeeringIPV4")] = None
    local_workload_peering_ipv6: Annotated[str | None, Wire(ip_text(V6), "localWorkloadPeeringIPV6")] = None
    program_cluster_routes: Annotated[
        str | None, Wire(Enum("Enabled", "Disabled", "EnabledNoEncapOnly"))] = None
    ipv4_normal_route_priority: Annotated[int | None, Wire(ROUTE_PRIORITY, "ipv4NormalRoutePriority")] = None
    ipv6_normal_route_priority: Annotated[int | None, Wire(ROUTE_PRIORITY, "ipv6NormalRoutePriority")] = None

    @property
    def effective_log_severity_screen(self) -> str:
        return self.log_severity_screen or "Info"

    @property
    def effective_node_to_node_mesh_enabled(self) -> bool:
        return self.node_to_node_mesh_enabled is not False

    @property
    def effective_as_number(self) -> int:
        return self.as_number if self.as_number is not None else DEFAULT_AS_NUMBER

    @property
    def effective_listen_port(self) -> int:
        return self.listen_port or 179

    @property
    def effective_bind_mode(self) -> str:
        return self.bind_mode or "None"

    @property
    def effective_service_load_balancer_aggregation(self) -> str:
        return self.service_load_balancer_aggregation or "Enabled"

    @property
    def effective_program_cluster_routes(self) -> str:
        return self.program_cluster_routes or "EnabledNoEncapOnly"


@uses("communities", "prefixAdvertisements")
def _check_communities(spec: BGPConfigurationSpec, path: str, issues: Issues) -> None:
    names = {c.name for c in spec.communities}
    if spec.communities and not spec.prefix_advertisements:
        issues.add(join(path, "communities"), "communities are defined but no prefixAdvertisements use them")
    for i, adv in enumerate(spec.prefix_advertisements):
        for j, community in enumerate(adv.communities):
            if community not in names and not is_community_value(community):
                where = index(join(index(join(path, "prefixAdvertisements"), i), "communities"), j)
                issues.add(where, f"{community!r} is neither a defined community name nor a community value "
                           "('aa:nn' or 'aa:nn:mm')")


@uses("nodeToNodeMeshEnabled", "nodeMeshPassword", "nodeMeshMaxRestartTime")
def _check_mesh(spec: BGPConfigurationSpec, path: str, issues: Issues) -> None:
    mesh_off = spec.node_to_node_mesh_enabled is False
    if mesh_off and spec.node_mesh_password is not None:
        issues.add(join(path, "nodeMeshPassword"), "cannot be set when nodeToNodeMeshEnabled is false")
    if mesh_off and spec.node_mesh_max_restart_time is not None:
        issues.add(join(path, "nodeMeshMaxRestartTime"), "cannot be set when nodeToNodeMeshEnabled is false")


BGP_CONFIGURATION_SPEC = Struct(BGPConfigurationSpec, checks=[_check_communities, _check_mesh])


@dataclass(frozen=True, kw_only=True)
class BGPPeerSpec:
    node: Annotated[str | None, Wire(NAME)] = None
    node_selector: Annotated[str | None, Wire(SELECTOR)] = None
    peer_ip: Annotated[str | None, Wire(Text(parse_peer_ip), "peerIP")] = None
    as_number: Annotated[int | None, Wire(AS_NUMBER)] = None
    peer_selector: Annotated[str | None, Wire(SELECTOR)] = None
    local_as_number: Annotated[int | None, Wire(AS_NUMBER, "localASNumber")] = None
    local_workload_selector: Annotated[str | None, Wire(SELECTOR)] = None
    keep_original_next_hop: Annotated[bool | None, Wire(Bool())] = None
    next_hop_mode: Annotated[str | None, Wire(Enum("Auto", "Self", "Keep"))] = None
    password: Annotated[BGPPassword | None, Wire(Struct(BGPPassword))] = None
    source_address: Annotated[str | None, Wire(Enum("UseNodeIP", "None"))] = None
    max_restart_time: Annotated[str | None, Wire(DURATION)] = None
    keepalive_time: Annotated[str | None, Wire(DURATION)] = None
    num_allowed_local_as_numbers: Annotated[
        int | None, Wire(Int(0, 2**31 - 1), "numAllowedLocalASNumbers")] = None
    ttl_security: Annotated[int | None, Wire(Int(0, 255))] = None
    reachable_by: Annotated[str | None, Wire(ip_text())] = None
    filters: Annotated[tuple[str, ...], Wire(ListOf(NAME))] = ()
    reverse_peering: Annotated[str | None, Wire(Enum("Auto", "Manual"))] = None

    @property
    def is_global(self) -> bool:
        """Applies to every node (neither node nor nodeSelector given)."""
        return self.node is None and self.node_selector is None

    @property
    def peer_address(self) -> tuple[str, int | None] | None:
        """(IP text, port or None) of peerIP, None when peerIP is not set."""
        if self.peer_ip is None:
            return None
        addr, port = peer_address(self.peer_ip)
        return str(addr), port

    @property
    def effective_source_address(self) -> str:
        return self.source_address or "UseNodeIP"

    @property
    def effective_reverse_peering(self) -> str:
        return self.reverse_peering or "Auto"


@uses("node", "nodeSelector")
def _check_peer_nodes(spec: BGPPeerSpec, path: str, issues: Issues) -> None:
    if spec.node is not None and spec.node_selector is not None:
        issues.add(join(path, "node"), "cannot be combined with nodeSelector: use one or the other")


@uses("peerIP", "asNumber", "peerSelector", "localWorkloadSelector")
def _check_peer_target(spec: BGPPeerSpec, path: str, issues: Issues) -> None:
    """Calico's exclusivity rules. A peer that names no target, or a peerIP without asNumber, is
    valid in Calico too (it brings no session up); `tortie.model.support_notices` warns about it."""

    def clash(field: str, message: str) -> None:
        issues.add(join(path, field), message)

    if spec.peer_selector is not None:
        if spec.peer_ip is not None:
            clash("peerIP", "cannot be combined with peerSelector (the selected nodes' addresses are used)")
        if spec.as_number is not None:
            clash("asNumber", "cannot be combined with peerSelector (the selected nodes' AS numbers apply)")
    if spec.local_workload_selector is not None:
        if spec.as_number is None:
            clash("asNumber", "is required with localWorkloadSelector")
        if spec.peer_ip is not None:
            clash("peerIP", "cannot be combined with localWorkloadSelector")
        if spec.peer_selector is not None:
            clash("peerSelector", "cannot be combined with localWorkloadSelector")


@uses("reachableBy", "peerIP")
def _check_reachable_by(spec: BGPPeerSpec, path: str, issues: Issues) -> None:
    if spec.reachable_by is None:
        return
    peer = spec.peer_address
    if peer is None:
        issues.add(join(path, "reachableBy"), "needs peerIP")
    elif family_of(peer[0]) != family_of(spec.reachable_by):
        issues.add(join(path, "reachableBy"), "must be of the same IP family as peerIP")


@uses("keepOriginalNextHop", "nextHopMode")
def _check_next_hop(spec: BGPPeerSpec, path: str, issues: Issues) -> None:
    if spec.keep_original_next_hop and spec.next_hop_mode is not None:
        issues.add(join(path, "keepOriginalNextHop"), "is deprecated: it cannot be true with nextHopMode")


BGP_PEER_SPEC = Struct(BGPPeerSpec,
                       checks=[_check_peer_nodes, _check_peer_target, _check_reachable_by, _check_next_hop])


# -- Node -------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class NodeBGPSpec:
    as_number: Annotated[int | None, Wire(AS_NUMBER)] = None
    ipv4_address: Annotated[
        str | None, Wire(Text(lambda t: parse_ip_with_prefix(t, V4)), "ipv4Address")] = None
    ipv6_address: Annotated[
        str | None, Wire(Text(lambda t: parse_ip_with_prefix(t, V6)), "ipv6Address")] = None
    ipv4_ipip_tunnel_addr: Annotated[str | None, Wire(ip_text(V4), "ipv4IPIPTunnelAddr")] = None
    route_reflector_cluster_id: Annotated[str | None, Wire(ip_text(V4), "routeReflectorClusterID")] = None


def _check_node_bgp(spec: NodeBGPSpec, path: str, issues: Issues) -> None:
    if spec == NodeBGPSpec():
        issues.add(path, "must not be empty: set ipv4Address and/or ipv6Address (or omit bgp)")


@dataclass(frozen=True, kw_only=True)
class OrchRef:
    orchestrator: Annotated[str, Wire(Text(non_empty=True))]
    node_name: Annotated[str | None, Wire(Text())] = None


@dataclass(frozen=True, kw_only=True)
class NodeWireguardSpec:
    interface_ipv4_address: Annotated[str | None, Wire(ip_text(V4), "interfaceIPv4Address")] = None
    interface_ipv6_address: Annotated[str | None, Wire(ip_text(V6), "interfaceIPv6Address")] = None


@dataclass(frozen=True, kw_only=True)
class NodeAddress:
    address: Annotated[str, Wire(Text(non_empty=True))]
    type: Annotated[str | None, Wire(Enum("CalicoNodeIP", "InternalIP", "ExternalIP"))] = None


@dataclass(frozen=True, kw_only=True)
class NodeInterface:
    name: Annotated[str, Wire(INTERFACE_NAME)]
    addresses: Annotated[tuple[str, ...], Wire(ListOf(Text(non_empty=True)))] = ()


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    bgp: Annotated[NodeBGPSpec | None, Wire(Struct(NodeBGPSpec, checks=[_check_node_bgp]), "bgp")] = None
    ipv4_vxlan_tunnel_addr: Annotated[str | None, Wire(ip_text(V4), "ipv4VXLANTunnelAddr")] = None
    vxlan_tunnel_mac_addr: Annotated[str | None, Wire(MAC, "vxlanTunnelMACAddr")] = None
    ipv6_vxlan_tunnel_addr: Annotated[str | None, Wire(ip_text(V6), "ipv6VXLANTunnelAddr")] = None
    vxlan_tunnel_mac_addr_v6: Annotated[str | None, Wire(MAC, "vxlanTunnelMACAddrV6")] = None
    orch_refs: Annotated[tuple[OrchRef, ...], Wire(ListOf(Struct(OrchRef)))] = ()
    wireguard: Annotated[NodeWireguardSpec | None, Wire(Struct(NodeWireguardSpec))] = None
    addresses: Annotated[tuple[NodeAddress, ...], Wire(ListOf(Struct(NodeAddress)))] = ()
    interfaces: Annotated[tuple[NodeInterface, ...], Wire(ListOf(Struct(NodeInterface)))] = ()


NODE_SPEC = Struct(NodeSpec)
