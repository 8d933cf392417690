"""The agent's calculation graph: wires the validation filter, dispatcher, calculators and sequencer.

    the syncer's Update / Delete / InSync (Status: ignored)
          |
    ValidationFilter --(parsed | None)--> Dispatcher
      (locality: this host's             |--WorkloadEndpoint---------> EndpointCalc --+
       endpoints parsed, others raw)     |--IPAMBlock, BlockAffinity-> BlockCalc -----+
                                         |--IPPool, Node, IPAMBlock--> VxlanResolver -+--> EventSequencer
                                         '--FelixConfiguration-------> ConfigCalc ----+         |
                                                   (config listeners: EndpointCalc)        flush() -> sink

Inputs: `on_event(event)` with the syncer's own events (`tortie.datastore.syncer`: one vocabulary
from the datastore to the calc, nothing re-typed); `flush()` whenever the caller has drained what
is queued (the agent flushes after each batch). Output: `tortie.dataplane.messages` through `sink`, only from
`flush()`. Pure and synchronous: no I/O, no clock, no threads; the same events give the same messages.

Channel ranks (dependency order of the sequencer): lower ranks are sent first on update, last on
remove: endpoints (40), host blocks (50), then the VXLAN resolver's encapsulation state (60), tunnel
endpoints (62) and remote block routes (64). With `policy=True` (the agent) the policy calculator's
channels join them: ipsets (10),
policies (20), profiles (30), pools (33), endpoint policy (36), host endpoint policy (37)
(tortie.calc.policy_calc, docs/design/policy.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tortie.calc.block_calc import CHANNEL as BLOCKS
from tortie.calc.block_calc import BlockCalc, block_remove
from tortie.calc.config_calc import ConfigCalc, Resolver, merge_specs
from tortie.calc.dispatcher import AFFINITY_KIND, BLOCK_KIND, WORKLOAD_ENDPOINT, Dispatcher
from tortie.calc.endpoint_calc import CHANNEL as ENDPOINTS
from tortie.calc.endpoint_calc import EndpointCalc, endpoint_remove
from tortie.calc.event_sequencer import Channel, EventSequencer
from tortie.calc.policy_calc import POLICY_CHANNELS, PolicyCalc
from tortie.calc.policy_graph import GraphEntry, attach_policy_calc
from tortie.calc.validation_filter import FELIX_CONFIGURATION, ValidationFilter
from tortie.calc.vxlan_resolver import CHANNELS as VXLAN_CHANNELS
from tortie.calc.vxlan_resolver import VxlanResolver
from tortie.dataplane.messages import Message

CHANNELS = (
    Channel(ENDPOINTS, 40, endpoint_remove),
    Channel(BLOCKS, 50, block_remove),
    *VXLAN_CHANNELS,
)


class CalcGraph(GraphEntry):
    def __init__(
        self, hostname: str, sink: Callable[[Message], None], resolve: Resolver = merge_specs,
        *, policy: bool = False, unsupported: Mapping[str, str] | None = None,
    ) -> None:
        self.hostname = hostname
        self.sequencer = EventSequencer(sink, CHANNELS + (POLICY_CHANNELS if policy else ()))
        self.dispatcher = Dispatcher()
        self.validation_filter = ValidationFilter(self.dispatcher, hostname)

        self.config_calc = ConfigCalc(hostname, self.sequencer, resolve)
        self.endpoint_calc = EndpointCalc(self.sequencer, unsupported)
        self.block_calc = BlockCalc(hostname, self.sequencer)
        self.vxlan_resolver = VxlanResolver(hostname, self.sequencer)

        self.dispatcher.register(FELIX_CONFIGURATION, self.config_calc.on_felix_configuration)
        self.dispatcher.register(WORKLOAD_ENDPOINT, self.endpoint_calc.on_endpoint)
        self.dispatcher.register(BLOCK_KIND, self.block_calc.on_block)
        self.dispatcher.register(AFFINITY_KIND, self.block_calc.on_affinity)
        self.dispatcher.register(BLOCK_KIND, self.vxlan_resolver.on_block)
        self.dispatcher.register("IPPool", self.vxlan_resolver.on_pool)
        self.dispatcher.register("Node", self.vxlan_resolver.on_node)
        self.config_calc.add_listener(self.endpoint_calc.on_config)
        # Policy (tiers, policies, profiles, IP sets, host endpoints, pools); it also listens to the
        # other hosts' endpoints, because selectors need every host's endpoints.
        self.policy_calc: PolicyCalc | None = None
        if policy:
            self.policy_calc = attach_policy_calc(hostname, self.dispatcher, self.sequencer)

    def flush(self) -> int:
        if self.policy_calc is not None:
            self.policy_calc.flush()
        return self.sequencer.flush()
