"""One Neutron snapshot -> everything the datastore should hold for OpenStack (pure).

Input: `NeutronSnapshot`, plain dicts as Neutron's plugin returns them (bulk-fetched by the driver:
all ports, security groups with their rules, subnets, network names and MTUs, the subnets whose
router does SNAT, and the floating IPs associated with ports). Output: `resync.Desired` plus the
problems met (ports or rules that could not be translated), each logged by the caller.

Used by both paths so they cannot disagree: the postcommit path translates one object with the
same `translate_*` functions and the same `PortFacts` construction (`port_facts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tortie.dhcp.records import subnet_key
from tortie.model import Resource, ValidationError, parse_resource

from networking_tortie import naming
from networking_tortie.resync import Desired
from networking_tortie.translate_port import PortFacts, floating_pairs, port_to_endpoint
from networking_tortie.translate_sg import security_group_to_policy
from networking_tortie.translate_subnet import subnet_to_dhcp, subnet_to_pool

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class NeutronSnapshot:
    ports: tuple[Obj, ...] = ()
    security_groups: tuple[Obj, ...] = ()
    subnets: tuple[Obj, ...] = ()
    networks: tuple[Obj, ...] = ()
    snat_subnet_ids: frozenset[str] = frozenset()
    region: str = ""
    floating_ips: tuple[Obj, ...] = ()


@dataclass(frozen=True)
class DesiredResult:
    desired: Desired
    problems: tuple[str, ...] = field(default=())


def port_security_profile() -> Resource:
    """Allow-all profile listed by ports whose port security is disabled."""
    return parse_resource({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": naming.PORT_SECURITY_DISABLED_PROFILE},
        "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]},
    })


def port_facts(port: Obj, *, sg_names: Mapping[str, str], networks: Mapping[str, Obj],
               subnets: Mapping[str, Obj], region: str, floating_ips: Iterable[Obj] = ()) -> PortFacts:
    network = networks.get(str(port.get("network_id")))
    gateways: dict[str, str | None] = {}
    for fip in port.get("fixed_ips") or []:
        subnet = subnets.get(str(fip.get("subnet_id")))
        if subnet is not None:
            gateways[str(subnet["id"])] = subnet.get("gateway_ip")
    return PortFacts(
        sg_names={sg: sg_names.get(sg, "") for sg in port.get("security_groups") or []},
        network_name=str(network.get("name") or "") if network is not None else None,
        subnet_gateways=gateways,
        region=region,
        floating_ips=floating_pairs(str(port["id"]), floating_ips),
    )


def _by_id(objs: Iterable[Obj]) -> dict[str, Obj]:
    return {str(o["id"]): o for o in objs}


def desired_state(snap: NeutronSnapshot) -> DesiredResult:
    problems: list[str] = []
    resources: dict[str, Resource] = {}
    networks = _by_id(snap.networks)
    subnets = _by_id(snap.subnets)
    sg_names = {str(sg["id"]): str(sg.get("name") or "") for sg in snap.security_groups}
    profile = port_security_profile()
    resources[profile.key] = profile
    fips: dict[str, list[Obj]] = {}
    for fip in snap.floating_ips:
        fips.setdefault(str(fip.get("port_id") or ""), []).append(fip)
    for port in snap.ports:
        facts = port_facts(port, sg_names=sg_names, networks=networks, subnets=subnets, region=snap.region,
                           floating_ips=fips.get(str(port["id"]), ()))
        try:
            endpoint = port_to_endpoint(port, facts)
        except ValidationError as exc:
            problems.append(f"port {port.get('id')}: cannot be an endpoint: {exc}")
            continue
        if endpoint is not None:
            resources[endpoint.key] = endpoint
    for sg in snap.security_groups:
        translation = security_group_to_policy(sg, region=snap.region)
        resources[translation.policy.key] = translation.policy
        problems += [f"security group {sg['id']} rule {s.rule_id}: left out: {s.reason}"
                     for s in translation.skipped]
    records: dict[str, dict[str, Any]] = {}
    for subnet in snap.subnets:
        network = networks.get(str(subnet.get("network_id")))
        mtu = network.get("mtu") if network is not None else None
        record = subnet_to_dhcp(subnet, mtu=int(mtu) if mtu else None)
        records[subnet_key(record.id, snap.region)] = record.to_json()
        pool = subnet_to_pool(subnet, nat_outgoing=str(subnet["id"]) in snap.snat_subnet_ids)
        if pool is None:
            problems.append(f"subnet {subnet['id']} ({subnet.get('cidr')}): no IP pool (link-local range)")
        else:
            resources[pool.key] = pool
    return DesiredResult(Desired(resources, records), tuple(problems))
