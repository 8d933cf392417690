"""Pure translation Neutron -> tortie (no Neutron involved): ports, security groups, subnets, names."""

from __future__ import annotations

from typing import Any

import pytest
from tortie.model import IPPoolSpec, NetworkPolicySpec, WorkloadEndpointSpec

from networking_tortie import naming
from networking_tortie.cluster_config import required_felix_config
from networking_tortie.translate_port import PortFacts, port_to_endpoint
from networking_tortie.translate_sg import security_group_to_policy, translate_rule
from networking_tortie.translate_subnet import subnet_to_dhcp, subnet_to_pool

PORT_ID = "d20abf70-4987-46b3-811d-587f7281f023"
SG_WEB = "c24b34d6-0cff-42cf-b076-ca2eeb00e99f"
SG_DB = "9b1e6a6c-2f0e-4c55-8f43-0d5e2b7a1c11"
SUBNET4 = "e85e03dd-e423-4b85-aa40-77cc0874ad44"
SUBNET6 = "1f0e3c7a-5b2d-4c8e-9a61-3d7f2e9b8c44"


def _port(**over: Any) -> dict[str, Any]:
    port: dict[str, Any] = {
        "id": PORT_ID, "device_id": "vm-1", "device_owner": "compute:nova", "network_id": "net-1",
        "project_id": "proj1", "mac_address": "fa:16:3e:7b:ab:80", "binding:host_id": "compute-1",
        "binding:vif_type": "tap", "port_security_enabled": True,
        "fixed_ips": [{"subnet_id": SUBNET4, "ip_address": "10.65.0.5"},
                      {"subnet_id": SUBNET6, "ip_address": "fd00::5"}],
        "security_groups": [SG_WEB, SG_DB], "allowed_address_pairs": [],
        "dns_assignment": [{"hostname": "vm-1", "ip_address": "10.65.0.5", "fqdn": "vm-1.example.org."}],
    }
    port.update(over)
    return port


FACTS = PortFacts(sg_names={SG_WEB: "web servers", SG_DB: "db"}, network_name="net one",
                  subnet_gateways={SUBNET4: "10.65.0.1", SUBNET6: "fd00::1"})


def test_port_becomes_workload_endpoint() -> None:
    res = port_to_endpoint(_port(), FACTS)
    assert res is not None
    assert res.kind == "WorkloadEndpoint"
    assert res.metadata.namespace == "openstack"
    assert res.metadata.name == "compute--1-openstack-vm--1-d20abf70--4987--46b3--811d--587f7281f023"
    spec = res.spec_as(WorkloadEndpointSpec)
    assert spec.orchestrator == "openstack"
    assert spec.workload == "vm-1"
    assert spec.endpoint == PORT_ID
    assert spec.node == "compute-1"
    assert spec.interface_name == "tapd20abf70-49"
    assert spec.mac == "fa:16:3e:7b:ab:80"
    assert spec.ip_networks == ("10.65.0.5/32", "fd00::5/128")
    assert (spec.ipv4_gateway, spec.ipv6_gateway) == ("10.65.0.1", "fd00::1")
    assert spec.profiles == ()
    assert spec.allow_spoofed_source_prefixes == ()
    labels = dict(res.metadata.labels)
    assert labels[f"sg.projectcalico.org/openstack-{SG_WEB}"] == "web_servers"
    assert labels[f"sg.projectcalico.org/openstack-{SG_DB}"] == "db"
    assert labels["sg-name.projectcalico.org/openstack-db"] == SG_DB
    assert labels["projectcalico.org/orchestrator"] == "openstack"
    assert labels["projectcalico.org/openstack-project-id"] == "proj1"
    assert labels["projectcalico.org/openstack-network-name"] == "net_one"
    assert res.metadata.annotations["openstack.projectcalico.org/fqdn"] == "vm-1.example.org"
    assert res.metadata.annotations["openstack.projectcalico.org/network-id"] == "net-1"


def test_allowed_address_pairs_are_extra_source_prefixes() -> None:
    pairs = [{"ip_address": "10.65.0.200", "mac_address": "fa:16:3e:7b:ab:80"},
             {"ip_address": "192.168.7.0/24"}]
    spec = port_to_endpoint(_port(allowed_address_pairs=pairs), FACTS).spec_as(  # type: ignore[union-attr]
        WorkloadEndpointSpec)
    assert spec.allow_spoofed_source_prefixes == ("10.65.0.200/32", "192.168.7.0/24")
    assert spec.ip_networks == ("10.65.0.5/32", "fd00::5/128")  # pairs are not routed to this VM


