"""Endpoint calculator: this host's WorkloadEndpoints -> WorkloadEndpointUpdate / WorkloadEndpointRemove.

Inputs: parsed WorkloadEndpoint resources (or None) per datastore key, from the dispatcher; the
effective configuration (`interface_prefix`) from the config calculator. Output: queue calls on the
event sequencer's "endpoints" channel, keyed by `WorkloadEndpointId(namespace, name)`.

Invariants:
* Only endpoints with `spec.node == hostname` produce messages; other hosts' endpoints produce
  nothing. An endpoint moving to another host (or deleted, or turned invalid) is removed.
* An endpoint whose `interfaceName` does not start with a configured interface prefix is not sent
  (the agent never touches such interfaces); it is logged as a warning once per change.
* IP networks are canonical `/32` and `/128` CIDRs, sorted numerically, split by family; a network
  that is not a single address is skipped with a warning (Calico only allows host networks here).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

from tortie.calc.event_sequencer import EventSequencer
from tortie.dataplane.messages import WorkloadEndpointId, WorkloadEndpointRemove, WorkloadEndpointUpdate

log = logging.getLogger(__name__)

CHANNEL = "endpoints"


def endpoint_remove(key: object) -> WorkloadEndpointRemove:
    assert isinstance(key, WorkloadEndpointId)
    return WorkloadEndpointRemove(key)


def raw_is_local(hostname: str) -> Any:
    """Relevance predicate for the validation filter: is this raw WorkloadEndpoint on `hostname`?"""

    def predicate(_key: str, raw: Mapping[str, Any]) -> bool:
        spec = raw.get("spec")
        return isinstance(spec, Mapping) and spec.get("node") == hostname

    return predicate


def _host_nets(wep_id: WorkloadEndpointId, nets: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for raw in nets if isinstance(nets, list | tuple) else ():
        try:
            net = ipaddress.ip_network(str(raw), strict=False)
        except ValueError:
            log.warning("endpoint ip network skipped endpoint=%s net=%r reason=unparseable", wep_id, raw)
            continue
        if net.prefixlen != net.max_prefixlen:
            log.warning("endpoint ip network skipped endpoint=%s net=%s reason=not-a-host-network",
                        wep_id, net)
            continue
        if isinstance(net, ipaddress.IPv4Network):
            v4.append(net)
        else:
            v6.append(net)
    return tuple(str(n) for n in sorted(set(v4))), tuple(str(n) for n in sorted(set(v6)))


def endpoint_message(resource: Any) -> WorkloadEndpointUpdate:
    """The dataplane's view of one WorkloadEndpoint resource."""
    meta, spec = resource.metadata, resource.spec
    wep_id = WorkloadEndpointId(str(meta.namespace), str(meta.name))
    v4, v6 = _host_nets(wep_id, spec.ip_networks)
    return WorkloadEndpointUpdate(
        id=wep_id,
        interface_name=str(spec.interface_name or ""),
        ipv4_nets=v4,
        ipv6_nets=v6,
        mac=str(spec.mac) if spec.mac else None,
        profile_ids=tuple(str(p) for p in (spec.profiles or ())),
        labels=dict(meta.labels or {}),
        orchestrator=spec.orchestrator,
        workload=spec.workload or spec.pod,
        endpoint=spec.endpoint,
    )


class EndpointCalc:
    def __init__(self, hostname: str, sequencer: EventSequencer) -> None:
        self._hostname = hostname
        self._sequencer = sequencer
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
        spec = getattr(resource, "spec", None)
        if resource is None or getattr(spec, "node", None) != self._hostname:
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
        self._sequencer.queue_update(CHANNEL, msg.id, msg)
