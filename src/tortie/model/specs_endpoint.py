"""Specs of the endpoint kinds: WorkloadEndpoint and HostEndpoint (reference §1.12, §1.13).

WorkloadEndpoint: ipNetworks are single addresses (/32 or /128; a bare address is stored as such a
CIDR); ipNATs map an internal address of the endpoint to an external one of the same family; the
gateways are addresses of their family; named ports need a TCP/UDP/SCTP protocol and a name unless
a hostPort is given. HostEndpoint: a node, and an interfaceName (`*` = all host interfaces) and/or
expectedIPs.
"""

import re
from dataclasses import dataclass
from typing import Annotated

from tortie.common.ipfamily import V4, V6, address_in, family_of, parse_address
from tortie.model.fields import (
    MAC,
    NAME,
    PORT_NUMBER,
    PROTOCOL,
    ProtocolValue,
    as_network,
    check_interface_name,
    cidr_text,
    ip_text,
)
from tortie.model.problems import Issues, index, join
from tortie.model.schema import Int, ListOf, Struct, Text, Wire, uses

_PORT_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def check_endpoint_port_name(name: str) -> str:
    """An IANA service name, as Kubernetes requires for container port names: at most 15 of
    [a-z0-9-], at least one letter, no leading, trailing or doubled '-'."""
    if len(name) > 15 or not _PORT_NAME_RE.match(name) or "--" in name or not re.search("[a-z]", name):
        raise ValueError(f"{name!r} is not a valid port name: at most 15 lower-case letters, digits and '-', "
                         "with at least one letter and no leading, trailing or doubled '-'")
    return name


def _check_container_id(text: str) -> str:
    if not _CONTAINER_ID_RE.match(text):
        raise ValueError(f"{text!r} is not a valid container ID (letters, digits and '-')")
    return text


def _check_host_interface(name: str) -> str:
    return name if name == "*" else check_interface_name(name)


PORT_NAME = Text(check_endpoint_port_name)
SINGLE_ADDRESS = cidr_text()


@dataclass(frozen=True, kw_only=True)
class EndpointPort:
    """A named port of a host endpoint."""

    name: Annotated[str, Wire(PORT_NAME)]
    protocol: Annotated[ProtocolValue, Wire(PROTOCOL)]
    port: Annotated[int, Wire(PORT_NUMBER)]


@dataclass(frozen=True, kw_only=True)
class WorkloadEndpointPort:
    """A named port of a workload (optionally also exposed on the host)."""

    name: Annotated[str | None, Wire(PORT_NAME)] = None
    protocol: Annotated[ProtocolValue, Wire(PROTOCOL)]
    port: Annotated[int, Wire(PORT_NUMBER)]
    host_port: Annotated[int | None, Wire(Int(0, 65535))] = None
    host_ip: Annotated[str | None, Wire(ip_text(), "hostIP")] = None


@uses("protocol")
def _check_port_protocol(port: EndpointPort | WorkloadEndpointPort, path: str, issues: Issues) -> None:
    if not port.protocol.supports_ports:
        issues.add(join(path, "protocol"), f"protocol {port.protocol} has no ports: use TCP, UDP or SCTP")


@uses("name", "hostPort")
def _check_wep_port_name(port: WorkloadEndpointPort, path: str, issues: Issues) -> None:
    if port.name is None and not port.host_port:
        issues.add(join(path, "name"), "is required unless hostPort is set")


WEP_PORT = Struct(WorkloadEndpointPort, checks=[_check_port_protocol, _check_wep_port_name])


@dataclass(frozen=True, kw_only=True)
class IPNAT:
    """1:1 NAT: traffic to external_ip is sent to internal_ip (an address of the endpoint)."""

    internal_ip: Annotated[str, Wire(ip_text(), "internalIP")]
    external_ip: Annotated[str, Wire(ip_text(), "externalIP")]


