"""The driver inside Neutron 29's real ML2 plugin (in-memory SQLite), loaded by its entry point,
writing to real tortie datastores (a sqlite file and etcd): the lifecycle of networks, subnets,
ports and security groups, live migration, port security off, resync after drift, status flow-back.
"""

from __future__ import annotations

import json
from typing import Any

from conftest import Env
from tortie.datastore.resources import ResourceStore
from tortie.dhcp.records import DhcpSubnet, subnet_key
from tortie.model import IPPoolSpec, NetworkPolicySpec, Resource, WorkloadEndpointSpec
from tortie.model.kinds import kind_info

from networking_tortie import naming

NS = "openstack"


def _endpoints(env: Env) -> dict[str, Resource]:
    return {r.spec_as(WorkloadEndpointSpec).endpoint or "": r
            for r in ResourceStore(env.ds).list("WorkloadEndpoint", NS)}


def _policy(env: Env, sg_id: str) -> NetworkPolicySpec | None:
    kv = env.ds.get(kind_info("NetworkPolicy").key(naming.policy_name(sg_id), NS))
    return ResourceStore(env.ds).decode(kv).spec_as(NetworkPolicySpec) if kv is not None else None


def _wire_rules(env: Env, sg_id: str, direction: str) -> list[dict[str, Any]]:
    """The policy's rules in a canonical order (Neutron's rule order is its random rule ids)."""
    kv = env.ds.get(kind_info("NetworkPolicy").key(naming.policy_name(sg_id), NS))
    assert kv is not None
    return sorted(kv.value["spec"].get(direction) or [], key=lambda r: json.dumps(r, sort_keys=True))


def _canonical(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rules, key=lambda r: json.dumps(r, sort_keys=True))


def test_driver_is_loaded_through_its_entry_point(env: Env) -> None:
    manager = env.neutron.plugin.mechanism_manager
    assert "tortie" in manager.mech_drivers
    assert type(manager.mech_drivers["tortie"].obj).__module__ == "networking_tortie.mech_driver"


def test_network_and_subnet_lifecycle(env: Env) -> None:
    n = env.neutron
    net = n.network("net1")
    sub = n.subnet(net, "10.65.0.0/24", dns_nameservers=["10.0.0.53"])
    record = DhcpSubnet.from_json(env.ds.get(subnet_key(sub["id"])).value)  # type: ignore[union-attr]
    assert (record.cidr, record.gateway_ip, record.dns_servers, record.mtu) == (
        "10.65.0.0/24", "10.65.0.1", ("10.0.0.53",), 1500)
    pool = ResourceStore(env.ds).get("IPPool", naming.pool_name(sub["id"])).spec_as(IPPoolSpec)
    assert (pool.cidr, pool.nat_outgoing, pool.effective_assignment_mode) == ("10.65.0.0/24", False, "Manual")
    n.plugin.update_subnet(n.ctx(), sub["id"], {"subnet": {
        "dns_nameservers": ["10.0.0.54"],
        "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.65.0.254"}]}})
    record = DhcpSubnet.from_json(env.ds.get(subnet_key(sub["id"])).value)  # type: ignore[union-attr]
    assert record.dns_servers == ("10.0.0.54",)
    assert [(r.destination, r.nexthop) for r in record.host_routes] == [("192.168.0.0/16", "10.65.0.254")]
    n.plugin.delete_subnet(n.ctx(), sub["id"])
    assert env.ds.get(subnet_key(sub["id"])) is None
    assert env.ds.get(kind_info("IPPool").key(naming.pool_name(sub["id"]))) is None


def test_port_binding_needs_a_live_agent_and_a_local_or_flat_segment(env: Env) -> None:
    n = env.neutron
    net = n.network("net1")
    n.subnet(net, "10.65.0.0/24")
    dead = n.port(net, host="h-dead", device_id="vm0")
    assert dead["binding:vif_type"] == "binding_failed"
    env.agent_alive("h1")
    port = n.port(net, host="h1", device_id="vm1")
    assert port["binding:vif_type"] == "tap"
    assert port["binding:vif_details"]["port_filter"] is True
    endpoints = _endpoints(env)
    assert set(endpoints) == {port["id"]}
    flat = n.network("provider", **{"provider:network_type": "flat", "provider:physical_network": "phys"})
    n.subnet(flat, "10.70.0.0/24")
    assert n.port(flat, host="h1", device_id="vm2")["binding:vif_type"] == "tap"


