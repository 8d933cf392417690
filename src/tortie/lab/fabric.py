"""The lab's fabric: namespaces, the bridges, the veths and addresses of hosts and appliances.

    <lab>-fab      bridge br0 (and br1.. with several segments); one veth port p-<name> per host or
                   appliance, in the bridge of its segment
    <lab>-<host>   eth0 (the peer of p-<host>) = plan.host_addresses(i), one per family, lo up,
                   ip_forward=1, IPv6 forwarding=1, route 169.254.1.1/32 dev lo (IPv4 fabrics);
                   with a subnet router: a route to every other segment's subnets via the router
    <lab>-<appl>   eth0 = plan.appliance_addresses(index) (a router, an etcd member), forwarding on
    <lab>-<rtr>    a subnet router (`add_subnet_router`): eth<k> in bridge br<k> at address #index
                   of segment k, forwarding on, no route but the connected ones: it routes host
                   addresses only, so workload traffic between segments must be encapsulated
    drop_sources(cidrs)   nft table `bridge tortie-lab` in <lab>-fab: frames whose IP source lies in
                   `cidrs` are dropped between ports (a cloud's anti-spoofing: only host addresses
                   cross the fabric, so workload traffic must be encapsulated)

Segments: with `segments` N > 1 the fabric has N subnets per family, segment k being the base
subnet shifted by k subnets (172.31.0.0/24 -> 172.31.k.0/24, fd00:172:31::/64 -> fd00:172:31:k::/64),
and host #i sits in segment (i - 1) mod N at the same index (hosts spread evenly).

Split of duties: `AddressPlan` (data) says which addresses each host and appliance gets: one subnet
per IP family (`DEFAULT_SUBNETS`: 172.31.0.0/24 and fd00:172:31::/64), the same index in each, so
host #1 is 172.31.0.11 and fd00:172:31::b. `Fabric` records the names and addresses in the lab's
`StateStore` and then plumbs exactly what is recorded (record before create). A different fabric
(several subnets with a router between them) is a different plan handed to the same plumbing.
Appliance indexes below `HOST_OFFSET + 1` are free for routers and etcd members. IPv6 addresses are
added `nodad` (and eth0 has `accept_dad=0`): a tentative address cannot be a BGP source for ~1 s.

The `169.254.1.1/32 dev lo` route is the lab hosts' stand-in for a default route: workloads use
169.254.1.1 as their gateway and the host answers their ARP by proxy, but the kernel proxies only
for an address it routes as unicast through ANOTHER device than the request came in on (arp_process
-> proxy path); blackhole or unreachable routes do not qualify. Real hosts have a default route.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from tortie.common.ipfamily import FAMILIES, V4, V6, Family, family_of, parse_network
from tortie.lab.errors import LabError
from tortie.lab.iproute import ip_batch, ip_batch_lenient, run, write_sysctls
from tortie.lab.state import ApplianceRecord, HostRecord, StateStore

log = logging.getLogger(__name__)

DEFAULT_SUBNETS: Final = {V4: "172.31.0.0/24", V6: "fd00:172:31::/64"}
DEFAULT_SUBNET = DEFAULT_SUBNETS[V4]
HOST_OFFSET = 10
WORKLOAD_GATEWAY_V4 = "169.254.1.1"


def fabric_subnets(families: Iterable[Family]) -> tuple[str, ...]:
    """The default fabric subnets of `families`, IPv4 first."""
    wanted = set(families)
    return tuple(DEFAULT_SUBNETS[f] for f in FAMILIES if f in wanted)


def check_subnets(subnets: Sequence[str]) -> tuple[str, ...]:
    """`subnets` canonical, at most one per family, IPv4 first; ValueError naming the problem."""
    nets = [parse_network(s, strict=True) for s in subnets]
    if not nets:
        raise ValueError("a lab fabric needs at least one subnet")
    fams = [family_of(n) for n in nets]
    if len(set(fams)) != len(fams):
        raise ValueError(f"one fabric subnet per IP family, not {', '.join(subnets)}")
    return tuple(str(n) for n in sorted(nets, key=lambda n: n.version))


def bridge_of(segment: int) -> str:
    return f"br{segment}"


@dataclass(frozen=True)
class AddressPlan:
    """Fabric addresses, one per subnet (family): host #i (1-based) at `subnet + host_offset + i` of
    its segment's subnets, appliance #index at `subnet + index` of segment 0 (or of the one given)."""

    subnets: tuple[str, ...] = (DEFAULT_SUBNET,)
    host_offset: int = HOST_OFFSET
    segments: int = 1

    @property
    def families(self) -> list[Family]:
        return [family_of(s) for s in self.subnets]

    def subnet(self, family: Family, segment: int = 0) -> str | None:
        """The fabric subnet of `family` in `segment`, None when the fabric does not carry it."""
        return next((s for s in self.segment_subnets(segment) if family_of(s) == family), None)

    def segment_subnets(self, segment: int) -> list[str]:
        """The subnets of segment `segment`, one per family (segment 0: `subnets`)."""
        out = []
        for subnet in self.subnets:
            net = ipaddress.ip_network(subnet)
            out.append(f"{net.network_address + segment * net.num_addresses}/{net.prefixlen}")
        return out

    def host_segment(self, index: int) -> int:
        return (index - 1) % self.segments

    def host_addresses(self, index: int) -> list[str]:
        """The interface addresses (with prefix length) of host #`index`, one per family."""
        out = []
        for subnet in self.segment_subnets(self.host_segment(index)):
            net = ipaddress.ip_network(subnet)
            address = net.network_address + self.host_offset + index
            if address not in net or address == net.broadcast_address:
                raise LabError(f"subnet {net} has no room for host #{index}")
            out.append(f"{address}/{net.prefixlen}")
        return out

    def appliance_addresses(
        self, index: int, name: str, taken: Iterable[str], segment: int = 0
    ) -> list[str]:
        """The interface addresses of an appliance at `index` of `segment`, one per family; LabError if
        outside a subnet or already `taken`."""
        used = {ipaddress.ip_interface(t).ip for t in taken}
        out = []
        for subnet in self.segment_subnets(segment):
            net = ipaddress.ip_network(subnet)
            address = net.network_address + index
            if address not in net or address in (net.network_address, net.broadcast_address):
                raise LabError(f"subnet {net} has no address #{index} for {name}")
            if address in used:
                raise LabError(f"address {address} is already used")
            out.append(f"{address}/{net.prefixlen}")
        return out


