"""Policy calculator: which policies, profiles and IP sets this host needs, and when to send them.

    WorkloadEndpoint, HostEndpoint (all hosts) --+--> IPSetCalc (label index over ALL items) --> ipsets
    NetworkSet, GlobalNetworkSet ----------------'            ^ add_ref/remove_ref
    Profile labelsToApply -> parents of both indexes          |
    (Global)NetworkPolicy --> local label index (policy selectors x LOCAL endpoints)
                                 |  match start/stop -> active policies (>= 1 local endpoint)
                                 v
                        policies / profiles channels   (policy_resolver, rules by policy_rules)
    Tier ------------------> per local endpoint: tiers by order, policies by order -> endpoint_policy
    IPPool ----------------> pools                                        / host_endpoint_policy

This module is the *active rules* part and the wiring: the label index of policy selectors over
local endpoints, reference counts of profiles and IP sets, dirty tracking and `flush()`. What the
messages contain is decided elsewhere, purely: items (`policy_items`), rules (`policy_rules`),
policy and endpoint resolution with the tier order (`policy_resolver`), set members (`ipset_calc`).

Inputs: the dispatcher's `on_*` calls (parsed Resource or None per datastore key). Outputs: on
`flush()` (which the graph calls before the sequencer's flush) the policy messages of
`tortie.dataplane.messages.policy`, queued on the channels in `POLICY_CHANNELS`.

Invariants (Calico's calc graph, reference §3.2, §1.15):
* Only active policies (selecting at least one local endpoint) and profiles listed by a local
  endpoint are sent, and only their rules' IP sets exist: dataplane size follows local endpoints.
* Channel ranks give the flush order IP sets < policies < profiles < pools < endpoints, removes in
  reverse: nothing is referenced before it exists or removed while referenced (fail closed).
* An endpoint is re-sent when a policy that selects it starts or stops doing so, changes, or a
  Tier changes; a policy or profile when its rules change while it is in use.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

from tortie.calc.event_sequencer import Channel, EventSequencer
from tortie.calc.ipset_calc import CHANNEL as IPSETS
from tortie.calc.ipset_calc import IPSetCalc, ipset_remove
from tortie.calc.policy_items import SelectableItem, host_item, network_set_item, workload_item
from tortie.calc.policy_resolver import (
    ResolvedPolicy,
    endpoint_update,
    host_endpoint_update,
    resolve_policy,
    resolve_profile,
)
from tortie.calc.policy_rules import SetSpec, policy_selector
from tortie.dataplane.messages import WorkloadEndpointId
from tortie.dataplane.messages.policy import (
    EndpointPolicyRemove,
    HostEndpointId,
    HostEndpointPolicyRemove,
    PolicyId,
    PolicyRemove,
    PoolRemove,
    PoolUpdate,
    ProfileRemove,
)
from tortie.model.specs_policy import ProfileSpec, TierSpec
from tortie.selector.label_index import AnchoredLabelIndex

log = logging.getLogger(__name__)

POLICIES = "policies"
PROFILES = "profiles"
POOLS = "pools"
ENDPOINT_POLICY = "endpoint_policy"
HOST_ENDPOINT_POLICY = "host_endpoint_policy"


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


class PolicyCalc:
    """See the module docstring; `flush()` before the sequencer's flush."""

    def __init__(self, hostname: str, sequencer: EventSequencer) -> None:
        self._hostname = hostname
        self._sequencer = sequencer
        self.ipsets = IPSetCalc(sequencer)
        self._local_index = AnchoredLabelIndex(self._on_policy_match, self._on_policy_unmatch)
        self._policies: dict[PolicyId, ResolvedPolicy] = {}
        self._policy_keys: dict[str, PolicyId] = {}
        self._policy_eps: dict[PolicyId, set[EndpointKey]] = {}
        self._ep_policies: dict[EndpointKey, set[PolicyId]] = {}
        self._tiers: dict[str, TierSpec] = {}
        self._profiles: dict[str, ProfileSpec] = {}
        self._profile_needs: dict[str, dict[str, SetSpec]] = {}
        self._profile_users: dict[str, set[EndpointKey]] = {}
        self._local: dict[EndpointKey, Any] = {}  # this host's endpoints: id -> resource
        self._ep_keys: dict[str, EndpointKey] = {}
        self._ep_profiles: dict[EndpointKey, tuple[str, ...]] = {}
        self._dirty_eps: set[EndpointKey] = set()
        self._dirty_policies: set[PolicyId] = set()
        self._dirty_profiles: set[str] = set()

    # -- endpoints and sets --------------------------------------------------------------------------
    def on_workload_endpoint(self, key: str, resource: Any) -> None:
        """A WorkloadEndpoint of this host (the validation filter decided locality), or None."""
        if resource is None:
            self._on_endpoint(key, None, None, None, local=False)
            return
        meta: Any = resource.metadata
        ep_id = WorkloadEndpointId(str(meta.namespace), str(meta.name))
        self._on_endpoint(key, resource, workload_item(resource), ep_id, local=True)

    def on_remote_workload_endpoint(self, key: str, item: SelectableItem | None) -> None:
        """A WorkloadEndpoint of another host, already reduced to its item (`policy_remote`); a
        move from this host has already reached `on_workload_endpoint` as None."""
        self._on_endpoint(key, None, item, None, local=False)

    def on_host_endpoint(self, key: str, resource: Any) -> None:
        """Any host's HostEndpoint (they are few and parsed in full; their locality is decided here)."""
        if resource is None:
            self._on_endpoint(key, None, None, None, local=False)
            return
        local = getattr(resource.spec, "node", None) == self._hostname
        ep_id = HostEndpointId(str(resource.metadata.name))
        self._on_endpoint(key, resource, host_item(resource), ep_id, local=local)

    def _on_endpoint(
        self, key: str, resource: Any, item: SelectableItem | None, ep_id: EndpointKey | None, *, local: bool
    ) -> None:
        """Every endpoint feeds the IP sets; this host's are also matched against policy selectors."""
        self.ipsets.update_item(key, item)
        old_id = self._ep_keys.get(key)
        if old_id is not None and (not local or old_id != ep_id):
            self._remove_local(key, old_id)
        if ep_id is None or item is None or not local:
            return
        self._ep_keys[key] = ep_id
        self._local[ep_id] = resource
        self._set_local(ep_id, item)

    def on_network_set(self, key: str, resource: object | None) -> None:
        self.ipsets.update_item(key, network_set_item(resource) if resource is not None else None)

    def _set_local(self, ep_id: EndpointKey, item: SelectableItem) -> None:
        self._local_index.update_labels(ep_id, item.labels, item.parents)
        self._set_profiles(ep_id, tuple(self._local[ep_id].spec.profiles))
        self._dirty_eps.add(ep_id)

    def _remove_local(self, key: str, ep_id: EndpointKey) -> None:
        del self._ep_keys[key]
        self._local.pop(ep_id, None)
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
        policy = resolve_policy(pid, spec)
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
            resolve_profile(name, spec, needs)
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
                profile = resolve_profile(name, self._profiles.get(name), {})
                self._sequencer.queue_update(PROFILES, name, profile)
            else:
                self._sequencer.queue_remove(PROFILES, name)
        self._dirty_profiles.clear()
        for ep_id in sorted(self._dirty_eps, key=str):
            resource = self._local.get(ep_id)
            policies = [self._policies[p] for p in self._ep_policies.get(ep_id, ())]
            if isinstance(ep_id, WorkloadEndpointId):
                if resource is not None:
                    wep_update = endpoint_update(ep_id, resource, policies, self._tiers)
                    self._sequencer.queue_update(ENDPOINT_POLICY, ep_id, wep_update)
                else:
                    self._sequencer.queue_remove(ENDPOINT_POLICY, ep_id)
            elif resource is not None:
                hep_update = host_endpoint_update(ep_id, resource, policies, self._tiers)
                self._sequencer.queue_update(HOST_ENDPOINT_POLICY, ep_id, hep_update)
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
