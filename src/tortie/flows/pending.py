"""The pending verdict: what the policies would decide if the staged policies were applied.

Staged policies are never enforced. To show their effect, this module runs a second copy of the
agent's policy calc (`PolicyGraph`, pure) on a *pending view* of the datastore, and evaluates a
flow's first packet there with the product's user-space evaluator (`tortie.policy.trace.evaluate`,
the same semantics as the rendered table):

    enforced objects ------------------------------+--> pending view --> PolicyGraph(host) --> PolicyState
    StagedNetworkPolicy ns/x, stagedAction Set    -+    NetworkPolicy ns/x := the staged spec
    StagedGlobalNetworkPolicy x, Delete           -+    GlobalNetworkPolicy x removed
    StagedKubernetesNetworkPolicy ns/y, Set       -+    Kubernetes NetworkPolicy ns/y := the staged spec
                                                        (the calc translates it: knp.default.y)

Lazy: while no staged policy exists nothing is computed (the pending verdict is the real one).
When the first one appears, the flow logger's thread lists the policy kinds from the datastore
once (`lister`), builds the graph and from then on applies the updates the agent's syncer delivers
(`on_update`, called from the calc thread: it only queues), skipping those older than the listing.
When the last staged policy goes, the graph is dropped.

`evaluate(ip, inbound, flow_tuple)`: the pending (action, policies) for the local endpoint holding
`ip` (egress when `inbound` is False), or None when no staged policy exists or no such endpoint.
Policies read `tier|policy|rule|action`; a policy that comes from a staged object is named with its
staged kind (`StagedNetworkPolicy(ns/x)`; `StagedKubernetesNetworkPolicy(ns/y)` for the translation
`knp.default.y` of a staged Kubernetes policy). Only the deciding rule is listed.

Cost: a second policy calc while staged policies exist (memory and CPU of the calc's policy part),
and one evaluation per distinct connection tuple and interval (cached until the view changes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tortie.calc.policy_graph import POLICY_KINDS, PolicyGraph
from tortie.dataplane.messages import Message
from tortie.dataplane.messages.policy import EndpointPolicyUpdate, HostEndpointPolicyUpdate, TierPolicies
from tortie.dataplane.nft.ruleset import PolicyState
from tortie.datastore.syncer import Delete, InSync, Update
from tortie.k8s.names import NETWORK_POLICY_KIND, NETWORK_POLICY_PREFIX
from tortie.kernel.conntrack import FlowTuple
from tortie.model.kinds import kind_info
from tortie.model.specs_staged import DELETE, ENFORCED_KIND
from tortie.policy.trace import Decision, Packet, evaluate

log = logging.getLogger(__name__)

STAGED_PREFIXES = {kind_info(k).prefix: kind_info(v).prefix for k, v in ENFORCED_KIND.items()}
STAGED_KIND_OF = {v: k for k, v in ENFORCED_KIND.items()}
WATCHED = tuple(kind_info(k).prefix for k in POLICY_KINDS) + tuple(STAGED_PREFIXES)
_ENFORCED_PREFIXES = tuple(STAGED_PREFIXES.values())
Listing = list[tuple[str, Mapping[str, Any], int]]  # (key, value, revision of the listing)


def _enforced_key(staged_key: str) -> str:
    for staged, enforced in STAGED_PREFIXES.items():
        if staged_key.startswith(staged):
            return enforced + staged_key[len(staged):]
    raise ValueError(staged_key)


def _as_enforced(value: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(stagedAction, the enforced object) of a staged object's wire form."""
    spec = dict(value.get("spec") or {})
    action = str(spec.pop("stagedAction", "Set") or "Set")
    kind = ENFORCED_KIND.get(str(value.get("kind")))
    if kind is None:
        return action, {**value, "kind": "", "spec": spec}
    info = kind_info(kind)
    return action, {**value, "apiVersion": info.api_version, "kind": info.manifest_kind, "spec": spec}