def test_port_security_disabled_is_unrestricted() -> None:
    res = port_to_endpoint(_port(port_security_enabled=False, security_groups=[]), FACTS)
    assert res is not None
    spec = res.spec_as(WorkloadEndpointSpec)
    assert spec.profiles == (naming.PORT_SECURITY_DISABLED_PROFILE,)
    assert set(spec.allow_spoofed_source_prefixes) == {"0.0.0.0/0", "::/0"}
    assert not [k for k in res.metadata.labels if k.startswith("sg")]


@pytest.mark.parametrize("over", [
    {"device_owner": "network:dhcp"},
    {"device_owner": "network:router_interface"},
    {"binding:host_id": ""},
    {"binding:vif_type": "unbound"},
    {"binding:vif_type": "ovs"},
])
def test_ports_that_are_not_endpoints(over: dict[str, Any]) -> None:
    assert port_to_endpoint(_port(**over), FACTS) is None


def test_container_ports_are_endpoints() -> None:
    assert port_to_endpoint(_port(device_owner="kuryr:container"), FACTS) is not None


def test_names() -> None:
    assert naming.tap_name(PORT_ID) == "tapd20abf70-49"
    assert naming.endpoint_name("Host-A", "vm", "p-1") == "host--a-openstack-vm-p--1"
    assert naming.namespace("RegionOne") == "openstack-region-regionone"
    assert naming.label_value("  a/b c!") == "a_b_c"
    assert naming.label_value("!!!") is None
    assert naming.label_value("x" * 100) == "x" * 63
    assert naming.sg_id_of_policy(naming.policy_name(SG_WEB)) == SG_WEB
    assert naming.election_key() == "/calico/openstack/v2/no-region/neutron_election"


# -- security groups ------------------------------------------------------------------------------------
def _rule(rid: str, direction: str = "ingress", ethertype: str = "IPv4", **fields: Any) -> dict[str, Any]:
    rule = {"id": rid, "direction": direction, "ethertype": ethertype, "protocol": None,
            "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
            "remote_group_id": None, "remote_address_group_id": None}
    rule.update(fields)
    return rule


def test_default_group_translates_to_member_ingress_and_open_egress() -> None:
    sg = {"id": SG_WEB, "name": "default", "security_group_rules": [
        _rule("r1", "ingress", "IPv4", remote_group_id=SG_WEB),
        _rule("r2", "ingress", "IPv6", remote_group_id=SG_WEB),
        _rule("r3", "egress", "IPv4"),
        _rule("r4", "egress", "IPv6"),
    ]}
    result = security_group_to_policy(sg)
    assert result.skipped == ()
    policy = result.policy
    assert policy.metadata.name == f"ossg.default.{SG_WEB}"
    assert policy.metadata.namespace == "openstack"
    wire = policy.to_wire()["spec"]
    assert wire["selector"] == f"has(sg.projectcalico.org/openstack-{SG_WEB})"
    assert wire["types"] == ["Ingress", "Egress"]
    member = f"has(sg.projectcalico.org/openstack-{SG_WEB})"
    assert wire["ingress"] == [
        {"action": "Allow", "ipVersion": 4, "source": {"selector": member}},
        {"action": "Allow", "ipVersion": 6, "source": {"selector": member}},
    ]
    assert wire["egress"] == [{"action": "Allow", "ipVersion": 4}, {"action": "Allow", "ipVersion": 6}]


def test_group_without_rules_denies_both_directions() -> None:
    policy = security_group_to_policy({"id": SG_DB, "security_group_rules": []}).policy
    spec = policy.spec_as(NetworkPolicySpec)
    assert spec.effective_types == ("Ingress", "Egress")
    assert spec.ingress == () and spec.egress == ()


