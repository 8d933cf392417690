"""Workload endpoint messages: a WorkloadEndpoint on THIS host, as the dataplane needs it to plumb its
interface, route its addresses, translate its floating IPs and hold it to its QoS limits (the policy
side of an endpoint is `messages.policy`).

Update/Remove keyed by `WorkloadEndpointId`; an Update replaces everything previously said for that id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class WorkloadEndpointId:
    """Identity of a WorkloadEndpoint: its namespace and name (the datastore key's last parts)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, order=True)
class IPNat:
    """A 1:1 NAT of the endpoint (Calico's ipNATs, floating IPs): `external` is translated to
    `internal`, an address of the endpoint. Both canonical addresses of one family."""

    internal: str
    external: str


@dataclass(frozen=True)
class QosLimits:
    """The endpoint's QoS controls as the dataplane applies them (Calico's QoSControls, validated,
    with Calico's defaults filled in: burst 4 Gibit when a bandwidth is set, packet burst 5 when a
    packet rate is set). Bandwidths and peak rates in bits/s, bursts in bits, minbursts in bytes
    (0: the interface MTU), packet rates in packets/s. 0 means "not limited"."""

    ingress_bandwidth: int = 0
    ingress_burst: int = 0
    ingress_peakrate: int = 0
    ingress_minburst: int = 0
    egress_bandwidth: int = 0
    egress_burst: int = 0
    egress_peakrate: int = 0
    egress_minburst: int = 0
    ingress_packet_rate: int = 0
    ingress_packet_burst: int = 0
    egress_packet_rate: int = 0
    egress_packet_burst: int = 0
    ingress_max_connections: int = 0
    egress_max_connections: int = 0


@dataclass(frozen=True)
class WorkloadEndpointUpdate:
    """A WorkloadEndpoint on THIS host, as the dataplane needs it.

    `ipv4_nets` / `ipv6_nets` are canonical "/32" / "/128" CIDR strings, sorted. `interface_name` is
    the host-side interface (matches one of the configured interface prefixes). `ip_nats` are
    sorted (internal, external) pairs; `qos` is None when the endpoint has no QoS controls.
    """

    id: WorkloadEndpointId
    interface_name: str
    ipv4_nets: tuple[str, ...] = ()
    ipv6_nets: tuple[str, ...] = ()
    mac: str | None = None
    profile_ids: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    ip_nats: tuple[IPNat, ...] = ()
    qos: QosLimits | None = None
    # Identity for endpoint status reporting (reference §1.16 status keys); not used for programming.
    orchestrator: str | None = None
    workload: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class WorkloadEndpointRemove:
    id: WorkloadEndpointId
