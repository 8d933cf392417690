"""QoS: the qosControls of this host's WorkloadEndpoints (Calico's QoSControls; docs/design/qos.md).

Inputs: `WorkloadEndpointUpdate` / `WorkloadEndpointRemove` (their `qos`, Calico's defaults filled in
by the calc), link events, `resync()`. Outputs, per workload interface:

* bandwidth with tc, as Felix (felix/dataplane/linux/qos): to the workload (its ingress) a `tbf` at
  the root of the host-side interface; from it (its egress, which reaches the host as the
  interface's ingress, where nothing can queue) the interface's `ingress` qdisc with a u32 filter
  redirecting every packet to an `ifb` device `tqos<hash>` whose root `tbf` shapes it. Token bucket:
  rate = bandwidth/8 bytes/s, burst = burst/8 bytes, peak rate = peakrate/8 with minburst at least the
  interface MTU + 14, queue limit = rate x 25 ms + burst (with a peak rate at most peak x 25 ms +
  minburst), Felix's numbers;
* packet rate and connection limits in the nft table `inet tortie-qos` (`nft.qos`).

Reconcile: a dirty interface is read back (`ShapingDriver.shaping`) and only what differs is
written; the tbf compares by rate, peak rate and queue limit (the kernel answers the burst only as a
time; the limit carries it). A full resync (first apply, `resync()`) also sweeps: every owned device
(an interface prefix or the ifb prefix) with a root tbf or an ingress qdisc that no endpoint wants
loses it, and every ifb device of ours that no endpoint uses is deleted (its redirect first, so no
packet is ever redirected to a device that is gone). Removing the field removes the limits; an
interface that is re-created (`added`) is shaped again. Failures stay dirty and are retried.

What this kernel cannot do (tbf, ifb, the ingress qdisc or u32 + mirred missing: `probe_shaping`)
never reaches here: the calc refuses endpoints that ask for it (`unsupported` fields), and
`tortie node status` says so.

Construction: `QosManager(shaping, nft, owns=callable)`: `owns(name)` says whether a workload
interface is ours (the route table's `owns_device`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.kernel_watch import KernelChanges
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.nftables import NftDriver
from tortie.dataplane.drivers.shaping import ShapingDriver, TbfParams
from tortie.dataplane.managers.manager_api import ApplyIncomplete, apply_each
from tortie.dataplane.managers.nft_table import NftTable
from tortie.dataplane.messages import (
    Message,
    QosLimits,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.nft.qos import TABLE, render_qos

log = logging.getLogger(__name__)

IFB_PREFIX = "tqos"
LATENCY = 0.025  # seconds of queue at the rate (Felix's latencyMillis)
_U32 = 2**32 - 1
ETHERNET_HEADER = 14


def ifb_name(iface: str) -> str:
    """The ifb device shaping `iface`'s egress: the prefix and a hash of the name, 15 characters."""
    return IFB_PREFIX + hashlib.sha1(iface.encode()).hexdigest()[: 15 - len(IFB_PREFIX)]


def token_bucket(bandwidth: int, burst: int, peakrate: int, minburst: int, mtu: int) -> TbfParams:
    """Calico's bits (bandwidth, burst, peakrate) and bytes (minburst) as a tbf (bytes)."""
    rate, burst_bytes = bandwidth // 8, min(burst // 8, _U32)
    limit = int(rate * LATENCY) + burst_bytes
    peak = peakrate // 8
    least = 0
    if peak:
        least = max(minburst, mtu + ETHERNET_HEADER)
        limit = min(limit, int(peak * LATENCY) + least)
    return TbfParams(rate, burst_bytes, min(limit, _U32), peak, least)


def _same(have: TbfParams | None, want: TbfParams | None) -> bool:
    if have is None or want is None:
        return have is want
    return (have.rate, have.peakrate, have.limit) == (want.rate, want.peakrate, want.limit)


_BANDWIDTH = ("Bandwidth", "Burst", "Peakrate", "Minburst")
_NFT_FIELDS = ("PacketRate", "PacketBurst", "MaxConnections")


def unsupported_fields(support: Mapping[str, str | None] | None, *, tc: bool, nft: bool) -> dict[str, str]:
    """qosControls fields this host cannot honour (wire path -> why), from `probe_shaping()`'s
    answer (`support`: part -> None | reason; None: not probed, take the driver's word), whether a
    shaping driver exists (`tc`) and whether the agent uses nftables (`nft`)."""
    out: dict[str, str] = {}

    def refuse(directions: tuple[str, ...], names: tuple[str, ...], reason: str) -> None:
        for d in directions:
            for n in names:
                out.setdefault(f"qosControls.{d}{n}", reason)

    if not tc:
        refuse(("ingress", "egress"), _BANDWIDTH, "bandwidth limits need traffic control, which this agent "
               "does not drive")
    for part, reason in (support or {}).items():
        if reason is None:
            continue
        directions = ("ingress", "egress") if part == "tbf" else ("egress",)
        refuse(directions, _BANDWIDTH, f"this kernel has no {part} ({reason})")
    if not nft:
        refuse(("ingress", "egress"), _NFT_FIELDS,
               "packet-rate and connection limits need nftables, which the agent does not use with "
               "policy_enabled=false")
    return out