@pytest.mark.parametrize(("fields", "expected"), [
    ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
     {"action": "Allow", "ipVersion": 4, "protocol": "TCP", "destination": {"ports": [22]}}),
    ({"protocol": "udp", "port_range_min": 1000, "port_range_max": 2000, "remote_ip_prefix": "10.1.2.3/16"},
     {"action": "Allow", "ipVersion": 4, "protocol": "UDP", "source": {"nets": ["10.1.0.0/16"]},
      "destination": {"ports": ["1000:2000"]}}),
    ({"protocol": "tcp", "port_range_min": 1, "port_range_max": 65535},
     {"action": "Allow", "ipVersion": 4, "protocol": "TCP"}),
    ({"protocol": "icmp", "port_range_min": 8, "port_range_max": 0},
     {"action": "Allow", "ipVersion": 4, "protocol": "ICMP", "icmp": {"type": 8, "code": 0}}),
    ({"protocol": "icmp", "port_range_min": 3},
     {"action": "Allow", "ipVersion": 4, "protocol": "ICMP", "icmp": {"type": 3}}),
    ({"protocol": "6"}, {"action": "Allow", "ipVersion": 4, "protocol": "TCP"}),
    ({"protocol": "47"}, {"action": "Allow", "ipVersion": 4, "protocol": 47}),
    ({"protocol": "gre"}, {"action": "Allow", "ipVersion": 4, "protocol": 47}),
    ({"protocol": "vrrp"}, {"action": "Allow", "ipVersion": 4, "protocol": 112}),
    ({"protocol": "any"}, {"action": "Allow", "ipVersion": 4}),
    ({"protocol": "0"}, {"action": "Allow", "ipVersion": 4}),
    ({"protocol": "sctp", "port_range_min": 9, "port_range_max": 9},
     {"action": "Allow", "ipVersion": 4, "protocol": "SCTP", "destination": {"ports": [9]}}),
])
def test_ingress_rules(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    direction, wire = translate_rule(_rule("r", **fields))
    assert direction == "ingress"
    assert wire == expected


def test_icmp_on_ipv6_means_icmpv6() -> None:
    _direction, wire = translate_rule(_rule("r", ethertype="IPv6", protocol="icmp", port_range_min=128))
    assert wire == {"action": "Allow", "ipVersion": 6, "protocol": "ICMPv6", "icmp": {"type": 128}}
    _direction, wire = translate_rule(_rule("r", ethertype="IPv6", protocol="ipv6-icmp"))
    assert wire["protocol"] == "ICMPv6"


def test_egress_rule_puts_remote_end_and_ports_on_the_destination() -> None:
    direction, wire = translate_rule(_rule("r", "egress", protocol="tcp", port_range_min=5432,
                                           port_range_max=5432, remote_group_id=SG_DB))
    assert direction == "egress"
    assert wire == {"action": "Allow", "ipVersion": 4, "protocol": "TCP", "destination": {
        "selector": f"has(sg.projectcalico.org/openstack-{SG_DB})", "ports": [5432]}}


def test_ingress_from_group_on_a_port() -> None:
    _direction, wire = translate_rule(_rule("r", protocol="tcp", port_range_min=80, port_range_max=80,
                                            remote_group_id=SG_WEB))
    assert wire == {"action": "Allow", "ipVersion": 4, "protocol": "TCP",
                    "source": {"selector": f"has(sg.projectcalico.org/openstack-{SG_WEB})"},
                    "destination": {"ports": [80]}}


def test_untranslatable_rules_are_left_out_never_widened() -> None:
    sg = {"id": SG_WEB, "security_group_rules": [
        _rule("dccp-ports", protocol="dccp", port_range_min=5, port_range_max=6),
        _rule("address-group", remote_address_group_id="ag-1"),
        _rule("icmp-255", protocol="icmp", port_range_min=255),
        _rule("v6-prefix-on-v4", remote_ip_prefix="::/0"),
        _rule("icmpv6-on-v4", protocol="ipv6-icmp"),
        _rule("bogus-protocol", protocol="nonsense"),
        _rule("ok", protocol="tcp", port_range_min=443, port_range_max=443),
    ]}
    result = security_group_to_policy(sg)
    assert sorted(s.rule_id for s in result.skipped) == sorted(
        ["dccp-ports", "address-group", "icmp-255", "v6-prefix-on-v4", "icmpv6-on-v4", "bogus-protocol"])
    spec = result.policy.spec_as(NetworkPolicySpec)
    assert len(spec.ingress) == 1
    assert str(spec.ingress[0].destination.ports[0]) == "443"


# -- subnets --------------------------------------------------------------------------------------------
SUBNET = {"id": SUBNET4, "network_id": "net-1", "cidr": "10.65.0.0/24", "gateway_ip": "10.65.0.1",
          "enable_dhcp": True, "dns_nameservers": ["10.0.0.53"],
          "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.65.0.254"}], "ip_version": 4}


