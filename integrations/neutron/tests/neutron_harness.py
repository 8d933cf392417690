"""Neutron's real ML2 plugin, in-process, for tests (standalone harness; linux-lab.md "harness B").

`start_neutron(connection="sqlite://", datastore=URL, **tortie_options)` configures oslo.config the
way a neutron-server with `mechanism_drivers = tortie` would be configured (core plugin ml2, type
drivers local + flat, the port_security extension, the L3 router service plugin, fake RPC
transport, no Nova notifications), creates the schema from Neutron's models, loads the plugins
(the driver is found through its `neutron.ml2.mechanism_drivers` entry point) and returns a
`NeutronHarness`. Neutron's plugin state is process-global: call it once per process;
`reset_db()` empties every table between tests.

An in-memory SQLite database is ONE connection shared by all threads, so only one thread may use
Neutron's DB at a time: in-process tests drive the driver's master work (resync, status
flow-back) from the test thread; the threaded election runs in separate processes sharing a
SQLite file (tests/test_election_processes.py).

Because the schema comes from the models (not the migrations), the security-group rule templates
the migrations would insert are missing; `start_neutron` adds Neutron's defaults (the `default`
group allows ingress from its own members and all egress; other groups allow all egress), so new
groups get the rules a real deployment gives them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import oslo_messaging  # noqa: F401  (registers transport options)
from neutron import manager
from neutron.api.v2 import router as api_router
from neutron.common import config as common_config
from neutron.conf.plugins.ml2 import config as ml2_config
from neutron.conf.plugins.ml2.drivers import driver_type
from neutron.db.migration.models import head
from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib import rpc as n_rpc
from neutron_lib.db import api as db_api
from neutron_lib.plugins import directory
from neutron_lib.plugins import utils as p_utils
from oslo_config import cfg
from oslo_db import options as db_options
from oslo_messaging import conffixture
from sqlalchemy import orm, text

from networking_tortie.config import register_options
from networking_tortie.mech_driver import TortieMechanismDriver

PROJECT = "p1"
_STARTED: dict[str, NeutronHarness] = {}


@dataclass
class NeutronHarness:
    plugin: Any
    driver: TortieMechanismDriver
    engine: Any

    @property
    def l3(self) -> Any:
        return directory.get_plugin("L3_ROUTER_NAT")

    @staticmethod
    def ctx(project: str = PROJECT) -> Any:
        return n_context.Context(user_id="admin", project_id=project, is_admin=True,
                                 roles=["admin", "member", "reader"])

    # -- resources ---------------------------------------------------------------------------------------
    def network(self, name: str = "net1", **extra: Any) -> dict[str, Any]:
        body = {"name": name, "admin_state_up": True, "shared": False, "project_id": PROJECT, **extra}
        return dict(p_utils.create_network(self.plugin, self.ctx(), {"network": body}))

    def subnet(self, network: dict[str, Any], cidr: str, **extra: Any) -> dict[str, Any]:
        version = 6 if ":" in cidr else 4
        body = {"name": f"sub-{cidr}", "network_id": network["id"], "cidr": cidr, "ip_version": version,
                "project_id": PROJECT, "enable_dhcp": True, **extra}
        return dict(p_utils.create_subnet(self.plugin, self.ctx(), {"subnet": body}))

    def port(self, network: dict[str, Any], *, host: str | None = None, device_id: str = "vm1",
             device_owner: str = "compute:nova", **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"name": "", "network_id": network["id"], "project_id": PROJECT,
                                "device_owner": device_owner, "device_id": device_id, "admin_state_up": True,
                                **extra}
        if host is not None:
            body["binding:host_id"] = host
        body.setdefault("security_groups", n_const.ATTR_NOT_SPECIFIED)  # Neutron picks the default group
        return dict(p_utils.create_port(self.plugin, self.ctx(), {"port": body}))

    def update_port(self, port_id: str, **changes: Any) -> dict[str, Any]:
        return dict(self.plugin.update_port(self.ctx(), port_id, {"port": changes}))

    def get_port(self, port_id: str) -> dict[str, Any]:
        return dict(self.plugin.get_port(self.ctx(), port_id))

    def security_group(self, name: str, **extra: Any) -> dict[str, Any]:
        body = {"name": name, "description": "", "project_id": PROJECT, **extra}
        return dict(self.plugin.create_security_group(self.ctx(), {"security_group": body}))

    def default_security_group(self) -> dict[str, Any]:
        sgs = self.plugin.get_security_groups(self.ctx(), filters={"name": ["default"],
                                                                   "project_id": [PROJECT]})
        return dict(sgs[0])

    def rule(self, sg_id: str, direction: str = "ingress", **fields: Any) -> dict[str, Any]:
        body = {"security_group_id": sg_id, "direction": direction, "ethertype": "IPv4", "protocol": None,
                "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
                "remote_group_id": None, "remote_address_group_id": None, "description": "",
                "project_id": PROJECT, **fields}
        return dict(self.plugin.create_security_group_rule(self.ctx(), {"security_group_rule": body}))

    # -- state -------------------------------------------------------------------------------------------
    def reset_db(self) -> None:
        """Empty every Neutron table (faster than recreating the schema) and re-add the SG rule
        templates."""
        metadata = head.get_metadata()
        with self.engine.begin() as conn:
            conn.execute(text("PRAGMA foreign_keys = OFF"))
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            conn.execute(text("PRAGMA foreign_keys = ON"))
        _add_default_rule_templates(self.plugin)


def _add_default_rule_templates(plugin: Any) -> None:
    """Neutron's default security group rule templates (normally inserted by a DB migration)."""
    admin = n_context.get_admin_context()
    for ethertype in ("IPv4", "IPv6"):
        for direction, remote_group, in_default, in_non_default in (
            ("egress", None, True, True),
            ("ingress", "PARENT", True, False),
        ):
            plugin.create_default_security_group_rule(admin, {"default_security_group_rule": {
                "direction": direction, "ethertype": ethertype, "remote_group_id": remote_group,
                "used_in_default_sg": in_default, "used_in_non_default_sg": in_non_default,
                "description": "", "protocol": None, "port_range_min": None, "port_range_max": None,
                "remote_ip_prefix": None, "remote_address_group_id": None,
            }})


