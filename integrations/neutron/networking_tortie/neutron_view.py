"""Reading what the translation needs out of Neutron's plugins (bulk, to avoid N+1 queries).

Input: the ML2 core plugin, the L3 plugin when loaded, and a Neutron request context. Output:
plain dicts and the `desired.NeutronSnapshot`/`PortFacts` the pure modules take. This module and
`mech_driver` are the only ones that talk to Neutron; all calls are reads.

SNAT: a subnet gets `natOutgoing` when a router with an external gateway and `enable_snat` has an
interface on it (no L3 plugin loaded -> no subnet does). Floating IPs: those associated with a port
(`port_id` set), from the L3 plugin (none without it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from neutron_lib import constants as n_const
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory

from networking_tortie.desired import NeutronSnapshot, port_facts
from networking_tortie.translate_port import PortFacts, is_endpoint_owner

Obj = Mapping[str, Any]


def l3_plugin() -> Any:
    return directory.get_plugin(plugin_constants.L3)


def snat_subnet_ids(core: Any, context: Any) -> frozenset[str]:
    l3 = l3_plugin()
    if l3 is None:
        return frozenset()
    routers = [
        r["id"] for r in l3.get_routers(context, fields=["id", "external_gateway_info"])
        if (r.get("external_gateway_info") or {}).get("network_id")
        and (r.get("external_gateway_info") or {}).get("enable_snat", True)
    ]
    if not routers:
        return frozenset()
    ports = core.get_ports(context, filters={
        "device_id": routers, "device_owner": list(n_const.ROUTER_INTERFACE_OWNERS)})
    return frozenset(str(fip["subnet_id"]) for p in ports for fip in p.get("fixed_ips") or [])


def floating_ips(context: Any, port_ids: Iterable[str] | None = None) -> list[Obj]:
    """The floating IPs associated with a port (with `port_ids`: with one of those ports)."""
    l3 = l3_plugin()
    if l3 is None:
        return []
    filters = {"port_id": sorted(set(port_ids))} if port_ids is not None else None
    return [f for f in l3.get_floatingips(context, filters=filters) if f.get("port_id")]


def security_group_names(core: Any, context: Any, sg_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(sg_ids))
    if not ids:
        return {}
    sgs = core.get_security_groups(context, filters={"id": ids}, fields=["id", "name"])
    return {str(sg["id"]): str(sg.get("name") or "") for sg in sgs}


def facts_for_port(core: Any, context: Any, port: Obj, region: str) -> PortFacts:
    subnet_ids = sorted({str(f["subnet_id"]) for f in port.get("fixed_ips") or []})
    subnets = core.get_subnets(context, filters={"id": subnet_ids}) if subnet_ids else []
    networks = core.get_networks(context, filters={"id": [port["network_id"]]}, fields=["id", "name", "mtu"])
    return port_facts(
        port,
        sg_names=security_group_names(core, context, port.get("security_groups") or []),
        networks={str(n["id"]): n for n in networks},
        subnets={str(s["id"]): s for s in subnets},
        region=region,
        floating_ips=floating_ips(context, [str(port["id"])]),
    )


def network_mtu(core: Any, context: Any, network_id: str) -> int | None:
    nets = core.get_networks(context, filters={"id": [network_id]}, fields=["id", "mtu"])
    return int(nets[0]["mtu"]) if nets and nets[0].get("mtu") else None


def snapshot(core: Any, context: Any, region: str) -> NeutronSnapshot:
    """Everything the resync compares, in a handful of bulk queries."""
    ports = [p for p in core.get_ports(context) if is_endpoint_owner(p)]
    return NeutronSnapshot(
        ports=tuple(ports),
        security_groups=tuple(core.get_security_groups(context)),
        subnets=tuple(core.get_subnets(context)),
        networks=tuple(core.get_networks(context, fields=["id", "name", "mtu"])),
        snat_subnet_ids=snat_subnet_ids(core, context),
        region=region,
        floating_ips=tuple(floating_ips(context)),
    )
