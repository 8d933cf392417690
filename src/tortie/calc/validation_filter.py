"""Validation filter: raw datastore values in, parsed objects (or None) out to the dispatcher.

Input: `KVUpdate(key, value)` events. Output: `Dispatcher.on_update(key, kind, parsed | None)`.

* Keys of unknown kinds, or kinds no calculator registered for, are dropped before parsing.
* v3 resources are parsed with `tortie.model.parse_resource` (validated once, here) and must be
  stored at their own key (name/namespace agree with the key). IPAM blocks and affinities are decoded
  by `tortie.model.ipam_records` (through `tortie.ipam.keys`: blocks as `BlockHead`s).
* FelixConfiguration is the exception: only its shape (name, spec mapping) is checked here and its
  raw wire spec is passed on, because the agent's configuration table validates each field on its
  own (an unknown or invalid field falls back to its default; it must not void the whole object).
* An invalid value is logged as a warning and passed on as None: it is treated as absent, so one
  bad object never stops the others (conventions #1, #7).
* A *relevance* predicate per kind (`set_relevance`) lets a calculator skip parsing objects it would
  ignore anyway, e.g. WorkloadEndpoints of other hosts: an irrelevant value is passed on as None
  without being parsed. Issue 5 drops the WorkloadEndpoint predicate when the label index needs
  remote endpoints too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tortie.calc.dispatcher import AFFINITY_KIND, BLOCK_KIND, Dispatcher, kind_of_key
from tortie.calc.events import KVUpdate
from tortie.common.errors import InvalidRecord
from tortie.ipam.keys import affinity_at, block_head_at
from tortie.model import ValidationError, parse_resource
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)

Parser = Callable[[str, Mapping[str, Any]], object]
Relevance = Callable[[str, Mapping[str, Any]], bool]

FELIX_CONFIGURATION = "FelixConfiguration"


def _key_name(key: str, kind: str) -> tuple[str | None, str]:
    info = kind_info(kind)
    rest = key[len(info.prefix):]
    if info.namespaced:
        namespace, _, name = rest.partition("/")
        return namespace, name
    return None, rest


def parse_v3(key: str, value: Mapping[str, Any]) -> object:
    resource = parse_resource(dict(value), source=key)
    namespace, name = _key_name(key, resource.kind)
    meta = resource.metadata
    if meta.name != name or (namespace is not None and meta.namespace != namespace):
        raise InvalidRecord(f"{key}: stored object is {meta.namespace}/{meta.name}, not at its own key")
    return resource


def parse_felix_configuration(key: str, value: Mapping[str, Any]) -> object:
    """The wire spec (a mapping) of a FelixConfiguration stored at its own key."""
    _ns, name = _key_name(key, FELIX_CONFIGURATION)
    metadata = value.get("metadata")
    spec = value.get("spec", {})
    if value.get("kind", FELIX_CONFIGURATION) != FELIX_CONFIGURATION:
        raise InvalidRecord(f"{key}: kind {value.get('kind')!r} is not FelixConfiguration")
    if not isinstance(metadata, Mapping) or metadata.get("name") != name:
        raise InvalidRecord(f"{key}: metadata.name does not match the key")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise InvalidRecord(f"{key}: spec must be a mapping")
    return dict(spec)


_PARSERS: dict[str, Parser] = {
    BLOCK_KIND: block_head_at,
    AFFINITY_KIND: affinity_at,
    FELIX_CONFIGURATION: parse_felix_configuration,
}


class ValidationFilter:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._relevance: dict[str, Relevance] = {}
        self.invalid_count = 0

    def set_relevance(self, kind: str, predicate: Relevance | None) -> None:
        if predicate is None:
            self._relevance.pop(kind, None)
        else:
            self._relevance[kind] = predicate

    def on_kv_update(self, update: KVUpdate) -> None:
        key, value = update.key, update.value
        kind = kind_of_key(key)
        if kind is None or not self._dispatcher.wants(kind):
            return
        if value is None:
            self._dispatcher.on_update(key, kind, None)
            return
        relevant = self._relevance.get(kind)
        if relevant is not None and not relevant(key, value):
            self._dispatcher.on_update(key, kind, None)
            return
        parser = _PARSERS.get(kind, parse_v3)
        try:
            parsed = parser(key, value)
        except (ValidationError, InvalidRecord, ValueError) as exc:
            self.invalid_count += 1
            log.warning("invalid datastore object treated as absent key=%s reason=%r", key, str(exc))
            self._dispatcher.on_update(key, kind, None)
            return
        self._dispatcher.on_update(key, kind, parsed)