def test_port_lifecycle_live_migration_and_delete(env: Env) -> None:
    n = env.neutron
    env.agent_alive("h1")
    env.agent_alive("h2")
    net = n.network("net1")
    sub = n.subnet(net, "10.65.0.0/24")
    port = n.port(net, host="h1", device_id="vm1")
    other = n.port(net, device_owner="network:dhcp", device_id="dhcp1", host="h1")
    unbound = n.port(net, device_id="vm9")
    endpoints = _endpoints(env)
    assert set(endpoints) == {port["id"]}, "only bound VM ports become endpoints"
    del other, unbound
    wep = endpoints[port["id"]]
    spec = wep.spec_as(WorkloadEndpointSpec)
    ip = port["fixed_ips"][0]["ip_address"]
    assert wep.metadata.name == naming.endpoint_name("h1", "vm1", port["id"])
    assert (spec.node, spec.workload, spec.interface_name, spec.mac) == (
        "h1", "vm1", "tap" + port["id"][:11], port["mac_address"])
    assert spec.ip_networks == (f"{ip}/32",)
    assert spec.ipv4_gateway == sub["gateway_ip"]
    default_sg = n.default_security_group()
    assert dict(wep.metadata.labels)[naming.sg_label(default_sg["id"])] == "default"
    # Live migration: Nova moves the binding to h2.
    n.update_port(port["id"], **{"binding:host_id": "h2"})
    endpoints = _endpoints(env)
    assert set(endpoints) == {port["id"]}
    moved = endpoints[port["id"]]
    assert moved.spec_as(WorkloadEndpointSpec).node == "h2"
    assert moved.metadata.name == naming.endpoint_name("h2", "vm1", port["id"])
    # Allowed address pairs are admitted as source prefixes.
    n.update_port(port["id"], allowed_address_pairs=[{"ip_address": "10.65.0.200"}])
    assert _endpoints(env)[port["id"]].spec_as(WorkloadEndpointSpec).allow_spoofed_source_prefixes == (
        "10.65.0.200/32",)
    n.plugin.delete_port(n.ctx(), port["id"])
    assert _endpoints(env) == {}


def test_port_security_off_is_unrestricted(env: Env) -> None:
    n = env.neutron
    env.agent_alive("h1")
    net = n.network("open", port_security_enabled=False)
    n.subnet(net, "10.66.0.0/24")
    port = n.port(net, host="h1", device_id="vm1")
    assert port["port_security_enabled"] is False
    wep = _endpoints(env)[port["id"]]
    spec = wep.spec_as(WorkloadEndpointSpec)
    assert spec.profiles == (naming.PORT_SECURITY_DISABLED_PROFILE,)
    assert set(spec.allow_spoofed_source_prefixes) == {"0.0.0.0/0", "::/0"}
    assert not any(k.startswith("sg.") for k in wep.metadata.labels)
    env.driver.resync()  # the master ensures the allow-all profile exists
    profile = ResourceStore(env.ds).get("Profile", naming.PORT_SECURITY_DISABLED_PROFILE)
    assert profile.to_wire()["spec"] == {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}


def test_security_group_and_rule_changes_reach_the_datastore_without_a_port_change(env: Env) -> None:
    n = env.neutron
    env.agent_alive("h1")
    net = n.network("net1")
    n.subnet(net, "10.65.0.0/24")
    web = n.security_group("web")
    assert _wire_rules(env, web["id"], "egress") == _canonical([{"action": "Allow", "ipVersion": 4},
                                                                {"action": "Allow", "ipVersion": 6}])
    assert _wire_rules(env, web["id"], "ingress") == []
    assert _policy(env, web["id"]).effective_types == ("Ingress", "Egress")  # type: ignore[union-attr]
    port = n.port(net, host="h1", device_id="vm1", security_groups=[web["id"]])
    labels = dict(_endpoints(env)[port["id"]].metadata.labels)
    assert labels[naming.sg_label(web["id"])] == "web"
    ssh = n.rule(web["id"], protocol="tcp", port_range_min=22, port_range_max=22,
                 remote_ip_prefix="192.0.2.0/24")
    n.rule(web["id"], protocol="icmp", port_range_min=8, port_range_max=0)
    n.rule(web["id"], remote_group_id=web["id"], ethertype="IPv6")
    assert _wire_rules(env, web["id"], "ingress") == _canonical([
        {"action": "Allow", "ipVersion": 4, "protocol": "TCP", "source": {"nets": ["192.0.2.0/24"]},
         "destination": {"ports": [22]}},
        {"action": "Allow", "ipVersion": 4, "protocol": "ICMP", "icmp": {"type": 8, "code": 0}},
        {"action": "Allow", "ipVersion": 6, "source": {"selector": naming.sg_selector(web["id"])}},
    ])
    n.plugin.delete_security_group_rule(n.ctx(), ssh["id"])
    assert all(r.get("protocol") != "TCP" for r in _wire_rules(env, web["id"], "ingress"))
    # Membership change: the port leaves "web" for "db".
    db = n.security_group("db")
    n.update_port(port["id"], security_groups=[db["id"]])
    labels = dict(_endpoints(env)[port["id"]].metadata.labels)
    assert naming.sg_label(db["id"]) in labels and naming.sg_label(web["id"]) not in labels
    n.plugin.update_security_group(n.ctx(), web["id"], {"security_group": {"name": "web2"}})
    assert _policy(env, web["id"]) is not None
    n.plugin.delete_security_group(n.ctx(), web["id"])
    assert _policy(env, web["id"]) is None


