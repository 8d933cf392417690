"""The policy table assembled from the desired state (pure): one definition for the full and the
incremental path.

Input: `PolicyState`, the policy messages a manager holds (plus its `RenderConfig` and the host's
interface addresses). Output: `Ruleset`, the whole table `inet tortie`.

The table is the union of what its *owners* contribute (`Pieces`: chains, sets with elements,
verdict-map entries):

    ("ipset", id)          the IP set in each family with members       sets.py
    ("policy", PolicyId)   pi-/po- chains                               rules.py
    ("profile", name)      pri-/pro- chains                             rules.py
    ("endpoint", id)       tw-/fw- chains, entries in @to-wl / @from-wl  endpoints.py
    HOSTS                  host endpoint chains and entries, the static  host_endpoints.py,
                           skeleton, the pool sets                      static_chains.py

`render_owner(state, owner, families)` is the only place an owner's contents are defined:
`render_ruleset(state)` merges every owner's pieces (golden tests, the interpreter, `policy
trace`), and the policy manager re-renders only the owners a message made dirty and diffs their
pieces against what they contributed before. So the incremental table is, by construction, the
full render of the same state (a property test checks it after random changes). `families` are
those in which IP sets exist (`sets.set_families`); the manager keeps them incrementally.

A chain or set that something refers to but no owner provides (a message-order bug; the calc's
flush order prevents it) is created empty, failing closed: a missing policy matches nothing, an
empty set holds nothing (`add_missing_references`; the manager keeps the same placeholders
incrementally).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TypeVar

from tortie.common.ipfamily import Family
from tortie.dataplane.messages import WorkloadEndpointId
from tortie.dataplane.messages.policy import (
    EndpointPolicyRemove,
    EndpointPolicyUpdate,
    HostEndpointId,
    HostEndpointPolicyRemove,
    HostEndpointPolicyUpdate,
    IPSetRemove,
    IPSetUpdate,
    PolicyId,
    PolicyRemove,
    PolicyUpdate,
    PoolRemove,
    PoolUpdate,
    ProfileRemove,
    ProfileUpdate,
)
from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.endpoints import endpoint_chains
from tortie.dataplane.nft.host_endpoints import host_endpoint_pieces
from tortie.dataplane.nft.ir import Chain, MapDef, Pieces, Ruleset, Verdict, referenced
from tortie.dataplane.nft.names import DISPATCH_MAPS, FROM_WORKLOAD_MAP, TO_WORKLOAD_MAP
from tortie.dataplane.nft.rules import policy_chains, profile_chains
from tortie.dataplane.nft.sets import ipset_defs, placeholder_set, pool_defs, set_families
from tortie.dataplane.nft.static_chains import static_chains

log = logging.getLogger(__name__)

Owner = tuple[str, Hashable]
K = TypeVar("K")
V = TypeVar("V")
HOSTS: Owner = ("hosts", "")


@dataclass
class PolicyState:
    """Everything the policy manager has been told (the desired state, in message form)."""

    config: RenderConfig = field(default_factory=RenderConfig)
    ipsets: dict[str, IPSetUpdate] = field(default_factory=dict)
    policies: dict[PolicyId, PolicyUpdate] = field(default_factory=dict)
    profiles: dict[str, ProfileUpdate] = field(default_factory=dict)
    endpoints: dict[WorkloadEndpointId, EndpointPolicyUpdate] = field(default_factory=dict)
    host_endpoints: dict[HostEndpointId, HostEndpointPolicyUpdate] = field(default_factory=dict)
    pools: dict[str, PoolUpdate] = field(default_factory=dict)
    # host interface -> its addresses (canonical), to place host endpoints known by expectedIPs only
    interface_addresses: dict[str, frozenset[str]] = field(default_factory=dict)

    def record(self, msg: object) -> Owner | None:
        """Take one message into the state; its owner, or None for messages not about policy."""
        if isinstance(msg, IPSetUpdate | IPSetRemove):
            _put(self.ipsets, msg.id, msg if isinstance(msg, IPSetUpdate) else None)
            return ("ipset", msg.id)
        if isinstance(msg, PolicyUpdate | PolicyRemove):
            _put(self.policies, msg.id, msg if isinstance(msg, PolicyUpdate) else None)
            return ("policy", msg.id)
        if isinstance(msg, ProfileUpdate | ProfileRemove):
            _put(self.profiles, msg.id, msg if isinstance(msg, ProfileUpdate) else None)
            return ("profile", msg.id)
        if isinstance(msg, EndpointPolicyUpdate | EndpointPolicyRemove):
            _put(self.endpoints, msg.id, msg if isinstance(msg, EndpointPolicyUpdate) else None)
            return ("endpoint", msg.id)
        if isinstance(msg, HostEndpointPolicyUpdate | HostEndpointPolicyRemove):
            _put(self.host_endpoints, msg.id, msg if isinstance(msg, HostEndpointPolicyUpdate) else None)
            return HOSTS
        if isinstance(msg, PoolUpdate | PoolRemove):
            _put(self.pools, msg.name, msg if isinstance(msg, PoolUpdate) else None)
            return HOSTS
        return None

    def owners(self) -> list[Owner]:
        """Every owner with something in the state (in the order the full render merges them)."""
        return [
            *(("ipset", i) for i in self.ipsets),
            *(("policy", p) for p in self.policies),
            *(("profile", p) for p in self.profiles),
            *(("endpoint", e) for e in self.endpoints),
            HOSTS,
        ]


def _put(table: dict[K, V], key: K, value: V | None) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def render_owner(state: PolicyState, owner: Owner, families: frozenset[Family]) -> Pieces:
    """What `owner` contributes to the table (nothing when it is not in the state; an endpoint
    whose interface lacks the workload prefixes contributes nothing: it is not policed)."""
    kind, key = owner
    cfg = state.config
    out = Pieces()
    if kind == "ipset":
        ipset = state.ipsets.get(str(key))
        if ipset is not None:
            out.sets = ipset_defs(ipset, families)
    elif kind == "policy":
        policy = state.policies.get(key) if isinstance(key, PolicyId) else None
        if policy is not None:
            out.chains = {c.name: c for c in policy_chains(policy, cfg, families)}
    elif kind == "profile":
        profile = state.profiles.get(str(key))
        if profile is not None:
            out.chains = {c.name: c for c in profile_chains(profile, cfg, families)}
    elif kind == "endpoint":
        ep = state.endpoints.get(key) if isinstance(key, WorkloadEndpointId) else None
        if ep is not None and cfg.owns_interface(ep.interface_name):
            to_wl, from_wl = endpoint_chains(ep, cfg)
            out.chains = {to_wl.name: to_wl, from_wl.name: from_wl}
            out.entries = {
                (TO_WORKLOAD_MAP, ep.interface_name): Verdict("goto", to_wl.name),
                (FROM_WORKLOAD_MAP, ep.interface_name): Verdict("goto", from_wl.name),
            }
    else:
        out, wildcard_maps = host_endpoint_pieces(state.host_endpoints, state.interface_addresses, cfg)
        for chain in static_chains(cfg, wildcard_maps, state.pools.values()):
            out.chains[chain.name] = chain
        out.sets = pool_defs(state.pools.values())
    return out


def empty_ruleset() -> Ruleset:
    """A table with its (empty) dispatch verdict maps and nothing else."""
    return Ruleset(
        maps={name: MapDef(name) for name in DISPATCH_MAPS}, map_elements={name: {} for name in DISPATCH_MAPS}
    )


def render_ruleset(state: PolicyState) -> Ruleset:
    """The whole desired table (golden tests, the interpreter, full resyncs)."""
    out = empty_ruleset()
    families = set_families(state.ipsets.values())
    for owner in state.owners():
        pieces = render_owner(state, owner, families)
        out.chains.update(pieces.chains)
        for name, (definition, elements) in pieces.sets.items():
            out.sets[name], out.elements[name] = definition, elements
        for (map_name, iface), verdict in pieces.entries.items():
            out.map_elements[map_name][iface] = verdict
    add_missing_references(out)
    return out


def add_missing_references(out: Ruleset) -> None:
    """Create empty what the chains refer to and nobody rendered (see the module docstring).
    Logged, because the calc should never let this happen."""
    chain_refs, set_refs = referenced(out.chains.values())
    for name in sorted(chain_refs - set(out.chains)):
        log.warning("nft render: chain referenced but not known; creating it empty chain=%s", name)
        out.chains[name] = Chain(name)
    for name in sorted(set_refs - set(out.sets)):
        log.warning("nft render: set referenced but not known; creating it empty set=%s", name)
        out.sets[name] = placeholder_set(name)
        out.elements[name] = frozenset()