class PendingPolicy:
    def __init__(self, hostname: str, lister: Callable[[], Listing]) -> None:
        self.hostname = hostname
        self._lister = lister
        self._lock = threading.Lock()
        self._enforced: dict[str, Mapping[str, Any]] = {}  # enforced policy key -> value
        self._staged: dict[str, tuple[str, dict[str, Any]]] = {}  # enforced key -> (action, object)
        self._queue: list[tuple[str, Mapping[str, Any] | None, int]] = []
        self._queueing = False
        self._graph: PolicyGraph | None = None
        self._state = PolicyState()
        self._listed: dict[str, int] = {}  # key -> revision the listing showed it at (skip older updates)
        self._by_ip: dict[str, EndpointPolicyUpdate | HostEndpointPolicyUpdate] = {}
        self._cache: dict[tuple[str, bool, FlowTuple], tuple[str, tuple[str, ...]]] = {}
        self._revision = 0

    # -- calc thread -----------------------------------------------------------------------------------
    def on_update(self, key: str, value: Mapping[str, Any] | None, revision: int) -> None:
        """A datastore update as the agent's syncer delivers it (any key; cheap: queued)."""
        staged = any(key.startswith(p) for p in STAGED_PREFIXES)
        with self._lock:
            if staged:
                enforced_key = _enforced_key(key)
                if value is None:
                    self._staged.pop(enforced_key, None)
                else:
                    self._staged[enforced_key] = _as_enforced(value)
            elif key.startswith(_ENFORCED_PREFIXES):
                if value is None:
                    self._enforced.pop(key, None)
                else:
                    self._enforced[key] = value
            if self._queueing:
                self._queue.append((key, value, revision))

    @property
    def active(self) -> bool:
        with self._lock:
            return bool(self._staged)

    # -- flow logger thread ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring the pending view up to date (build or drop the graph as staged policies come and go)."""
        with self._lock:
            wanted = bool(self._staged)
            if not wanted:
                self._queueing = False
                self._queue.clear()
        if not wanted:
            if self._graph is not None:
                log.info("no staged policy left: pending verdicts equal the real ones")
                self._graph = None
                self._state = PolicyState()
                self._by_ip.clear()
                self._cache.clear()
            return
        if self._graph is None:
            self._build()
            return
        with self._lock:
            queued, self._queue = self._queue, []
        if queued:
            self._apply(queued)

    def _build(self) -> None:
        with self._lock:
            self._queueing = True
        listing = self._lister()
        self._listed = {key: revision for key, _value, revision in listing}
        state = PolicyState()
        def sink(msg: Message) -> None:
            state.record(msg)

        graph = PolicyGraph(self.hostname, sink)
        self._graph, self._state = graph, state
        self._feed((key, value) for key, value, _ in listing)
        graph.on_event(InSync())
        with self._lock:
            queued, self._queue = self._queue, []
        self._apply(queued)
        log.info("staged policies present: pending view built objects=%d", len(listing))

    def _apply(self, updates: Iterable[tuple[str, Mapping[str, Any] | None, int]]) -> None:
        fresh = [(k, v) for k, v, rev in updates if rev > self._listed.get(k, 0)]
        self._feed(fresh)

    def _feed(self, updates: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        graph = self._graph
        if graph is None:
            return
        for key, value in updates:
            if key.startswith(tuple(STAGED_PREFIXES)):
                key = _enforced_key(key)
                value = self._pending_value(key)
            elif key.startswith(_ENFORCED_PREFIXES):
                value = self._pending_value(key)
            self._revision += 1  # the calc orders nothing by revision; any increasing number will do
            graph.on_event(Delete(key, self._revision) if value is None
                           else Update(key, dict(value), self._revision))
        graph.flush()
        self._index()

    def _pending_value(self, enforced_key: str) -> Mapping[str, Any] | None:
        with self._lock:
            staged = self._staged.get(enforced_key)
            if staged is None:
                return self._enforced.get(enforced_key)
        action, obj = staged
        return None if action == DELETE else obj

    def _index(self) -> None:
        by_ip: dict[str, EndpointPolicyUpdate | HostEndpointPolicyUpdate] = {}
        for ep in self._state.endpoints.values():
            for net in (*ep.ipv4_nets, *ep.ipv6_nets):
                by_ip[net.split("/")[0]] = ep
        for hep in self._state.host_endpoints.values():
            for ip in hep.expected_ips:
                by_ip.setdefault(ip, hep)
        self._by_ip = by_ip
        self._cache.clear()

    def evaluate(self, ip: str, inbound: bool, flow: FlowTuple) -> tuple[str, tuple[str, ...]] | None:
        if self._graph is None:
            return None
        cache_key = (ip, inbound, flow)
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        ep = self._by_ip.get(ip)
        if ep is None:
            return None
        icmp = flow.protocol in (1, 58)
        pkt = Packet(
            flow.src, flow.dst, flow.protocol,
            None if icmp else flow.sport, None if icmp else flow.dport,
            flow.dport // 256 if icmp else None, flow.dport % 256 if icmp else None,
        )
        decision = evaluate(self._state, ep.tiers, ep.profile_ids, "ingress" if inbound else "egress", pkt)
        result = (decision.verdict if decision.verdict != "none" else "allow",
                  (self._hit(decision, ep.tiers, inbound),))
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[cache_key] = result
        return result

    def _hit(self, d: Decision, tiers: tuple[TierPolicies, ...], inbound: bool) -> str:
        if d.policy is None:
            if d.tier is None:
                return f"-|-|default-deny|{d.verdict}"
            tier = next(t for t in tiers if t.name == d.tier)
            pids = tier.ingress if inbound else tier.egress
            return f"{d.tier}|{self._name(str(pids[-1]))}|end-of-tier|{d.verdict}"
        return f"{d.tier or '-'}|{self._name(d.policy)}|{d.rule}|{d.verdict}"

    def _name(self, policy: str) -> str:
        """`NetworkPolicy(ns/x)` -> `StagedNetworkPolicy(ns/x)` when the staged object decides;
        `NetworkPolicy(ns/knp.default.y)` -> `StagedKubernetesNetworkPolicy(ns/y)` likewise."""
        kind, _, rest = policy.partition("(")
        if kind not in STAGED_KIND_OF:
            return policy
        name = rest.rstrip(")")
        ns, _, bare = name.rpartition("/")
        if kind == "NetworkPolicy" and ns and bare.startswith(NETWORK_POLICY_PREFIX):
            k8s_name = bare[len(NETWORK_POLICY_PREFIX):]
            key = kind_info(NETWORK_POLICY_KIND).key(k8s_name, ns)
            with self._lock:
                staged = key in self._staged
            return f"{STAGED_KIND_OF[NETWORK_POLICY_KIND]}({ns}/{k8s_name})" if staged else policy
        key = kind_info(kind).key(bare, ns or None) if ns else kind_info(kind).key(bare)
        with self._lock:
            staged = key in self._staged
        return f"{STAGED_KIND_OF[kind]}({name})" if staged else policy


def datastore_lister(ds: Any) -> Callable[[], Listing]:
    """List the pending view's inputs from a `Datastore` (policy kinds and staged kinds)."""

    def lister() -> Listing:
        out: Listing = []
        for prefix in WATCHED:
            kvs, _revision = ds.list(prefix)
            out += [(kv.key, kv.value, kv.mod_revision) for kv in kvs if kv.value is not None]
        return out

    return lister

