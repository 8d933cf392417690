"""Register this host as a `Node`: create it, or update only the fields the node service owns.

Input: a datastore, the host name and a `NodeAddresses` (what `tortie node run` decided: an IPv4
and/or IPv6 address with prefix length, each either a value, `REMOVE` or `KEEP`; an AS number or
None to keep the stored one). Output: the stored Node resource.

Owned fields: `spec.bgp.ipv4Address`, `spec.bgp.ipv6Address`, `spec.bgp.asNumber` (only when given).
Everything else an operator set (labels, `routeReflectorClusterID`, other spec fields) is kept, as
calico/node does on every start. The write is a compare-and-swap on the stored revision, retried a
few times on a concurrent change; an unchanged Node is not written at all.

Like calico/node, start-up refuses an address that another Node already has as its BGP address
(`NodeAddressConflict`): two hosts announcing themselves with one address would break every session.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any, Final

from tortie.common.errors import AlreadyExists, Conflict, UserError
from tortie.datastore.api import Datastore
from tortie.datastore.resources import ResourceStore
from tortie.model import Resource, parse_resource
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)

KEEP: Final = "keep"
REMOVE: Final = "remove"
AddressChoice = ipaddress.IPv4Interface | ipaddress.IPv6Interface | str

_ATTEMPTS = 5


class NodeAddressConflict(UserError):
    """Another Node already uses the address this host would register."""


@dataclass(frozen=True)
class NodeAddresses:
    ipv4: AddressChoice = KEEP
    ipv6: AddressChoice = KEEP
    as_number: int | None = None


def desired_wire(existing: dict[str, Any] | None, hostname: str, want: NodeAddresses) -> dict[str, Any]:
    """The Node's wire form after applying `want` to `existing` (pure; store metadata left alone)."""
    wire: dict[str, Any] = (
        copy.deepcopy(existing)
        if existing is not None
        else {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": hostname},
            "spec": {},
        }
    )
    spec = dict(wire.get("spec") or {})
    bgp = dict(spec.get("bgp") or {})
    for field, choice in (("ipv4Address", want.ipv4), ("ipv6Address", want.ipv6)):
        if choice == REMOVE:
            bgp.pop(field, None)
        elif choice != KEEP:
            bgp[field] = str(choice)
    if want.as_number is not None:
        bgp["asNumber"] = want.as_number
    if bgp:
        spec["bgp"] = bgp
    else:
        spec.pop("bgp", None)
    wire["spec"] = spec
    return wire


def _bgp_ips(wire: dict[str, Any]) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    bgp = (wire.get("spec") or {}).get("bgp") or {}
    out = set()
    for field in ("ipv4Address", "ipv6Address"):
        if bgp.get(field):
            out.add(ipaddress.ip_interface(str(bgp[field])).ip)
    return out


def check_unique(ds: Datastore, hostname: str, wire: dict[str, Any]) -> None:
    """NodeAddressConflict if another stored Node has one of `wire`'s BGP addresses."""
    mine = _bgp_ips(wire)
    if not mine:
        return
    kvs, _rev = ds.list(kind_info("Node").list_prefix())
    for kv in kvs:
        other = kv.value
        name = str((other.get("metadata") or {}).get("name", ""))
        if name == hostname:
            continue
        try:
            clash = mine & _bgp_ips(dict(other))
        except ValueError:
            continue  # an invalid stored Node is someone else's problem
        if clash:
            address = ", ".join(sorted(str(a) for a in clash))
            raise NodeAddressConflict(
                f"Node {name!r} already uses {address} as its BGP address; this host ({hostname}) cannot "
                "register it too. Fix the address (--ip / --ip-autodetection-method) or delete the stale "
                f"Node ({name}) if that host is gone"
            )


def register_node(ds: Datastore, hostname: str, want: NodeAddresses) -> Resource:
    """Create or update Node `hostname` (see the module docstring); returns the stored resource."""
    store = ResourceStore(ds)
    key = kind_info("Node").key(hostname)
    for attempt in range(1, _ATTEMPTS + 1):
        kv = ds.get(key)
        existing = dict(kv.value) if kv is not None else None
        wire = desired_wire(existing, hostname, want)
        check_unique(ds, hostname, wire)
        if kv is not None and wire == existing:
            log.info("node registration unchanged host=%s", hostname)
            return store.decode(kv)
        if kv is not None:
            wire["metadata"] = {**(wire.get("metadata") or {}), "resourceVersion": str(kv.mod_revision)}
        resource = parse_resource(wire, source=f"Node {hostname}")
        try:
            stored = store.create(resource) if kv is None else store.update(resource)
        except (Conflict, AlreadyExists) as exc:
            log.info(
                "node registration raced another writer; retrying host=%s attempt=%d error=%s",
                hostname,
                attempt,
                exc,
            )
            continue
        bgp = (wire.get("spec") or {}).get("bgp") or {}
        log.info(
            "node registered host=%s action=%s ipv4=%s ipv6=%s as=%s",
            hostname,
            "created" if kv is None else "updated",
            bgp.get("ipv4Address"),
            bgp.get("ipv6Address"),
            bgp.get("asNumber", "(default)"),
        )
        return stored
    raise Conflict(f"Node {hostname}: gave up after {_ATTEMPTS} concurrent changes; try again")
