"""Which rule an NFLOG prefix names: the flow logger's copy of the renderer's flow-log prefixes.

The policy table's flow-log statements carry a digest prefix (`tortie.dataplane.nft.flow_log`); the
renderer knows each rule's policy, direction, origin and action, and the tiers come from the
endpoints' updates. `RuleCatalog` takes the same calc messages (through `FlowCatalogManager`, a
dataplane manager that declares them) and rebuilds prefix -> `RuleHit` with the renderer's own
prefix functions, so the two cannot disagree.

A `RuleHit` prints as Calico-style `tier|policy|rule|action`, with the names `tortie policy trace`
uses: `default|NetworkPolicy(prod/db)|ingress[0]|allow`, `security|GlobalNetworkPolicy(gate)|
egress[1]|pass`, `-|Profile(kns.prod)|egress[0]|allow`, `security|GlobalNetworkPolicy(last)|
end-of-tier|deny` (the tier's default Deny, after its policies - the last one named - fell through)
and `-|-|default-deny|deny` (no policy or profile allowed).

`local_ips`: the addresses of this host's workload and host endpoints (a frozenset replaced on
every change, so readers need no lock).

Removed policies stay resolvable for `GRACE` lookups' worth of flushes (`expire()`), so a packet
logged just before its policy went away is still named. Thread safety: the loop thread updates,
the flow logger's thread resolves; one lock guards the maps.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.messages import Message
from tortie.dataplane.messages.policy import (
    EndpointPolicyRemove,
    EndpointPolicyUpdate,
    HostEndpointPolicyRemove,
    HostEndpointPolicyUpdate,
    PolicyRemove,
    PolicyUpdate,
    ProfileRemove,
    ProfileUpdate,
    ResolvedRule,
    TierPolicies,
)
from tortie.dataplane.nft.flow_log import default_deny_prefix, end_of_tier_prefix, rule_prefix

GRACE = 2  # expire() calls (flushes) a removed entry survives


@dataclass(frozen=True, slots=True)
class RuleHit:
    tier: str
    policy: str
    rule: str
    action: str  # allow, deny, pass
    inbound: bool  # ingress policy of the destination (True) or egress policy of the source

    def __str__(self) -> str:
        return f"{self.tier}|{self.policy}|{self.rule}|{self.action}"


_ACTIONS = {"Allow": "allow", "Deny": "deny", "Pass": "pass"}


def _rule_entries(
    owner: str, rules: Iterable[ResolvedRule], inbound: bool
) -> dict[str, tuple[str, str, str]]:
    """prefix -> (owner, origin, action) for the rules that log."""
    out = {}
    for r in rules:
        action = _ACTIONS.get(r.action)
        if action is not None and not r.never_matches:
            out[rule_prefix(owner, inbound, r.origin, r.action)] = (owner, r.origin, action)
    return out


def _tier_entries(tiers: Iterable[TierPolicies]) -> dict[str, RuleHit]:
    out = {}
    for tier in tiers:
        for inbound, pids in ((True, tier.ingress), (False, tier.egress)):
            if pids and tier.default_action == "Deny":
                last = str(pids[-1])
                out[end_of_tier_prefix(tier.name, last, inbound)] = RuleHit(
                    tier.name, last, "end-of-tier", "deny", inbound
                )
    return out


class RuleCatalog:
    """prefix -> RuleHit from policy messages (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, tuple[str, str, str, bool]] = {}  # prefix -> (owner, origin, action, inbound)
        self._rules_of: dict[object, set[str]] = {}  # policy / profile id -> its prefixes
        self._tier_of: dict[str, str] = {}  # str(PolicyId) -> tier
        self._tier_hits: dict[str, RuleHit] = {}  # end-of-tier prefix -> hit
        self._tier_hits_of: dict[object, set[str]] = {}  # endpoint id -> its end-of-tier prefixes
        self._retired: dict[str, tuple[RuleHit, int]] = {}
        self._local: dict[object, tuple[str, ...]] = {}  # local endpoint id -> its addresses
        self.local_ips: frozenset[str] = frozenset()  # addresses of this host's endpoints (replaced whole)
        self._fixed = {
            default_deny_prefix(inbound): RuleHit("-", "-", "default-deny", "deny", inbound)
            for inbound in (True, False)
        }

    def on_message(self, msg: Message) -> None:
        with self._lock:
            if isinstance(msg, PolicyUpdate | ProfileUpdate):
                owner = str(msg.id) if isinstance(msg, PolicyUpdate) else f"Profile({msg.id})"
                self._retire(msg.id)
                prefixes = set()
                for inbound, rules in ((True, msg.inbound), (False, msg.outbound)):
                    for prefix, (who, origin, action) in _rule_entries(owner, rules, inbound).items():
                        self._rules[prefix] = (who, origin, action, inbound)
                        self._retired.pop(prefix, None)
                        prefixes.add(prefix)
                self._rules_of[msg.id] = prefixes
            elif isinstance(msg, PolicyRemove | ProfileRemove):
                self._retire(msg.id)
            elif isinstance(msg, EndpointPolicyUpdate | HostEndpointPolicyUpdate):
                tiers: tuple[TierPolicies, ...] = msg.tiers
                if isinstance(msg, HostEndpointPolicyUpdate):
                    tiers = (*msg.tiers, *msg.forward_tiers)
                for tier in tiers:
                    for pid in (*tier.ingress, *tier.egress):
                        self._tier_of[str(pid)] = tier.name
                self._retire_tiers(msg.id)
                hits = _tier_entries(tiers)
                self._tier_hits.update(hits)
                self._tier_hits_of[msg.id] = set(hits)
                if isinstance(msg, EndpointPolicyUpdate):
                    nets = (*msg.ipv4_nets, *msg.ipv6_nets)
                    self._local[msg.id] = tuple(str(ipaddress.ip_interface(n).ip) for n in nets)
                else:
                    self._local[msg.id] = tuple(msg.expected_ips)
                self.local_ips = frozenset(ip for ips in self._local.values() for ip in ips)
            elif isinstance(msg, EndpointPolicyRemove | HostEndpointPolicyRemove):
                self._retire_tiers(msg.id)
                self._local.pop(msg.id, None)
                self.local_ips = frozenset(ip for ips in self._local.values() for ip in ips)

    def _hit(self, prefix: str) -> RuleHit:
        owner, origin, action, inbound = self._rules[prefix]
        tier = "-" if owner.startswith("Profile(") else self._tier_of.get(owner, "?")
        return RuleHit(tier, owner, origin, action, inbound)

    def _retire(self, key: object) -> None:
        for prefix in self._rules_of.pop(key, set()):
            self._retired[prefix] = (self._hit(prefix), GRACE)
            del self._rules[prefix]

    def _retire_tiers(self, key: object) -> None:
        still = {p for k, ps in self._tier_hits_of.items() if k != key for p in ps}
        for prefix in self._tier_hits_of.pop(key, set()) - still:
            self._retired[prefix] = (self._tier_hits.pop(prefix), GRACE)

    def resolve(self, prefixes: Iterable[str]) -> dict[str, RuleHit]:
        """The hits of the known prefixes among `prefixes` (unknown ones are left out)."""
        out: dict[str, RuleHit] = {}
        with self._lock:
            for prefix in prefixes:
                hit = self._fixed.get(prefix) or self._tier_hits.get(prefix)
                if hit is None and prefix in self._rules:
                    hit = self._hit(prefix)
                if hit is None and prefix in self._retired:
                    hit = self._retired[prefix][0]
                if hit is not None:
                    out[prefix] = hit
        return out

    def expire(self) -> None:
        """One flush went by: retired entries age, and go after `GRACE` flushes."""
        with self._lock:
            self._retired = {p: (h, n - 1) for p, (h, n) in self._retired.items() if n > 1}

    def __len__(self) -> int:
        with self._lock:
            return len(self._rules) + len(self._tier_hits)


class FlowCatalogManager:
    """The dataplane manager that feeds a `RuleCatalog` (no kernel state of its own)."""

    name = "flow-catalog"

    def __init__(self, catalog: RuleCatalog) -> None:
        self.catalog = catalog

    @property
    def handles(self) -> Collection[type]:
        return (PolicyUpdate, PolicyRemove, ProfileUpdate, ProfileRemove, EndpointPolicyUpdate,
                EndpointPolicyRemove, HostEndpointPolicyUpdate, HostEndpointPolicyRemove)

    def on_update(self, msg: Message) -> None:
        self.catalog.on_message(msg)

    def on_link_event(self, event: LinkEvent) -> None:
        return None

    def resync(self) -> None:
        return None

    @property
    def needs_apply(self) -> bool:
        return False

    def apply(self) -> None:
        return None

    def stats(self) -> Mapping[str, int]:
        return {"rules": len(self.catalog)}


