"""Remote WorkloadEndpoints for policy: read what selectors and IP sets use, straight from the wire.

Why: selectors need every endpoint of the cluster, but of an endpoint on another host policy uses
only its namespace, labels, profiles, orchestrator, service account, addresses and named ports.
Parsing the whole resource with the model (every field, every check) was ~60% of the agent's
start-up calc at 20,000 endpoints; this reader takes ~a fifth of that.

Input: the raw value of a WorkloadEndpoint of another host (the validation filter decided so and
passes it on unparsed). Output: its `SelectableItem` (what `policy_items.workload_item` gives for
the parsed resource), or None when one of the fields it reads is invalid (the endpoint is then
treated as absent, as the validation filter treats an invalid object). Fields policy does not read
(mac, gateways, ipNATs, ...) are not checked for remote endpoints; local endpoints are still parsed
in full.

Wiring (`RemoteEndpointReader`, installed by `policy_graph.attach_policy_calc`): its `listener`
is the dispatcher's listener of `REMOTE_WORKLOAD_ENDPOINT`; it reads each raw value into an item
(None when the endpoint left, or is invalid: logged and counted) for the policy calc.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tortie.calc.policy_items import SelectableItem, endpoint_identity
from tortie.common.ipfamily import host_cidr, text_sort_key
from tortie.common.ipfamily import parse_address as parse_ip
from tortie.model.fields import (
    check_dns_label,
    check_dns_subdomain,
    check_label_key,
    check_label_value,
    parse_protocol,
)
from tortie.model.kinds import kind_info
from tortie.model.metadata import check_name
from tortie.model.specs_endpoint import check_endpoint_port_name

log = logging.getLogger(__name__)

KIND = "WorkloadEndpoint"
_KEY_INFO = kind_info(KIND)


class InvalidEndpoint(ValueError):
    """A field policy reads is invalid (the endpoint counts as absent)."""


def _text(value: object, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidEndpoint(f"{what} must be a string")
    return value


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidEndpoint(f"{what} must be a list")
    return value


def _address(text: object) -> str:
    """A single-address network in canonical form ("10.0.0.1" and "10.0.0.1/32" alike)."""
    raw = _text(text, "ipNetworks[]")
    assert raw is not None
    try:
        return host_cidr(raw)
    except ValueError as exc:
        raise InvalidEndpoint(str(exc)) from None


def _port(raw: object) -> tuple[str, int, int] | None:
    if not isinstance(raw, Mapping):
        raise InvalidEndpoint("ports[] must be objects")
    name = _text(raw.get("name"), "ports[].name", optional=True)
    protocol = parse_protocol(raw.get("protocol"))
    port = raw.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidEndpoint("ports[].port must be a number 1-65535")
    host_port = raw.get("hostPort")
    if host_port is not None and (isinstance(host_port, bool) or not isinstance(host_port, int)
                                  or not 0 <= host_port <= 65535):
        raise InvalidEndpoint("ports[].hostPort must be a number 0-65535")
    if raw.get("hostIP") is not None:
        parse_ip(str(_text(raw.get("hostIP"), "ports[].hostIP")))
    if not protocol.supports_ports:
        raise InvalidEndpoint(f"protocol {protocol} has no ports")
    if name is None:
        if not host_port:
            raise InvalidEndpoint("ports[].name is required unless hostPort is set")
        return None
    check_endpoint_port_name(name)
    return name, protocol.number, port


def remote_workload_item(key: str, raw: Mapping[str, Any]) -> SelectableItem:
    """The SelectableItem of a raw WorkloadEndpoint stored at `key` (raises InvalidEndpoint,
    ValueError or TypeError when a field policy reads is invalid)."""
    if raw.get("kind", KIND) != KIND:
        raise InvalidEndpoint(f"kind {raw.get('kind')!r} is not {KIND}")
    meta, spec = raw.get("metadata"), raw.get("spec")
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        raise InvalidEndpoint("metadata and spec must be objects")
    name = _text(meta.get("name"), "metadata.name")
    ns = _text(meta.get("namespace"), "metadata.namespace")
    assert name is not None and ns is not None
    check_name(KIND, name)
    check_dns_label(ns)
    if _KEY_INFO.key(name, ns) != key:
        raise InvalidEndpoint(f"{key}: stored object is {ns}/{name}, not at its own key")
    raw_labels = meta.get("labels") or {}
    if not isinstance(raw_labels, Mapping):
        raise InvalidEndpoint("metadata.labels must be an object")
    labels: dict[str, str] = {}
    for k, v in raw_labels.items():
        labels[check_label_key(str(_text(k, "label key")))] = check_label_value(str(_text(v, "label value")))
    profiles = [
        check_dns_subdomain(str(_text(p, "profiles[]"))) for p in _list(spec.get("profiles"), "profiles")
    ]
    orchestrator = _text(spec.get("orchestrator"), "orchestrator", optional=True)
    if orchestrator == "":
        raise InvalidEndpoint("orchestrator must not be empty")
    account = _text(spec.get("serviceAccountName"), "serviceAccountName", optional=True)
    labels, parents = endpoint_identity(ns, labels, profiles, orchestrator, account)
    nets = {_address(n) for n in _list(spec.get("ipNetworks"), "ipNetworks")}
    ports = tuple(p for p in (_port(r) for r in _list(spec.get("ports"), "ports")) if p is not None)
    ordered = tuple(nets) if len(nets) < 2 else tuple(sorted(nets, key=text_sort_key))
    return SelectableItem(labels, parents, ordered, ports)


ItemListener = Callable[[str, SelectableItem | None], None]
RawListener = Callable[[str, object | None], None]


class RemoteEndpointReader:
    """See the module docstring: `listener(on_item)` for the dispatcher's remote endpoints."""

    def __init__(self) -> None:
        self.invalid_count = 0

    def listener(self, on_item: ItemListener) -> RawListener:
        def read(key: str, raw: object | None) -> None:
            item: SelectableItem | None = None
            if isinstance(raw, Mapping):
                try:
                    item = remote_workload_item(key, raw)
                except (ValueError, TypeError) as exc:
                    self.invalid_count += 1
                    log.warning("invalid datastore object treated as absent key=%s reason=%r", key, str(exc))
            on_item(key, item)

        return read
