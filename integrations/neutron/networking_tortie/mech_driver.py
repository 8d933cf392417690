"""The ML2 mechanism driver `tortie` (entry point neutron.ml2.mechanism_drivers: tortie).

    Neutron API worker                          tortie datastore              compute host
    ------------------                          ----------------              ------------
    bind_port (host's agent alive?) -> vif_type tap, local/flat segments only
    *_port_postcommit  --translate_port-->      WorkloadEndpoint   --watch-->  tortie agent: /32 route,
    *_subnet_postcommit --translate_subnet-->   IPPool + DHCP record           policy; tortie dhcp
    SG / SG-rule callbacks --translate_sg-->    NetworkPolicy                  (dnsmasq on the taps)
    router callbacks --> IPPool natOutgoing

    elected master only (Elector, lease in the datastore):
        resync on start + every resync_interval: Neutron DB vs datastore, CAS repairs
        agent status keys --StatusWatcher--> port status ACTIVE/DOWN, agent heartbeats

Postcommit writes are made by whichever process served the API call (compare-and-swap with
bounded retries, `writer`); a datastore failure there is logged and never fails the Neutron API
call (Neutron's DB is the source of truth; the master's resync repairs the gap). Periodic work
(resync, status flow-back, cluster settings) runs only in the elected master.

Background threads are per process (`start_background`, idempotent): they start on Neutron's
PROCESS AFTER_INIT event in each worker, so nothing started before a fork is shared. The datastore
client is also opened per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from tortie.agent.status import status_key
from tortie.common.errors import NotFound, TortieError
from tortie.datastore.api import Datastore
from tortie.datastore.url import open_datastore
from tortie.dhcp.records import subnet_key
from tortie.model import Resource, ValidationError, parse_resource
from tortie.model.kinds import kind_info

from networking_tortie import naming, neutron_view
from networking_tortie.cluster_config import FELIX_DEFAULT, required_felix_config
from networking_tortie.config import TortieConfig
from networking_tortie.desired import desired_state, port_security_profile
from networking_tortie.election import Elector
from networking_tortie.resync import Desired, Resyncer, ResyncReport
from networking_tortie.status import StatusWatcher
from networking_tortie.translate_port import is_endpoint_port, port_to_endpoint
from networking_tortie.translate_sg import security_group_to_policy
from networking_tortie.translate_subnet import subnet_to_dhcp, subnet_to_pool
from networking_tortie.writer import DatastoreWriter

log = logging.getLogger(__name__)

BINDABLE_NETWORK_TYPES = ("local", "flat")
AGENT_TYPE = "tortie agent"
AGENT_BINARY = "tortie-agent"


class TortieMechanismDriver(api.MechanismDriver):  # type: ignore[misc]
    """See the module docstring."""

    def initialize(self) -> None:
        self.conf = TortieConfig.from_oslo()
        self._lock = threading.RLock()
        self._pid: int | None = None
        self._ds: Datastore | None = None
        self._elector: Elector | None = None
        self._master_stop: threading.Event | None = None
        self._master_thread: threading.Thread | None = None
        self._status: StatusWatcher | None = None
        self.last_resync: ResyncReport | None = None
        self._subscribe()
        log.info("tortie mechanism driver initialised datastore=%s region=%s",
                 self.conf.datastore or "(default)", self.conf.region or "-")

    @property
    def connectivity(self) -> str:
        return str(portbindings.CONNECTIVITY_L3)

    # -- datastore, per process ----------------------------------------------------------------------
    def datastore(self) -> Datastore:
        with self._lock:
            if self._ds is None or self._pid != os.getpid():
                self._ds = open_datastore(self.conf.datastore)
                self._pid = os.getpid()
            return self._ds

    def writer(self) -> DatastoreWriter:
        return DatastoreWriter(self.datastore(), max_attempts=self.conf.write_attempts)

    @staticmethod
    def _core() -> Any:
        return directory.get_plugin()

    @staticmethod
    def _admin() -> Any:
        return n_context.get_admin_context()

    # -- binding -------------------------------------------------------------------------------------
    def agent_alive(self, host: str) -> bool:
        try:
            return self.datastore().get(status_key(host, self.conf.region)) is not None
        except TortieError as exc:
            log.warning("cannot read agent status host=%s error=%s", host, exc)
            return False

    def bind_port(self, context: Any) -> None:
        host = context.host
        if self.conf.require_live_agent and not self.agent_alive(host):
            log.info("not binding port=%s: no live tortie agent on host=%s", context.current["id"], host)
            return
        for segment in context.segments_to_bind:
            if segment[api.NETWORK_TYPE] in BINDABLE_NETWORK_TYPES:
                context.set_binding(segment[api.ID], portbindings.VIF_TYPE_TAP,
                                    {portbindings.CAP_PORT_FILTER: True})
                log.info("bound port=%s host=%s segment=%s", context.current["id"], host, segment[api.ID])
                return
        log.warning("not binding port=%s: tortie binds only %s segments, got %s", context.current["id"],
                    "/".join(BINDABLE_NETWORK_TYPES), [s[api.NETWORK_TYPE] for s in context.segments_to_bind])

    # -- postcommit hooks ----------------------------------------------------------------------------
    def _guard(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except (TortieError, ValidationError) as exc:
            log.error("tortie: %s failed (resync will repair): %s", what, exc)

    def create_subnet_postcommit(self, context: Any) -> None:
        self._guard("subnet create", self.sync_subnet, context.current)

    def update_subnet_postcommit(self, context: Any) -> None:
        self._guard("subnet update", self.sync_subnet, context.current)

    def delete_subnet_postcommit(self, context: Any) -> None:
        self._guard("subnet delete", self.remove_subnet, context.current)

    def create_port_postcommit(self, context: Any) -> None:
        self._guard("port create", self.sync_port, context.current, None)

    def update_port_postcommit(self, context: Any) -> None:
        self._guard("port update", self.sync_port, context.current, context.original)

    def delete_port_postcommit(self, context: Any) -> None:
        self._guard("port delete", self.remove_port, context.current)

    # -- subnets -------------------------------------------------------------------------------------
    def sync_subnet(self, subnet: Mapping[str, Any]) -> None:
        core, admin = self._core(), self._admin()
        writer = self.writer()
        record = subnet_to_dhcp(subnet, mtu=neutron_view.network_mtu(core, admin, str(subnet["network_id"])))
        writer.put_json(subnet_key(record.id, self.conf.region), record.to_json())
        snat = str(subnet["id"]) in neutron_view.snat_subnet_ids(core, admin)
        pool = subnet_to_pool(subnet, nat_outgoing=snat)
        if pool is not None:
            writer.put_resource(pool)

    def remove_subnet(self, subnet: Mapping[str, Any]) -> None:
        writer = self.writer()
        writer.delete_key(subnet_key(str(subnet["id"]), self.conf.region))
        writer.delete_resource("IPPool", naming.pool_name(str(subnet["id"])))

    def sync_all_pools(self) -> None:
        core, admin = self._core(), self._admin()
        snat = neutron_view.snat_subnet_ids(core, admin)
        writer = self.writer()
        for subnet in core.get_subnets(admin):
            pool = subnet_to_pool(subnet, nat_outgoing=str(subnet["id"]) in snat)
            if pool is not None:
                writer.put_resource(pool)

    # -- ports ---------------------------------------------------------------------------------------
    def _endpoint(self, port: Mapping[str, Any]) -> Resource | None:
        if not is_endpoint_port(port):
            return None
        facts = neutron_view.facts_for_port(self._core(), self._admin(), port, self.conf.region)
        return port_to_endpoint(port, facts)

    def _endpoint_name(self, port: Mapping[str, Any] | None) -> str | None:
        if port is None or not is_endpoint_port(port):
            return None
        return naming.endpoint_name(str(port["binding:host_id"]), str(port.get("device_id") or port["id"]),
                                    str(port["id"]))

    def sync_port(self, port: Mapping[str, Any], original: Mapping[str, Any] | None) -> None:
        """Write the port's endpoint; remove the old one when the port moved host (live migration)
        or stopped being an endpoint."""
        writer = self.writer()
        ns = naming.namespace(self.conf.region)
        endpoint = self._endpoint(port)
        if endpoint is not None:
            writer.put_resource(endpoint)
        old_name = self._endpoint_name(original)
        if old_name is not None and (endpoint is None or endpoint.metadata.name != old_name):
            writer.delete_resource("WorkloadEndpoint", old_name, ns)

    def sync_port_by_id(self, port_id: str) -> None:
        try:
            port = self._core().get_port(self._admin(), port_id)
        except Exception as exc:  # PortNotFound: deleted meanwhile (its endpoint went with it)
            log.info("port %s is gone (%s)", port_id, type(exc).__name__)
            return
        self.sync_port(port, None)

    def remove_port(self, port: Mapping[str, Any]) -> None:
        name = self._endpoint_name(port)
        if name is not None:
            self.writer().delete_resource("WorkloadEndpoint", name, naming.namespace(self.conf.region))

    # -- security groups -----------------------------------------------------------------------------
    def sync_security_group(self, sg_id: str) -> None:
        core = self._core()
        try:
            sg = core.get_security_group(self._admin(), sg_id)
        except Exception as exc:  # SecurityGroupNotFound: deleted meanwhile
            log.info("security group %s is gone (%s); removing its policy", sg_id, type(exc).__name__)
            self.remove_security_group(sg_id)
            return
        translation = security_group_to_policy(sg, region=self.conf.region)
        for skipped in translation.skipped:
            log.warning("security group %s rule %s left out: %s", sg_id, skipped.rule_id, skipped.reason)
        self.writer().put_resource(translation.policy)

    def remove_security_group(self, sg_id: str) -> None:
        self.writer().delete_resource("NetworkPolicy", naming.policy_name(sg_id),
                                      naming.namespace(self.conf.region))

    def _subscribe(self) -> None:
        for event in (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE):
            registry.subscribe(self._on_security_group, resources.SECURITY_GROUP, event)
        for event in (events.AFTER_CREATE, events.AFTER_DELETE):
            registry.subscribe(self._on_security_group_rule, resources.SECURITY_GROUP_RULE, event)
            registry.subscribe(self._on_router_change, resources.ROUTER_INTERFACE, event)
            registry.subscribe(self._on_router_change, resources.ROUTER_GATEWAY, event)
        registry.subscribe(self._on_router_change, resources.ROUTER, events.AFTER_UPDATE)
        for event in (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE):
            registry.subscribe(self._on_floating_ip, resources.FLOATING_IP, event)
        registry.subscribe(self._on_process_init, resources.PROCESS, events.AFTER_INIT)

    def _on_security_group(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        sg_id = str(payload.resource_id)
        if event == events.AFTER_DELETE:
            self._guard("security group delete", self.remove_security_group, sg_id)
        else:
            self._guard("security group sync", self.sync_security_group, sg_id)

    def _on_security_group_rule(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        sg_id = (payload.metadata or {}).get("security_group_id")
        if sg_id is None and payload.states:
            sg_id = payload.states[-1].get("security_group_id")
        if sg_id:
            self._guard("security group rule change", self.sync_security_group, str(sg_id))

    def _on_router_change(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        self._guard("router change (pool natOutgoing)", self.sync_all_pools)

    def _on_floating_ip(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        """A floating IP associated, moved, disassociated or deleted: the ports it was and is
        associated with get their endpoints rewritten (their ipNATs)."""
        port_ids = {str(s["port_id"]) for s in payload.states or () if s and s.get("port_id")}
        for port_id in sorted(port_ids):
            self._guard("floating IP change", self.sync_port_by_id, port_id)

    def _on_process_init(self, resource: str, event: str, trigger: Any, payload: Any = None) -> None:
        self.start_background()

    # -- election and master work --------------------------------------------------------------------
    def start_background(self) -> None:
        """Start electing in this process (idempotent per process)."""
        with self._lock:
            if self._elector is not None and self._pid == os.getpid():
                return
            self.datastore()
            self._elector = Elector(
                self.datastore, naming.election_key(self.conf.region), name=self.conf.elector_name,
                interval=self.conf.election_interval, ttl=self.conf.election_ttl,
                check_interval=self.conf.election_check_interval, on_change=self._on_master_change,
            ).start()

    def stop_background(self) -> None:
        with self._lock:
            elector, self._elector = self._elector, None
        if elector is not None:
            elector.stop()
        self._stop_master_work()

    @property
    def is_master(self) -> bool:
        return self._elector is not None and self._elector.is_master

    def _on_master_change(self, master: bool) -> None:
        if master:
            self._start_master_work()
        else:
            self._stop_master_work()

    def _start_master_work(self) -> None:
        stop = threading.Event()
        self._master_stop = stop

        def run() -> None:
            first = True
            while not stop.is_set():
                if not first or self.conf.resync_on_start:
                    try:
                        self.resync()
                    except (TortieError, ValidationError) as exc:
                        log.error("resync failed; retrying later error=%s", exc)
                first = False
                if self.conf.resync_interval <= 0:
                    break
                stop.wait(self.conf.resync_interval)

        self._master_thread = threading.Thread(target=run, name="tortie-resync", daemon=True)
        self._master_thread.start()
        if self.conf.status_flowback:
            self._status = StatusWatcher(self.datastore(), self.conf.region, self.report_port_status,
                                         self.report_agent_alive).start()

    def _stop_master_work(self) -> None:
        if self._master_stop is not None:
            self._master_stop.set()
        status, self._status = self._status, None
        if status is not None:
            status.stop()
        thread, self._master_thread = self._master_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    # -- resync ---------------------------------------------------------------------------------------
    def ensure_cluster_config(self) -> None:
        writer = self.writer()
        writer.put_resource(port_security_profile())
        key = kind_info("FelixConfiguration").key(FELIX_DEFAULT)
        stored = self.datastore().get(key)
        wanted = required_felix_config(stored.value if stored is not None else None)
        if wanted is not None:
            writer.put_resource(parse_resource(wanted, source="FelixConfiguration default"))

    def read_desired(self) -> Desired:
        snap = neutron_view.snapshot(self._core(), self._admin(), self.conf.region)
        result = desired_state(snap)
        for problem in result.problems:
            log.warning("resync: %s", problem)
        return result.desired

    def resync(self) -> ResyncReport:
        """Compare Neutron's DB with the datastore and repair (see `resync`)."""
        self.ensure_cluster_config()
        report = Resyncer(self.datastore(), self.conf.region).resync(self.read_desired)
        self.last_resync = report
        return report

    # -- status flow-back ------------------------------------------------------------------------------
    def flow_back_once(self) -> None:
        """Report every current agent and endpoint status to Neutron now (what the master's watcher
        does continuously); for tools and tests that drive the master work synchronously."""
        StatusWatcher(self.datastore(), self.conf.region, self.report_port_status,
                      self.report_agent_alive).run_once()

    def report_port_status(self, port_id: str, host: str, status: str) -> None:
        core = self._core()
        admin = self._admin()
        with contextlib.suppress(NotFound):
            ports = core.get_ports(admin, filters={"id": [port_id]})
            if not ports or ports[0].get("binding:host_id") != host:
                return  # deleted, or a stale report from the host a VM migrated away from
            if ports[0].get("status") != status:
                core.update_port_status(admin, port_id, status, host=host)
                log.info("port status port=%s host=%s status=%s", port_id, host, status)

    def report_agent_alive(self, host: str, first_update: bool) -> None:
        state = {"agent_type": AGENT_TYPE, "binary": AGENT_BINARY, "host": host, "topic": "N/A",
                 "configurations": {}, "start_flag": first_update}
        core = self._core()
        if hasattr(core, "create_or_update_agent"):
            core.create_or_update_agent(self._admin(), state)
