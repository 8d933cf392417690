"""Endpoint calculator: this host's WorkloadEndpoints -> WorkloadEndpointUpdate / WorkloadEndpointRemove.

Inputs: this host's WorkloadEndpoint resources, parsed and validated (or None: gone, invalid, or
moved to another host), per datastore key, from the dispatcher (the validation filter decided
locality); the effective configuration (`interface_prefix`) from the config calculator. Output:
queue calls on the event sequencer's "endpoints" channel, keyed by `WorkloadEndpointId(namespace,
name)`.

Invariants:
* An endpoint whose `interfaceName` does not start with a configured interface prefix is not sent
  (the agent never touches such interfaces); it is logged as a warning once per change.
* IP networks are split by family, sorted numerically, without repeats. They arrive canonical and
  single-address (the model validates `ipNetworks`: /32 and /128 only), so nothing is re-checked.
* `ipNATs` become sorted `IPNat(internal, external)` pairs of canonical addresses (the model checked
  that each internal address is one of the endpoint's and that both are of one family); every
  endpoint's ipNATs are programmed, whatever FelixConfiguration `floatingIPs` says (Felix programs
  them for OpenStack endpoints, and for others only with `floatingIPs: Enabled`; the support table
  warns about `Disabled`).
* `qosControls` become `QosLimits` (tortie.calc.qos_limits: Calico's defaults filled in).
* An endpoint that uses a field this host's dataplane cannot program (`unsupported`: wire path ->
  reason, from the agent's probe of its kernel and configuration, e.g. "qosControls.ingressBandwidth"
  without a tbf qdisc, "ipNATs" without nftables) is refused: not sent (fail closed), with a warning
  naming the field and the reason, rather than programmed without it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from tortie.calc.event_sequencer import EventSequencer
from tortie.calc.qos_limits import qos_limits
from tortie.common.ipfamily import parse_address, sort_key
from tortie.dataplane.messages import (
    IPNat,
    QosLimits,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)

log = logging.getLogger(__name__)

CHANNEL = "endpoints"


def endpoint_remove(key: object) -> WorkloadEndpointRemove:
    assert isinstance(key, WorkloadEndpointId)
    return WorkloadEndpointRemove(key)


def _host_nets(nets: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(IPv4, IPv6) host CIDRs, each numerically sorted without repeats."""
    ordered = sorted({ipaddress.ip_network(net) for net in nets}, key=sort_key)
    v4 = tuple(str(net) for net in ordered if net.version == 4)
    return v4, tuple(str(net) for net in ordered[len(v4):])


def _ip_nats(nats: Iterable[Any]) -> tuple[IPNat, ...]:
    pairs = {(parse_address(n.internal_ip), parse_address(n.external_ip)) for n in nats}
    ordered = sorted(pairs, key=lambda p: (sort_key(p[0]), sort_key(p[1])))
    return tuple(IPNat(str(internal), str(external)) for internal, external in ordered)


def endpoint_message(resource: Any) -> WorkloadEndpointUpdate:
    """The dataplane's view of one WorkloadEndpoint resource."""
    meta, spec = resource.metadata, resource.spec
    wep_id = WorkloadEndpointId(str(meta.namespace), str(meta.name))
    v4, v6 = _host_nets(spec.ip_networks)
    return WorkloadEndpointUpdate(
        id=wep_id,
        interface_name=str(spec.interface_name or ""),
        ipv4_nets=v4,
        ipv6_nets=v6,
        mac=str(spec.mac) if spec.mac else None,
        profile_ids=tuple(str(p) for p in (spec.profiles or ())),
        labels=dict(meta.labels or {}),
        ip_nats=_ip_nats(spec.ip_nats),
        qos=qos_limits(spec.qos_controls),
        orchestrator=spec.orchestrator,
        workload=spec.workload or spec.pod,
        endpoint=spec.endpoint,
    )


def used_fields(msg: WorkloadEndpointUpdate) -> list[str]:
    """The wire paths of the optional dataplane features `msg` uses ("ipNATs", "qosControls.<name>")."""
    out = ["ipNATs"] if msg.ip_nats else []
    if msg.qos is not None:
        out += [QOS_WIRE[name] for name in QOS_WIRE if getattr(msg.qos, name)]
    return out


QOS_WIRE = {name: "qosControls." + name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
            for name in QosLimits.__dataclass_fields__}


class EndpointCalc:
    def __init__(self, sequencer: EventSequencer, unsupported: Mapping[str, str] | None = None) -> None:
        self._sequencer = sequencer
        self._unsupported = dict(unsupported or {})
        self._local: dict[str, WorkloadEndpointUpdate] = {}  # datastore key -> message (before filtering)
        self._prefixes: tuple[str, ...] | None = None

    @property
    def local_count(self) -> int:
        return len(self._local)

    def on_config(self, values: Mapping[str, object]) -> None:
        raw = values.get("interface_prefix")
        prefixes = tuple(str(p) for p in raw) if isinstance(raw, list | tuple) else None
        if prefixes == self._prefixes:
            return
        self._prefixes = prefixes
        for msg in self._local.values():
            self._queue(msg)

    def on_endpoint(self, key: str, resource: object | None) -> None:
        if resource is None:
            old = self._local.pop(key, None)
            if old is not None:
                self._sequencer.queue_remove(CHANNEL, old.id)
            return
        msg = endpoint_message(resource)
        old = self._local.get(key)
        if old is not None and old.id != msg.id:  # cannot happen for objects at their own key
            self._sequencer.queue_remove(CHANNEL, old.id)
        self._local[key] = msg
        self._queue(msg)

    def _queue(self, msg: WorkloadEndpointUpdate) -> None:
        prefixes = self._prefixes
        if prefixes is not None and not msg.interface_name.startswith(prefixes):
            log.warning("endpoint ignored: interface does not match interface_prefix endpoint=%s "
                        "interface=%r prefixes=%s", msg.id, msg.interface_name, ",".join(prefixes))
            self._sequencer.queue_remove(CHANNEL, msg.id)
            return
        unsupported = self._unsupported
        refused = [f"{path}: {unsupported[path]}" for path in used_fields(msg) if path in unsupported]
        if refused:
            log.warning("endpoint refused: it uses what this host cannot program endpoint=%s reasons=%s",
                        msg.id, "; ".join(refused))
            self._sequencer.queue_remove(CHANNEL, msg.id)
            return
        self._sequencer.queue_update(CHANNEL, msg.id, msg)
