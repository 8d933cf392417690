"""FelixConfiguration spec: the per-host agent's settings that live in the datastore (reference §1.7).

`default` is cluster-wide, `node.<nodename>` overrides it per host. The record covers Calico's v3
FelixConfigurationSpec fields that matter to an L3 agent (process, logging, dataplane refresh,
failsafes, NAT, routes, encapsulation, WireGuard, OpenStack reporting, usage reporting, debug) plus
the BPF/XDP fields as pass-through (accepted and typed, ignored by tortie's nftables dataplane).
Any other field is an error, like everywhere else in the model.

Types: durations are Go-style strings (`90s`, `1m30s`, `500ms`; `duration_seconds` converts);
enumerations follow Calico's case-insensitive patterns and keep the user's spelling; failsafe
ports are `[{protocol: TCP, port: 22, net: 10.0.0.0/8}]` (an explicit empty list disables them,
which is why those two fields keep `[]` distinct from "not given"). Defaults are documented in
docs/reference/resources.md and applied by tortie.agent.config, not here.
"""

import re
from dataclasses import dataclass
from typing import Annotated

from tortie.common.ipfamily import V4, V6
from tortie.model.fields import (
    DURATION,
    NUMERIC_PORT,
    PORT_NUMBER,
    REGEX,
    SELECTOR,
    Port,
    check_dns_label,
    check_interface_name,
    cidr_text,
    ip_text,
)
from tortie.model.frozen import EMPTY_MAP, FrozenMap
from tortie.model.metadata import Metadata
from tortie.model.problems import Issues, join
from tortie.model.schema import Bool, Enum, Int, ListOf, MapOf, Struct, Text, Wire, uses

LOG_LEVEL = Enum("Trace", "Debug", "Info", "Warning", "Error", "Fatal", case_insensitive=True)
LOG_LEVEL_SYS = Enum("Trace", "Debug", "Info", "Warning", "Error", "Fatal", "None", case_insensitive=True)
ACCEPT_RETURN = Enum("Accept", "Return", case_insensitive=True)
DROP_REJECT = Enum("Drop", "Reject", case_insensitive=True)
ENABLED_DISABLED = Enum("Enabled", "Disabled", case_insensitive=True)
MTU = Int(0, 65535)
MAP_SIZE = Int(1)
UINT32 = Int(0, 4294967295)
ROUTE_PRIORITY = Int(1, 2**31 - 1)
GO_TUNABLE = Int(-1)


@dataclass(frozen=True, kw_only=True)
class ProtoPort:
    """A failsafe port: protocol (TCP, UDP or SCTP; TCP when omitted), port, optional peer CIDR."""

    protocol: Annotated[str | None, Wire(Enum("TCP", "UDP", "SCTP", canonical=True))] = None
    port: Annotated[int, Wire(Int(0, 65535))]
    net: Annotated[str | None, Wire(cidr_text())] = None

    @property
    def effective_protocol(self) -> str:
        return self.protocol or "TCP"


@dataclass(frozen=True, kw_only=True)
class RouteTableRange:
    min: Annotated[int, Wire(Int())]
    max: Annotated[int, Wire(Int())]


def _check_legacy_range(r: RouteTableRange, path: str, issues: Issues) -> None:
    if not 1 <= r.min <= r.max <= 250:
        issues.add(path, f"{r.min}-{r.max} is not valid: must be a range of route table indices within 1-250")


def _check_id_range(r: RouteTableRange, path: str, issues: Issues) -> None:
    if r.min < 1:
        issues.add(join(path, "min"), f"{r.min} is out of range: route table indices start at 1")
    if r.max > 4294967295:
        issues.add(join(path, "max"), f"{r.max} is out of range: at most 4294967295")
    if r.min > r.max:
        issues.add(path, f"min {r.min} is greater than max {r.max}")


@dataclass(frozen=True, kw_only=True)
class HealthTimeoutOverride:
    name: Annotated[str, Wire(Text(non_empty=True))]
    timeout: Annotated[str, Wire(DURATION)]


def _check_region(text: str) -> str:
    if len(text) > 46:
        raise ValueError(f"{text!r} is too long: at most 46 characters (it becomes part of a namespace name)")
    return check_dns_label(text)