def _port_lines(port: str, netns: str, segment: int = 0, peer: str = "eth0") -> list[str]:
    """Fabric-side lines: a veth whose peer is `peer` in `netns`, enslaved to the segment's bridge."""
    return [
        f"link add {port} type veth peer name {peer} netns {netns}",
        f"link set {port} master {bridge_of(segment)}",
        f"link set {port} up",
    ]


def _eth0_lines(addresses: Sequence[str], dev: str = "eth0") -> list[str]:
    lines = ["link set lo up"]
    for address in addresses:
        lines.append(f"addr add {address} dev {dev}" + (" nodad" if family_of(address).dad else ""))
    return [*lines, f"link set {dev} up"]


_SYSCTLS: Final = {
    "net/ipv4/ip_forward": "1",
    "net/ipv6/conf/all/forwarding": "1",
    "net/ipv6/conf/eth0/accept_dad": "0",
}


class Fabric:
    """Namespaces and links of one lab (see the module docstring)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    @property
    def plan(self) -> AddressPlan:
        return AddressPlan(tuple(self.store.state.subnets), segments=self.store.state.segments)

    def _fabric_up(self) -> bool:
        return self.store.state.fabric_netns in self.store.state.namespaces

    def add_hosts(self, names: Sequence[str]) -> list[HostRecord]:
        """Create hosts (and the fabric on first use) in a few `ip -batch` calls."""
        store, state = self.store, self.store.state
        for host in names:
            store.check_member(host)
        new_netns: list[str] = [] if self._fabric_up() else [state.fabric_netns]
        records = []
        for host in names:
            index = len(state.hosts) + 1
            addresses = self.plan.host_addresses(index)
            record = HostRecord(host, f"{state.name}-{host}", addresses, f"p-{host}",
                                self.plan.host_segment(index))
            state.hosts[host] = record
            records.append(record)
            new_netns.append(record.netns)
        for netns in new_netns:
            store.add_namespace(netns, save=False)
        store.save()
        ip_batch(f"netns add {netns}" for netns in new_netns)
        fabric: list[str] = []
        if state.fabric_netns in new_netns:
            fabric += ["link set lo up"]
            for segment in range(state.segments):
                fabric += [f"link add {bridge_of(segment)} type bridge", f"link set {bridge_of(segment)} up"]
        for record in records:
            fabric += _port_lines(record.fabric_port, record.netns, record.segment)
        ip_batch(fabric, state.fabric_netns)
        gateway = [f"route add {WORKLOAD_GATEWAY_V4}/32 dev lo"] if V4 in self.plan.families else []
        router = next((a for a in state.appliances.values() if a.ports), None)
        for record in records:
            write_sysctls(record.netns, _SYSCTLS)
            routes = self._segment_routes(record, router) if router is not None else []
            ip_batch([*_eth0_lines(record.addresses), *gateway, *routes], record.netns)
        log.info("lab hosts created lab=%s hosts=%s", state.name, ",".join(names))
        return records

    def add_appliance(
        self, name: str, index: int, role: str, *, kind: str = "", asn: int = 0
    ) -> ApplianceRecord:
        """A namespace on the fabric at address #`index` that is not a tortie host (a router, an etcd
        member): eth0 with that address, lo up, forwarding on."""
        store, state = self.store, self.store.state
        store.check_member(name)
        taken = [a for h in state.hosts.values() for a in h.addresses]
        taken += [a for r in state.appliances.values() for a in r.addresses]
        try:
            addresses = self.plan.appliance_addresses(index, name, taken)
        except LabError as exc:
            raise LabError(f"{exc} in lab {state.name}") from None
        record = ApplianceRecord(name, f"{state.name}-{name}", addresses, f"p-{name}", role, kind, asn)
        self._record_appliance(record)
        ip_batch(_port_lines(record.fabric_port, record.netns), state.fabric_netns)
        write_sysctls(record.netns, _SYSCTLS)
        ip_batch(_eth0_lines(record.addresses), record.netns)
        log.info(
            "lab appliance created lab=%s name=%s role=%s addresses=%s",
            state.name, name, role, ",".join(addresses),
        )
        return record

    def _record_appliance(self, record: ApplianceRecord) -> None:
        """Record the appliance and its namespace, then create the namespace."""
        store, state = self.store, self.store.state
        with store.lock:
            if not self._fabric_up():
                raise LabError(f"lab {state.name} has no fabric yet: add a host first")
            state.appliances[record.name] = record
            store.add_namespace(record.netns)
        run(["ip", "netns", "add", record.netns])

    def add_subnet_router(self, name: str, index: int) -> ApplianceRecord:
        """A router joining every segment (see the module docstring): address #`index` in each, and a
        route on every host to the other segments' subnets through it."""
        store, state = self.store, self.store.state
        store.check_member(name)
        taken = [a for h in state.hosts.values() for a in h.addresses]
        addresses = [a for k in range(state.segments)
                     for a in self.plan.appliance_addresses(index, name, taken, segment=k)]
        ports = [f"p-{name}{k}" for k in range(state.segments)]
        record = ApplianceRecord(name, f"{state.name}-{name}", addresses, ports[0], "subnet-router",
                                 ports=ports)
        self._record_appliance(record)
        per_segment = len(self.plan.subnets)
        lines = ["link set lo up"]
        for k, port in enumerate(ports):
            ip_batch(_port_lines(port, record.netns, k, f"eth{k}"), state.fabric_netns)
            lines += _eth0_lines(addresses[k * per_segment:(k + 1) * per_segment], f"eth{k}")[1:]
        write_sysctls(record.netns, {"net/ipv4/ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"})
        ip_batch(lines, record.netns)
        for host in state.hosts.values():
            ip_batch(self._segment_routes(host, record), host.netns)
        log.info("lab subnet router created lab=%s name=%s addresses=%s", state.name, name,
                 ",".join(addresses))
        return record

    def _segment_routes(self, host: HostRecord, router: ApplianceRecord) -> list[str]:
        """`route replace` lines sending `host` to every other segment through `router`."""
        plan = self.plan
        mine = [ipaddress.ip_network(s) for s in plan.segment_subnets(host.segment)]
        gateways = {family_of(a): str(ipaddress.ip_interface(a).ip) for a in router.addresses
                    if any(ipaddress.ip_interface(a).ip in net for net in mine)}
        lines = []
        for k in range(plan.segments):
            if k == host.segment:
                continue
            for subnet in plan.segment_subnets(k):
                gateway = gateways.get(family_of(subnet))
                if gateway is not None:
                    lines.append(f"route replace {subnet} via {gateway}")
        return lines

    def drop_sources(self, cidrs: Sequence[str]) -> None:
        """Drop frames whose IP source lies in `cidrs` between fabric ports (see the module docstring)."""
        rules = []
        for cidr in cidrs:
            fam = family_of(cidr)
            rules.append(f"    {fam.nft} saddr {parse_network(cidr, strict=True)} counter drop")
        lines = ["table bridge tortie-lab {", "  chain forward {",
                 "    type filter hook forward priority 0; policy accept;", *rules, "  }", "}"]
        text = "\n".join(lines) + "\n"
        run(["ip", "netns", "exec", self.store.state.fabric_netns, "nft", "-f", "-"], stdin=text)
        log.info("lab fabric drops workload sources lab=%s cidrs=%s", self.store.state.name, ",".join(cidrs))

    def add_namespace(self, netns: str) -> None:
        """Record, then create, an empty namespace `netns` (must start with `<lab>-`) with lo up."""
        if not netns.startswith(f"{self.store.name}-"):
            raise ValueError(f"namespace {netns!r} does not belong to lab {self.store.name}")
        self.store.add_namespace(netns)
        run(["ip", "netns", "add", netns])
        ip_batch(["link set lo up"], netns)

    def delete_namespace(self, netns: str) -> None:
        """Delete a namespace of this lab and drop it from the record (missing is fine)."""
        run(["ip", "netns", "del", netns], check=False)
        self.store.forget_namespace(netns)

    def set_port(self, name: str, up: bool) -> None:
        """Bring the fabric port of host or appliance `name` up or down (its link to the bridge)."""
        state = self.store.state
        record = state.hosts.get(name) or state.appliances.get(name)
        if record is None:
            raise ValueError(f"no host or appliance {name!r} in lab {state.name}")
        ip_batch([f"link set {record.fabric_port} {'up' if up else 'down'}"], state.fabric_netns)

    def port_up(self, name: str) -> bool:
        """The fabric port of host or appliance `name` is administratively up (not partitioned)."""
        state = self.store.state
        record = state.hosts.get(name) or state.appliances.get(name)
        if record is None:
            raise ValueError(f"no host or appliance {name!r} in lab {state.name}")
        out = run(["ip", "netns", "exec", state.fabric_netns, "ip", "-j", "link", "show", record.fabric_port],
                  check=False).stdout
        links = json.loads(out or "[]")
        return bool(links) and "UP" in links[0].get("flags", [])

    def add_static_route(self, host: str, cidr: str, via: str) -> None:
        """`ip route replace CIDR via VIA` on host `host` (e.g. another host's workload block)."""
        net = ipaddress.ip_network(cidr, strict=True)
        if family_of(net) != family_of(via):
            raise ValueError(f"route {net} via {via}: the gateway is not in the route's family")
        ip_batch([f"route replace {net} via {via}"], self.store.state.netns_of(host))


def delete_namespaces(lab_name: str, namespaces: Sequence[str]) -> list[str]:
    """Delete the namespaces that carry the lab's `<name>-` prefix (missing ones are fine); returns them."""
    doomed = [ns for ns in namespaces if ns.startswith(f"{lab_name}-")]
    if doomed:
        ip_batch_lenient(f"netns del {ns}" for ns in doomed)
    return doomed
