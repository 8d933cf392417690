"""Support table of FelixConfiguration (see `tortie.model.support`): data only.

Keys are (record class, attribute). The agent (`tortie.agent.config`) implements the Felix settings
that matter to an L3 agent with an nftables dataplane; most other FelixConfiguration fields tune
Calico's own implementation (iptables, eBPF, Go runtime, Typha, debugging) and are accepted with a
warning. Fields whose value
would change routing or security when ignored (encapsulation, WireGuard, NAT source address, who
programs routes) are refused for the values tortie cannot honour.
"""

from __future__ import annotations

from typing import Any

from tortie.model.specs_felix import FelixConfigurationSpec as F
from tortie.model.specs_felix import HealthTimeoutOverride, ProtoPort, RouteTableRange
from tortie.model.support import FieldSupport, Rejected, Warned, impl, reject, unless, warn, warn_unless

AGENT = "agent.config"
IPTABLES = "tortie programs nftables (table inet tortie) and reads it back on its own schedule"
NFT = "tortie's nftables table has a fixed layout and does not share marks with other programs"
BPF = "tortie's dataplane is nftables; the same policy is enforced without eBPF or XDP"
GO = "tortie is not a Go program"
DEBUG = "Felix's debugging aid; tortie has its own logs and `tortie policy trace`"
NO_WIREGUARD = "tortie has no WireGuard device"


def _agent(*attrs: str) -> dict[tuple[type[Any], str], FieldSupport]:
    return {(F, a): impl(AGENT) for a in attrs}


def _warned(instead: str, *attrs: str) -> dict[tuple[type[Any], str], FieldSupport]:
    return {(F, a): warn(instead) for a in attrs}


TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (F, "node_selector"): warn("configurations scoped by node selector are not implemented yet: the agent "
                               "reads `default` and `node.<hostname>` only"),
    **_agent("health_enabled", "health_host", "health_port", "prometheus_metrics_enabled",
             "prometheus_metrics_host", "prometheus_metrics_port", "log_prefix", "log_severity_screen",
             "interface_prefix", "ipv6_support", "route_refresh_interval", "interface_refresh_interval",
             "default_endpoint_to_host_action", "failsafe_inbound_host_ports", "failsafe_outbound_host_ports",
             "device_route_protocol", "ip_forwarding", "openstack_region", "reporting_interval",
             "reporting_ttl", "endpoint_reporting_enabled", "endpoint_reporting_delay",
             "flow_logs_flush_interval", "endpoint_status_path_prefix"),
    (ProtoPort, "protocol"): impl(AGENT),
    (ProtoPort, "port"): impl(AGENT),
    (ProtoPort, "net"): impl(AGENT),
    **_warned("the tortie agent is its own dataplane", "use_internal_dataplane_driver", "dataplane_driver"),
    **_warned("the agent's health report has fixed timeouts", "dataplane_watchdog_timeout",
              "health_timeout_overrides"),
    (HealthTimeoutOverride, "name"): warn("the agent's health report has fixed timeouts"),
    (HealthTimeoutOverride, "timeout"): warn("the agent's health report has fixed timeouts"),
    **{(F, a): warn_unless((False,), "the agent exports its own metrics only", "not exported")
       for a in ("prometheus_go_metrics_enabled", "prometheus_process_metrics_enabled",
                 "prometheus_wire_guard_metrics_enabled")},
    **_warned("the agent logs to stderr at logSeverityScreen", "log_file_path", "log_severity_file",
              "log_severity_sys", "log_debug_filename_regex"),
    (F, "interface_exclude"): warn("host endpoints name their interface (or `*`); no interface is excluded"),
    **_warned(IPTABLES, "ipsets_refresh_interval", "iptables_refresh_interval",
              "iptables_post_write_check_interval", "iptables_lock_file_path", "iptables_lock_timeout",
              "iptables_lock_probe_interval", "iptables_backend", "iptables_mark_mask",
              "iptables_filter_allow_action", "iptables_mangle_allow_action", "iptables_filter_deny_action",
              "iptables_nat_outgoing_interface_filter", "chain_insert_mode", "max_ipset_size",
              "nftables_mode", "nftables_refresh_interval"),
    **_warned(NFT, "nftables_filter_allow_action", "nftables_mangle_allow_action", "nftables_mark_mask"),
    (F, "nftables_filter_deny_action"): unless(("Drop", "drop", "DROP"), Warned(
        "tortie drops denied packets (no reject message is sent)"), "denied packets are dropped"),
    (F, "netlink_timeout"): warn("the agent's netlink requests use fixed timeouts"),
    (F, "disable_conntrack_invalid_check"): warn_unless(
        (False,), "tortie always drops packets conntrack marks invalid", "invalid packets are dropped"),
    (F, "kube_node_port_ranges"): warn("tortie runs no kube-proxy integration"),
    (F, "nat_port_range"): warn("NAT outgoing masquerades with the kernel's port choice"),
    (F, "nat_outgoing_address"): reject(
        "a fixed source address for NAT outgoing; tortie masquerades to the egress interface's address"),
    (F, "nat_outgoing_exclusions"): unless(("IPPoolsOnly",), Rejected(
        "excluding host addresses from NAT outgoing; tortie excludes IP pool destinations only"),
        "pool destinations are not NATed: what tortie does"),
    (F, "device_route_source_address"): reject(
        "a source hint on workload routes; the kernel chooses the host's source address", not_yet=True),
    (F, "device_route_source_address_ipv6"): reject(
        "a source hint on workload routes; the kernel chooses the host's source address", not_yet=True),
    (F, "remove_external_routes"): warn("the agent removes only routes carrying its own protocol number"),
    (F, "route_source"): warn(
        "workload routes come from WorkloadEndpoints; block routes from IPAM affinities"),
    (F, "route_table_ranges"): warn("the agent programs the main routing table only"),
    (F, "route_table_range"): warn("the agent programs the main routing table only"),
    (RouteTableRange, "min"): warn("the agent programs the main routing table only"),
    (RouteTableRange, "max"): warn("the agent programs the main routing table only"),
    (F, "route_sync_disabled"): unless((False,), Rejected(
        "leaving route programming to another program; the agent always programs workload routes"),
        "the agent programs routes"),
    (F, "program_cluster_routes"): unless(("Disabled", "EnabledIPIPOnly"), Rejected(
        "the agent programming cluster routes; in tortie BIRD programs them "
        "(BGPConfiguration programClusterRoutes)"), "BIRD programs cluster routes: what tortie does"),
    **_warned("the agent uses its own route protocol number and metrics", "ipv4_normal_route_priority",
              "ipv4_elevated_route_priority", "ipv6_normal_route_priority", "ipv6_elevated_route_priority"),
    (F, "service_loop_prevention"): warn("tortie installs no service-address loop prevention routes"),
    (F, "workload_source_spoofing"): unless(("Any",), Warned(
        "every WorkloadEndpoint's allowSpoofedSourcePrefixes is honoured, as with Any"),
        "endpoints' allowSpoofedSourcePrefixes are honoured"),
    (F, "floating_ips"): unless(("Enabled",), Warned(
        "tortie programs the ipNATs of every WorkloadEndpoint, as Felix does with Enabled (with Disabled "
        "Felix programs only OpenStack endpoints'); leave ipNATs out of an endpoint to give it none"),
        "every endpoint's ipNATs are programmed: what tortie does"),
    (F, "external_nodes_list"): warn(
        "tortie accepts VXLAN from any host; its hosts' VXLAN needs no list of outside nodes"),
    (F, "ipip_enabled"): unless((False,), Rejected("IPIP tunnels (this kernel has no ipip module)"),
                                "no IPIP device: what tortie does"),
    (F, "vxlan_enabled"): warn("the VXLAN device of a family exists exactly while an IP pool of that family "
                               "uses VXLAN"),
    (F, "ipip_mtu"): warn("tortie has no IPIP device"),
    **{(F, a): impl(AGENT, "agent.pipeline") for a in ("vxlan_mtu", "vxlan_mtu_v6", "vxlan_port", "vxlan_vni",
                                                       "mtu_iface_pattern")},
    (F, "allow_vxlan_packets_from_workloads"): impl(AGENT, "dataplane.nft.config"),
    (F, "allow_ipip_packets_from_workloads"): warn(
        "tortie has no IPIP device for such packets to enter; they are policed like any other packet"),
    (F, "wireguard_enabled"): unless((False,), Rejected(
        "WireGuard encryption (no WireGuard on this kernel); traffic would leave unencrypted"),
        "no encryption: what tortie does"),
    (F, "wireguard_enabled_v6"): unless((False,), Rejected(
        "WireGuard encryption (no WireGuard on this kernel); traffic would leave unencrypted"),
        "no encryption: what tortie does"),
    **_warned(NO_WIREGUARD, "wireguard_listening_port", "wireguard_listening_port_v6",
              "wireguard_routing_rule_priority", "wireguard_interface_name", "wireguard_interface_name_v6",
              "wireguard_mtu", "wireguard_mtu_v6", "wireguard_keep_alive"),
    (F, "wireguard_host_encryption_enabled"): warn_unless((False,), NO_WIREGUARD, "no encryption"),
    **_warned("tortie does not DNAT the OpenStack metadata address", "metadata_addr", "metadata_port"),
    (F, "policy_sync_path_prefix"): warn("tortie has no policy sync API for sidecars"),
    (F, "usage_reporting_enabled"): warn_unless((False,), "tortie never reports usage", "no usage reports"),
    **_warned("tortie never reports usage", "usage_reporting_initial_delay", "usage_reporting_interval"),
    **_warned("tortie detects the kernel features it needs itself", "feature_detect_override",
              "feature_gates"),
    **_warned(BPF, "bpf_log_filters", "bpf_data_iface_pattern", "bpf_connect_time_load_balancing",
              "bpf_external_service_mode", "bpf_kube_proxy_iptables_cleanup_enabled", "bpf_enforce_rpf",
              "bpf_map_size_conntrack", "xdp_enabled", "xdp_refresh_interval"),
    (F, "bpf_enabled"): warn_unless((False,), BPF, "the nftables dataplane: what tortie runs"),
    (F, "generic_xdp_enabled"): warn_unless((False,), BPF, "no XDP: what tortie does"),
    (F, "bpf_log_level"): warn_unless(("", "Off", "off"), BPF, "no eBPF logging"),
    (F, "aws_src_dst_check"): warn("tortie does not call the AWS API"),
    **_warned(DEBUG, "debug_memory_profile_path", "debug_disable_log_dropping", "debug_host", "debug_port",
              "debug_simulate_calc_graph_hang_after", "debug_simulate_dataplane_hang_after",
              "debug_simulate_dataplane_apply_delay"),
    **_warned(GO, "go_gc_threshold", "go_memory_limit_mb", "go_max_procs"),
}