def test_router_snat_sets_pool_nat_outgoing(env: Env) -> None:
    n = env.neutron
    ext = n.network("public", **{"router:external": True, "provider:network_type": "flat",
                                 "provider:physical_network": "ext"})
    n.subnet(ext, "203.0.113.0/24", enable_dhcp=False)
    net = n.network("net1")
    sub = n.subnet(net, "10.65.0.0/24")

    def nat() -> bool | None:
        pool = ResourceStore(env.ds).get("IPPool", naming.pool_name(sub["id"]))
        return pool.spec_as(IPPoolSpec).nat_outgoing

    router = n.l3.create_router(n.ctx(), {"router": {
        "name": "r1", "admin_state_up": True, "project_id": "p1",
        "external_gateway_info": {"network_id": ext["id"], "enable_snat": True}}})
    assert nat() is False
    n.l3.add_router_interface(n.ctx(), router["id"], {"subnet_id": sub["id"]})
    assert nat() is True
    n.l3.update_router(n.ctx(), router["id"], {"router": {
        "external_gateway_info": {"network_id": ext["id"], "enable_snat": False}}})
    assert nat() is False
    n.l3.update_router(n.ctx(), router["id"], {"router": {
        "external_gateway_info": {"network_id": ext["id"], "enable_snat": True}}})
    assert nat() is True
    n.l3.remove_router_interface(n.ctx(), router["id"], {"subnet_id": sub["id"]})
    assert nat() is False


def test_floating_ips_become_ip_nats_of_the_port_s_endpoint(env: Env) -> None:
    n = env.neutron
    env.agent_alive("h1")
    ext = n.network("public", **{"router:external": True, "provider:network_type": "flat",
                                 "provider:physical_network": "ext"})
    n.subnet(ext, "203.0.113.0/24", enable_dhcp=False)
    net = n.network("net1")
    sub = n.subnet(net, "10.65.0.0/24")
    router = n.l3.create_router(n.ctx(), {"router": {
        "name": "r1", "admin_state_up": True, "project_id": "p1",
        "external_gateway_info": {"network_id": ext["id"], "enable_snat": True}}})
    n.l3.add_router_interface(n.ctx(), router["id"], {"subnet_id": sub["id"]})
    vm1 = n.port(net, host="h1", device_id="vm1")
    vm2 = n.port(net, host="h1", device_id="vm2")

    def nats(port: dict[str, Any]) -> list[tuple[str, str]]:
        spec = _endpoints(env)[port["id"]].spec_as(WorkloadEndpointSpec)
        return [(x.internal_ip, x.external_ip) for x in spec.ip_nats]

    fixed1, fixed2 = (p["fixed_ips"][0]["ip_address"] for p in (vm1, vm2))
    fip = n.l3.create_floatingip(n.ctx(), {"floatingip": {
        "floating_network_id": ext["id"], "port_id": vm1["id"], "project_id": "p1"}})
    external = fip["floating_ip_address"]
    assert nats(vm1) == [(fixed1, external)] and nats(vm2) == []
    assert env.driver.resync().changes == 0  # the resync path agrees
    # moved to another port: both endpoints follow
    n.l3.update_floatingip(n.ctx(), fip["id"], {"floatingip": {"port_id": vm2["id"]}})
    assert nats(vm1) == [] and nats(vm2) == [(fixed2, external)]
    n.l3.update_floatingip(n.ctx(), fip["id"], {"floatingip": {"port_id": None}})
    assert nats(vm2) == []
    n.l3.update_floatingip(n.ctx(), fip["id"], {"floatingip": {"port_id": vm1["id"]}})
    n.l3.delete_floatingip(n.ctx(), fip["id"])
    assert nats(vm1) == []
    assert env.driver.resync().changes == 0


