"""The rendering parameters of the policy table (`RenderConfig`) and how the agent's values set them.

`RenderConfig` holds what the renderer needs beyond the policy messages: which interfaces are
workloads (name prefixes), the failsafe ports of host endpoints, the ports workloads always reach
on their host, the endpoint-to-host action, the log prefix, whether VXLAN packets (UDP to
`vxlan_port`) from workloads are dropped, the two mark bits of the evaluation, and the bit that tells
the guard table the policy table is there (`policy_mark`, nft/guard.py).
Its defaults are Calico's (reference §3.12); the agent's configuration table declares the same
values in its own spelling (`tortie.agent.policy_params` derives them from these).

`render_config(values, base)` reads the agent's configuration values (`ConfigUpdate.values`: the
canonical strings of `policy_params`) into a `RenderConfig`; a value that is absent or cannot be
used keeps `base` (a bad port list is logged and ignored as a whole). `parse_failsafe(text)` reads
one port: `tcp:22`, `udp:68`, `22` (TCP) or `tcp:10.0.0.0/8:22` (restricted to a peer network).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

log = logging.getLogger(__name__)

_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}


_PROTOCOL_NAMES = {number: name for name, number in _PROTOCOLS.items()}


@dataclass(frozen=True)
class FailsafePort:
    protocol: int
    port: int
    net: str | None = None

    def __str__(self) -> str:
        """The agent's spelling: `tcp:22`, `tcp:10.0.0.0/8:2379` (`parse_failsafe` reads it back)."""
        proto = _PROTOCOL_NAMES[self.protocol]
        return f"{proto}:{self.net}:{self.port}" if self.net else f"{proto}:{self.port}"


# Calico's defaults (reference §3.12): SSH and DHCP in, DNS and DHCP out; both ways BGP, etcd, Typha,
# the Kubernetes API and 6666/6667.
_BOTH_WAYS = tuple(FailsafePort(6, port) for port in (179, 2379, 2380, 5473, 6443, 6666, 6667))
DEFAULT_FAILSAFE_INBOUND = (FailsafePort(6, 22), FailsafePort(17, 68), *_BOTH_WAYS)
DEFAULT_FAILSAFE_OUTBOUND = (FailsafePort(17, 53), FailsafePort(17, 67), *_BOTH_WAYS)
# Ports of the host workloads always reach, before their egress policy (Felix's OpenStack special
# cases): DHCP (from 0.0.0.0 to the broadcast address: anti-spoofing would drop it), DHCPv6, DNS.
DEFAULT_WORKLOAD_TO_HOST_ALLOW = (
    FailsafePort(17, 67),
    FailsafePort(17, 547),
    FailsafePort(17, 53),
    FailsafePort(6, 53),
)


FLOW_LOG_GROUPS = (1, 2)  # NFLOG groups of flow logs: inbound (ingress policy), outbound (Calico's)


@dataclass(frozen=True)
class RenderConfig:
    interface_prefixes: tuple[str, ...] = ("tort",)
    failsafe_inbound: tuple[FailsafePort, ...] = DEFAULT_FAILSAFE_INBOUND
    failsafe_outbound: tuple[FailsafePort, ...] = DEFAULT_FAILSAFE_OUTBOUND
    workload_to_host_allow: tuple[FailsafePort, ...] = DEFAULT_WORKLOAD_TO_HOST_ALLOW
    endpoint_to_host_action: Literal["Drop", "Accept", "Return"] = "Drop"
    log_prefix: str = "tortie-packet"
    vxlan_port: int = 4789
    drop_vxlan_from_workloads: bool = True
    accept_mark: int = 0x10000
    pass_mark: int = 0x20000
    policy_mark: int = 0x40000  # "the policy table saw this packet" (nft/guard.py)
    # NFLOG (inbound, outbound); None: no flow logs. Set by the agent when its flow logger runs (not
    # from the configuration values, so a pipeline without one never renders log statements).
    flow_log_groups: tuple[int, int] | None = None
    flow_log_deny_rate: int = 100  # logged denied packets per second and rule, at most

    def owns_interface(self, iface: str) -> bool:
        """Whether `iface` is a workload interface (it has one of the configured prefixes)."""
        return bool(iface) and iface.startswith(self.interface_prefixes)


def parse_failsafe(text: str) -> FailsafePort:
    """`tcp:22`, `udp:68`, `22` (TCP) or `tcp:10.0.0.0/8:22` (restricted to a peer network)."""
    parts = text.strip().split(":")
    proto = "tcp"
    net: str | None = None
    if len(parts) == 1:
        port = parts[0]
    elif len(parts) == 2:
        proto, port = parts
    else:
        proto, net, port = parts[0], ":".join(parts[1:-1]), parts[-1]
        net = str(ipaddress.ip_network(net, strict=False))
    if proto.lower() not in _PROTOCOLS:
        raise ValueError(f"{text!r}: protocol must be tcp, udp or sctp")
    return FailsafePort(_PROTOCOLS[proto.lower()], int(port), net)




def render_config(values: Mapping[str, object], base: RenderConfig) -> RenderConfig:
    """The rendering parameters found in the agent's configuration values (others keep `base`)."""
    cfg = base
    prefixes = values.get("interface_prefix")
    if isinstance(prefixes, list | tuple) and prefixes:
        cfg = replace(cfg, interface_prefixes=tuple(str(p) for p in prefixes))
    lists: dict[str, tuple[FailsafePort, ...]] = {}
    for key in ("failsafe_inbound_host_ports", "failsafe_outbound_host_ports", "workload_to_host_allow"):
        raw = values.get(key)
        if isinstance(raw, list | tuple):
            try:
                lists[key] = tuple(parse_failsafe(str(p)) for p in raw)
            except ValueError as exc:
                log.warning("invalid port list ignored param=%s reason=%s", key, exc)
    cfg = replace(
        cfg,
        failsafe_inbound=lists.get("failsafe_inbound_host_ports", cfg.failsafe_inbound),
        failsafe_outbound=lists.get("failsafe_outbound_host_ports", cfg.failsafe_outbound),
        workload_to_host_allow=lists.get("workload_to_host_allow", cfg.workload_to_host_allow),
    )
    action = values.get("default_endpoint_to_host_action")
    if action == "Drop" or action == "Accept" or action == "Return":
        cfg = replace(cfg, endpoint_to_host_action=action)
    prefix = values.get("log_prefix")
    if isinstance(prefix, str) and prefix:
        cfg = replace(cfg, log_prefix=prefix)
    rate = values.get("flow_logs_deny_rate")
    if isinstance(rate, int) and rate > 0:
        cfg = replace(cfg, flow_log_deny_rate=rate)
    port = values.get("vxlan_port")
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        cfg = replace(cfg, vxlan_port=port)
    allow = values.get("allow_vxlan_packets_from_workloads")
    if isinstance(allow, bool):
        cfg = replace(cfg, drop_vxlan_from_workloads=not allow)
    return cfg
