"""The agent's calculation graph: wires the validation filter, dispatcher, calculators and sequencer.

    KVUpdate / InSync
          |
    ValidationFilter --(parsed | None)--> Dispatcher
                                             |--WorkloadEndpoint---------> EndpointCalc --+
                                             |--IPAMBlock, BlockAffinity-> BlockCalc -----+--> EventSequencer
                                             '--FelixConfiguration-------> ConfigCalc ----+         |
                                                       (config listeners: EndpointCalc)        flush() -> sink

Inputs: `on_event(KVUpdate | InSync)`; `flush()` whenever the caller has drained what is queued
(the agent flushes after each batch). Output: `tortie.dataplane.messages` through `sink`, only from
`flush()`. Pure and synchronous: no I/O, no clock, no threads; the same events give the same messages.

Channel ranks (dependency order of the sequencer): lower ranks are sent first on update, last on
remove. With `policy=True` (the agent) the policy calculator's channels join them: ipsets (10),
policies (20), profiles (30), pools (33), endpoint policy (36), host endpoint policy (37)
(tortie.calc.policy_calc, docs/design/policy.md).
"""

from __future__ import annotations

from collections.abc import Callable

from tortie.calc.block_calc import CHANNEL as BLOCKS
from tortie.calc.block_calc import BlockCalc, block_remove
from tortie.calc.config_calc import ConfigCalc, Resolver, merge_specs
from tortie.calc.dispatcher import AFFINITY_KIND, BLOCK_KIND, Dispatcher
from tortie.calc.endpoint_calc import CHANNEL as ENDPOINTS
from tortie.calc.endpoint_calc import EndpointCalc, endpoint_remove, raw_is_local
from tortie.calc.event_sequencer import Channel, EventSequencer
from tortie.calc.events import CalcEvent, InSync, KVUpdate
from tortie.calc.policy_calc import POLICY_CHANNELS, PolicyCalc
from tortie.calc.policy_graph import attach_policy_calc
from tortie.calc.validation_filter import FELIX_CONFIGURATION, ValidationFilter
from tortie.dataplane.messages import Message

CHANNELS = (
    Channel(ENDPOINTS, 40, endpoint_remove),
    Channel(BLOCKS, 50, block_remove),
)


class CalcGraph:
    def __init__(
        self, hostname: str, sink: Callable[[Message], None], resolve: Resolver = merge_specs,
        *, policy: bool = False,
    ) -> None:
        self.hostname = hostname
        self.sequencer = EventSequencer(sink, CHANNELS + (POLICY_CHANNELS if policy else ()))
        self.dispatcher = Dispatcher()
        self.validation_filter = ValidationFilter(self.dispatcher)

        self.config_calc = ConfigCalc(hostname, self.sequencer, resolve)
        self.endpoint_calc = EndpointCalc(hostname, self.sequencer)
        self.block_calc = BlockCalc(hostname, self.sequencer)

        self.dispatcher.register(FELIX_CONFIGURATION, self.config_calc.on_felix_configuration)
        self.dispatcher.register("WorkloadEndpoint", self.endpoint_calc.on_endpoint)
        self.validation_filter.set_relevance("WorkloadEndpoint", raw_is_local(hostname))
        self.dispatcher.register(BLOCK_KIND, self.block_calc.on_block)
        self.dispatcher.register(AFFINITY_KIND, self.block_calc.on_affinity)
        self.config_calc.add_listener(self.endpoint_calc.on_config)
        # Issue 5: policy (tiers, policies, profiles, IP sets, host endpoints, pools); it lifts the
        # WorkloadEndpoint relevance filter because selectors need every host's endpoints.
        self.policy_calc: PolicyCalc | None = None
        if policy:
            self.policy_calc = attach_policy_calc(
                hostname, self.dispatcher, self.validation_filter, self.sequencer)

    def on_event(self, event: CalcEvent) -> None:
        if isinstance(event, KVUpdate):
            self.validation_filter.on_kv_update(event)
        elif isinstance(event, InSync):
            self.sequencer.on_datastore_in_sync()

    def flush(self) -> int:
        if self.policy_calc is not None:
            self.policy_calc.flush()
        return self.sequencer.flush()
