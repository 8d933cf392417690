"""Config calculator: FelixConfiguration `default` and `node.<hostname>` -> ConfigUpdate.

Inputs: FelixConfiguration wire specs (mappings) or None per datastore key, from the dispatcher.
Output: `EventSequencer.queue_config(values)` and calls to config listeners (other calculators that
depend on configuration, e.g. the endpoint calculator's interface prefixes).

The merge itself is injected as `resolve(default_spec, node_spec) -> values`: the agent passes its
configuration table bound to the file/environment/command-line layers it read at start
(`tortie.agent.config`), keeping this module free of I/O. The initial configuration (no
FelixConfiguration yet) is queued at construction, so a config always precedes the first InSync.
Other FelixConfiguration objects (other hosts' node.<name>) are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tortie.calc.event_sequencer import EventSequencer
from tortie.model.kinds import kind_info

Spec = Mapping[str, Any]
Resolver = Callable[[Spec | None, Spec | None], Mapping[str, object]]
ConfigListener = Callable[[Mapping[str, object]], None]


def merge_specs(default: Spec | None, node: Spec | None) -> Mapping[str, object]:
    """Fallback resolver: the wire fields of both objects, node over default."""
    return {**(default or {}), **(node or {})}


class ConfigCalc:
    def __init__(self, hostname: str, sequencer: EventSequencer, resolve: Resolver = merge_specs) -> None:
        info = kind_info("FelixConfiguration")
        self._default_key = info.key("default")
        self._node_key = info.key(f"node.{hostname}")
        self._sequencer = sequencer
        self._resolve = resolve
        self._specs: dict[str, Spec | None] = {self._default_key: None, self._node_key: None}
        self._listeners: list[ConfigListener] = []
        self.values: Mapping[str, object] = {}
        self._recompute(first=True)

    def add_listener(self, listener: ConfigListener) -> None:
        """`listener(values)` is called now and on every change of the effective values."""
        self._listeners.append(listener)
        listener(self.values)

    def on_felix_configuration(self, key: str, spec: object | None) -> None:
        if key not in self._specs:
            return
        self._specs[key] = spec if isinstance(spec, Mapping) else None
        self._recompute()

    def _recompute(self, first: bool = False) -> None:
        values = dict(self._resolve(self._specs[self._default_key], self._specs[self._node_key]))
        if values == self.values and not first:
            return
        self.values = values
        self._sequencer.queue_config(values)
        for listener in self._listeners:
            listener(values)
