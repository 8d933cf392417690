"""A WorkloadEndpoint's `qosControls` as the dataplane applies them (pure).

Input: the model's validated `QoSControls` (or None). Output: `QosLimits` with Calico's defaults
filled in, as Calico's CNI plugin and Felix do (libcalico-go's QoS annotation handling): a bandwidth
without a burst gets 4 Gibit (4294967296 bits), a packet rate without a packet burst gets 5 packets.
A minburst of 0 stays 0: the dataplane uses the interface's MTU, which only it knows. None when no
limit is set (all fields absent or 0: Calico applies a limit only when it is non-zero).
"""

from __future__ import annotations

from tortie.dataplane.messages import QosLimits
from tortie.model.specs_endpoint import QoSControls

DEFAULT_BURST_BITS = 4 * 2**30  # Calico's defaultBurst (4Gi)
DEFAULT_PACKET_BURST = 5  # Calico's defaultPacketBurst


def _burst(rate: int | None, burst: int | None, default: int) -> int:
    return (burst or default) if rate else 0


def qos_limits(controls: QoSControls | None) -> QosLimits | None:
    if controls is None:
        return None
    c = controls
    limits = QosLimits(
        ingress_bandwidth=c.ingress_bandwidth or 0,
        ingress_burst=_burst(c.ingress_bandwidth, c.ingress_burst, DEFAULT_BURST_BITS),
        ingress_peakrate=c.ingress_peakrate or 0,
        ingress_minburst=c.ingress_minburst or 0,
        egress_bandwidth=c.egress_bandwidth or 0,
        egress_burst=_burst(c.egress_bandwidth, c.egress_burst, DEFAULT_BURST_BITS),
        egress_peakrate=c.egress_peakrate or 0,
        egress_minburst=c.egress_minburst or 0,
        ingress_packet_rate=c.ingress_packet_rate or 0,
        ingress_packet_burst=_burst(c.ingress_packet_rate, c.ingress_packet_burst, DEFAULT_PACKET_BURST),
        egress_packet_rate=c.egress_packet_rate or 0,
        egress_packet_burst=_burst(c.egress_packet_rate, c.egress_packet_burst, DEFAULT_PACKET_BURST),
        ingress_max_connections=c.ingress_max_connections or 0,
        egress_max_connections=c.egress_max_connections or 0,
    )
    return limits if limits != QosLimits() else None
