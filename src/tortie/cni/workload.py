"""The `tortie` CNI plugin's verbs: ADD, DEL, CHECK, STATUS, GC for one workload interface.

Inputs: a parsed `CniRequest` and `NetConf`, plus the seams in `Deps` (datastore opener, kernel
plumber, delegate runner) so unit tests run the same code against fakes. Outputs: a `CniResult` for
ADD; datastore and kernel changes. Reference §7 (Calico's plugin), §3.4 (plumbing), §5.4-5.6 (IPAM).

ADD first validates everything it can without side effects (including the endpoint it will write, with
placeholder addresses), then runs with an undo log (any failure runs the undos in reverse, then reports
the error):

    1. IPAM assign (handle <network>.<containerID>)          undo: release the handle
    2. veth + addresses + routes + sysctls (plumber.add)     undo: delete the host end
    3. default Profile of the network, if missing             (kept: shared by all endpoints)
    4. WorkloadEndpoint create/replace                       undo: restore the previous object

DEL removes the host end (its peer goes with it), the endpoint if this container owns it, and the
addresses; anything already gone is success. Kernel cleanup comes first, so a datastore outage still
unwires the container; the runtime retries the DEL on the "try again" error.
CHECK compares kernel, endpoint and IPAM with prevResult and fails (code 102) listing every problem.
STATUS fails with code 50 when the datastore is unreachable or no IPPool can serve the config.
GC removes endpoints, host interfaces and addresses this node holds for containers that are not in
`cni.dev/valid-attachments`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from tortie.cni import endpoint, ipam_core
from tortie.cni.errors import (
    CHECK_FAILED,
    INVALID_ENVIRONMENT,
    INVALID_NETWORK_CONFIG,
    PLUGIN_NOT_AVAILABLE,
    UNKNOWN_CONTAINER,
    CniError,
)
from tortie.cni.naming import WorkloadIdentity, request_identity
from tortie.cni.netconf import IPAM_TYPE, NetConf, attachment_valid, resolve_mtu, resolve_nodename
from tortie.cni.plumbing import (
    GATEWAY_V4,
    GATEWAY_V6,
    Attachment,
    PlumbedInterface,
    VethSpec,
    WorkloadPlumber,
)
from tortie.cni.request import CniRequest
from tortie.cni.result import CniResult, Dns, Interface, IPConfig, RouteSpec, from_wire
from tortie.cni.runner import Handler, verb_handlers
from tortie.common.errors import DatastoreUnavailable
from tortie.datastore.api import Datastore

if TYPE_CHECKING:
    from tortie.cni.result import IPInterface

log = logging.getLogger(__name__)
T = TypeVar("T")

DelegateRunner = Callable[
    [str, str, Mapping[str, str], tuple[str, ...], Mapping[str, Any]], "dict[str, Any] | None"
]


def _real_plumber() -> WorkloadPlumber:
    from tortie.cni.netlink_plumber import NetlinkPlumber

    return NetlinkPlumber()


def _run_delegate(
    plugin_type: str, command: str, env: Mapping[str, str], path: tuple[str, ...], conf: Mapping[str, Any]
) -> dict[str, Any] | None:
    from tortie.cni.delegate import run_delegate

    return run_delegate(plugin_type, command, env, path, conf)


@dataclass
class Deps:
    open_datastore: Callable[[str | None], Datastore] = ipam_core.open_default_datastore
    plumber_factory: Callable[[], WorkloadPlumber] = _real_plumber
    delegate: DelegateRunner = _run_delegate
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    keep_open: bool = False  # the opener lends long-lived stores (the node's CNI service): never close


def _dns(conf: NetConf) -> Dns:
    raw = conf.raw.get("dns")
    if not isinstance(raw, dict):
        return Dns()

    def strings(key: str) -> tuple[str, ...]:
        value = raw.get(key) or []
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    return Dns(strings("nameservers"), str(raw.get("domain") or ""), strings("search"), strings("options"))


def build_result(
    ident: WorkloadIdentity,
    netns: str,
    plumbed: PlumbedInterface,
    addresses: list[IPInterface],
    conf: NetConf,
) -> CniResult:
    interfaces = (
        Interface(name=plumbed.host_ifname, mac=plumbed.host_mac),
        Interface(name=plumbed.container_ifname, mac=plumbed.container_mac, sandbox=netns, mtu=plumbed.mtu),
    )
    ips = tuple(IPConfig(address=a, interface=1) for a in addresses)
    routes: list[RouteSpec] = []
    if any(a.version == 4 for a in addresses):
        routes.append(RouteSpec(ipaddress.ip_network("0.0.0.0/0"), GATEWAY_V4))
    if any(a.version == 6 for a in addresses):
        routes.append(RouteSpec(ipaddress.ip_network("::/0"), GATEWAY_V6))
    return CniResult(interfaces, ips, tuple(routes), _dns(conf))


class _InBackground(Generic[T]):
    """Run `fn` on a thread at once; `wait()` joins it and returns its result or raises its error."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cni-unwire", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._fn()
        except BaseException as e:
            self._error = e

    def wait(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return cast(T, self._result)


class TortiePlugin:
    """The verbs of the `tortie` plugin; `handlers()` feeds `tortie.cni.runner.run`."""

    def __init__(self, deps: Deps | None = None) -> None:
        self.deps = deps or Deps()

    def handlers(self) -> dict[str, Handler]:
        return verb_handlers(self)

    # ------------------------------------------------------------------ helpers

    def _datastore(self, conf: NetConf) -> AbstractContextManager[Datastore]:
        return ipam_core.opened(self.deps.open_datastore, conf.datastore, close=not self.deps.keep_open)

    def _tortie_ipam(self, conf: NetConf) -> bool:
        return conf.ipam.type == IPAM_TYPE

    # ------------------------------------------------------------------ ADD

    def add(self, req: CniRequest, conf: NetConf) -> CniResult:
        ident = request_identity(req, conf)
        if not os.path.exists(req.netns):
            raise CniError(UNKNOWN_CONTAINER, "container network namespace not found", req.netns)
        mtu = resolve_mtu(conf)
        profiles = endpoint.default_profiles(conf.name, conf.profiles, ident)

        def endpoint_data(addresses: list[IPInterface], mac: str) -> endpoint.EndpointData:
            return endpoint.EndpointData(
                identity=ident,
                ip_networks=tuple(str(a) for a in addresses),
                host_ifname=ident.host_ifname,
                mac=mac,
                labels=conf.labels,
                profiles=profiles,
                ports=conf.ports,
            )

        endpoint.validate_early(endpoint_data([], ""))
        plumber = self.deps.plumber_factory()
        attached = plumber.attachment(ident.host_ifname, req.netns)
        undo: list[tuple[str, Callable[[], object]]] = []
        with self._datastore(conf) as ds:
            self._forget_previous(ds, req, conf, ident, attached)
            try:
                addresses = self._assign(ds, req, conf, ident, undo)
                spec = VethSpec(
                    req.netns, req.ifname, ident.host_ifname, mtu, tuple(addresses), conf.route_protocol
                )
                plumbed = plumber.add(spec)
                undo.append(("delete the host interface", lambda: plumber.remove(spec.host_ifname)))
                if conf.profiles is None and conf.name in profiles:
                    endpoint.ensure_network_profile(ds, conf.name)
                wep = endpoint.build_wep(endpoint_data(addresses, plumbed.container_mac))
                previous = endpoint.write_wep(ds, wep)
                undo.append(
                    (
                        "restore the endpoint",
                        lambda: endpoint.restore_wep(ds, ident.namespace, ident.wep_name, previous),
                    )
                )
                if conf.policy_setup_timeout > 0:
                    self._wait_for_policy(conf, ident, plumbed, addresses)
            except BaseException as exc:
                log.warning(
                    "ADD failed; rolling back container=%s steps=%d error=%s",
                    req.container_id,
                    len(undo),
                    exc,
                )
                for what, action in reversed(undo):
                    try:
                        action()
                    except Exception:
                        log.error(
                            "rollback step failed step=%r container=%s", what, req.container_id, exc_info=True
                        )
                raise
        log.info(
            "ADD done container=%s wep=%s/%s ifname=%s ips=%s",
            req.container_id,
            ident.namespace,
            ident.wep_name,
            ident.host_ifname,
            ",".join(map(str, addresses)),
        )
        return build_result(ident, req.netns, plumbed, addresses, conf)

    @staticmethod
    def _wait_for_policy(
        conf: NetConf, ident: WorkloadIdentity, plumbed: PlumbedInterface, addresses: list[IPInterface]
    ) -> None:
        """Step 5: the agent has programmed this endpoint's policy and routes (docs/reference/cni.md,
        "Policy before traffic"), else CniError 11 and the undo of steps 1-4."""
        from tortie.cni.policy_wait import wait_for_endpoint
        from tortie.dataplane.endpoint_status import record

        v4 = [str(a) for a in addresses if a.version == 4]
        v6 = [str(a) for a in addresses if a.version == 6]
        wanted = record(ident.host_ifname, plumbed.container_mac, v4, v6)
        waited = wait_for_endpoint(
            conf.endpoint_status_dir, ident.namespace, ident.wep_name, wanted, conf.policy_setup_timeout
        )
        log.debug("agent programmed the endpoint wep=%s/%s waited=%.3fs", ident.namespace, ident.wep_name,
                  waited)

    @staticmethod
    def _forget_previous(
        ds: Datastore, req: CniRequest, conf: NetConf, ident: WorkloadIdentity, attached: Attachment
    ) -> None:
        """Before an ADD: refuse a container ID that is attached in another live namespace; forget the
        endpoint of an earlier attachment of this same container (a repeated ADD, or one whose
        response was lost), whose addresses `_assign` releases and whose host end `plumber.add`
        replaces. An endpoint of another container (a newer Kubernetes sandbox of the pod: same
        names, new ID) is replaced by the write and restored if this ADD fails."""
        kv = endpoint.read_wep(ds, ident.namespace, ident.wep_name)
        if kv is None or endpoint.container_of(kv.value) != req.container_id:
            return
        if attached == "elsewhere":
            raise CniError(
                INVALID_ENVIRONMENT,
                "container ID already attached in another network namespace",
                f"container {req.container_id} is attached to network {conf.name} (host interface "
                f"{ident.host_ifname}) with its interface in a network namespace other than {req.netns}; "
                "DEL that attachment first, or use a new container ID",
            )
        log.warning(
            "ADD replaces an earlier attachment of this container container=%s wep=%s/%s",
            req.container_id,
            ident.namespace,
            ident.wep_name,
        )
        endpoint.delete_wep_if_owned(ds, ident.namespace, ident.wep_name, req.container_id)

    def _assign(
        self,
        ds: Datastore,
        req: CniRequest,
        conf: NetConf,
        ident: WorkloadIdentity,
        undo: list[tuple[str, Callable[[], object]]],
    ) -> list[IPInterface]:
        if self._tortie_ipam(conf):
            undo.append(
                ("release the addresses", lambda: ipam_core.release(ds, [ident.handle], conf.ipam_lock_file))
            )
            return ipam_core.assign(ds, conf.ipam, ident, conf.ipam_lock_file, replace=True)
        env = self._delegate_env(req)
        out = self.deps.delegate(conf.ipam.type, "ADD", env, req.path, conf.raw)
        undo.append(
            (
                "release the delegated addresses",
                lambda: self.deps.delegate(conf.ipam.type, "DEL", env, req.path, conf.raw),
            )
        )
        ips = from_wire(out or {}).ips
        if not ips:
            raise CniError(INVALID_NETWORK_CONFIG, f"IPAM plugin {conf.ipam.type} returned no addresses")
        return [ipam_core.single(ip.address) for ip in ips]

    def _delegate_env(self, req: CniRequest) -> dict[str, str]:
        env = dict(self.deps.env)
        env.update(
            {
                "CNI_CONTAINERID": req.container_id,
                "CNI_NETNS": req.netns,
                "CNI_IFNAME": req.ifname,
                "CNI_PATH": ":".join(req.path),
            }
        )
        return env

    # ------------------------------------------------------------------ DEL

    def delete(self, req: CniRequest, conf: NetConf) -> None:
        ident = request_identity(req, conf)
        host_ifnames = {ident.host_ifname}
        if conf.prev_result:
            for iface in from_wire(conf.prev_result).interfaces:
                if not iface.sandbox and iface.name.startswith(conf.interface_prefix):
                    host_ifnames.add(iface.name)
        plumber = self.deps.plumber_factory()
        # A host end whose peer lives in another live namespace is not this call's to remove: a newer
        # sandbox of the same pod, or this container ID attached elsewhere (the ADD in `netns` failed).
        elsewhere = bool(req.netns) and plumber.attachment(ident.host_ifname, req.netns) == "elsewhere"
        # Deleting a veth blocks in the kernel for tens of milliseconds (an RCU grace period); do it on
        # a thread while this one opens the datastore and loads IPAM (CPU-bound), then wait for it.
        unwire = _InBackground(
            lambda: [] if elsewhere else [name for name in sorted(host_ifnames) if plumber.remove(name)]
        )
        try:
            with self._datastore(conf) as ds:
                kv = endpoint.read_wep(ds, ident.namespace, ident.wep_name)
                if elsewhere and kv is not None and endpoint.container_of(kv.value) == req.container_id:
                    log.info(
                        "DEL leaves the attachment of this container in another namespace alone "
                        "container=%s netns=%s ifname=%s",
                        req.container_id,
                        req.netns,
                        ident.host_ifname,
                    )
                    return
                removed = None
                if not elsewhere:
                    removed = endpoint.delete_wep_if_owned(
                        ds, ident.namespace, ident.wep_name, req.container_id
                    )
                if removed is not None:
                    stored_if = (removed.value.get("spec") or {}).get("interfaceName")
                    if isinstance(stored_if, str) and stored_if not in host_ifnames:
                        unwire.wait()
                        plumber.remove(stored_if)
                if self._tortie_ipam(conf):
                    ipam_core.release(ds, [ident.handle], conf.ipam_lock_file)
        finally:
            for name in unwire.wait():
                log.info("DEL removed host interface ifname=%s container=%s", name, req.container_id)
        if not self._tortie_ipam(conf):
            self.deps.delegate(conf.ipam.type, "DEL", self._delegate_env(req), req.path, conf.raw)
        log.info("DEL done container=%s wep=%s/%s", req.container_id, ident.namespace, ident.wep_name)

    # ------------------------------------------------------------------ CHECK

    def check(self, req: CniRequest, conf: NetConf) -> None:
        if not conf.prev_result:
            raise CniError(INVALID_NETWORK_CONFIG, "CHECK needs prevResult", "the runtime sent no prevResult")
        prev = from_wire(conf.prev_result)
        ident = request_identity(req, conf)
        host_ifname = next((i.name for i in prev.interfaces if not i.sandbox), ident.host_ifname)
        addresses = tuple(ipam_core.single(ip.address) for ip in prev.ips)
        if not os.path.exists(req.netns):
            raise CniError(UNKNOWN_CONTAINER, "container network namespace not found", req.netns)
        spec = VethSpec(req.netns, req.ifname, host_ifname, resolve_mtu(conf), addresses, conf.route_protocol)
        problems = self.deps.plumber_factory().check(spec)
        with self._datastore(conf) as ds:
            problems += self._check_endpoint(ds, ident, host_ifname, addresses)
            if self._tortie_ipam(conf):
                held = set(ipam_core.held(ds, ident.handle))
                for a in addresses:
                    if str(a.ip) not in held:
                        problems.append(f"IPAM: {a.ip} is not assigned to handle {ident.handle}")
        if not self._tortie_ipam(conf):
            self.deps.delegate(conf.ipam.type, "CHECK", self._delegate_env(req), req.path, conf.raw)
        if problems:
            raise CniError(CHECK_FAILED, "the container's networking is not as expected", "; ".join(problems))

    @staticmethod
    def _check_endpoint(
        ds: Datastore, ident: WorkloadIdentity, host_ifname: str, addresses: tuple[IPInterface, ...]
    ) -> list[str]:
        kv = endpoint.read_wep(ds, ident.namespace, ident.wep_name)
        where = f"WorkloadEndpoint {ident.namespace}/{ident.wep_name}"
        if kv is None:
            return [f"{where} does not exist"]
        problems = []
        from tortie.model import ValidationError

        try:
            endpoint.decode_wep(ds, kv)
        except ValidationError as e:
            problems.append(f"{where} is not valid: {e}")
        spec = kv.value.get("spec") or {}
        if endpoint.container_of(kv.value) not in (None, ident.container_id):
            problems.append(f"{where} belongs to container {endpoint.container_of(kv.value)}")
        if spec.get("node") != ident.node:
            problems.append(f"{where} is on node {spec.get('node')!r}, expected {ident.node!r}")
        if spec.get("interfaceName") != host_ifname:
            problems.append(
                f"{where} names interface {spec.get('interfaceName')!r}, expected {host_ifname!r}"
            )
        want = sorted(str(a) for a in addresses)
        have = sorted(str(ipaddress.ip_interface(n)) for n in spec.get("ipNetworks") or [])
        if have != want:
            problems.append(f"{where} has ipNetworks {have}, expected {want}")
        return problems

    # ------------------------------------------------------------------ STATUS

    def status(self, req: CniRequest, conf: NetConf) -> None:
        try:
            with self._datastore(conf) as ds:
                ds.current_revision()
                if self._tortie_ipam(conf):
                    reason = ipam_core.pools_ready(ds, conf.ipam)
                    if reason:
                        raise CniError(PLUGIN_NOT_AVAILABLE, "no usable IP pool", reason)
        except DatastoreUnavailable as e:
            raise CniError(PLUGIN_NOT_AVAILABLE, "the datastore is unreachable", str(e)) from e
        if not self._tortie_ipam(conf):
            self.deps.delegate(conf.ipam.type, "STATUS", dict(self.deps.env), req.path, conf.raw)

    # ------------------------------------------------------------------ GC

    def gc(self, req: CniRequest, conf: NetConf) -> None:
        if conf.valid_attachments is None:
            raise CniError(
                INVALID_NETWORK_CONFIG,
                "GC needs cni.dev/valid-attachments",
                "the runtime sent no list of valid attachments",
            )
        node = resolve_nodename(conf)
        valid = conf.valid_attachments
        plumber = self.deps.plumber_factory()
        with self._datastore(conf) as ds:
            for kv in endpoint.node_weps(ds, node, conf.name):
                cid = endpoint.container_of(kv.value)
                spec = kv.value.get("spec") or {}
                if not cid or attachment_valid(valid, cid, spec.get("endpoint")):
                    continue
                ifname = spec.get("interfaceName")
                if isinstance(ifname, str) and ifname.startswith(conf.interface_prefix):
                    plumber.remove(ifname)
                meta = kv.value.get("metadata") or {}
                endpoint.delete_wep_if_owned(ds, str(meta.get("namespace")), str(meta.get("name")), cid)
                log.info(
                    "GC removed stale endpoint wep=%s/%s container=%s",
                    meta.get("namespace"),
                    meta.get("name"),
                    cid,
                )
            if self._tortie_ipam(conf):
                ipam_core.gc(ds, conf.name, node, valid, conf.ipam_lock_file)
        if not self._tortie_ipam(conf):
            self.deps.delegate(conf.ipam.type, "GC", dict(self.deps.env), req.path, conf.raw)
