"""Host endpoints in the policy table (pure): which endpoint is enforced on which interface, and its chains.

Input: the calc's `HostEndpointPolicyUpdate`s, the host's interface addresses (for endpoints known
by expectedIPs only) and the `RenderConfig`. Output (`host_endpoint_pieces`): the chains of every
placed endpoint, the verdict-map entries that dispatch its interface to them, and the maps whose
chains the all-interfaces endpoint (`*`) provides (the static dispatch chains then end in a goto to
it instead of returning; `static_chains.py`).

Placement (`choose_host_endpoints`, as Calico): endpoints naming an interface first (the first by
name when several claim one); then an interface no endpoint names gets the first endpoint (by
name) without interfaceName whose expectedIPs include one of the interface's addresses. `lo` and
workload interfaces are never host endpoints. `*` stands for every other interface.

Chains per endpoint and stage (`names.HEP_STAGES`): the normal stage always (tiers, profiles,
then drop: host-bound traffic is default-deny once a host endpoint exists, failsafes excepted);
forward (applyOnForward: tiers, then drop), preDNAT and doNotTrack (tiers, then return: normal
policy decides later) only when a policy applies in that stage and direction.
"""

from __future__ import annotations

from collections.abc import Mapping

from tortie.dataplane.messages.policy import HostEndpointId, HostEndpointPolicyUpdate
from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.endpoints import policy_section
from tortie.dataplane.nft.ir import Chain, Pieces, Verdict
from tortie.dataplane.nft.names import ALL_INTERFACES, HEP_STAGES, hep_chain


def host_endpoint_chains(
    hep: HostEndpointPolicyUpdate, cfg: RenderConfig, iface: str | None = None
) -> dict[str, Chain]:
    """Chains by map name (the HEP_STAGES this endpoint needs; a normal chain always), for the
    endpoint on `iface` (default: its interfaceName)."""
    iface = iface or hep.interface_name
    if not iface:
        return {}
    out: dict[str, Chain] = {}
    for kind, map_name, inbound, stage, _dispatch in HEP_STAGES:
        if stage == "normal":
            tiers, profiles = hep.tiers, hep.profile_ids
            end, why = Verdict("drop"), f"host endpoint {hep.id}: default deny"
        else:
            tiers = {
                "forward": hep.forward_tiers,
                "pre_dnat": hep.pre_dnat_tiers,
                "untracked": hep.untracked_tiers,
            }[stage]
            profiles = ()
            if not any(t.ingress if inbound else t.egress for t in tiers):
                continue
            end = Verdict("drop") if stage == "forward" else Verdict("return")
            why = f"host endpoint {hep.id}: {stage} end"
        rules = policy_section(tiers, inbound, profiles, stage, cfg, end, why)
        out[map_name] = Chain(hep_chain(kind, iface), tuple(rules))
    return out


def needs_interface_addresses(heps: Mapping[HostEndpointId, HostEndpointPolicyUpdate]) -> bool:
    """Whether some host endpoint is known by expectedIPs only (placing it needs the addresses)."""
    return any(not hep.interface_name and hep.expected_ips for hep in heps.values())


def choose_host_endpoints(
    heps: Mapping[HostEndpointId, HostEndpointPolicyUpdate],
    addresses: Mapping[str, frozenset[str]] | None = None,
    workload_prefixes: tuple[str, ...] = (),
) -> dict[str, HostEndpointPolicyUpdate]:
    """Interface (or `*`) -> the host endpoint enforced on it (see the module docstring)."""
    out: dict[str, HostEndpointPolicyUpdate] = {}
    for hep_id in sorted(heps):
        hep = heps[hep_id]
        if hep.interface_name and hep.interface_name not in out:
            out[hep.interface_name] = hep
    by_ips = [heps[i] for i in sorted(heps) if not heps[i].interface_name and heps[i].expected_ips]
    for iface in sorted(addresses or {}):
        if iface in out or iface == "lo" or (workload_prefixes and iface.startswith(workload_prefixes)):
            continue
        held = (addresses or {})[iface]
        for hep in by_ips:
            if held.intersection(hep.expected_ips):
                out[iface] = hep
                break
    return out


def host_endpoint_pieces(
    heps: Mapping[HostEndpointId, HostEndpointPolicyUpdate],
    addresses: Mapping[str, frozenset[str]],
    cfg: RenderConfig,
) -> tuple[Pieces, frozenset[str]]:
    """The chains and dispatch entries of every placed host endpoint, and the maps for which the
    all-interfaces endpoint has a chain."""
    out = Pieces()
    wildcard_maps: set[str] = set()
    for iface, hep in choose_host_endpoints(heps, addresses, cfg.interface_prefixes).items():
        for map_name, chain in host_endpoint_chains(hep, cfg, iface).items():
            out.chains[chain.name] = chain
            if iface == ALL_INTERFACES:
                wildcard_maps.add(map_name)
            else:
                out.entries[(map_name, iface)] = Verdict("goto", chain.name)
    return out, frozenset(wildcard_maps)
