"""This host's VXLAN tunnel addresses, allocated by IPAM while a VXLAN pool serves it (calico/node's
tunnel address allocator, reference §5.5).

`reconcile(ds, hostname)` makes the stored Node agree with the pools, per family:

* wanted when some IP pool of the family has vxlanMode Always or CrossSubnet, allows the `Tunnel`
  use and selects this Node (`nodeSelector`);
* then the Node must hold a tunnel address in such a pool that IPAM has allocated under the handle
  `vxlan-tunnel-addr-<node>` (`vxlan-v6-tunnel-addr-<node>`): an address that is, is kept (also in a
  pool since disabled: disabling stops new allocations, it does not renumber); otherwise the handle
  is released and one address is auto-assigned from the enabled ones for this host (so it usually
  comes from the host's own block), with attributes `node` and `type: vxlanTunnelAddress`;
* and a tunnel MAC: the stored one is kept, else a locally administered unicast MAC derived from the
  host name and family (stable: a lost field comes back the same);
* not wanted: the handle is released and the fields are removed.

Fields: `spec.ipv4VXLANTunnelAddr` + `spec.vxlanTunnelMACAddr`, `spec.ipv6VXLANTunnelAddr` +
`spec.vxlanTunnelMACAddrV6` (Calico's). Only those four are written, with a compare-and-swap on the
Node's revision (retried on a concurrent change); a Node that does not exist yet is left alone (the
node service registers it first). IPAM is changed before the Node, so a crash in between leaves an
allocation that the next reconcile finds under the handle (kept if the Node still names it,
released otherwise).

`TunnelAddressKeeper` runs `reconcile` in the node service: a syncer on the IP pools and this Node
wakes a thread that reconciles after every change (and retries a failure after a backoff).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

from tortie.common.errors import AlreadyExists, Conflict, DatastoreUnavailable, NotFound, TortieError
from tortie.common.ipfamily import FAMILIES, V4, V6, Family, address_in, family_of
from tortie.datastore import syncer as sync
from tortie.datastore.api import Datastore
from tortie.datastore.resources import ResourceStore
from tortie.ipam.allocator import Ipam
from tortie.ipam.pools import USE_TUNNEL, PoolView
from tortie.ipam.store import IpamStore
from tortie.model import parse_resource
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)

ADDRESS_FIELD = {V4: "ipv4VXLANTunnelAddr", V6: "ipv6VXLANTunnelAddr"}
MAC_FIELD = {V4: "vxlanTunnelMACAddr", V6: "vxlanTunnelMACAddrV6"}
ATTRIBUTE_TYPE = "vxlanTunnelAddress"
_ATTEMPTS = 5


def handle_for(hostname: str, fam: Family) -> str:
    """Calico's handle of a host's VXLAN tunnel address."""
    return f"vxlan-tunnel-addr-{hostname}" if fam is V4 else f"vxlan-v6-tunnel-addr-{hostname}"


def tunnel_mac(hostname: str, fam: Family) -> str:
    """A locally administered unicast MAC (first octet x2/x6/xA/xE) derived from the host and family."""
    digest = bytearray(hashlib.sha256(f"{hostname}/{fam.key}/vxlan".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def vxlan_pools(pools: list[PoolView], fam: Family, labels: Mapping[str, str]) -> list[PoolView]:
    """The pools of `fam` that give this node a tunnel address (disabled ones keep an existing one)."""
    return [p for p in pools if p.family is fam and p.vxlan_mode != "Never"
            and USE_TUNNEL in p.allowed_uses and p.matches_node(labels)]


def reconcile(ds: Datastore, hostname: str) -> dict[str, str]:
    """Bring Node `hostname`'s tunnel fields in line with the pools; returns the fields it holds then
    ({} when the Node does not exist)."""
    ipam = Ipam(ds)
    store = IpamStore(ds)
    resources = ResourceStore(ds)
    key = kind_info("Node").key(hostname)
    for attempt in range(1, _ATTEMPTS + 1):
        kv = ds.get(key)
        if kv is None:
            return {}
        wire: dict[str, Any] = dict(kv.value)
        labels = {str(k): str(v) for k, v in ((wire.get("metadata") or {}).get("labels") or {}).items()}
        spec = dict(wire.get("spec") or {})
        pools = store.pools()
        for fam in FAMILIES:
            _reconcile_family(ipam, hostname, fam, vxlan_pools(pools, fam, labels), spec)
        fields = {k: str(v) for k, v in spec.items() if k in (*ADDRESS_FIELD.values(), *MAC_FIELD.values())}
        if spec == (wire.get("spec") or {}):
            return fields
        wire["spec"] = spec
        wire["metadata"] = {**(wire.get("metadata") or {}), "resourceVersion": str(kv.mod_revision)}
        try:
            resources.update(parse_resource(wire, source=f"Node {hostname}"))
        except (Conflict, AlreadyExists, NotFound) as exc:
            log.info("tunnel address write raced another writer; retrying host=%s attempt=%d error=%s",
                     hostname, attempt, exc)
            continue
        log.info("vxlan tunnel addresses host=%s fields=%s", hostname, fields)
        return fields
    raise Conflict(f"Node {hostname}: tunnel addresses not written after {_ATTEMPTS} concurrent changes")


def _reconcile_family(ipam: Ipam, hostname: str, fam: Family, pools: list[PoolView],
                      spec: dict[str, Any]) -> None:
    handle = handle_for(hostname, fam)
    current = spec.get(ADDRESS_FIELD[fam])
    if not pools:
        if current is not None or ipam.ips_by_handle(handle):
            released = ipam.release_by_handle(handle)
            log.info("vxlan tunnel address released host=%s family=%s addresses=%s (no %s VXLAN pool "
                     "serves this node)", hostname, fam.name, [str(a) for a in released], fam.name)
        spec.pop(ADDRESS_FIELD[fam], None)
        spec.pop(MAC_FIELD[fam], None)
        return
    if current is None or not _still_good(ipam, str(current), handle, pools):
        ipam.release_by_handle(handle)
        spec.pop(ADDRESS_FIELD[fam], None)
        enabled = [p.name for p in pools if not p.disabled]
        if not enabled:
            log.warning("no enabled %s VXLAN pool to allocate a tunnel address from host=%s",
                        fam.name, hostname)
            return
        attrs = {"node": hostname, "type": ATTRIBUTE_TYPE}
        result = ipam.auto_assign(1 if fam is V4 else 0, 0 if fam is V4 else 1, handle, hostname, attrs,
                                  pools={fam: enabled}, use=USE_TUNNEL)
        chosen = (result.v4 or result.v6)[0]
        spec[ADDRESS_FIELD[fam]] = str(chosen.ip)
        log.info("vxlan tunnel address allocated host=%s family=%s address=%s pool-block=%s", hostname,
                 fam.name, chosen.ip, chosen.network)
    if not spec.get(MAC_FIELD[fam]):
        spec[MAC_FIELD[fam]] = tunnel_mac(hostname, fam)


def _still_good(ipam: Ipam, address: str, handle: str, pools: list[PoolView]) -> bool:
    try:
        ip = family_of(address).address(address)
    except ValueError:
        return False
    if not any(address_in(ip, p.cidr) for p in pools):
        return False
    held = ipam.get_assignment(ip)
    return held is not None and held.handle == handle


class TunnelAddressKeeper:
    """Keeps this host's tunnel addresses right while the node service runs (see the module
    docstring): `start()`, `stop()`; `fields` is what the Node held after the last reconcile."""

    def __init__(self, ds: Datastore, hostname: str, *, retry_max: float = 10.0) -> None:
        self._ds = ds
        self._host = hostname
        self._retry_max = retry_max
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._in_sync = False
        self.fields: dict[str, str] = {}
        self.error: str | None = None
        prefixes = [kind_info("IPPool").prefix, kind_info("Node").key(hostname)]
        self._syncer = sync.Syncer(ds, prefixes, self._on_event, backoff_max=5.0)
        self._thread = threading.Thread(target=self._run, name="tunnel-addresses", daemon=True)

    def _on_event(self, event: sync.SyncEvent) -> None:
        if isinstance(event, sync.InSync):
            self._in_sync = True
        if self._in_sync and not isinstance(event, sync.Status):
            self._wake.set()

    def start(self) -> None:
        self._thread.start()
        self._syncer.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._syncer.stop(timeout=5)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                self.fields = reconcile(self._ds, self._host)
                self.error = None
                delay = 0.5
            except (DatastoreUnavailable, TortieError) as exc:
                self.error = str(exc)
                log.warning("vxlan tunnel addresses not reconciled; retrying in %.1fs host=%s error=%s",
                            delay, self._host, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, self._retry_max)
                self._wake.set()