_IFACE_FILTER_RE = re.compile(r"^[a-zA-Z0-9:._+-]{1,15}$")


def _check_iface_filter(text: str) -> str:
    if not _IFACE_FILTER_RE.match(text):
        raise ValueError(f"{text!r} is not a valid interface name or pattern (1-15 of [a-zA-Z0-9:._+-])")
    return text


PROTO_PORTS = ListOf(Struct(ProtoPort))
CIDRS = ListOf(cidr_text())


@dataclass(frozen=True, kw_only=True)
class FelixConfigurationSpec:
    # scope (Calico's selector-scoped configurations; not for `default` or `node.<name>`)
    node_selector: Annotated[str | None, Wire(SELECTOR)] = None
    # process, health, metrics
    use_internal_dataplane_driver: Annotated[bool | None, Wire(Bool())] = None
    dataplane_driver: Annotated[str | None, Wire(Text())] = None
    dataplane_watchdog_timeout: Annotated[str | None, Wire(DURATION)] = None
    health_enabled: Annotated[bool | None, Wire(Bool())] = None
    health_host: Annotated[str | None, Wire(Text(non_empty=True))] = None
    health_port: Annotated[int | None, Wire(PORT_NUMBER)] = None
    health_timeout_overrides: Annotated[
        tuple[HealthTimeoutOverride, ...], Wire(ListOf(Struct(HealthTimeoutOverride)))] = ()
    prometheus_metrics_enabled: Annotated[bool | None, Wire(Bool())] = None
    prometheus_metrics_host: Annotated[str | None, Wire(Text(non_empty=True, max_len=64))] = None
    prometheus_metrics_port: Annotated[int | None, Wire(PORT_NUMBER)] = None
    prometheus_go_metrics_enabled: Annotated[bool | None, Wire(Bool())] = None
    prometheus_process_metrics_enabled: Annotated[bool | None, Wire(Bool())] = None
    prometheus_wire_guard_metrics_enabled: Annotated[
        bool | None, Wire(Bool(), "prometheusWireGuardMetricsEnabled")] = None
    # logging
    log_prefix: Annotated[str | None, Wire(Text())] = None
    log_file_path: Annotated[str | None, Wire(Text())] = None
    log_severity_file: Annotated[str | None, Wire(LOG_LEVEL)] = None
    log_severity_screen: Annotated[str | None, Wire(LOG_LEVEL)] = None
    log_severity_sys: Annotated[str | None, Wire(LOG_LEVEL_SYS)] = None
    log_debug_filename_regex: Annotated[str | None, Wire(REGEX)] = None
    # dataplane: interfaces, refresh, chains and actions
    interface_prefix: Annotated[str | None, Wire(Text(non_empty=True))] = None
    interface_exclude: Annotated[str | None, Wire(Text())] = None
    ipv6_support: Annotated[bool | None, Wire(Bool(), "ipv6Support")] = None
    route_refresh_interval: Annotated[str | None, Wire(DURATION)] = None
    interface_refresh_interval: Annotated[str | None, Wire(DURATION)] = None
    ipsets_refresh_interval: Annotated[str | None, Wire(DURATION)] = None
    iptables_refresh_interval: Annotated[str | None, Wire(DURATION)] = None
    iptables_post_write_check_interval: Annotated[str | None, Wire(DURATION)] = None
    iptables_lock_file_path: Annotated[str | None, Wire(Text())] = None
    iptables_lock_timeout: Annotated[str | None, Wire(DURATION)] = None
    iptables_lock_probe_interval: Annotated[str | None, Wire(DURATION)] = None
    iptables_backend: Annotated[str | None, Wire(Enum("Legacy", "NFT", "Auto", case_insensitive=True))] = None
    iptables_mark_mask: Annotated[int | None, Wire(UINT32)] = None
    iptables_filter_allow_action: Annotated[str | None, Wire(ACCEPT_RETURN)] = None
    iptables_mangle_allow_action: Annotated[str | None, Wire(ACCEPT_RETURN)] = None
    iptables_filter_deny_action: Annotated[str | None, Wire(DROP_REJECT)] = None
    iptables_nat_outgoing_interface_filter: Annotated[
        str | None, Wire(Text(_check_iface_filter), "iptablesNATOutgoingInterfaceFilter")] = None
    nftables_mode: Annotated[
        str | None, Wire(Enum("Enabled", "Disabled", "Auto", case_insensitive=True))] = None
    nftables_refresh_interval: Annotated[str | None, Wire(DURATION)] = None
    nftables_filter_allow_action: Annotated[str | None, Wire(ACCEPT_RETURN)] = None
    nftables_mangle_allow_action: Annotated[str | None, Wire(ACCEPT_RETURN)] = None
    nftables_filter_deny_action: Annotated[str | None, Wire(DROP_REJECT)] = None
    nftables_mark_mask: Annotated[int | None, Wire(UINT32)] = None
    chain_insert_mode: Annotated[str | None, Wire(Enum("Insert", "Append", case_insensitive=True))] = None
    default_endpoint_to_host_action: Annotated[
        str | None, Wire(Enum("Drop", "Accept", "Return", case_insensitive=True))] = None
    max_ipset_size: Annotated[int | None, Wire(Int(0))] = None
    netlink_timeout: Annotated[str | None, Wire(DURATION)] = None
    disable_conntrack_invalid_check: Annotated[bool | None, Wire(Bool())] = None
    failsafe_inbound_host_ports: Annotated[tuple[ProtoPort, ...] | None, Wire(PROTO_PORTS)] = None
    failsafe_outbound_host_ports: Annotated[tuple[ProtoPort, ...] | None, Wire(PROTO_PORTS)] = None
    kube_node_port_ranges: Annotated[tuple[Port, ...], Wire(ListOf(NUMERIC_PORT, max_items=7))] = ()
    # NAT
    nat_port_range: Annotated[Port | None, Wire(NUMERIC_PORT, "natPortRange")] = None
    nat_outgoing_address: Annotated[str | None, Wire(ip_text(V4), "natOutgoingAddress")] = None
    nat_outgoing_exclusions: Annotated[str | None, Wire(Enum("IPPoolsOnly", "IPPoolsAndHostIPs"))] = None
    # routes
    device_route_source_address: Annotated[str | None, Wire(ip_text(V4))] = None
    device_route_source_address_ipv6: Annotated[
        str | None, Wire(ip_text(V6), "deviceRouteSourceAddressIPv6")] = None
    device_route_protocol: Annotated[int | None, Wire(Int(0, 255))] = None
    remove_external_routes: Annotated[bool | None, Wire(Bool())] = None
    route_source: Annotated[str | None, Wire(Enum("WorkloadIPs", "CalicoIPAM", case_insensitive=True))] = None
    route_table_ranges: Annotated[
        tuple[RouteTableRange, ...], Wire(ListOf(Struct(RouteTableRange, checks=[_check_id_range])))] = ()
    route_table_range: Annotated[
        RouteTableRange | None, Wire(Struct(RouteTableRange, checks=[_check_legacy_range]))] = None
    route_sync_disabled: Annotated[bool | None, Wire(Bool())] = None
    program_cluster_routes: Annotated[str | None, Wire(Enum("Enabled", "Disabled", "EnabledIPIPOnly"))] = None
    ipv4_normal_route_priority: Annotated[int | None, Wire(ROUTE_PRIORITY, "ipv4NormalRoutePriority")] = None
    ipv4_elevated_route_priority: Annotated[
        int | None, Wire(ROUTE_PRIORITY, "ipv4ElevatedRoutePriority")] = None
    ipv6_normal_route_priority: Annotated[int | None, Wire(ROUTE_PRIORITY, "ipv6NormalRoutePriority")] = None
    ipv6_elevated_route_priority: Annotated[
        int | None, Wire(ROUTE_PRIORITY, "ipv6ElevatedRoutePriority")] = None
    ip_forwarding: Annotated[str | None, Wire(ENABLED_DISABLED, "ipForwarding")] = None
    mtu_iface_pattern: Annotated[str | None, Wire(REGEX, "mtuIfacePattern")] = None
    service_loop_prevention: Annotated[
        str | None, Wire(Enum("Drop", "Reject", "Disabled", case_insensitive=True))] = None
    workload_source_spoofing: Annotated[
        str | None, Wire(Enum("Disabled", "Any", case_insensitive=True))] = None
    floating_ips: Annotated[str | None, Wire(ENABLED_DISABLED, "floatingIPs")] = None
    external_nodes_list: Annotated[
        tuple[str, ...], Wire(ListOf(cidr_text(family=V4)), "externalNodesList")] = ()
    # encapsulation
    ipip_enabled: Annotated[bool | None, Wire(Bool(), "ipipEnabled")] = None
    ipip_mtu: Annotated[int | None, Wire(MTU, "ipipMTU")] = None
    vxlan_enabled: Annotated[bool | None, Wire(Bool(), "vxlanEnabled")] = None
    vxlan_mtu: Annotated[int | None, Wire(MTU, "vxlanMTU")] = None
    vxlan_mtu_v6: Annotated[int | None, Wire(MTU, "vxlanMTUV6")] = None
    vxlan_port: Annotated[int | None, Wire(PORT_NUMBER, "vxlanPort")] = None
    vxlan_vni: Annotated[int | None, Wire(Int(0, 16777215, hint="a VXLAN VNI is 24 bits: 0-16777215"),
                                          "vxlanVNI")] = None
    allow_vxlan_packets_from_workloads: Annotated[
        bool | None, Wire(Bool(), "allowVXLANPacketsFromWorkloads")] = None
    allow_ipip_packets_from_workloads: Annotated[
        bool | None, Wire(Bool(), "allowIPIPPacketsFromWorkloads")] = None
    # WireGuard
    wireguard_enabled: Annotated[bool | None, Wire(Bool())] = None
    wireguard_enabled_v6: Annotated[bool | None, Wire(Bool(), "wireguardEnabledV6")] = None
    wireguard_listening_port: Annotated[int | None, Wire(PORT_NUMBER)] = None
    wireguard_listening_port_v6: Annotated[int | None, Wire(PORT_NUMBER, "wireguardListeningPortV6")] = None
    wireguard_routing_rule_priority: Annotated[int | None, Wire(Int(1, 32765))] = None
    wireguard_interface_name: Annotated[str | None, Wire(Text(check_interface_name))] = None
    wireguard_interface_name_v6: Annotated[
        str | None, Wire(Text(check_interface_name), "wireguardInterfaceNameV6")] = None
    wireguard_mtu: Annotated[int | None, Wire(MTU, "wireguardMTU")] = None
    wireguard_mtu_v6: Annotated[int | None, Wire(MTU, "wireguardMTUV6")] = None
    wireguard_host_encryption_enabled: Annotated[bool | None, Wire(Bool())] = None
    wireguard_keep_alive: Annotated[str | None, Wire(DURATION)] = None
    # OpenStack, status reporting
    metadata_addr: Annotated[str | None, Wire(Text(non_empty=True))] = None
    metadata_port: Annotated[int | None, Wire(PORT_NUMBER)] = None
    openstack_region: Annotated[str | None, Wire(Text(_check_region))] = None
    reporting_interval: Annotated[str | None, Wire(DURATION)] = None
    reporting_ttl: Annotated[str | None, Wire(DURATION, "reportingTTL")] = None
    endpoint_reporting_enabled: Annotated[bool | None, Wire(Bool())] = None
    endpoint_reporting_delay: Annotated[str | None, Wire(DURATION)] = None
    endpoint_status_path_prefix: Annotated[str | None, Wire(Text())] = None
    policy_sync_path_prefix: Annotated[str | None, Wire(Text())] = None
    flow_logs_flush_interval: Annotated[str | None, Wire(DURATION)] = None
    usage_reporting_enabled: Annotated[bool | None, Wire(Bool())] = None
    usage_reporting_initial_delay: Annotated[str | None, Wire(DURATION)] = None
    usage_reporting_interval: Annotated[str | None, Wire(DURATION)] = None
    feature_detect_override: Annotated[str | None, Wire(Text())] = None
    feature_gates: Annotated[str | None, Wire(Text())] = None
    # eBPF / XDP (accepted for compatibility; tortie's dataplane is nftables)
    bpf_enabled: Annotated[bool | None, Wire(Bool())] = None
    bpf_log_level: Annotated[str | None, Wire(Enum("Off", "Info", "Debug", case_insensitive=True))] = None
    bpf_log_filters: Annotated[FrozenMap[str, str], Wire(MapOf(Text()))] = EMPTY_MAP
    bpf_data_iface_pattern: Annotated[str | None, Wire(REGEX)] = None
    bpf_connect_time_load_balancing: Annotated[str | None, Wire(Enum("TCP", "Enabled", "Disabled"))] = None
    bpf_external_service_mode: Annotated[
        str | None, Wire(Enum("Tunnel", "DSR", case_insensitive=True))] = None
    bpf_kube_proxy_iptables_cleanup_enabled: Annotated[bool | None, Wire(Bool())] = None
    bpf_enforce_rpf: Annotated[
        str | None, Wire(Enum("Disabled", "Strict", "Loose", case_insensitive=True), "bpfEnforceRPF")] = None
    bpf_map_size_conntrack: Annotated[int | None, Wire(MAP_SIZE)] = None
    xdp_enabled: Annotated[bool | None, Wire(Bool(), "xdpEnabled")] = None
    generic_xdp_enabled: Annotated[bool | None, Wire(Bool(), "genericXDPEnabled")] = None
    xdp_refresh_interval: Annotated[str | None, Wire(DURATION, "xdpRefreshInterval")] = None
    aws_src_dst_check: Annotated[str | None, Wire(Enum("DoNothing", "Enable", "Disable"))] = None
    # debugging and Go runtime (pass-through)
    debug_memory_profile_path: Annotated[str | None, Wire(Text())] = None
    debug_disable_log_dropping: Annotated[bool | None, Wire(Bool())] = None
    debug_host: Annotated[str | None, Wire(Text(non_empty=True))] = None
    debug_port: Annotated[int | None, Wire(Int(0, 65535))] = None
    debug_simulate_calc_graph_hang_after: Annotated[str | None, Wire(DURATION)] = None
    debug_simulate_dataplane_hang_after: Annotated[str | None, Wire(DURATION)] = None
    debug_simulate_dataplane_apply_delay: Annotated[str | None, Wire(DURATION)] = None
    go_gc_threshold: Annotated[int | None, Wire(GO_TUNABLE, "goGCThreshold")] = None
    go_memory_limit_mb: Annotated[int | None, Wire(GO_TUNABLE, "goMemoryLimitMB")] = None
    go_max_procs: Annotated[int | None, Wire(GO_TUNABLE)] = None


