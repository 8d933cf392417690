"""Support table of WorkloadEndpoint and HostEndpoint: data only (rules in `tortie.model.support`).

Keys are (record class, attribute). Endpoints are calculated by `tortie.calc` and written by the
CNI plugin (`tortie.cni`).
"""

from __future__ import annotations

from typing import Any

from tortie.model import specs_endpoint as E
from tortie.model.support import FieldSupport, impl, info, reject

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (E.WorkloadEndpointSpec, "orchestrator"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "workload"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "node"): impl("calc.validation_filter"),  # locality, decided once
    (E.WorkloadEndpointSpec, "container_id"): impl("cni.endpoint"),
    (E.WorkloadEndpointSpec, "pod"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "endpoint"): impl("calc.endpoint_calc"),
    (E.WorkloadEndpointSpec, "service_account_name"): impl("calc.policy_items"),
    (E.WorkloadEndpointSpec, "ip_networks"): impl("calc.endpoint_calc", "calc.policy_items"),
    (E.WorkloadEndpointSpec, "ip_nats"): reject(
        "1:1 NAT (floating IPs) is not programmed yet; the external address would not reach the workload",
        not_yet=True),
    (E.IPNAT, "internal_ip"): reject("1:1 NAT is not programmed yet (see ipNATs)", not_yet=True),
    (E.IPNAT, "external_ip"): reject("1:1 NAT is not programmed yet (see ipNATs)", not_yet=True),
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
    (E.WorkloadEndpointSpec, "qos_controls"): reject(
        "bandwidth, packet-rate and connection limits are not programmed yet; the workload would run "
        "unlimited", not_yet=True),
    **{(E.QoSControls, f.name): reject("QoS limits are not programmed yet (see qosControls)", not_yet=True)
       for f in E.QoSControls.__dataclass_fields__.values()},
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