def _check_ipnat(nat: IPNAT, path: str, issues: Issues) -> None:
    if family_of(nat.internal_ip) != family_of(nat.external_ip):
        issues.add(join(path, "externalIP"), "must be of the same IP family as internalIP")


@dataclass(frozen=True, kw_only=True)
class QoSControls:
    """Per-endpoint limits, per direction (ingress = to the workload): bandwidth and peakrate in
    bits/s, burst in bits, minburst in bytes, packet rate in packets/s, packet burst in packets,
    max connections a count. 0 (or absent) = no limit. The ranges and cross-field rules are the
    ones Calico documents on QoSControls and enforces when it builds them (`_check_qos`)."""

    ingress_bandwidth: Annotated[int | None, Wire(Int(0))] = None
    egress_bandwidth: Annotated[int | None, Wire(Int(0))] = None
    ingress_burst: Annotated[int | None, Wire(Int(0))] = None
    egress_burst: Annotated[int | None, Wire(Int(0))] = None
    ingress_peakrate: Annotated[int | None, Wire(Int(0))] = None
    egress_peakrate: Annotated[int | None, Wire(Int(0))] = None
    ingress_minburst: Annotated[int | None, Wire(Int(0))] = None
    egress_minburst: Annotated[int | None, Wire(Int(0))] = None
    ingress_packet_rate: Annotated[int | None, Wire(Int(0))] = None
    egress_packet_rate: Annotated[int | None, Wire(Int(0))] = None
    ingress_packet_burst: Annotated[int | None, Wire(Int(0))] = None
    egress_packet_burst: Annotated[int | None, Wire(Int(0))] = None
    ingress_max_connections: Annotated[int | None, Wire(Int(0))] = None
    egress_max_connections: Annotated[int | None, Wire(Int(0))] = None


# Calico's documented ranges (libcalico-go internalapi QoSControls) for non-zero values.
QOS_RANGES: dict[str, tuple[int, int]] = {
    "Bandwidth": (1000, 10**15),
    "Burst": (1000, 34359738360),
    "Peakrate": (1010, 101 * 10**13),
    "Minburst": (1000, 10**8),
    "PacketRate": (1, 10**4),
    "PacketBurst": (1, 10**4),
    "MaxConnections": (1, 4294967295),
}
_SNAKE = {"Bandwidth": "bandwidth", "Burst": "burst", "Peakrate": "peakrate", "Minburst": "minburst",
          "PacketRate": "packet_rate", "PacketBurst": "packet_burst", "MaxConnections": "max_connections"}
# (field, the field it needs): a burst needs a bandwidth, a minburst a peakrate, a packet burst a rate
_QOS_NEEDS = (("Burst", "Bandwidth"), ("Peakrate", "Bandwidth"), ("Minburst", "Peakrate"),
              ("PacketBurst", "PacketRate"))


def _check_qos(qos: QoSControls, path: str, issues: Issues) -> None:
    for direction in ("ingress", "egress"):
        def value(name: str, d: str = direction) -> int:
            return getattr(qos, f"{d}_{_SNAKE[name]}") or 0

        for name, (lo, hi) in QOS_RANGES.items():
            v = value(name)
            if v and not lo <= v <= hi:
                issues.add(join(path, f"{direction}{name}"),
                           f"{v} is out of range: 0 (no limit) or {lo}..{hi}")
        for name, needed in _QOS_NEEDS:
            if value(name) and not value(needed):
                issues.add(join(path, f"{direction}{name}"), f"needs {direction}{needed}")
        rate, peak = value("Bandwidth"), value("Peakrate")
        if rate and peak and peak <= rate:
            issues.add(join(path, f"{direction}Peakrate"),
                       f"must be greater than {direction}Bandwidth ({peak} <= {rate})")


