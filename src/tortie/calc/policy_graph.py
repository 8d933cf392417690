"""Wiring of the policy calculator into a calc graph, and a standalone policy-only graph.

    Update/Delete/InSync -> ValidationFilter -> Dispatcher --policy kinds--------------------> PolicyCalc
                                                           --Profile, (Global)NetworkPolicy,      ^
                                                             Kubernetes kinds--> KubernetesCalc --'
                                                           --flush--> EventSequencer

`attach_policy_calc(hostname, dispatcher, sequencer)` registers the PolicyCalc's listeners on an
existing graph (the agent's CalcGraph), this host's endpoints and the others' alike: selectors need
every host's endpoints, but other hosts' endpoints (passed on raw by the validation filter) are read
by `policy_remote` (the fields policy uses) rather than parsed in full. Profiles and (Global)
NetworkPolicies reach the policy calc through `KubernetesCalc`, which adds the translations of the
Kubernetes kinds (a translation shadows a stored object of the same key). The graph must call
`PolicyCalc.flush()` before its sequencer's flush and give the sequencer `POLICY_CHANNELS`.

`PolicyGraph(hostname, sink)` is the same calculation with nothing else around it: what
`tortie policy trace`, the property tests and the benchmark run. Pure: events in, messages out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tortie.calc.dispatcher import REMOTE_WORKLOAD_ENDPOINT, WORKLOAD_ENDPOINT, Dispatcher
from tortie.calc.event_sequencer import EventSequencer
from tortie.calc.kubernetes_calc import KubernetesCalc
from tortie.calc.policy_calc import POLICY_CHANNELS, PolicyCalc
from tortie.calc.policy_remote import RemoteEndpointReader
from tortie.calc.validation_filter import ValidationFilter
from tortie.dataplane.messages import Message
from tortie.datastore.syncer import Delete, InSync, SyncEvent, Update
from tortie.k8s.names import KUBERNETES_KINDS

POLICY_KINDS = (
    "WorkloadEndpoint",
    "HostEndpoint",
    "NetworkSet",
    "GlobalNetworkSet",
    "NetworkPolicy",
    "GlobalNetworkPolicy",
    "Tier",
    "Profile",
    "IPPool",
    *KUBERNETES_KINDS,
)


def attach_policy_calc(hostname: str, dispatcher: Dispatcher, sequencer: EventSequencer) -> PolicyCalc:
    calc = PolicyCalc(hostname, sequencer)
    dispatcher.register(WORKLOAD_ENDPOINT, calc.on_workload_endpoint)
    remote = RemoteEndpointReader()
    dispatcher.register(REMOTE_WORKLOAD_ENDPOINT, remote.listener(calc.on_remote_workload_endpoint))
    dispatcher.register("HostEndpoint", calc.on_host_endpoint)
    dispatcher.register("NetworkSet", calc.on_network_set)
    dispatcher.register("GlobalNetworkSet", calc.on_network_set)
    kubernetes = KubernetesCalc(
        {
            "Profile": calc.on_profile,
            "NetworkPolicy": calc.on_network_policy,
            "GlobalNetworkPolicy": calc.on_global_network_policy,
        }
    )
    for kind, listener in kubernetes.listeners().items():
        dispatcher.register(kind, listener)
    dispatcher.register("Tier", calc.on_tier)
    dispatcher.register("IPPool", calc.on_ip_pool)
    return calc


class GraphEntry:
    """The front of a calc graph: datastore updates go through its validation filter, in-sync to its
    sequencer (which then flushes everything queued so far)."""

    validation_filter: ValidationFilter
    sequencer: EventSequencer

    def on_event(self, event: SyncEvent) -> None:
        if isinstance(event, Update | Delete):
            self.validation_filter.on_event(event)
        elif isinstance(event, InSync):
            self.sequencer.on_datastore_in_sync()


class PolicyGraph(GraphEntry):
    def __init__(self, hostname: str, sink: Callable[[Message], None]) -> None:
        self.sequencer = EventSequencer(sink, POLICY_CHANNELS)
        self.dispatcher = Dispatcher()
        self.validation_filter = ValidationFilter(self.dispatcher, hostname)
        self.policy = attach_policy_calc(hostname, self.dispatcher, self.sequencer)
        self.sequencer.queue_config({})

    def flush(self) -> int:
        self.policy.flush()
        return self.sequencer.flush()


def run_snapshot(hostname: str, objects: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Message]:
    """The messages a fresh agent on `hostname` would get for this datastore snapshot."""
    out: list[Message] = []
    graph = PolicyGraph(hostname, out.append)
    for key, value in objects:
        graph.on_event(Update(key, value if isinstance(value, dict) else dict(value), 1))
    graph.on_event(InSync())
    graph.flush()
    return out