def test_subnet_dhcp_record() -> None:
    record = subnet_to_dhcp(SUBNET, mtu=1450)
    assert record.to_json() == {
        "id": SUBNET4, "networkId": "net-1", "cidr": "10.65.0.0/24", "gatewayIp": "10.65.0.1",
        "enableDhcp": True, "dnsServers": ["10.0.0.53"],
        "hostRoutes": [{"destination": "192.168.0.0/16", "nexthop": "10.65.0.254"}], "mtu": 1450,
    }


@pytest.mark.parametrize("mode", ["slaac", "dhcpv6-stateful", "dhcpv6-stateless", None])
def test_ipv6_subnet_record_keeps_the_address_mode(mode: str | None) -> None:
    v6 = {**SUBNET, "cidr": "fd00:65::/64", "gateway_ip": "fd00:65::1", "dns_nameservers": [],
          "host_routes": [], "ip_version": 6, "ipv6_address_mode": mode, "ipv6_ra_mode": mode}
    record = subnet_to_dhcp(v6)
    assert record.ipv6_address_mode == mode and record.to_json().get("ipv6AddressMode") == mode
    assert subnet_to_dhcp({**SUBNET, "ipv6_address_mode": "slaac"}).ipv6_address_mode is None  # IPv4


@pytest.mark.parametrize(("cidr", "block"), [("10.65.0.0/24", 26), ("10.65.0.16/28", 28),
                                             ("fd00:1::/64", 122), ("fd00:1::/126", 126)])
def test_subnet_pool(cidr: str, block: int) -> None:
    pool = subnet_to_pool({**SUBNET, "cidr": cidr}, nat_outgoing=True)
    assert pool is not None
    assert pool.metadata.name == f"openstack-subnet-{SUBNET4}"
    spec = pool.spec_as(IPPoolSpec)
    assert (spec.cidr, spec.effective_block_size, spec.nat_outgoing) == (cidr, block, True)
    assert spec.effective_assignment_mode == "Manual"
    assert not spec.effective_disabled and not spec.effective_disable_bgp_export  # exported by BGP


def test_link_local_subnet_has_no_pool() -> None:
    assert subnet_to_pool({**SUBNET, "cidr": "169.254.10.0/24"}) is None


# -- cluster config ---------------------------------------------------------------------------------------
def test_felix_config_gets_tap_prefix_and_endpoint_reporting() -> None:
    created = required_felix_config(None)
    assert created is not None
    assert created["spec"] == {"interfacePrefix": "tort,tap", "endpointReportingEnabled": True}
    existing = {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                "metadata": {"name": "default", "uid": "u"},
                "spec": {"interfacePrefix": "cali", "logSeverityScreen": "Debug"}}
    updated = required_felix_config(existing)
    assert updated is not None
    assert updated["spec"] == {"interfacePrefix": "cali,tap", "logSeverityScreen": "Debug",
                               "endpointReportingEnabled": True}
    assert required_felix_config({**existing, "spec": updated["spec"]}) is None


def test_floating_ips_of_the_port_become_ip_nats() -> None:
    from dataclasses import replace

    from networking_tortie.translate_port import floating_pairs

    fips = [
        {"port_id": PORT_ID, "fixed_ip_address": "10.65.0.5", "floating_ip_address": "203.0.113.7"},
        {"port_id": PORT_ID, "fixed_ip_address": "fd00:0::5", "floating_ip_address": "2001:db8:0::7"},
        {"port_id": "another-port", "fixed_ip_address": "10.65.0.9", "floating_ip_address": "203.0.113.9"},
        {"port_id": PORT_ID, "fixed_ip_address": None, "floating_ip_address": "203.0.113.8"},
    ]
    pairs = floating_pairs(PORT_ID, fips)
    assert pairs == (("10.65.0.5", "203.0.113.7"), ("fd00::5", "2001:db8::7"))
    res = port_to_endpoint(_port(), replace(FACTS, floating_ips=pairs))
    assert res is not None
    nats = res.spec_as(WorkloadEndpointSpec).ip_nats
    assert [(n.internal_ip, n.external_ip) for n in nats] == list(pairs)
    plain = port_to_endpoint(_port(), FACTS)
    assert plain is not None and plain.spec_as(WorkloadEndpointSpec).ip_nats == ()