@dataclass(frozen=True, kw_only=True)
class WorkloadEndpointSpec:
    orchestrator: Annotated[str | None, Wire(Text(non_empty=True))] = None
    workload: Annotated[str | None, Wire(Text(non_empty=True))] = None
    node: Annotated[str | None, Wire(NAME)] = None
    container_id: Annotated[str | None, Wire(Text(_check_container_id), "containerID")] = None
    pod: Annotated[str | None, Wire(Text(non_empty=True))] = None
    endpoint: Annotated[str | None, Wire(Text(non_empty=True))] = None
    service_account_name: Annotated[str | None, Wire(Text())] = None
    ip_networks: Annotated[tuple[str, ...], Wire(ListOf(SINGLE_ADDRESS), "ipNetworks")] = ()
    ip_nats: Annotated[tuple[IPNAT, ...], Wire(ListOf(Struct(IPNAT, checks=[_check_ipnat])), "ipNATs")] = ()
    ipv4_gateway: Annotated[str | None, Wire(ip_text(V4), "ipv4Gateway")] = None
    ipv6_gateway: Annotated[str | None, Wire(ip_text(V6), "ipv6Gateway")] = None
    profiles: Annotated[tuple[str, ...], Wire(ListOf(NAME))] = ()
    interface_name: Annotated[str | None, Wire(Text(check_interface_name))] = None
    mac: Annotated[str | None, Wire(MAC, "mac")] = None
    ports: Annotated[tuple[WorkloadEndpointPort, ...], Wire(ListOf(WEP_PORT))] = ()
    allow_spoofed_source_prefixes: Annotated[tuple[str, ...], Wire(ListOf(cidr_text()))] = ()
    qos_controls: Annotated[
        QoSControls | None, Wire(Struct(QoSControls, checks=[_check_qos]), "qosControls")] = None


@uses("ipNetworks")
def _check_ip_networks(spec: WorkloadEndpointSpec, path: str, issues: Issues) -> None:
    for i, net in enumerate(as_network(n) for n in spec.ip_networks):
        fam = family_of(net)
        if not fam.is_host(net):
            issues.add(index(join(path, "ipNetworks"), i),
                       f"{net} holds more than one address: use /{fam.host_prefix} networks")


@uses("ipNetworks", "ipNATs")
def _check_nats(spec: WorkloadEndpointSpec, path: str, issues: Issues) -> None:
    networks = [as_network(n) for n in spec.ip_networks]
    for i, nat in enumerate(spec.ip_nats):
        internal = parse_address(nat.internal_ip)
        if not any(address_in(internal, n) for n in networks):
            issues.add(join(index(join(path, "ipNATs"), i), "internalIP"),
                       f"{nat.internal_ip} is not one of the endpoint's ipNetworks")


WORKLOAD_ENDPOINT_SPEC = Struct(WorkloadEndpointSpec, checks=[_check_ip_networks, _check_nats])


@dataclass(frozen=True, kw_only=True)
class HostEndpointSpec:
    node: Annotated[str, Wire(NAME)]
    interface_name: Annotated[str | None, Wire(Text(_check_host_interface))] = None
    expected_ips: Annotated[tuple[str, ...], Wire(ListOf(ip_text()), "expectedIPs")] = ()
    profiles: Annotated[tuple[str, ...], Wire(ListOf(NAME))] = ()
    ports: Annotated[
        tuple[EndpointPort, ...], Wire(ListOf(Struct(EndpointPort, checks=[_check_port_protocol])))] = ()

    @property
    def is_wildcard(self) -> bool:
        """interfaceName `*`: all traffic to, from or through the host's default namespace."""
        return self.interface_name == "*"


@uses("interfaceName", "expectedIPs")
def _check_hep(spec: HostEndpointSpec, path: str, issues: Issues) -> None:
    if spec.interface_name is None and not spec.expected_ips:
        issues.add(join(path, "interfaceName"), "set interfaceName and/or expectedIPs")


HOST_ENDPOINT_SPEC = Struct(HostEndpointSpec, checks=[_check_hep])
