"""Verbs of the `tortie-ipam` CNI plugin (entry point: `tortie.cni.main`).

ADD assigns one address per enabled family (ipam.assign_ipv4 default true, assign_ipv6 default false)
under handle `<network>.<containerID>` and returns them as single-address interfaces (/32, /128):
tortie routes each workload address on its own. DEL releases the handle (idempotent). CHECK verifies
that the prevResult's addresses are still assigned to the handle (code 102 otherwise). STATUS fails
with code 50 when the datastore is unreachable or no pool can serve the config. GC releases this
node's handles of the network whose containers are not valid attachments.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from tortie.cni import ipam_core
from tortie.cni.errors import CHECK_FAILED, INVALID_NETWORK_CONFIG, PLUGIN_NOT_AVAILABLE, CniError
from tortie.cni.naming import request_identity
from tortie.cni.netconf import NetConf, resolve_nodename
from tortie.cni.request import CniRequest
from tortie.cni.result import CniResult, IPConfig, from_wire
from tortie.cni.runner import Handler, verb_handlers
from tortie.common.errors import DatastoreUnavailable
from tortie.datastore.api import Datastore


@dataclass
class IpamDeps:
    open_datastore: Callable[[str | None], Datastore] = ipam_core.open_default_datastore
    keep_open: bool = False  # the opener lends long-lived stores (the node's CNI service): never close


class TortieIpamPlugin:
    def __init__(self, deps: IpamDeps | None = None) -> None:
        self.deps = deps or IpamDeps()

    def handlers(self) -> dict[str, Handler]:
        return verb_handlers(self)

    def _datastore(self, conf: NetConf) -> AbstractContextManager[Datastore]:
        return ipam_core.opened(self.deps.open_datastore, conf.datastore, close=not self.deps.keep_open)

    def add(self, req: CniRequest, conf: NetConf) -> CniResult:
        ident = request_identity(req, conf)
        with self._datastore(conf) as ds:
            addresses = ipam_core.assign(ds, conf.ipam, ident, conf.ipam_lock_file)
        return CniResult(ips=tuple(IPConfig(address=a) for a in addresses))

    def delete(self, req: CniRequest, conf: NetConf) -> None:
        ident = request_identity(req, conf)
        with self._datastore(conf) as ds:
            ipam_core.release(ds, [ident.handle], conf.ipam_lock_file)

    def check(self, req: CniRequest, conf: NetConf) -> None:
        if not conf.prev_result:
            raise CniError(INVALID_NETWORK_CONFIG, "CHECK needs prevResult", "the runtime sent no prevResult")
        ident = request_identity(req, conf)
        with self._datastore(conf) as ds:
            held = set(ipam_core.held(ds, ident.handle))
        missing = [
            str(ip.address.ip) for ip in from_wire(conf.prev_result).ips if str(ip.address.ip) not in held
        ]
        if missing:
            raise CniError(
                CHECK_FAILED,
                "addresses are no longer assigned",
                f"{', '.join(missing)} not assigned to handle {ident.handle}",
            )

    def status(self, req: CniRequest, conf: NetConf) -> None:
        try:
            with self._datastore(conf) as ds:
                ds.current_revision()
                reason = ipam_core.pools_ready(ds, conf.ipam)
        except DatastoreUnavailable as e:
            raise CniError(PLUGIN_NOT_AVAILABLE, "the datastore is unreachable", str(e)) from e
        if reason:
            raise CniError(PLUGIN_NOT_AVAILABLE, "no usable IP pool", reason)

    def gc(self, req: CniRequest, conf: NetConf) -> None:
        if conf.valid_attachments is None:
            raise CniError(
                INVALID_NETWORK_CONFIG,
                "GC needs cni.dev/valid-attachments",
                "the runtime sent no list of valid attachments",
            )
        with self._datastore(conf) as ds:
            ipam_core.gc(ds, conf.name, resolve_nodename(conf), conf.valid_attachments, conf.ipam_lock_file)
