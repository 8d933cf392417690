"""Value types of the agent's policy parameters (declared in tortie.agent.config's table).

`failsafe_ports_type()`: Felix's failsafe port lists in every spelling a source may use: a string
`"tcp:22, udp:68, tcp:10.0.0.0/8:2379"` (file, environment; a bare number means TCP) or a
FelixConfiguration list of `{protocol, port, net}` objects. The typed value is a tuple of
canonical strings `"tcp:22"` / `"tcp:10.0.0.0/8:2379"` (immutable, comparable), which the policy
manager turns into failsafe rules; an empty list is allowed (no failsafes). The same type carries
`workload_to_host_allow` (ports on this host that workloads always reach, cidr = source network).
"""

from __future__ import annotations

import ipaddress

from tortie.agent.config_types import ParamType

FAILSAFE_INBOUND_DEFAULT = (
    "tcp:22",
    "udp:68",
    "tcp:179",
    "tcp:2379",
    "tcp:2380",
    "tcp:5473",
    "tcp:6443",
    "tcp:6666",
    "tcp:6667",
)
FAILSAFE_OUTBOUND_DEFAULT = (
    "udp:53",
    "udp:67",
    "tcp:179",
    "tcp:2379",
    "tcp:2380",
    "tcp:5473",
    "tcp:6443",
    "tcp:6666",
    "tcp:6667",
)
# Accepted from workloads to this host before their egress policy (Felix's OpenStack special cases):
# DHCP (a client's DISCOVER comes from 0.0.0.0 to the broadcast address), DHCPv6, DNS.
WORKLOAD_TO_HOST_ALLOW_DEFAULT = ("udp:67", "udp:547", "udp:53", "tcp:53")
_PROTOCOLS = ("tcp", "udp", "sctp")


def _canonical(protocol: object, port: object, net: object | None) -> str:
    proto = str(protocol or "tcp").strip().lower()
    if proto not in _PROTOCOLS:
        raise ValueError(f"{protocol!r} is not a failsafe protocol (tcp, udp or sctp)")
    try:
        number = int(str(port).strip())
    except ValueError:
        raise ValueError(f"{port!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{number} is not a port number (0-65535)")
    if net is None or str(net).strip() == "":
        return f"{proto}:{number}"
    return f"{proto}:{ipaddress.ip_network(str(net).strip(), strict=False)}:{number}"


def _from_text(item: str) -> str:
    parts = item.strip().split(":")
    if len(parts) == 1:
        return _canonical("tcp", parts[0], None)
    if len(parts) == 2:
        return _canonical(parts[0], parts[1], None)
    return _canonical(parts[0], parts[-1], ":".join(parts[1:-1]))


def parse_failsafe_ports(raw: object) -> tuple[str, ...]:
    if isinstance(raw, list | tuple):
        out = []
        for item in raw:
            if isinstance(item, dict):
                out.append(_canonical(item.get("protocol"), item.get("port"), item.get("net")))
            else:
                out.append(_from_text(str(item)))
        return tuple(out)
    if not isinstance(raw, str):
        raise ValueError(f"expected a list of protocol:port, got {type(raw).__name__}")
    return tuple(_from_text(part) for part in raw.split(",") if part.strip())


def failsafe_ports_type() -> ParamType:
    return ParamType("list of protocol:port (or protocol:cidr:port)", parse_failsafe_ports)
