"""What dnsmasq must be told, computed purely from this host's endpoints and the subnet records.

Input: the host's `LocalEndpoint`s (from WorkloadEndpoints: MAC, addresses, host name) and the
`DhcpSubnet` records. Output: `DnsmasqConfig`:

* `gateway_addresses` — `<gateway>/<prefixlen>` per served subnet, to be held by the alias
  interface (dnsmasq picks the subnet of a request from the addresses of the interface it
  arrived on; `--bridge-interface=<alias>,<prefix>*` makes requests from the taps count as
  arriving on the alias — the scheme networking-calico upstreamed into dnsmasq 2.73);
* `ranges` — one `--dhcp-range=set:<tag>,<network>,<mode>,<mask|prefixlen>,<lease>` per subnet.
  IPv4: `static` (only the addresses listed in the hosts file are handed out). IPv6, by Neutron's
  `ipv6_address_mode`: `static` (dhcpv6-stateful, and Neutron's legacy default: router
  advertisements with the M flag, addresses by DHCPv6 from the hosts file), `ra-stateless`
  (dhcpv6-stateless: SLAAC address, other configuration by DHCPv6) or `ra-only` (slaac: the VM
  forms prefix + EUI-64 of its MAC, which is the address Neutron gave the port); always
  `off-link` (networking-calico's choice for routed VMs: the prefix is advertised without the L
  flag, so the VM sends everything, its subnet included, to its router, the host);
* `router_advertisements` — any IPv6 subnet served: dnsmasq runs with `--enable-ra`, advertising
  the host (the tap's link-local address) as the VMs' default router;
* `ra_mtu` — the MTU option of those router advertisements (`--ra-param=<prefix>*,mtu:<n>,0`):
  the smallest effective MTU of the served IPv6 subnets (one dnsmasq's advertisements carry every
  IPv6 prefix on every tap, see the known limit below, so the MTU must suit all of them); None
  when none is known or it is below IPv6's minimum of 1280 (dnsmasq refuses that; the agent
  reports such a workload MTU as a problem), and dnsmasq then advertises the tap's own MTU;
* `hosts` — the `--dhcp-hostsfile` text, one `<mac>,<address>[,<name>],<lease>` line per endpoint
  address in a served subnet. No `set:<tag>` here: the range already tags the request with its
  subnet, and Debian's dnsmasq 2.90 aborts on SIGHUP when a hostsfile line with `set:` has an
  active lease;
* `opts` — the `--dhcp-optsfile` text: router, DNS servers, classless static routes (RFC 3442:
  when present, clients ignore the router option, so the default route is listed too) and MTU
  (option 26): the effective MTU of the subnet, see below.

Effective MTU of a subnet: the smaller of the Neutron network's MTU (the record's `mtu`, when
set) and the host's workload MTU (`workload_mtu`: what the agent published in its MTU file, when
there is one) — a VM must not send more than the host's fabric (less any encapsulation) carries,
nor more than its network was created with. Neither known: no MTU option (the VM keeps its NIC's).
DHCPv6 has no MTU option: IPv6 VMs learn it from the router advertisements (`ra_mtu`).

A subnet is served when DHCP is enabled and it has a gateway (the gateway address is what the
alias holds). Endpoints without a MAC are skipped. Output is sorted, so equal inputs give equal
text (the service reloads dnsmasq only when something changed).

Known limit: one dnsmasq and one alias serve every network of the host, so its router
advertisements carry every served IPv6 prefix on every tap. For `slaac` subnets that means a VM
may also autoconfigure an address in another network's prefix on the same host (anti-spoofing drops
what it sends from it). Use `dhcpv6-stateful` where several IPv6 networks share hosts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tortie.common.ipfamily import V4, V6, address_in, family_of
from tortie.common.mtu_file import IPV6_MIN_MTU
from tortie.dhcp.records import DhcpSubnet

DEFAULT_LEASE_SECONDS = 86400
FQDN_ANNOTATION = "openstack.projectcalico.org/fqdn"
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class LocalEndpoint:
    name: str
    interface: str
    mac: str
    addresses: tuple[str, ...]
    hostname: str | None = None


# dnsmasq's --dhcp-range mode per Neutron ipv6_address_mode (None: Neutron's legacy default)
_IPV6_RANGE_MODES = {
    None: "static",
    "dhcpv6-stateful": "static",
    "dhcpv6-stateless": "ra-stateless",
    "slaac": "ra-only",
}


@dataclass(frozen=True)
class DnsmasqConfig:
    gateway_addresses: tuple[str, ...]
    ranges: tuple[str, ...]
    hosts: str
    opts: str
    router_advertisements: bool = False
    ra_mtu: int | None = None

    @property
    def serves_anything(self) -> bool:
        return bool(self.ranges)


def tag_of(subnet: DhcpSubnet) -> str:
    return f"s-{subnet.id}"


def _hostname(wire: Mapping[str, Any]) -> str | None:
    annotations = (wire.get("metadata") or {}).get("annotations") or {}
    fqdn = str(annotations.get(FQDN_ANNOTATION) or "")
    label = fqdn.split(".", 1)[0]
    return label if _HOSTNAME_RE.match(label) else None


def endpoint_from_wire(wire: Mapping[str, Any], hostname: str) -> LocalEndpoint | None:
    """A WorkloadEndpoint (wire form) of host `hostname` as the DHCP side needs it, else None."""
    if wire.get("kind") != "WorkloadEndpoint":
        return None
    spec = wire.get("spec") or {}
    if spec.get("node") != hostname or not spec.get("mac") or not spec.get("interfaceName"):
        return None
    addresses = []
    for net in spec.get("ipNetworks") or []:
        try:
            addresses.append(str(ipaddress.ip_interface(str(net)).ip))
        except ValueError:
            continue
    meta = wire.get("metadata") or {}
    return LocalEndpoint(
        name=f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        interface=str(spec["interfaceName"]),
        mac=str(spec["mac"]).lower().replace("-", ":"),
        addresses=tuple(addresses),
        hostname=_hostname(wire),
    )


def _served(subnets: Iterable[DhcpSubnet]) -> list[DhcpSubnet]:
    return sorted((s for s in subnets if s.enable_dhcp and s.gateway_ip), key=lambda s: s.id)


def _range(subnet: DhcpSubnet, lease: int) -> str:
    net = subnet.network
    if subnet.family is V4:  # dnsmasq's syntax per family: a netmask, or the mode and a prefix length
        return f"set:{tag_of(subnet)},{net.network_address},static,{net.netmask},{lease}"
    mode = _IPV6_RANGE_MODES[subnet.ipv6_address_mode]
    return f"set:{tag_of(subnet)},{net.network_address},{mode},off-link,{net.prefixlen},{lease}"


def effective_mtu(subnet: DhcpSubnet, workload_mtu: int | None) -> int | None:
    """The MTU advertised to the subnet's VMs: the smaller of those known, else None."""
    known = [m for m in (subnet.mtu, workload_mtu) if m]
    return min(known) if known else None


