"""IPAM for CNI: what `tortie-ipam` does, callable in-process by the `tortie` plugin too.

Inputs: a `Datastore`, the network config's `ipam` section and the workload identity. Outputs:
single-address interfaces (/32, /128) — IPAM hands out block-masked addresses (10.0.0.5/26, Calico's
convention) and CNI narrows them (reference §5.2, §5.6).

* Handle `<network>.<containerID>`; attributes node, namespace, pod (= the workload: the pod name, or
  the container ID for plain CNI) so `tortie ipam check` can match allocations with endpoints, and
  timestamp (when it was assigned: the IPAM garbage collector's grace period counts from it).
* A host-wide advisory lock (`ipam_lock_file`, flock(2)) serialises this host's assignments and
  releases, as Calico's plugin does: parallel ADDs on one host would otherwise race for the same
  block and burn compare-and-swap retries. Different hosts (or an empty lock path) do not share it.
* `release` is idempotent; `gc` releases the handles of this network held on this node by containers
  not in the runtime's list of valid attachments.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from tortie.cni.naming import WorkloadIdentity
from tortie.cni.netconf import Attachment, IpamConf, attachment_valid
from tortie.common.ipfamily import FAMILIES, Family, family_of
from tortie.datastore.api import Datastore

if TYPE_CHECKING:
    from tortie.ipam import Ipam

log = logging.getLogger(__name__)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def open_default_datastore(url: str | None) -> Datastore:
    """The datastore a network config names (imported on use: DEL paths that never open one skip it)."""
    from tortie.datastore.url import open_datastore

    return open_datastore(url)


@contextlib.contextmanager
def opened(
    opener: Callable[[str | None], Datastore], url: str | None, *, close: bool = True
) -> Iterator[Datastore]:
    """Both plugins' datastore for one call, closed after it (a failing close is only logged) unless
    the opener lends a long-lived one (`close=False`: the node's CNI service keeps its stores warm)."""
    ds = opener(url)
    try:
        yield ds
    finally:
        if close:
            try:
                ds.close()
            except Exception:
                log.debug("closing the datastore failed", exc_info=True)


@contextlib.contextmanager
def host_lock(path: str) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if needed); no lock when `path` is empty."""
    if not path:
        yield
        return
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_last_ipam: tuple[Datastore, Ipam] | None = None


def new_ipam(ds: Datastore) -> Ipam:
    """An `Ipam` over `ds`; the same one again while `ds` is the datastore of the previous call, so a
    long-lived store (the node's CNI service) keeps the allocator's hint of the block it last
    allocated from: an ADD on a host with many full blocks then reads one block, not all of them."""
    global _last_ipam
    last = _last_ipam
    if last is not None and last[0] is ds:
        return last[1]
    from tortie.ipam import Ipam

    ipam = Ipam(ds)
    _last_ipam = (ds, ipam)
    return ipam


def single(iface: IPInterface) -> IPInterface:
    """Narrow a block-masked address to a single-address interface."""
    return ipaddress.ip_interface(f"{iface.ip}/{iface.ip.max_prefixlen}")


def assign(
    ds: Datastore, conf: IpamConf, ident: WorkloadIdentity, lock_file: str, *, replace: bool = False
) -> list[IPInterface]:
    """Allocate the configured families for `ident` (all or nothing). With `replace`, whatever the
    handle still holds (a repeated ADD, or one that died half way) is released first, under the same
    lock, so the handle ends up holding exactly the new addresses."""
    ipam = new_ipam(ds)  # import (tens of ms) before taking the lock, which only guards datastore work
    from tortie.model.ipam_records import format_timestamp

    # `timestamp` (Calico's attribute): how old an allocation is, for the IPAM garbage collector's grace
    attrs = {
        "node": ident.node,
        "namespace": ident.namespace,
        "pod": ident.workload,
        "timestamp": format_timestamp(time.time()),
    }
    with host_lock(lock_file):
        if replace:
            stale = ipam.release_by_handle(ident.handle)
            if stale:
                log.warning(
                    "released what a previous ADD of this container left handle=%s ips=%s",
                    ident.handle,
                    ",".join(map(str, stale)),
                )
        result = ipam.auto_assign(
            1 if conf.assign_ipv4 else 0,
            1 if conf.assign_ipv6 else 0,
            handle=ident.handle,
            host=ident.node,
            attrs=attrs,
            pools=conf.pools_by_family() or None,
        )
    got = [single(a) for a in (*result.v4, *result.v6)]
    log.info("assigned addresses handle=%s node=%s ips=%s", ident.handle, ident.node, ",".join(map(str, got)))
    return got


def release(ds: Datastore, handles: Sequence[str], lock_file: str) -> list[str]:
    """Release every address of each handle; unknown handles are fine. Returns what was released."""
    released: list[str] = []
    ipam = new_ipam(ds)
    with host_lock(lock_file):
        for handle in handles:
            released += [str(ip) for ip in ipam.release_by_handle(handle)]
    if released:
        log.info("released addresses handles=%s ips=%s", ",".join(handles), ",".join(released))
    return released


def held(ds: Datastore, handle: str) -> list[str]:
    return [str(ip) for ip in new_ipam(ds).ips_by_handle(handle)]


def node_handles(ds: Datastore, network: str, node: str) -> dict[str, str]:
    """Handles `<network>.<containerID>` with an address assigned on `node`: {handle: containerID}."""
    from tortie.ipam.keys import HANDLE_ROOT

    ipam = new_ipam(ds)
    kvs, _rev = ds.list(HANDLE_ROOT)
    out: dict[str, str] = {}
    prefix = network + "."
    for kv in kvs:
        handle = kv.key[len(HANDLE_ROOT) :]
        if not handle.startswith(prefix):
            continue
        for ip in ipam.ips_by_handle(handle):
            attrs = ipam.get_assignment_attrs(ip) or {}
            if attrs.get("node") == node:
                out[handle] = handle[len(prefix) :]
                break
    return out


def gc(ds: Datastore, network: str, node: str, valid: Sequence[Attachment], lock_file: str) -> list[str]:
    """Release this node's handles of `network` whose container is not a valid attachment."""
    stale = [
        h for h, cid in node_handles(ds, network, node).items() if not attachment_valid(valid, cid, None)
    ]
    if stale:
        release(ds, stale, lock_file)
        log.info("GC released stale handles network=%s node=%s handles=%s", network, node, ",".join(stale))
    return stale


def pools_ready(ds: Datastore, conf: IpamConf) -> str | None:
    """None when an enabled IPPool can serve each configured family (among the pools named for that
    family, if any), else the reason it cannot."""
    from tortie.model.kinds import kind_info

    kvs, _rev = ds.list(kind_info("IPPool").list_prefix())
    named = conf.pools_by_family()
    usable: dict[Family, list[str]] = {fam: [] for fam in FAMILIES}
    for kv in kvs:
        spec = kv.value.get("spec") or {}
        name = str((kv.value.get("metadata") or {}).get("name") or kv.key.rsplit("/", 1)[-1])
        if spec.get("disabled") or "Workload" not in (spec.get("allowedUses") or ["Workload", "Tunnel"]):
            continue
        try:
            net = ipaddress.ip_network(str(spec.get("cidr")), strict=False)
        except ValueError:
            continue
        fam = family_of(net)
        if fam in named and name not in named[fam] and str(net) not in named[fam]:
            continue
        usable[fam].append(name)
    missing = [fam for fam in conf.wanted() if not usable[fam]]
    if missing:
        which = " and ".join(fam.name for fam in missing)
        among = f" among {', '.join(conf.pools)}" if conf.pools else ""
        return f"no enabled IPPool for {which} workloads{among}"
    return None