def test_resync_repairs_drift_behind_the_drivers_back(env: Env) -> None:
    n = env.neutron
    env.agent_alive("h1")
    net = n.network("net1")
    sub = n.subnet(net, "10.65.0.0/24")
    web = n.security_group("web")
    n.rule(web["id"], protocol="tcp", port_range_min=80, port_range_max=80)
    p1 = n.port(net, host="h1", device_id="vm1", security_groups=[web["id"]])
    p2 = n.port(net, host="h1", device_id="vm2")
    # The postcommit path and the resync path agree: nothing to repair.
    assert env.driver.resync().changes == 0
    store = ResourceStore(env.ds)
    before = {k: kv.value for k, kv in ((k, env.ds.get(k)) for k in _owned_keys(env)) if kv is not None}
    # Alter the datastore behind the driver's back.
    ep1 = _endpoints(env)[p1["id"]]
    env.ds.delete(ep1.key)
    ep2 = _endpoints(env)[p2["id"]]
    spec2 = ep2.spec_as(WorkloadEndpointSpec)
    store.update(ep2.replace_spec(type(spec2)(**{**spec2.__dict__, "ip_networks": ("10.65.0.250/32",)})))
    policy_key = kind_info("NetworkPolicy").key(naming.policy_name(web["id"]), NS)
    tampered = dict(env.ds.get(policy_key).value)  # type: ignore[union-attr]
    tampered["spec"] = {**tampered["spec"], "ingress": [{"action": "Allow"}]}
    env.ds.put(policy_key, tampered)
    env.ds.delete(subnet_key(sub["id"]))
    stale = ep1.replace_metadata(name="h9-openstack-gone-gone", resource_version=None)
    store.create(stale)
    user_pool = Resource.from_wire({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                                    "metadata": {"name": "operator-pool"}, "spec": {"cidr": "10.99.0.0/16"}})
    store.create(user_pool)
    report = env.driver.resync()
    assert sorted(report.created) == sorted([ep1.key, subnet_key(sub["id"])])
    assert sorted(report.updated) == sorted([ep2.key, policy_key])
    assert report.deleted == [stale.key]
    after = {k: kv.value for k, kv in ((k, env.ds.get(k)) for k in _owned_keys(env)) if kv is not None}
    assert set(after) == set(before)
    for key in after:  # same content (uid/creationTimestamp of re-created objects are new)
        assert _strip(after[key]) == _strip(before[key]), key
    assert store.get("IPPool", "operator-pool") is not None
    assert env.driver.resync().changes == 0


def _owned_keys(env: Env) -> list[str]:
    from networking_tortie.resync import list_owned

    return sorted(list_owned(env.ds, ""))


def _strip(value: dict[str, Any]) -> dict[str, Any]:
    out = dict(value)
    if "metadata" in out:
        store_managed = ("uid", "creationTimestamp", "generation")
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k not in store_managed}
    return out


def test_status_flows_back_as_port_status_and_agents(env: Env) -> None:
    n = env.neutron
    env.agent_alive("h1")
    net = n.network("net1")
    n.subnet(net, "10.65.0.0/24")
    port = n.port(net, host="h1", device_id="vm1")
    assert n.get_port(port["id"])["status"] == "DOWN"
    key = f"/calico/felix/v2/no-region/host/h1/workload/openstack/vm1/endpoint/{port['id']}"
    for value, expected in (({"status": "up"}, "ACTIVE"), ({"status": "down"}, "DOWN"),
                            ({"status": "up"}, "ACTIVE")):
        env.ds.put(key, value)
        env.driver.flow_back_once()
        assert n.get_port(port["id"])["status"] == expected
    # A report from a host the port is not bound to (e.g. left over after a migration) is ignored.
    env.ds.put(key.replace("/host/h1/", "/host/h7/"), {"status": "down"})
    env.driver.flow_back_once()
    assert n.get_port(port["id"])["status"] == "ACTIVE"
    agents = n.plugin.get_agents(n.ctx(), filters={"host": ["h1"]})
    assert [(a["agent_type"], a["alive"]) for a in agents] == [("tortie agent", True)]
    # The master also ensures the cluster settings OpenStack needs.
    env.driver.resync()
    felix = ResourceStore(env.ds).get("FelixConfiguration", "default").to_wire()["spec"]
    assert "tap" in felix["interfacePrefix"].split(",") and felix["endpointReportingEnabled"] is True
