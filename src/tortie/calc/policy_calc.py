"""Policy calculator: active rules, policy resolution and IP sets for this host's endpoints.

    WorkloadEndpoint, HostEndpoint (all hosts) --+--> IPSetCalc (label index over ALL items) --> ipsets
    NetworkSet, GlobalNetworkSet ----------------'            ^ add_ref/remove_ref
    Profile labelsToApply -> parents of both indexes          |
    (Global)NetworkPolicy --> local label index (policy selectors x LOCAL endpoints)
                                 |  match start/stop -> active policies (>= 1 local endpoint)
                                 v
                        policies / profiles channels   (rules resolved by policy_rules)
    Tier ------------------> per local endpoint: tiers by order, policies by order -> endpoint_policy
    IPPool ----------------> pools                                        / host_endpoint_policy

Inputs: the dispatcher's `on_*` calls (parsed Resource or None per datastore key). Outputs: on
`flush()` (which the graph calls before the sequencer's flush) the policy messages of
`tortie.dataplane.messages.policy`, queued on the channels in `POLICY_CHANNELS`.

Invariants (Calico's calc graph, reference §3.2, §1.15):
* Only active policies (selecting at least one local endpoint) and profiles listed by a local
  endpoint are sent, and only their rules' IP sets exist: dataplane size follows local endpoints.
* Channel ranks give the flush order IP sets < policies < profiles < pools < endpoints, removes in
  reverse: nothing is referenced before it exists or removed while referenced (fail closed).
* Evaluation order per endpoint: tiers by (order, name), omitted order last; policies by (order,
  name); a tier appears in a direction only if one of its policies applies in that direction
  (`types`, inferred when omitted). doNotTrack and preDNAT policies apply only to host endpoints.
* A policy in a tier that does not exist is placed as that tier would be with no order (last) and
  default action Deny (the `default` tier and Calico's reserved tiers keep their fixed orders).
* A profile an endpoint lists but the datastore lacks is sent with no rules (it allows nothing),
  except `projectcalico-default-allow`, which (as in Calico's etcd mode) allows everything unless
  the datastore defines it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from tortie.calc.event_sequencer import Channel, EventSequencer
from tortie.calc.ipset_calc import CHANNEL as IPSETS
from tortie.calc.ipset_calc import IPSetCalc, SelectableItem, ipset_remove
from tortie.calc.policy_rules import (
    NAMESPACE_LABEL,
    NAMESPACE_NAME_LABEL,
    NAMESPACE_PROFILE_PREFIX,
    ORCHESTRATOR_LABEL,
    SERVICE_ACCOUNT_LABEL,
    SERVICE_ACCOUNT_NAME_LABEL,
    SERVICE_ACCOUNT_PROFILE_PREFIX,
    SetSpec,
    policy_selector,
    resolve_rules,
)
from tortie.dataplane.messages import WorkloadEndpointId
from tortie.dataplane.messages.policy import (
    EndpointPolicyRemove,
    EndpointPolicyUpdate,
    HostEndpointId,
    HostEndpointPolicyRemove,
    HostEndpointPolicyUpdate,
    PolicyId,
    PolicyRemove,
    PolicyUpdate,
    PoolRemove,
    PoolUpdate,
    ProfileRemove,
    ProfileUpdate,
    ResolvedRule,
    TierPolicies,
)
from tortie.model.specs_policy import (
    EGRESS,
    INGRESS,
    GlobalNetworkPolicySpec,
    NetworkPolicySpec,
    ProfileSpec,
    TierSpec,
    effective_tier_order,
)
from tortie.selector.label_index import AnchoredLabelIndex

log = logging.getLogger(__name__)

POLICIES = "policies"
PROFILES = "profiles"
POOLS = "pools"
ENDPOINT_POLICY = "endpoint_policy"
HOST_ENDPOINT_POLICY = "host_endpoint_policy"
PASS_BY_DEFAULT_TIERS = ("kube-admin", "kube-baseline")
DEFAULT_ALLOW_PROFILE = "projectcalico-default-allow"


def _policy_remove(key: object) -> PolicyRemove:
    assert isinstance(key, PolicyId)
    return PolicyRemove(key)


def _endpoint_remove(key: object) -> EndpointPolicyRemove:
    assert isinstance(key, WorkloadEndpointId)
    return EndpointPolicyRemove(key)


def _host_endpoint_remove(key: object) -> HostEndpointPolicyRemove:
    assert isinstance(key, HostEndpointId)
    return HostEndpointPolicyRemove(key)


POLICY_CHANNELS = (
    Channel(IPSETS, 10, ipset_remove),
    Channel(POLICIES, 20, _policy_remove),
    Channel(PROFILES, 30, lambda key: ProfileRemove(str(key))),
    Channel(POOLS, 33, lambda key: PoolRemove(str(key))),
    Channel(ENDPOINT_POLICY, 36, _endpoint_remove),
    Channel(HOST_ENDPOINT_POLICY, 37, _host_endpoint_remove),
)

EndpointKey = WorkloadEndpointId | HostEndpointId


# -- selectable items ---------------------------------------------------------------------------------
def _cidr(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


def _sorted_nets(nets: Iterable[str]) -> tuple[str, ...]:
    parsed = {ipaddress.ip_network(n, strict=False) for n in nets}
    return tuple(str(n) for n in sorted(parsed, key=lambda n: (n.version, n)))


def workload_item(resource: Any) -> SelectableItem:
    """Labels, parents, addresses and named ports of a WorkloadEndpoint (implicit labels win)."""
    meta, spec = resource.metadata, resource.spec
    ns = str(meta.namespace)
    labels = dict(meta.labels)
    labels[NAMESPACE_LABEL] = ns
    labels[NAMESPACE_NAME_LABEL] = ns
    parents = [*spec.profiles, NAMESPACE_PROFILE_PREFIX + ns]
    if spec.orchestrator:
        labels[ORCHESTRATOR_LABEL] = spec.orchestrator
    if spec.service_account_name:
        labels[SERVICE_ACCOUNT_LABEL] = spec.service_account_name
        labels[SERVICE_ACCOUNT_NAME_LABEL] = spec.service_account_name
        parents.append(f"{SERVICE_ACCOUNT_PROFILE_PREFIX}{ns}.{spec.service_account_name}")
    ports = tuple((p.name, p.protocol.number, p.port) for p in spec.ports if p.name)
    return SelectableItem(labels, tuple(dict.fromkeys(parents)), _sorted_nets(spec.ip_networks), ports)


def host_item(resource: Any) -> SelectableItem:
    spec = resource.spec
    ports = tuple((p.name, p.protocol.number, p.port) for p in spec.ports)
    return SelectableItem(
        dict(resource.metadata.labels), tuple(spec.profiles), _sorted_nets(spec.expected_ips), ports
    )


def network_set_item(resource: Any) -> SelectableItem:
    labels = dict(resource.metadata.labels)
    parents: tuple[str, ...] = ()
    ns = resource.metadata.namespace
    if ns:
        labels[NAMESPACE_LABEL] = ns
        labels[NAMESPACE_NAME_LABEL] = ns
        parents = (NAMESPACE_PROFILE_PREFIX + ns,)
    return SelectableItem(labels, parents, _sorted_nets(resource.spec.nets))


# -- policies ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Policy:
    id: PolicyId
    tier: str
    order: float
    types: tuple[str, ...]
    untracked: bool
    pre_dnat: bool
    apply_on_forward: bool
    update: PolicyUpdate
    needs: dict[str, SetSpec]

    @property
    def sort_key(self) -> tuple[float, str, str, str]:
        return (self.order, self.id.name, self.id.namespace, self.id.kind)


def _make_policy(pid: PolicyId, spec: NetworkPolicySpec | GlobalNetworkPolicySpec) -> _Policy:
    namespace = pid.namespace if pid.kind == "NetworkPolicy" else None
    needs: dict[str, SetSpec] = {}
    inbound = resolve_rules(spec.ingress, namespace, "ingress", needs)
    outbound = resolve_rules(spec.egress, namespace, "egress", needs)
    gnp = spec if isinstance(spec, GlobalNetworkPolicySpec) else None
    untracked = bool(gnp and gnp.do_not_track)
    pre_dnat = bool(gnp and gnp.pre_dnat)
    forward = bool(gnp and gnp.apply_on_forward)
    update = PolicyUpdate(
        pid, inbound, outbound, untracked=untracked, pre_dnat=pre_dnat, apply_on_forward=forward
    )
    return _Policy(
        pid,
        spec.effective_tier,
        spec.effective_order,
        spec.effective_types,
        untracked,
        pre_dnat,
        forward,
        update,
        needs,
    )


class PolicyCalc:
    def __init__(self, hostname: str, sequencer: EventSequencer) -> None:
        self._hostname = hostname
        self._sequencer = sequencer
        self.ipsets = IPSetCalc(sequencer)
        self._local_index = AnchoredLabelIndex(self._on_policy_match, self._on_policy_unmatch)
        self._policies: dict[PolicyId, _Policy] = {}
        self._policy_keys: dict[str, PolicyId] = {}
        self._policy_eps: dict[PolicyId, set[EndpointKey]] = {}
        self._ep_policies: dict[EndpointKey, set[PolicyId]] = {}
        self._tiers: dict[str, TierSpec] = {}
        self._profiles: dict[str, ProfileSpec] = {}
        self._profile_needs: dict[str, dict[str, SetSpec]] = {}
        self._profile_users: dict[str, set[EndpointKey]] = {}
        self._local_weps: dict[WorkloadEndpointId, Any] = {}
        self._local_heps: dict[HostEndpointId, Any] = {}
        self._ep_keys: dict[str, EndpointKey] = {}
        self._ep_profiles: dict[EndpointKey, tuple[str, ...]] = {}
        self._dirty_eps: set[EndpointKey] = set()
        self._dirty_policies: set[PolicyId] = set()
        self._dirty_profiles: set[str] = set()

    # -- endpoints and sets --------------------------------------------------------------------------
    def on_workload_endpoint(self, key: str, resource: Any) -> None:
        item = workload_item(resource) if resource is not None else None
        self.ipsets.update_item(key, item)
        local = item is not None and getattr(getattr(resource, "spec", None), "node", None) == self._hostname
        old_id = self._ep_keys.get(key)
        if not local or item is None:
            if old_id is not None:
                self._remove_local(key, old_id)
            return
        meta: Any = resource.metadata
        ep_id = WorkloadEndpointId(str(meta.namespace), str(meta.name))
        if old_id is not None and old_id != ep_id:
            self._remove_local(key, old_id)
        self._ep_keys[key] = ep_id
        self._local_weps[ep_id] = resource
        self._set_local(ep_id, item)

    def on_remote_workload_endpoint(self, key: str, item: SelectableItem | None) -> None:
        """A WorkloadEndpoint of another host, already reduced to its item (`policy_remote`)."""
        self.ipsets.update_item(key, item)
        old_id = self._ep_keys.get(key)
        if old_id is not None:  # it was local until now
            self._remove_local(key, old_id)

    def on_host_endpoint(self, key: str, resource: Any) -> None:
        item = host_item(resource) if resource is not None else None
        self.ipsets.update_item(key, item)
        local = item is not None and getattr(getattr(resource, "spec", None), "node", None) == self._hostname
        old_id = self._ep_keys.get(key)
        if not local or item is None:
            if old_id is not None:
                self._remove_local(key, old_id)
            return
        ep_id = HostEndpointId(str(resource.metadata.name))
        self._ep_keys[key] = ep_id
        self._local_heps[ep_id] = resource
        self._set_local(ep_id, item)

    def on_network_set(self, key: str, resource: object | None) -> None:
        self.ipsets.update_item(key, network_set_item(resource) if resource is not None else None)

    def _set_local(self, ep_id: EndpointKey, item: SelectableItem) -> None:
        self._local_index.update_labels(ep_id, item.labels, item.parents)
        resource: Any = (
            self._local_weps.get(ep_id)
            if isinstance(ep_id, WorkloadEndpointId)
            else self._local_heps.get(ep_id)
        )
        self._set_profiles(ep_id, tuple(resource.spec.profiles))
        self._dirty_eps.add(ep_id)

    def _remove_local(self, key: str, ep_id: EndpointKey) -> None:
        del self._ep_keys[key]
        if isinstance(ep_id, WorkloadEndpointId):
            self._local_weps.pop(ep_id, None)
        else:
            self._local_heps.pop(ep_id, None)
        self._local_index.remove_labels(ep_id)
        self._set_profiles(ep_id, ())
        self._dirty_eps.add(ep_id)

    def _set_profiles(self, ep_id: EndpointKey, profiles: tuple[str, ...]) -> None:
        old = self._ep_profiles.get(ep_id, ())
        if old == profiles:
            return
        for name in set(old) - set(profiles):
            users = self._profile_users[name]
            users.discard(ep_id)
            if not users:
                del self._profile_users[name]
                self._release(self._profile_needs.get(name, {}))
                self._dirty_profiles.add(name)
        for name in set(profiles) - set(old):
            users = self._profile_users.setdefault(name, set())
            if not users:
                self._acquire(self._profile_needs.get(name, {}))
                self._dirty_profiles.add(name)
            users.add(ep_id)
        if profiles:
            self._ep_profiles[ep_id] = profiles
        else:
            self._ep_profiles.pop(ep_id, None)

    # -- policies ------------------------------------------------------------------------------------
    def on_network_policy(self, key: str, resource: object | None) -> None:
        self._on_policy(key, resource, "NetworkPolicy")

    def on_global_network_policy(self, key: str, resource: object | None) -> None:
        self._on_policy(key, resource, "GlobalNetworkPolicy")

    def _on_policy(self, key: str, resource: Any, kind: str) -> None:
        old_id = self._policy_keys.get(key)
        if resource is None:
            if old_id is not None:
                del self._policy_keys[key]
                self._local_index.remove_selector(old_id)  # deactivates, releasing its sets
                del self._policies[old_id]
            return
        meta: Any = resource.metadata
        spec: Any = resource.spec
        pid = PolicyId(kind, str(meta.namespace or "") if kind == "NetworkPolicy" else "", str(meta.name))
        policy = _make_policy(pid, spec)
        old = self._policies.get(pid)
        self._policies[pid] = policy
        self._policy_keys[key] = pid
        if pid in self._policy_eps:  # active: swap the sets it holds, resend, re-sort its endpoints
            self._acquire(policy.needs)
            if old is not None:
                self._release(old.needs)
            self._dirty_policies.add(pid)
            self._dirty_eps.update(self._policy_eps[pid])
        ns = pid.namespace if kind == "NetworkPolicy" else None
        self._local_index.update_selector(pid, policy_selector(kind, ns, spec))

    def _on_policy_match(self, sel_id: Hashable, ep_id: Hashable) -> None:
        assert isinstance(sel_id, PolicyId)
        assert isinstance(ep_id, WorkloadEndpointId | HostEndpointId)
        eps = self._policy_eps.setdefault(sel_id, set())
        if not eps:
            self._acquire(self._policies[sel_id].needs)
            self._dirty_policies.add(sel_id)
        eps.add(ep_id)
        self._ep_policies.setdefault(ep_id, set()).add(sel_id)
        self._dirty_eps.add(ep_id)

    def _on_policy_unmatch(self, sel_id: Hashable, ep_id: Hashable) -> None:
        assert isinstance(sel_id, PolicyId)
        assert isinstance(ep_id, WorkloadEndpointId | HostEndpointId)
        eps = self._policy_eps[sel_id]
        eps.discard(ep_id)
        if not eps:
            del self._policy_eps[sel_id]
            self._release(self._policies[sel_id].needs)
            self._dirty_policies.add(sel_id)
        ep_pols = self._ep_policies[ep_id]
        ep_pols.discard(sel_id)
        if not ep_pols:
            del self._ep_policies[ep_id]
        self._dirty_eps.add(ep_id)

    def _acquire(self, needs: dict[str, SetSpec]) -> None:
        for spec in needs.values():
            self.ipsets.add_ref(spec)

    def _release(self, needs: dict[str, SetSpec]) -> None:
        for set_id in needs:
            self.ipsets.remove_ref(set_id)

    # -- tiers, profiles, pools ----------------------------------------------------------------------
    def on_tier(self, key: str, resource: object | None) -> None:
        name = key.rsplit("/", 1)[-1]
        spec = getattr(resource, "spec", None)
        if isinstance(spec, TierSpec):
            self._tiers[name] = spec
        else:
            self._tiers.pop(name, None)
        self._dirty_eps.update(self._ep_policies)

    def on_profile(self, key: str, resource: object | None) -> None:
        name = key.rsplit("/", 1)[-1]
        spec = getattr(resource, "spec", None)
        old_needs = self._profile_needs.pop(name, {})
        if isinstance(spec, ProfileSpec):
            needs: dict[str, SetSpec] = {}
            self._profiles[name] = spec
            self._profile_needs[name] = needs
            self._profile_rules(name, needs)
            labels: dict[str, str] | None = dict(spec.labels_to_apply)
        else:
            self._profiles.pop(name, None)
            needs = {}
            labels = None
        if name in self._profile_users:
            self._acquire(needs)
            self._release(old_needs)
            self._dirty_profiles.add(name)
        self.ipsets.update_parent(name, labels)
        if labels is None:
            self._local_index.remove_parent_labels(name)
        else:
            self._local_index.update_parent_labels(name, labels)

    def _profile_rules(self, name: str, needs: dict[str, SetSpec]) -> ProfileUpdate:
        spec = self._profiles.get(name)
        if spec is None:
            if name == DEFAULT_ALLOW_PROFILE:  # synthesised, as Calico's etcd datastore does
                allow = (ResolvedRule("Allow", "ingress[0]"),)
                return ProfileUpdate(name, allow, (ResolvedRule("Allow", "egress[0]"),))
            return ProfileUpdate(name)
        update = ProfileUpdate(
            name,
            resolve_rules(spec.ingress, None, "ingress", needs),
            resolve_rules(spec.egress, None, "egress", needs),
        )
        return update

    def on_ip_pool(self, key: str, resource: object | None) -> None:
        name = key.rsplit("/", 1)[-1]
        spec = getattr(resource, "spec", None)
        if spec is None:
            self._sequencer.queue_remove(POOLS, name)
            return
        self._sequencer.queue_update(
            POOLS, name, PoolUpdate(name, str(spec.cidr), bool(spec.effective_nat_outgoing))
        )

    # -- output --------------------------------------------------------------------------------------
    def _tier_info(self, name: str) -> tuple[float, Literal["Deny", "Pass"]]:
        spec = self._tiers.get(name)
        if spec is None:
            default: Literal["Deny", "Pass"] = "Pass" if name in PASS_BY_DEFAULT_TIERS else "Deny"
            return effective_tier_order(name, TierSpec()), default
        action: Literal["Deny", "Pass"] = "Pass" if spec.effective_default_action == "Pass" else "Deny"
        return effective_tier_order(name, spec), action

    def _tiers_of(self, policies: Iterable[_Policy], ingress_only: bool = False) -> tuple[TierPolicies, ...]:
        by_tier: dict[str, list[_Policy]] = {}
        for policy in policies:
            by_tier.setdefault(policy.tier, []).append(policy)
        out: list[tuple[float, str, TierPolicies]] = []
        for name, members in by_tier.items():
            members.sort(key=lambda p: p.sort_key)
            ingress = tuple(p.id for p in members if INGRESS in p.types)
            egress = () if ingress_only else tuple(p.id for p in members if EGRESS in p.types)
            if not ingress and not egress:
                continue
            order, action = self._tier_info(name)
            out.append(
                (
                    order if not math.isnan(order) else math.inf,
                    name,
                    TierPolicies(name, action, ingress, egress),
                )
            )
        out.sort(key=lambda t: (t[0], t[1]))
        return tuple(t[2] for t in out)

    def _endpoint_message(self, ep_id: WorkloadEndpointId) -> EndpointPolicyUpdate:
        spec = self._local_weps[ep_id].spec
        policies = [self._policies[p] for p in self._ep_policies.get(ep_id, ())]
        nets = _sorted_nets(spec.ip_networks)
        return EndpointPolicyUpdate(
            id=ep_id,
            interface_name=str(spec.interface_name or ""),
            ipv4_nets=tuple(n for n in nets if ":" not in n),
            ipv6_nets=tuple(n for n in nets if ":" in n),
            allowed_source_prefixes=tuple(_cidr(n) for n in spec.allow_spoofed_source_prefixes),
            tiers=self._tiers_of(p for p in policies if not p.untracked and not p.pre_dnat),
            profile_ids=tuple(spec.profiles),
        )

    def _host_endpoint_message(self, ep_id: HostEndpointId) -> HostEndpointPolicyUpdate:
        spec = self._local_heps[ep_id].spec
        policies = [self._policies[p] for p in self._ep_policies.get(ep_id, ())]
        normal = [p for p in policies if not p.untracked and not p.pre_dnat]
        return HostEndpointPolicyUpdate(
            id=ep_id,
            interface_name=spec.interface_name,
            expected_ips=tuple(str(ipaddress.ip_address(ip)) for ip in spec.expected_ips),
            tiers=self._tiers_of(normal),
            forward_tiers=self._tiers_of(p for p in normal if p.apply_on_forward),
            pre_dnat_tiers=self._tiers_of((p for p in policies if p.pre_dnat), ingress_only=True),
            untracked_tiers=self._tiers_of(p for p in policies if p.untracked),
            profile_ids=tuple(spec.profiles),
        )

    def flush(self) -> None:
        """Queue everything that changed since the last flush (call before the sequencer's)."""
        for pid in sorted(self._dirty_policies):
            if pid in self._policy_eps:
                self._sequencer.queue_update(POLICIES, pid, self._policies[pid].update)
            else:
                self._sequencer.queue_remove(POLICIES, pid)
        self._dirty_policies.clear()
        for name in sorted(self._dirty_profiles):
            if name in self._profile_users:
                self._sequencer.queue_update(PROFILES, name, self._profile_rules(name, {}))
            else:
                self._sequencer.queue_remove(PROFILES, name)
        self._dirty_profiles.clear()
        for ep_id in sorted(self._dirty_eps, key=str):
            if isinstance(ep_id, WorkloadEndpointId):
                if ep_id in self._local_weps:
                    self._sequencer.queue_update(ENDPOINT_POLICY, ep_id, self._endpoint_message(ep_id))
                else:
                    self._sequencer.queue_remove(ENDPOINT_POLICY, ep_id)
            elif ep_id in self._local_heps:
                self._sequencer.queue_update(HOST_ENDPOINT_POLICY, ep_id, self._host_endpoint_message(ep_id))
            else:
                self._sequencer.queue_remove(HOST_ENDPOINT_POLICY, ep_id)
        self._dirty_eps.clear()
        self.ipsets.flush()

    # -- reads (metrics, policy trace) ---------------------------------------------------------------
    @property
    def active_policy_count(self) -> int:
        return len(self._policy_eps)

    def policies_of(self, ep_id: EndpointKey) -> frozenset[PolicyId]:
        return frozenset(self._ep_policies.get(ep_id, ()))