@uses("vxlanMTUV6")
def _check_mtu_v6(spec: FelixConfigurationSpec, path: str, issues: Issues) -> None:
    if spec.vxlan_mtu_v6 and spec.vxlan_mtu_v6 < 1280:
        issues.add(join(path, "vxlanMTUV6"), f"{spec.vxlan_mtu_v6} is below IPv6's minimum link MTU of 1280 "
                   "(RFC 8200): use 0 (detect) or 1280-65535")


@uses("routeTableRange", "routeTableRanges")
def _check_felix(spec: FelixConfigurationSpec, path: str, issues: Issues) -> None:
    if spec.route_table_range is not None and spec.route_table_ranges:
        issues.add(join(path, "routeTableRange"), "cannot be set together with routeTableRanges")
    total = sum(r.max - r.min + 1 for r in spec.route_table_ranges if r.max >= r.min)
    if total > 0xFFFF:
        issues.add(join(path, "routeTableRanges"), f"targets {total} tables; at most 65535 are allowed")


FELIX_CONFIGURATION_SPEC = Struct(FelixConfigurationSpec, checks=[_check_felix, _check_mtu_v6])


def check_felix_resource(meta: Metadata, spec: FelixConfigurationSpec, issues: Issues) -> None:
    """nodeSelector scopes a configuration that is neither `default` nor `node.<name>` (those two
    are scoped by their name)."""
    if spec.node_selector is not None and (meta.name == "default" or meta.name.startswith("node.")):
        issues.add("spec.nodeSelector", f"is not allowed in FelixConfiguration {meta.name!r}: `default` "
                   "applies to every node and `node.<name>` to one; give a selector-scoped configuration "
                   "another name")
