"""Address -> flow end: the workload, host endpoint or network set an address belongs to.

Input: raw datastore updates (`on_update(key, value)`, value None for a delete) of WorkloadEndpoints
(every host's), HostEndpoints, NetworkSets and GlobalNetworkSets, as the agent's syncer delivers
them. Output: `peer(ip)` -> `Peer`: a workload (by its `ipNetworks` addresses; name = the
workload's name, `spec.workload`, or the endpoint's), else a host endpoint (by `expectedIPs`), else
the network set with the longest prefix holding the address, else the address itself (kind "net").

Only what records need is kept (names, namespace, labels, addresses), so the directory stays small
next to the calc's view. Malformed values are skipped (the calc reports invalid resources). Lookups
of network sets are cached per address until the next change of a set.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Mapping
from typing import Any

from tortie.common.ipfamily import host_cidr
from tortie.flows.records import Peer
from tortie.model.kinds import kind_info

_KINDS = {
    kind_info("WorkloadEndpoint").prefix: "workload",
    kind_info("HostEndpoint").prefix: "hostendpoint",
    kind_info("NetworkSet").prefix: "networkset",
    kind_info("GlobalNetworkSet").prefix: "globalnetworkset",
}
PREFIXES = tuple(_KINDS)
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _kind_of(key: str) -> str | None:
    for prefix, kind in _KINDS.items():
        if key.startswith(prefix):
            return kind
    return None


def _labels(meta: Mapping[str, Any]) -> dict[str, str]:
    raw = meta.get("labels") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _addresses(values: object) -> list[str]:
    """The canonical address of each CIDR (the network's first for a wider one); junk skipped. Host
    networks, what endpoints hold, take `host_cidr`'s fast paths (a dual-stack cluster's 20,000
    remote endpoints would spend ~0.4 s of start-up in `ipaddress` on their IPv6 addresses)."""
    out = []
    for value in values if isinstance(values, list) else []:
        text = str(value)
        try:
            out.append(host_cidr(text).partition("/")[0])
        except ValueError:
            try:
                out.append(str(ipaddress.ip_interface(text).ip))
            except ValueError:
                continue
    return out


class EndpointDirectory:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, tuple[Peer, list[str], list[_Net]]] = {}
        self._by_ip: dict[str, list[str]] = {}  # address -> keys of workloads / host endpoints holding it
        self._sets: dict[str, tuple[Peer, list[_Net]]] = {}
        self._set_cache: dict[str, Peer | None] = {}

    def on_update(self, key: str, value: Mapping[str, Any] | None) -> None:
        kind = _kind_of(key)
        if kind is None:
            return
        with self._lock:
            self._forget(key)
            if value is None:
                return
            meta = value.get("metadata") or {}
            spec = value.get("spec") or {}
            if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
                return
            name = str(meta.get("name", ""))
            namespace = str(meta.get("namespace", "") or "")
            if kind in ("networkset", "globalnetworkset"):
                nets = []
                for text in spec.get("nets") or []:
                    try:
                        nets.append(ipaddress.ip_network(str(text), strict=False))
                    except ValueError:
                        continue
                peer = Peer("networkset", name, namespace if kind == "networkset" else "", _labels(meta))
                self._sets[key] = (peer, nets)
                self._set_cache.clear()
                return
            if kind == "workload":
                shown = str(spec.get("workload") or name)
                peer = Peer("workload", shown, namespace, _labels(meta))
                addresses = _addresses(spec.get("ipNetworks"))
            else:
                peer = Peer("hostendpoint", name, "", _labels(meta))
                addresses = _addresses(spec.get("expectedIPs"))
            self._by_key[key] = (peer, addresses, [])
            for ip in addresses:
                self._by_ip.setdefault(ip, []).append(key)

    def _forget(self, key: str) -> None:
        if key in self._sets:
            del self._sets[key]
            self._set_cache.clear()
        old = self._by_key.pop(key, None)
        if old is None:
            return
        for ip in old[1]:
            keys = self._by_ip.get(ip, [])
            if key in keys:
                keys.remove(key)
            if not keys:
                self._by_ip.pop(ip, None)

    def endpoint(self, ip: str) -> Peer | None:
        """The workload (first) or host endpoint holding `ip`, if any."""
        with self._lock:
            keys = self._by_ip.get(ip)
            if not keys:
                return None
            peers = [self._by_key[k][0] for k in keys]
        return next((p for p in peers if p.kind == "workload"), peers[0])

    def peer(self, ip: str) -> Peer:
        found = self.endpoint(ip)
        if found is not None:
            return Peer(found.kind, found.name, found.namespace, found.labels, ip=ip)
        with self._lock:
            if ip in self._set_cache:
                cached = self._set_cache[ip]
            else:
                cached = self._network_set(ip)
                if len(self._set_cache) > 100_000:
                    self._set_cache.clear()
                self._set_cache[ip] = cached
        return cached if cached is not None else Peer("net", ip=ip)

    def _network_set(self, ip: str) -> Peer | None:
        addr = ipaddress.ip_address(ip)
        best: tuple[int, Peer, _Net] | None = None
        for peer, nets in self._sets.values():
            for net in nets:
                if net.version == addr.version and addr in net and (best is None or net.prefixlen > best[0]):
                    best = (net.prefixlen, peer, net)
        if best is None:
            return None
        _, peer, net = best
        return Peer(peer.kind, peer.name, peer.namespace, peer.labels, ip=ip, net=str(net))

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_key) + len(self._sets)
