"""Validation filter: raw datastore values in, parsed objects (or None) out to the dispatcher; the
one place that decides whether a WorkloadEndpoint is on this host.

Input: the syncer's `Update(key, value, revision)` / `Delete(key, revision)` (`on_event`). Output:
`Dispatcher.on_update(key, kind, parsed | None)`.

* Keys of unknown kinds, or kinds no calculator registered for, are dropped before parsing.
* v3 resources are parsed with `tortie.model.parse_resource` (validated once, here) and must be
  stored at their own key (name/namespace agree with the key). IPAM blocks and affinities are decoded
  by `tortie.model.ipam_records` (through `tortie.ipam.keys`: blocks as `BlockHead`s).
* FelixConfiguration is the exception: only its shape (name, spec mapping) is checked here and its
  raw wire spec is passed on, because the agent's configuration table validates each field on its
  own (an unknown or invalid field falls back to its default; it must not void the whole object).
* An invalid value is logged as a warning and passed on as None: it is treated as absent, so one
  bad object never stops the others (conventions #1, #7).
* Locality, decided here once from the raw `spec.node`: a WorkloadEndpoint of this host goes,
  parsed and validated, to the listeners of kind "WorkloadEndpoint"; one of another host goes *raw*
  (never parsed in full: policy reads the few fields it needs, `policy_remote`) to the listeners of
  `REMOTE_WORKLOAD_ENDPOINT`. Each side hears of a key only while it is on that side: when an
  endpoint moves between hosts (or is deleted) the side it leaves gets None first. Listeners
  therefore never check `spec.node` again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tortie.calc.dispatcher import (
    AFFINITY_KIND,
    BLOCK_KIND,
    REMOTE_WORKLOAD_ENDPOINT,
    WORKLOAD_ENDPOINT,
    Dispatcher,
    kind_of_key,
)
from tortie.common.errors import InvalidRecord
from tortie.datastore.syncer import Delete, Update
from tortie.ipam.keys import affinity_at, block_head_at
from tortie.model import ValidationError, parse_resource
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)

Parser = Callable[[str, Mapping[str, Any]], object]

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
    def __init__(self, dispatcher: Dispatcher, hostname: str) -> None:
        self._dispatcher = dispatcher
        self._hostname = hostname
        self._remote: dict[str, bool] = {}  # WorkloadEndpoint key -> on another host (False: on this one)
        self.invalid_count = 0

    def on_event(self, event: Update | Delete) -> None:
        key = event.key
        kind = kind_of_key(key)
        if kind is None:
            return
        value = event.value if isinstance(event, Update) else None
        if kind == WORKLOAD_ENDPOINT:
            self._on_workload_endpoint(key, value)
        elif self._dispatcher.wants(kind):
            self._parse_and_dispatch(key, kind, value)

    def _on_workload_endpoint(self, key: str, value: Mapping[str, Any] | None) -> None:
        was_remote = self._remote.get(key)
        if value is None:
            self._remote.pop(key, None)
            if was_remote is not None:
                side = REMOTE_WORKLOAD_ENDPOINT if was_remote else WORKLOAD_ENDPOINT
                self._dispatcher.on_update(key, side, None)
            return
        spec = value.get("spec")
        remote = not (isinstance(spec, Mapping) and spec.get("node") == self._hostname)
        self._remote[key] = remote
        if remote:
            if was_remote is False:
                self._dispatcher.on_update(key, WORKLOAD_ENDPOINT, None)  # it moved away from this host
            self._dispatcher.on_update(key, REMOTE_WORKLOAD_ENDPOINT, value)
            return
        if was_remote:
            self._dispatcher.on_update(key, REMOTE_WORKLOAD_ENDPOINT, None)  # it moved to this host
        self._parse_and_dispatch(key, WORKLOAD_ENDPOINT, value)

    def _parse_and_dispatch(self, key: str, kind: str, value: Mapping[str, Any] | None) -> None:
        if value is None:
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
