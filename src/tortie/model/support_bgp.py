"""Support table of BGPConfiguration, BGPPeer and Node: data only (rules in `tortie.model.support`).

Keys are (record class, attribute). BGP fields are read by `tortie.bgp.snapshot` into the records
the BGP view (`tortie.bgp.view`) works from.
"""

from __future__ import annotations

from typing import Any

from tortie.model import specs_bgp as B
from tortie.model.support import FieldSupport, Rejected, impl, info, reject, unless, warn

SNAP = "bgp.snapshot"
SERVICES = ("advertised from every node as a whole CIDR (Calico's cluster IP behaviour; tortie has no "
            "Service objects, so no per-service routes)")
PEERING = "bgp.peering"

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (B.BGPConfigurationSpec, "log_severity_screen"): impl(SNAP),
    (B.BGPConfigurationSpec, "node_to_node_mesh_enabled"): impl(SNAP),
    (B.BGPConfigurationSpec, "as_number"): impl(SNAP),
    (B.BGPConfigurationSpec, "listen_port"): impl(SNAP),
    (B.BGPConfigurationSpec, "bind_mode"): impl(SNAP, PEERING),
    (B.BGPConfigurationSpec, "node_mesh_password"): impl(SNAP),
    (B.BGPConfigurationSpec, "node_mesh_max_restart_time"): impl(SNAP),
    (B.BGPConfigurationSpec, "service_cluster_ips"): impl(SNAP, note=SERVICES),
    (B.BGPConfigurationSpec, "service_external_ips"): impl(SNAP, note=SERVICES),
    (B.BGPConfigurationSpec, "service_load_balancer_ips"): impl(SNAP, note=SERVICES),
    (B.ServiceCIDR, "cidr"): impl(SNAP),
    (B.BGPConfigurationSpec, "service_load_balancer_aggregation"): unless(
        ("Enabled",), Rejected("per-service /32 (/128) load balancer routes need Service objects, which "
                               "tortie does not have", not_yet=True),
        "the whole CIDR is advertised from every node: what tortie does"),
    (B.BGPConfigurationSpec, "communities"): impl(SNAP),
    (B.BGPConfigurationSpec, "prefix_advertisements"): impl(SNAP),
    (B.BGPConfigurationSpec, "ignored_interfaces"): impl(SNAP),
    (B.BGPConfigurationSpec, "local_workload_peering_ipv4"): impl(SNAP, PEERING),
    (B.BGPConfigurationSpec, "local_workload_peering_ipv6"): impl(SNAP, PEERING),
    (B.BGPConfigurationSpec, "program_cluster_routes"): unless(
        ("Enabled", "EnabledNoEncapOnly"), Rejected(
            "BIRD writes every route it learns over BGP into the kernel; with Disabled nothing would",
            not_yet=True),
        "BIRD programs the routes it learns (tortie has no encapsulated pools)"),
    (B.BGPConfigurationSpec, "ipv4_normal_route_priority"): warn(
        "BIRD writes learned routes with metric 32 and the agent uses its own protocol number"),
    (B.BGPConfigurationSpec, "ipv6_normal_route_priority"): warn(
        "BIRD writes learned routes with metric 32 and the agent uses its own protocol number"),
    (B.BGPPassword, "secret_key_ref"): impl(SNAP),
    (B.SecretKeyRef, "name"): impl(SNAP),
    (B.SecretKeyRef, "key"): impl(SNAP),
    (B.SecretKeyRef, "optional"): reject("optional secrets", not_yet=True),
    (B.Community, "name"): impl(SNAP),
    (B.Community, "value"): impl(SNAP),
    (B.PrefixAdvertisement, "cidr"): impl(SNAP),
    (B.PrefixAdvertisement, "communities"): impl(SNAP),
    (B.BGPPeerSpec, "node"): impl(SNAP),
    (B.BGPPeerSpec, "node_selector"): impl(SNAP),
    (B.BGPPeerSpec, "peer_ip"): impl(SNAP),
    (B.BGPPeerSpec, "as_number"): impl(SNAP),
    (B.BGPPeerSpec, "peer_selector"): impl(SNAP),
    (B.BGPPeerSpec, "local_as_number"): impl(SNAP),
    (B.BGPPeerSpec, "local_workload_selector"): impl(SNAP, PEERING),
    (B.BGPPeerSpec, "keep_original_next_hop"): impl(SNAP),
    (B.BGPPeerSpec, "next_hop_mode"): impl(SNAP),
    (B.BGPPeerSpec, "password"): impl(SNAP),
    (B.BGPPeerSpec, "source_address"): impl(SNAP),
    (B.BGPPeerSpec, "max_restart_time"): impl(SNAP),
    (B.BGPPeerSpec, "keepalive_time"): impl(SNAP),
    (B.BGPPeerSpec, "num_allowed_local_as_numbers"): impl(SNAP),
    (B.BGPPeerSpec, "ttl_security"): impl(SNAP),
    (B.BGPPeerSpec, "reachable_by"): impl(SNAP),
    (B.BGPPeerSpec, "filters"): impl(SNAP, PEERING),
    (B.BGPPeerSpec, "reverse_peering"): impl(SNAP),
    (B.NodeSpec, "bgp"): impl(SNAP),
    (B.NodeBGPSpec, "as_number"): impl(SNAP),
    (B.NodeBGPSpec, "ipv4_address"): impl(SNAP),
    (B.NodeBGPSpec, "ipv6_address"): impl(SNAP),
    (B.NodeBGPSpec, "route_reflector_cluster_id"): impl(SNAP),
    (B.NodeBGPSpec, "ipv4_ipip_tunnel_addr"): warn("tortie has no IPIP tunnel device"),
    **{(B.NodeSpec, a): impl("calc.vxlan_resolver", "node.tunnel_addresses")
       for a in ("ipv4_vxlan_tunnel_addr", "vxlan_tunnel_mac_addr", "ipv6_vxlan_tunnel_addr",
                 "vxlan_tunnel_mac_addr_v6")},
    (B.NodeSpec, "wireguard"): warn("tortie has no WireGuard device"),
    (B.NodeWireguardSpec, "interface_ipv4_address"): warn("tortie has no WireGuard device"),
    (B.NodeWireguardSpec, "interface_ipv6_address"): warn("tortie has no WireGuard device"),
    (B.NodeSpec, "orch_refs"): info("descriptive; maps the node to its orchestrator's name for it"),
    (B.OrchRef, "orchestrator"): info("descriptive (see orchRefs)"),
    (B.OrchRef, "node_name"): info("descriptive (see orchRefs)"),
    (B.NodeSpec, "addresses"): info("descriptive; the BGP addresses in spec.bgp are the ones tortie uses"),
    (B.NodeAddress, "address"): info("descriptive (see addresses)"),
    (B.NodeAddress, "type"): info("descriptive (see addresses)"),
    (B.NodeSpec, "interfaces"): info("descriptive; written by Calico's node agent"),
    (B.NodeInterface, "name"): info("descriptive (see interfaces)"),
    (B.NodeInterface, "addresses"): info("descriptive (see interfaces)"),
}