class QosManager:
    """See the module docstring."""

    name = "qos"
    handles = frozenset({WorkloadEndpointUpdate, WorkloadEndpointRemove, LinkEvent, KernelChanges})

    def __init__(self, shaping: ShapingDriver | None, nft: NftDriver | None, *, owns: Callable[[str], bool],
                 table: str = TABLE) -> None:
        self._shaping = shaping
        self._nft = NftTable(nft, table) if nft is not None else None
        self._owns = owns
        self._endpoints: dict[WorkloadEndpointId, tuple[str, QosLimits]] = {}
        self._dirty: set[str] = set()
        self._full = True
        self._render_dirty = True

    # -- desired state ----------------------------------------------------------------------------
    def _by_iface(self) -> dict[str, QosLimits]:
        """Each interface's limits (an interface two endpoints name: the first endpoint id's)."""
        out: dict[str, QosLimits] = {}
        for endpoint_id in sorted(self._endpoints):
            iface, limits = self._endpoints[endpoint_id]
            out.setdefault(iface, limits)
        return out

    def on_update(self, msg: Message) -> None:
        if isinstance(msg, WorkloadEndpointUpdate):
            old = self._endpoints.get(msg.id)
            new = (msg.interface_name, msg.qos) if msg.qos is not None else None
            if old == new:
                return
            if new is None:
                del self._endpoints[msg.id]
            else:
                self._endpoints[msg.id] = new
        elif isinstance(msg, WorkloadEndpointRemove):
            old = self._endpoints.pop(msg.id, None)
            new = None
            if old is None:
                return
        else:
            return
        self._dirty.update(x[0] for x in (old, new) if x is not None)
        self._render_dirty = True

    def on_link_event(self, event: LinkEvent) -> None:
        name, kind = event.link.name, event.kind
        if kind not in ("added", "removed"):
            return
        by_iface = self._by_iface()
        if name in by_iface:
            self._dirty.add(name)  # a new device has no qdiscs; a gone one may leave its ifb behind
        elif name.startswith(IFB_PREFIX):
            owners = {ifb_name(i): i for i, q in by_iface.items() if q.egress_bandwidth}
            if name in owners and kind == "removed":
                self._dirty.add(owners[name])  # its redirect points nowhere: the ifb is made again
            elif name not in owners and kind == "added":
                self._dirty.add(name)  # not one of ours any more: it goes

    def on_kernel_changes(self, changes: KernelChanges) -> None:
        if self._nft is not None:
            self._nft.on_kernel_changes(changes)  # the limits table someone else changed: read back, repair

    def resync(self) -> None:
        self._full = True
        if self._nft is not None:
            self._nft.resync()

    @property
    def needs_apply(self) -> bool:
        nft = self._nft is not None and (self._render_dirty or self._nft.needs_apply)
        return self._full or bool(self._dirty) or nft

    # -- applying -----------------------------------------------------------------------------------
    def _shape(self, iface: str) -> None:
        driver = self._shaping
        want = self._by_iface().get(iface)
        if driver is None or iface.startswith(IFB_PREFIX) or not self._owns(iface):
            if iface.startswith(IFB_PREFIX) and driver is not None and iface not in self._wanted_ifbs():
                driver.delete_device(iface)
            self._dirty.discard(iface)
            return
        state = driver.shaping(iface)
        ifb = ifb_name(iface)
        if state is None:  # gone: its ifb too (the kernel dropped the redirect with the device)
            driver.delete_device(ifb)
            self._dirty.discard(iface)
            return
        ingress = egress = None
        if want is not None and want.ingress_bandwidth:
            ingress = token_bucket(want.ingress_bandwidth, want.ingress_burst, want.ingress_peakrate,
                                   want.ingress_minburst, state.mtu)
        if want is not None and want.egress_bandwidth:
            egress = token_bucket(want.egress_bandwidth, want.egress_burst, want.egress_peakrate,
                                  want.egress_minburst, state.mtu)
        if ingress is not None and not _same(state.tbf, ingress):
            driver.set_tbf(iface, ingress)
            log.info("qos: ingress shaped iface=%s rate=%dB/s", iface, ingress.rate)
        elif ingress is None and state.tbf is not None:
            driver.clear_tbf(iface)
        if egress is not None:
            ifb_state = driver.shaping(ifb)
            if ifb_state is None:
                driver.add_ifb(ifb, state.mtu)
            if ifb_state is None or not _same(ifb_state.tbf, egress):
                driver.set_tbf(ifb, egress)
                log.info("qos: egress shaped iface=%s via=%s rate=%dB/s", iface, ifb, egress.rate)
            if state.redirect != ifb:
                driver.set_redirect(iface, ifb)
        else:
            if state.ingress:
                driver.clear_ingress(iface)
            driver.delete_device(ifb)
        self._dirty.discard(iface)

    def _wanted_ifbs(self) -> set[str]:
        return {ifb_name(i) for i, q in self._by_iface().items() if q.egress_bandwidth}

    def _sweep(self) -> None:
        """Mark every device of ours with shaping, and every ifb of ours, for a check."""
        driver = self._shaping
        if driver is None:
            return
        for name in driver.shaped():
            if name.startswith(IFB_PREFIX) or self._owns(name):
                self._dirty.add(name)
        self._dirty.update(driver.ifb_devices(IFB_PREFIX))
        self._dirty.update(self._by_iface())

    def apply(self) -> None:
        failures: list[str] = []
        if self._nft is not None:
            if self._render_dirty:
                self._nft.set_desired(render_qos(self._by_iface()))
                self._render_dirty = False
            if self._nft.needs_apply:
                try:
                    self._nft.apply()
                except DataplaneError as exc:
                    failures.append(f"table {TABLE}: {exc}")
        if self._full:
            self._sweep()  # a failure here raises and leaves the full resync pending
            self._full = False
        # workload interfaces first: a redirect goes before the ifb it points to
        order = sorted(self._dirty, key=lambda n: (n.startswith(IFB_PREFIX), n))
        for iface in order:
            failures += apply_each([iface], self._shape, "qos of ")
        if failures:
            raise ApplyIncomplete(self.name, failures)

    def stats(self) -> Mapping[str, int]:
        return {"qos_endpoints": len(self._endpoints)}
