"""Neutron port -> tortie WorkloadEndpoint (pure; no Neutron import).

Input: a port as Neutron's plugin returns it (a dict with `id`, `device_id`, `device_owner`,
`binding:host_id`, `binding:vif_type`, `mac_address`, `fixed_ips`, `security_groups`,
`allowed_address_pairs`, `port_security_enabled`, `network_id`, `project_id`, `dns_assignment`) and
a `PortFacts` with what the port dict does not carry (security-group names, network name, subnet
gateways, the floating IPs associated with the port). Output: a validated `Resource` of kind
WorkloadEndpoint, or None when the port is not a tortie endpoint.

A port is an endpoint when its device owner is a VM (`compute:*`) or a container (`kuryr:container`),
it is bound to a host, and it was bound as a routed `tap` VIF (that is, by this driver).

Mapping (reference §8.2): namespace `openstack`, name `<host>-openstack-<device>-<port>`;
orchestrator `openstack`, workload = device_id, endpoint = port id, node = binding host,
interfaceName `tap` + port id[:11], mac; ipNetworks = fixed IPs as /32 or /128; ipv4/ipv6 gateway
from the subnets; allowed-address pairs become allowSpoofedSourcePrefixes (the VM may send from
them); each floating IP associated with one of the port's fixed IPs becomes an ipNAT {internalIP:
fixed_ip_address, externalIP: floating_ip_address} (1:1 NAT on the port's host, as networking-calico
maps them). Labels: one per security group (membership for policy selectors), orchestrator, project
and network. A port with port security disabled carries no security-group labels, lists the
allow-all profile and may send from any address: Neutron does not filter it at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tortie.model import Resource, parse_resource

from networking_tortie import naming

VIF_TYPE_TAP = "tap"
ENDPOINT_OWNER_PREFIXES = ("compute:",)
ENDPOINT_OWNERS = ("kuryr:container",)
ANY_SOURCE = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class PortFacts:
    """What the translation needs beyond the port dict."""

    sg_names: Mapping[str, str] = field(default_factory=dict)
    network_name: str | None = None
    project_name: str | None = None
    subnet_gateways: Mapping[str, str | None] = field(default_factory=dict)
    region: str = ""
    floating_ips: tuple[tuple[str, str], ...] = ()  # sorted (fixed IP, floating IP) pairs


def _canonical_ip(text: Any) -> str:
    return str(ipaddress.ip_address(str(text)))


def floating_pairs(port_id: str, floating_ips: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    """The (fixed, floating) address pairs of the floating IPs associated with port `port_id`."""
    return tuple(sorted(
        (_canonical_ip(f["fixed_ip_address"]), _canonical_ip(f["floating_ip_address"]))
        for f in floating_ips
        if str(f.get("port_id") or "") == port_id
        and f.get("fixed_ip_address") and f.get("floating_ip_address")))


def is_endpoint_owner(port: Mapping[str, Any]) -> bool:
    owner = str(port.get("device_owner") or "")
    return owner.startswith(ENDPOINT_OWNER_PREFIXES) or owner in ENDPOINT_OWNERS


def binding_host(port: Mapping[str, Any]) -> str:
    return str(port.get("binding:host_id") or "")


def is_endpoint_port(port: Mapping[str, Any]) -> bool:
    """A VM/container port, bound to a host by this driver (vif_type tap)."""
    return (
        is_endpoint_owner(port)
        and bool(binding_host(port))
        and port.get("binding:vif_type") == VIF_TYPE_TAP
    )


def port_security_enabled(port: Mapping[str, Any]) -> bool:
    value = port.get("port_security_enabled")
    return True if value is None else bool(value)


def _address_networks(fixed_ips: Iterable[Mapping[str, Any]]) -> list[str]:
    nets = []
    for fip in fixed_ips:
        addr = ipaddress.ip_address(str(fip["ip_address"]))
        nets.append(f"{addr}/{addr.max_prefixlen}")
    return nets


def _gateway(port: Mapping[str, Any], facts: PortFacts, version: int) -> str | None:
    for fip in port.get("fixed_ips") or []:
        if ipaddress.ip_address(str(fip["ip_address"])).version != version:
            continue
        gateway = facts.subnet_gateways.get(str(fip.get("subnet_id")))
        if gateway:
            return str(ipaddress.ip_address(gateway))
    return None


def _allowed_pairs(port: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for pair in port.get("allowed_address_pairs") or []:
        net = ipaddress.ip_network(str(pair["ip_address"]), strict=False)
        if str(net) not in out:
            out.append(str(net))
    return out


def _labels(port: Mapping[str, Any], facts: PortFacts, secure: bool) -> dict[str, str]:
    labels = {naming.ORCHESTRATOR_LABEL: naming.ORCHESTRATOR}
    if secure:
        for sg_id in sorted(port.get("security_groups") or []):
            name = facts.sg_names.get(sg_id)
            labels[naming.sg_label(sg_id)] = naming.label_value(name) or ""
            name_key = naming.label_name(name, naming.SG_NAME_LABEL_PREFIX)
            if name_key is not None:
                labels[name_key] = sg_id
    for key, value in (
        (naming.PROJECT_ID_LABEL, port.get("project_id") or port.get("tenant_id")),
        (naming.PROJECT_NAME_LABEL, facts.project_name),
        (naming.NETWORK_ID_LABEL, port.get("network_id")),
        (naming.NETWORK_NAME_LABEL, facts.network_name),
    ):
        clean = naming.label_value(str(value) if value else None)
        if clean is not None:
            labels[key] = clean
    return labels


def _fqdn(port: Mapping[str, Any]) -> str | None:
    for entry in port.get("dns_assignment") or []:
        fqdn = entry.get("fqdn")
        if fqdn:
            return str(fqdn).rstrip(".")
    return None


def endpoint_wire(port: Mapping[str, Any], facts: PortFacts) -> dict[str, Any]:
    """The WorkloadEndpoint wire object for an endpoint port (see the module docstring)."""
    host = binding_host(port)
    port_id = str(port["id"])
    device_id = str(port.get("device_id") or port_id)
    secure = port_security_enabled(port)
    spec: dict[str, Any] = {
        "orchestrator": naming.ORCHESTRATOR,
        "workload": device_id,
        "node": host,
        "endpoint": port_id,
        "interfaceName": naming.tap_name(port_id),
        "ipNetworks": _address_networks(port.get("fixed_ips") or []),
    }
    if port.get("mac_address"):
        spec["mac"] = str(port["mac_address"])
    for version, wire in ((4, "ipv4Gateway"), (6, "ipv6Gateway")):
        gateway = _gateway(port, facts, version)
        if gateway:
            spec[wire] = gateway
    if secure:
        pairs = _allowed_pairs(port)
        if pairs:
            spec["allowSpoofedSourcePrefixes"] = pairs
    else:
        spec["profiles"] = [naming.PORT_SECURITY_DISABLED_PROFILE]
        spec["allowSpoofedSourcePrefixes"] = list(ANY_SOURCE)
    if facts.floating_ips:
        spec["ipNATs"] = [{"internalIP": internal, "externalIP": external}
                          for internal, external in facts.floating_ips]
    annotations = {naming.NETWORK_ID_ANNOTATION: str(port.get("network_id") or "")}
    fqdn = _fqdn(port)
    if fqdn:
        annotations[naming.FQDN_ANNOTATION] = fqdn
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": naming.endpoint_name(host, device_id, port_id),
            "namespace": naming.namespace(facts.region),
            "labels": _labels(port, facts, secure),
            "annotations": annotations,
        },
        "spec": spec,
    }


def port_to_endpoint(port: Mapping[str, Any], facts: PortFacts) -> Resource | None:
    """The WorkloadEndpoint for `port`, or None if the port is not a tortie endpoint.

    Raises `tortie.model.ValidationError` if Neutron's data cannot form a valid endpoint (e.g. a
    host name that is not a DNS name)."""
    if not is_endpoint_port(port):
        return None
    return parse_resource(endpoint_wire(port, facts), source=f"neutron port {port['id']}")