def _options(subnet: DhcpSubnet, workload_mtu: int | None) -> list[str]:
    tag = f"tag:{tag_of(subnet)}"
    if subnet.family is V6:  # DHCPv6 options are another set
        out = []
        if subnet.dns_servers:
            out.append(f"{tag},option6:dns-server," + ",".join(f"[{d}]" for d in subnet.dns_servers))
        return out
    out = [f"{tag},option:router,{subnet.gateway_ip}"]
    if subnet.dns_servers:
        out.append(f"{tag},option:dns-server," + ",".join(subnet.dns_servers))
    if subnet.host_routes:
        routes = [f"{r.destination},{r.nexthop}" for r in subnet.host_routes]
        if not any(ipaddress.ip_network(r.destination).prefixlen == 0 for r in subnet.host_routes):
            routes.append(f"0.0.0.0/0,{subnet.gateway_ip}")
        out.append(f"{tag},option:classless-static-route," + ",".join(routes))
    mtu = effective_mtu(subnet, workload_mtu)
    if mtu:
        out.append(f"{tag},option:mtu,{mtu}")
    return out


def render(endpoints: Iterable[LocalEndpoint], subnets: Iterable[DhcpSubnet], *,
           lease_seconds: int = DEFAULT_LEASE_SECONDS, workload_mtu: int | None = None) -> DnsmasqConfig:
    served = _served(subnets)
    hosts: list[str] = []
    for ep in sorted(endpoints, key=lambda e: (e.mac, e.name)):
        for text in ep.addresses:
            addr = ipaddress.ip_address(text)
            subnet = next((s for s in served if address_in(addr, s.network)), None)
            if subnet is None:
                continue
            shown = family_of(addr).bracketed(addr)
            name = f",{ep.hostname}" if ep.hostname else ""
            hosts.append(f"{ep.mac},{shown}{name},{lease_seconds}")
    gateways = []
    for s in served:
        gateways.append(f"{s.gateway_ip}/{s.network.prefixlen}")
    v6_mtus = [m for s in served if s.family is V6 and (m := effective_mtu(s, workload_mtu))]
    ra_mtu = min(v6_mtus, default=None)
    return DnsmasqConfig(
        gateway_addresses=tuple(gateways),
        ranges=tuple(_range(s, lease_seconds) for s in served),
        hosts="".join(f"{line}\n" for line in sorted(hosts)),
        opts="".join(f"{line}\n" for s in served for line in _options(s, workload_mtu)),
        router_advertisements=any(s.family is V6 for s in served),
        ra_mtu=ra_mtu if ra_mtu is not None and ra_mtu >= IPV6_MIN_MTU else None,
    )


