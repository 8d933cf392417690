"""Support table of WorkloadEndpoint and HostEndpoint: data only (rules in `tortie.model.support`).

Keys are (record class, attribute). Endpoints are calculated by `tortie.calc` and written by the
CNI plugin (`tortie.cni`).
"""

from __future__ import annotations

from typing import Any

from tortie.model import specs_endpoint as E
from tortie.model.support import FieldSupport, impl, info

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (E.WorkloadEndpointSpec, "orchestrator"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "workload"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "node"): impl("calc.validation_filter"),  # locality, decided once
    (E.WorkloadEndpointSpec, "container_id"): impl("cni.endpoint"),
    (E.WorkloadEndpointSpec, "pod"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "endpoint"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "service_account_name"): impl("calc.policy_items"),
    (E.WorkloadEndpointSpec, "ip_networks"): impl("calc.endpoint_calc", "calc.policy_items"),
    (E.WorkloadEndpointSpec, "ip_nats"): impl(
        "calc.endpoint_calc", "dataplane.managers.floating_ips",
        note="1:1 NAT (nftables table inet tortie-nat) and a route to the workload for the external "
             "address, which BGP advertises when an enabled IP pool covers it, as in Calico; the "
             "workload's own traffic to addresses outside every IP pool also leaves with the external "
             "address (Felix keeps the internal one unless its egress SNAT is on); programmed for every "
             "endpoint, as Felix does with floatingIPs: Enabled"),
    (E.IPNAT, "internal_ip"): impl("calc.endpoint_calc"),
    (E.IPNAT, "external_ip"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "ipv4_gateway"): info(
        "descriptive; workloads route via 169.254.1.1 (proxy ARP), as with Calico"),
    (E.WorkloadEndpointSpec, "ipv6_gateway"): info("descriptive; workloads route via the host's link-local "
                                                   "address, as with Calico"),
    (E.WorkloadEndpointSpec, "profiles"): impl("calc.endpoint_calc", "calc.policy_calc"),
    (E.WorkloadEndpointSpec, "interface_name"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "mac"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "ports"): impl("calc.policy_items"),
    (E.WorkloadEndpointSpec, "allow_spoofed_source_prefixes"): impl(
        "calc.policy_resolver", note="honoured whatever FelixConfiguration workloadSourceSpoofing says"),
    (E.WorkloadEndpointSpec, "qos_controls"): impl(
        "calc.endpoint_calc",
        note="bandwidth with tc as Felix (tbf on the host-side interface; egress through an ifb device), "
             "packet rate and connections with nftables (table inet tortie-qos); an endpoint asking for a "
             "part its host's kernel lacks is refused by that host's agent, which says so, as does "
             "tortie node status"),
    **{(E.QoSControls, f.name): impl("calc.qos_limits") for f in E.QoSControls.__dataclass_fields__.values()},
    (E.WorkloadEndpointPort, "name"): impl("calc.policy_items"),
    (E.WorkloadEndpointPort, "protocol"): impl("calc.policy_items"),
    (E.WorkloadEndpointPort, "port"): impl("calc.policy_items"),
    (E.WorkloadEndpointPort, "host_port"): impl("cni.endpoint"),
    (E.WorkloadEndpointPort, "host_ip"): impl("cni.endpoint"),
    (E.HostEndpointSpec, "node"): impl("calc.policy_calc"),
    (E.HostEndpointSpec, "interface_name"): impl("calc.endpoint_calc"),
    (E.HostEndpointSpec, "expected_ips"): impl("calc.policy_items"),
    (E.HostEndpointSpec, "profiles"): impl("calc.endpoint_calc"),
    (E.HostEndpointSpec, "ports"): impl("calc.policy_items"),
    (E.EndpointPort, "name"): impl("calc.policy_items"),
    (E.EndpointPort, "protocol"): impl("calc.policy_items"),
    (E.EndpointPort, "port"): impl("calc.policy_items"),
}
