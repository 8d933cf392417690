"""Neutron subnet -> DHCP record and IPPool (pure; no Neutron import).

Input: a subnet dict (`id`, `network_id`, `cidr`, `gateway_ip`, `enable_dhcp`, `dns_nameservers`,
`host_routes`, `ipv6_address_mode`) as Neutron returns it. Outputs:

* `subnet_to_dhcp` -> `tortie.dhcp.records.DhcpSubnet`, stored at `/calico/dhcp/v2/<region>/subnet/<id>`
  for `tortie dhcp run`. For IPv6 subnets the address mode travels with it (slaac,
  dhcpv6-stateful, dhcpv6-stateless; none = Neutron's legacy DHCPv6 default): the compute host is the
  VMs' router, so it sends the router advertisements whatever `ipv6_ra_mode` says (no Neutron router
  sits on a VM's path in the routed model; that field has nothing to configure);
* `subnet_to_pool` -> an IPPool `openstack-subnet-<id>` covering the subnet, so that BGP's export
  filter admits the VMs' /32 (/128) routes although Neutron, not tortie IPAM, chose the addresses.
  The pool is `assignmentMode: Manual` (tortie IPAM never hands out its addresses), without
  encapsulation, and `natOutgoing` when the subnet's router has an external gateway with SNAT.
  Its block size is Calico's default unless the subnet is smaller than one block. A subnet that
  cannot be a pool (link-local) yields None.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from tortie.common.ipfamily import V6, family_of
from tortie.dhcp.records import DhcpSubnet, HostRoute
from tortie.model import Resource, parse_resource

from networking_tortie import naming


def subnet_to_dhcp(subnet: Mapping[str, Any], *, mtu: int | None = None) -> DhcpSubnet:
    net = ipaddress.ip_network(str(subnet["cidr"]), strict=False)
    routes = tuple(
        HostRoute(str(ipaddress.ip_network(str(r["destination"]), strict=False)), str(r["nexthop"]))
        for r in subnet.get("host_routes") or []
    )
    gateway = subnet.get("gateway_ip")
    mode = subnet.get("ipv6_address_mode") if family_of(net) is V6 else None
    return DhcpSubnet(
        id=str(subnet["id"]),
        cidr=str(net),
        network_id=str(subnet.get("network_id") or ""),
        gateway_ip=str(ipaddress.ip_address(str(gateway))) if gateway else None,
        enable_dhcp=bool(subnet.get("enable_dhcp", True)),
        dns_servers=tuple(str(d) for d in subnet.get("dns_nameservers") or []),
        host_routes=routes,
        mtu=mtu if mtu else None,
        ipv6_address_mode=str(mode) if mode else None,
    )


def pool_wire(subnet: Mapping[str, Any], nat_outgoing: bool) -> dict[str, Any] | None:
    net = ipaddress.ip_network(str(subnet["cidr"]), strict=False)
    fam = family_of(net)
    if net.overlaps(fam.link_local):
        return None
    block = max(fam.default_block_size, net.prefixlen)
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {
            "name": naming.pool_name(str(subnet["id"])),
            "labels": {naming.ORCHESTRATOR_LABEL: naming.ORCHESTRATOR},
            "annotations": {naming.NETWORK_ID_ANNOTATION: str(subnet.get("network_id") or "")},
        },
        "spec": {
            "cidr": str(net),
            "blockSize": block,
            "natOutgoing": nat_outgoing,
            "ipipMode": "Never",
            "vxlanMode": "Never",
            "assignmentMode": "Manual",
            "allowedUses": ["Workload"],
        },
    }


def subnet_to_pool(subnet: Mapping[str, Any], *, nat_outgoing: bool = False) -> Resource | None:
    wire = pool_wire(subnet, nat_outgoing)
    if wire is None:
        return None
    return parse_resource(wire, source=f"neutron subnet {subnet['id']}")
