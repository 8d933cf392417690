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
from tortie.dataplane.nft.config import (
    DEFAULT_FAILSAFE_INBOUND,
    DEFAULT_FAILSAFE_OUTBOUND,
    DEFAULT_WORKLOAD_TO_HOST_ALLOW,
)

# The defaults are the renderer's (Calico's failsafes; DHCP, DHCPv6 and DNS from workloads), spelled
# as this table spells ports.
FAILSAFE_INBOUND_DEFAULT = tuple(str(p) for p in DEFAULT_FAILSAFE_INBOUND)
FAILSAFE_OUTBOUND_DEFAULT = tuple(str(p) for p in DEFAULT_FAILSAFE_OUTBOUND)
WORKLOAD_TO_HOST_ALLOW_DEFAULT = tuple(str(p) for p in DEFAULT_WORKLOAD_TO_HOST_ALLOW)
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
