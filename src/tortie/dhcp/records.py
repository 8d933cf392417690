"""DHCP subnet records: what an orchestrator (the Neutron driver) publishes for `tortie dhcp run`.

These are not v3 resources; like networking-calico's they live under their own key space
(reference §8.2):

    /calico/dhcp/v2/<region>/subnet/<subnet-id>     {"id", "networkId", "cidr", "gatewayIp",
                                                      "enableDhcp", "dnsServers", "hostRoutes",
                                                      "mtu"?, "ipv6AddressMode"?}

`<region>` is `no-region` or `region-<name>` (the same segment the agent's status keys use).
`hostRoutes` is a list of `{"destination": CIDR, "nexthop": IP}`. `ipv6AddressMode` (IPv6 subnets
only) is Neutron's `ipv6_address_mode`: `slaac`, `dhcpv6-stateful` or `dhcpv6-stateless`; absent
means Neutron's legacy default, addresses by DHCPv6 (as `dhcpv6-stateful`).

Input/output: `DhcpSubnet` <-> JSON object (`to_json` / `from_json`); `from_json` raises
`InvalidDhcpRecord` (a `UserError`) naming the key and field. Invariants: `cidr` is a network in
canonical form; `gatewayIp` (when set), nexthops and DNS servers are addresses of the subnet's IP
family; the writer and every reader share this module, so the format is defined once.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from tortie.common.errors import UserError
from tortie.common.ipfamily import V6, Family, family_of

ROOT = "/calico/dhcp/v2/"
IPV6_ADDRESS_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")


class InvalidDhcpRecord(UserError):
    """A stored DHCP subnet record is malformed (written by another tool or an older version)."""


def region_segment(region: str) -> str:
    return f"region-{region}" if region else "no-region"


def subnet_prefix(region: str = "") -> str:
    """Prefix under which every subnet record of `region` is stored (ends with '/')."""
    return f"{ROOT}{region_segment(region)}/subnet/"


def subnet_key(subnet_id: str, region: str = "") -> str:
    return subnet_prefix(region) + subnet_id


@dataclass(frozen=True)
class HostRoute:
    destination: str
    nexthop: str


@dataclass(frozen=True)
class DhcpSubnet:
    """One subnet as the DHCP service needs it."""

    id: str
    cidr: str
    network_id: str = ""
    gateway_ip: str | None = None
    enable_dhcp: bool = True
    dns_servers: tuple[str, ...] = ()
    host_routes: tuple[HostRoute, ...] = ()
    mtu: int | None = None
    ipv6_address_mode: str | None = None

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)

    @property
    def family(self) -> Family:
        return family_of(self.cidr)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "networkId": self.network_id,
            "cidr": self.cidr,
            "gatewayIp": self.gateway_ip,
            "enableDhcp": self.enable_dhcp,
            "dnsServers": list(self.dns_servers),
            "hostRoutes": [{"destination": r.destination, "nexthop": r.nexthop} for r in self.host_routes],
        }
        if self.mtu is not None:
            out["mtu"] = self.mtu
        if self.ipv6_address_mode is not None:
            out["ipv6AddressMode"] = self.ipv6_address_mode
        return out

    @classmethod
    def from_json(cls, obj: object, *, key: str = "<record>") -> DhcpSubnet:
        if not isinstance(obj, dict):
            raise InvalidDhcpRecord(f"{key}: expected a JSON object, got {type(obj).__name__}")

        def bad(field: str, why: str) -> InvalidDhcpRecord:
            return InvalidDhcpRecord(f"{key}: field {field!r} {why}")

        sid = obj.get("id")
        if not isinstance(sid, str) or not sid:
            raise bad("id", "must be a non-empty string")
        try:
            net = ipaddress.ip_network(str(obj.get("cidr")), strict=False)
        except ValueError as exc:
            raise bad("cidr", f"is not a network: {exc}") from exc
        fam = family_of(net)

        def address(field: str, raw: object) -> str:
            try:
                addr = ipaddress.ip_address(str(raw))
            except ValueError as exc:
                raise bad(field, f"holds {raw!r}, not an IP address") from exc
            if family_of(addr) is not fam:
                raise bad(field, f"holds {addr}, not an {fam.name} address")
            return str(addr)

        gateway = obj.get("gatewayIp")
        dns = obj.get("dnsServers") or []
        routes = obj.get("hostRoutes") or []
        if not isinstance(dns, list):
            raise bad("dnsServers", "must be a list")
        if not isinstance(routes, list):
            raise bad("hostRoutes", "must be a list")
        host_routes = []
        for i, route in enumerate(routes):
            if not isinstance(route, dict):
                raise bad(f"hostRoutes[{i}]", "must be an object with destination and nexthop")
            try:
                dest = ipaddress.ip_network(str(route.get("destination")), strict=False)
            except ValueError as exc:
                raise bad(f"hostRoutes[{i}].destination", str(exc)) from exc
            if family_of(dest) is not fam:
                raise bad(f"hostRoutes[{i}].destination", f"holds {dest}, not an {fam.name} network")
            nexthop = address(f"hostRoutes[{i}].nexthop", route.get("nexthop"))
            host_routes.append(HostRoute(str(dest), nexthop))
        mtu = obj.get("mtu")
        if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535):
            raise bad("mtu", "must be an integer 68-65535")
        enable = obj.get("enableDhcp", True)
        if not isinstance(enable, bool):
            raise bad("enableDhcp", "must be true or false")
        network_id = obj.get("networkId") or ""
        mode = obj.get("ipv6AddressMode")
        if mode is not None and (mode not in IPV6_ADDRESS_MODES or fam is not V6):
            raise bad("ipv6AddressMode", f"holds {mode!r}: one of {', '.join(IPV6_ADDRESS_MODES)}, IPv6 only")
        return cls(
            id=sid,
            cidr=str(net),
            network_id=str(network_id),
            gateway_ip=address("gatewayIp", gateway) if gateway else None,
            enable_dhcp=enable,
            dns_servers=tuple(address(f"dnsServers[{i}]", d) for i, d in enumerate(dns)),
            host_routes=tuple(host_routes),
            mtu=mtu,
            ipv6_address_mode=mode,
        )
