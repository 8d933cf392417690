"""CNI results: one internal shape (a superset, CNI 1.1) rendered for the version the runtime asked for.

Input: `CniResult` built by ADD, or a `prevResult` JSON object of any supported version. Output: the
JSON object of the requested `cniVersion`. Version differences (CNI spec, "Result" and upgrades):

    0.3.0 0.3.1 0.4.0   each ips[] entry carries "version": "4" | "6"
    1.0.0               no "version" in ips[]
    1.1.0               interfaces[] may carry "mtu"; routes[] may carry "scope" (and mtu, advmss, ...)

Conversion is lossless within what a version can express; fields a version lacks are dropped.
Invariant: `from_wire(to_wire(r, v))` equals `r` for every field version `v` can carry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tortie.cni.errors import DECODING_FAILURE, CniError
from tortie.cni.netconf import version_tuple

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None


@dataclass(frozen=True)
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None


@dataclass(frozen=True)
class RouteSpec:
    dst: IPNetwork
    gw: IPAddress | None = None
    scope: int | None = None  # CNI 1.1: 253 = link


@dataclass(frozen=True)
class Dns:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class CniResult:
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    dns: Dns = field(default_factory=Dns)

    def to_wire(self, version: str) -> dict[str, Any]:
        """This result as the JSON object of CNI `version`."""
        v = version_tuple(version)
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            ifaces = []
            for i in self.interfaces:
                item: dict[str, Any] = {"name": i.name}
                if i.mac:
                    item["mac"] = i.mac
                if i.mtu and v >= (1, 1, 0):
                    item["mtu"] = i.mtu
                if i.sandbox:
                    item["sandbox"] = i.sandbox
                ifaces.append(item)
            out["interfaces"] = ifaces
        if self.ips:
            ips = []
            for ip in self.ips:
                entry: dict[str, Any] = {}
                if v < (1, 0, 0):
                    entry["version"] = str(ip.address.version)
                entry["address"] = str(ip.address)
                if ip.gateway is not None:
                    entry["gateway"] = str(ip.gateway)
                if ip.interface is not None:
                    entry["interface"] = ip.interface
                ips.append(entry)
            out["ips"] = ips
        if self.routes:
            routes = []
            for r in self.routes:
                route: dict[str, Any] = {"dst": str(r.dst)}
                if r.gw is not None:
                    route["gw"] = str(r.gw)
                if r.scope is not None and v >= (1, 1, 0):
                    route["scope"] = r.scope
                routes.append(route)
            out["routes"] = routes
        dns: dict[str, Any] = {}
        if self.dns.nameservers:
            dns["nameservers"] = list(self.dns.nameservers)
        if self.dns.domain:
            dns["domain"] = self.dns.domain
        if self.dns.search:
            dns["search"] = list(self.dns.search)
        if self.dns.options:
            dns["options"] = list(self.dns.options)
        out["dns"] = dns
        return out


def _bad(what: str) -> CniError:
    return CniError(DECODING_FAILURE, "cannot decode the previous result", what)


def _strings(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _bad(f"{what} must be a list of strings")
    return tuple(value)


def from_wire(obj: Mapping[str, Any]) -> CniResult:
    """Parse a result of any supported version (prevResult, or a delegated IPAM plugin's output)."""
    try:
        interfaces = tuple(
            Interface(
                name=str(i["name"]),
                mac=str(i.get("mac") or ""),
                sandbox=str(i.get("sandbox") or ""),
                mtu=int(i["mtu"]) if i.get("mtu") else None,
            )
            for i in _list(obj.get("interfaces"))
        )
        ips = []
        for ip in _list(obj.get("ips")):
            gw = ip.get("gateway")
            idx = ip.get("interface")
            ips.append(
                IPConfig(
                    address=ipaddress.ip_interface(str(ip["address"])),
                    gateway=ipaddress.ip_address(str(gw)) if gw else None,
                    interface=int(idx) if idx is not None else None,
                )
            )
        routes = []
        for r in _list(obj.get("routes")):
            gw = r.get("gw")
            scope = r.get("scope")
            routes.append(
                RouteSpec(
                    dst=ipaddress.ip_network(str(r["dst"]), strict=False),
                    gw=ipaddress.ip_address(str(gw)) if gw else None,
                    scope=int(scope) if scope is not None else None,
                )
            )
        dns_raw = obj.get("dns")
        dns_raw = {} if dns_raw is None else dns_raw
        if not isinstance(dns_raw, dict):
            raise _bad("dns must be an object")
        dns = Dns(
            nameservers=_strings(dns_raw.get("nameservers"), "dns.nameservers"),
            domain=str(dns_raw.get("domain") or ""),
            search=_strings(dns_raw.get("search"), "dns.search"),
            options=_strings(dns_raw.get("options"), "dns.options"),
        )
    except CniError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _bad(f"{type(e).__name__}: {e}") from None
    return CniResult(interfaces, tuple(ips), tuple(routes), dns)


def _list(value: object) -> Sequence[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise _bad("interfaces, ips and routes must be lists of objects")
    return value