@dataclass(frozen=True)
class DnsmasqPaths:
    pid_file: str
    lease_file: str
    hosts_file: str
    opts_file: str
    log_file: str | None = None


def command(config: DnsmasqConfig, paths: DnsmasqPaths, *, alias: str, interface_prefixes: Iterable[str],
            dnsmasq: str = "dnsmasq") -> list[str]:
    """The dnsmasq command line (DHCP only: no DNS, no config file, no /etc/hosts). dnsmasq listens
    on the alias and on the VMs' taps (`--interface=<prefix>*`: DHCPv6 arrives on the DHCPv6
    multicast group, which dnsmasq joins only on interfaces it listens on); `--bridge-interface`
    makes what arrives on a tap count as arriving on the alias, whose addresses select the subnet."""
    aliases = ",".join(f"{p}*" for p in interface_prefixes)
    argv = [
        dnsmasq, "--conf-file=/dev/null", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--port=0",
        "--user=root", "--group=root", f"--pid-file={paths.pid_file}", f"--dhcp-leasefile={paths.lease_file}",
        f"--dhcp-hostsfile={paths.hosts_file}", f"--dhcp-optsfile={paths.opts_file}",
        f"--interface={alias}", *(f"--interface={p}*" for p in interface_prefixes),
        f"--bridge-interface={alias},{aliases}", "--dhcp-authoritative",
        "--dhcp-ignore=tag:!known", "--log-dhcp",
    ]
    if config.router_advertisements:
        argv.append("--enable-ra")
        if config.ra_mtu:
            # on the alias and the taps: in testing, a tap's name alone did not set the MTU of the
            # advertisement answering a VM's solicitation (dnsmasq then looks the alias up)
            names = (alias, *(f"{p}*" for p in interface_prefixes))
            argv += [f"--ra-param={name},mtu:{config.ra_mtu},0" for name in names]
    if paths.log_file:
        argv.append(f"--log-facility={paths.log_file}")
    argv += [f"--dhcp-range={r}" for r in config.ranges]
    return argv