def start_neutron(*, connection: str = "sqlite://", datastore: str | None = None,
                  **tortie_options: Any) -> NeutronHarness:
    if "harness" in _STARTED:
        return _STARTED["harness"]
    for name in ("neutron", "neutron_lib", "oslo_policy", "stevedore", "oslo_db", "oslo_messaging"):
        logging.getLogger(name).setLevel(logging.ERROR)
    common_config.register_common_config_options()
    ml2_config.register_ml2_plugin_opts()
    driver_type.register_ml2_drivers_flat_opts()
    register_options()
    cfg.CONF(args=[], project="neutron")
    db_options.set_defaults(cfg.CONF, connection=connection)
    cfg.CONF.set_override("connection_recycle_time", -1, group="database")
    cfg.CONF.set_override("core_plugin", "ml2")
    cfg.CONF.set_override("service_plugins", ["router"])
    cfg.CONF.set_override("mechanism_drivers", ["tortie"], group="ml2")
    cfg.CONF.set_override("type_drivers", ["local", "flat"], group="ml2")
    cfg.CONF.set_override("project_network_types", ["local"], group="ml2")
    cfg.CONF.set_override("extension_drivers", ["port_security"], group="ml2")
    cfg.CONF.set_override("flat_networks", ["*"], group="ml2_type_flat")
    cfg.CONF.set_override("notify_nova_on_port_status_changes", False)
    cfg.CONF.set_override("notify_nova_on_port_data_changes", False)
    cfg.CONF.set_override("dhcp_agent_notification", False)
    if datastore is not None:
        cfg.CONF.set_override("datastore", datastore, group="tortie")
    for name, value in tortie_options.items():
        cfg.CONF.set_override(name, value, group="tortie")
    messaging = conffixture.ConfFixture(cfg.CONF)
    messaging.setUp()
    messaging.transport_url = "fake:/"
    n_rpc.init(cfg.CONF)
    engine = db_api.CONTEXT_WRITER.get_engine()
    metadata = head.get_metadata()  # imports every model
    orm.configure_mappers()  # backrefs such as Port.port_forwardings exist only once mappers are configured
    fresh = connection == "sqlite://" or not _schema_exists(engine)
    if fresh:
        metadata.create_all(engine)
    manager.init()
    api_router.APIRouter()  # loads the API extensions (security groups, bindings, port security...)
    plugin = directory.get_plugin()
    if fresh:
        _add_default_rule_templates(plugin)
    driver = plugin.mechanism_manager.mech_drivers["tortie"].obj
    assert isinstance(driver, TortieMechanismDriver), type(driver)
    harness = NeutronHarness(plugin, driver, engine)
    _STARTED["harness"] = harness
    os.environ.setdefault("TORTIE_TEST_NEUTRON", "1")
    return harness


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll `predicate` until true or `timeout` seconds passed (tests assert the result)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _schema_exists(engine: Any) -> bool:
    with engine.connect() as conn:
        query = "SELECT name FROM sqlite_master WHERE type='table' AND name='ports'"
        row = conn.execute(text(query)).fetchone()
    return row is not None
