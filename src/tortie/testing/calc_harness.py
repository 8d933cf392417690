"""State-sequence testing of the calculation (conventions #2).

A test describes a list of `Step`s: a whole datastore state (key -> JSON value) and the dataplane
state expected once the calc has seen it. `check_sequence(make_graph, steps)` replays the steps as
the syncer's `Update` / `Delete` events (the first state as the initial snapshot followed by
`InSync`, later ones as the differences from the previous state, each step at the next revision)
into a fresh graph per variant, applies the emitted messages to a strict `DataplaneModel`, and after
every step compares the model with that step's expectation. It reruns the sequence reordered:

    as-given         the steps in order
    keys-reversed    each state's changes delivered in reverse key order
    states-reversed  the steps in reverse order
    empties          an empty datastore between every two steps (and expected empty there)
    squashed         only the last step
    late-snapshot    InSync on an empty datastore, then every step as live updates

The model is strict: a Remove of something it does not hold, an Update equal to what it holds
(calc is incremental: it sends only changes), any message before the first ConfigUpdate, or a second
InSync all fail the test. Issue 5 registers its message types in `MESSAGE_TABLES`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tortie.dataplane import messages as m
from tortie.datastore.syncer import Delete, InSync, SyncEvent, Update

DatastoreState = Mapping[str, Mapping[str, Any]]
Sink = Callable[[m.Message], None]


class Graph(Protocol):
    def on_event(self, event: SyncEvent) -> None: ...

    def flush(self) -> int: ...


@dataclass(frozen=True)
class TableSpec:
    """Where a message type lands in the model: table name, key, and whether it removes."""

    table: str
    key: Callable[[Any], Hashable]
    remove: bool | Callable[[Any], bool] = False
    """True for a Remove type; a predicate for an Update type whose empty value means "nothing"."""


MESSAGE_TABLES: dict[type, TableSpec] = {
    m.WorkloadEndpointUpdate: TableSpec("endpoints", lambda msg: msg.id),
    m.WorkloadEndpointRemove: TableSpec("endpoints", lambda msg: msg.id, remove=True),
    m.HostBlockUpdate: TableSpec("blocks", lambda msg: msg.cidr),
    m.HostBlockRemove: TableSpec("blocks", lambda msg: msg.cidr, remove=True),
    m.VtepUpdate: TableSpec("vteps", lambda msg: (msg.node, msg.family)),
    m.VtepRemove: TableSpec("vteps", lambda msg: (msg.node, msg.family), remove=True),
    m.RemoteBlockRouteUpdate: TableSpec("remote_routes", lambda msg: msg.cidr),
    m.RemoteBlockRouteRemove: TableSpec("remote_routes", lambda msg: msg.cidr, remove=True),
    m.EncapUpdate: TableSpec("encap", lambda msg: "encap", remove=lambda msg: msg == m.EncapUpdate()),
}


@dataclass(frozen=True)
class DataplaneState:
    """Tables of messages by key, plus config. `config=None` in an expectation means "not checked";
    otherwise the listed config values must be present with these values (other keys are ignored)."""

    tables: Mapping[str, Mapping[Hashable, object]] = field(default_factory=dict)
    config: Mapping[str, object] | None = None

    def differences(self, actual: DataplaneState) -> list[str]:
        out: list[str] = []
        for table in sorted(set(self.tables) | set(actual.tables)):
            want, have = self.tables.get(table, {}), actual.tables.get(table, {})
            for key in set(want) | set(have):
                if want.get(key) != have.get(key):
                    out.append(f"{table}[{key}]: expected {want.get(key)!r}, got {have.get(key)!r}")
        if self.config is not None:
            have_config = actual.config or {}
            for name, value in self.config.items():
                got = have_config.get(name, "<missing>")
                if got != value:
                    out.append(f"config[{name}]: expected {value!r}, got {got!r}")
        return sorted(out)


def expect(
    endpoints: Iterable[m.WorkloadEndpointUpdate] = (),
    blocks: Iterable[str] = (),
    config: Mapping[str, object] | None = None,
) -> DataplaneState:
    return DataplaneState(
        {"endpoints": {e.id: e for e in endpoints}, "blocks": {c: m.HostBlockUpdate(c) for c in blocks}},
        config,
    )


EMPTY = DataplaneState()


class DataplaneModel:
    """Applies messages to dicts, checking the contract of `tortie.dataplane.messages`."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Hashable, object]] = {}
        self.config: dict[str, object] | None = None
        self.in_sync = False
        self.messages: list[m.Message] = []

    def apply(self, msg: m.Message) -> None:
        self.messages.append(msg)
        if isinstance(msg, m.ConfigUpdate):
            self.config = dict(msg.values)
            return
        if self.config is None:
            raise AssertionError(f"{msg!r} sent before the first ConfigUpdate")
        if isinstance(msg, m.InSync):
            if self.in_sync:
                raise AssertionError("InSync sent twice")
            self.in_sync = True
            return
        spec = MESSAGE_TABLES.get(type(msg))
        if spec is None:
            raise AssertionError(f"unknown message type {type(msg).__name__}")
        table = self.tables.setdefault(spec.table, {})
        key = spec.key(msg)
        if spec.remove(msg) if callable(spec.remove) else spec.remove:
            if key not in table:
                raise AssertionError(f"{msg!r} removes something the dataplane does not hold")
            del table[key]
        else:
            if table.get(key) == msg:
                raise AssertionError(f"redundant {msg!r}: the dataplane already holds exactly this")
            table[key] = msg

    def state(self) -> DataplaneState:
        return DataplaneState({t: dict(v) for t, v in self.tables.items() if v}, self.config)


@dataclass(frozen=True)
class Step:
    state: DatastoreState
    expected: DataplaneState


def kv_event(key: str, value: Mapping[str, Any] | None, revision: int = 1) -> Update | Delete:
    """The syncer's event for `key` now holding `value` (None: deleted) at `revision`."""
    return Delete(key, revision) if value is None else Update(key, dict(value), revision)


def diff_events(
    old: DatastoreState, new: DatastoreState, *, revision: int = 1, reverse_keys: bool = False
) -> list[Update | Delete]:
    """The events that turn datastore state `old` into `new` at `revision`, in key order (or reversed)."""
    keys = sorted(set(old) | set(new), reverse=reverse_keys)
    return [kv_event(k, new.get(k), revision) for k in keys if old.get(k) != new.get(k)]


def replay(
    make_graph: Callable[[Sink], Graph], steps: Sequence[Step], *, reverse_keys: bool = False
) -> list[DataplaneState]:
    """Run the steps through a fresh graph (first state = initial snapshot, then InSync); the
    dataplane state after each step."""
    model = DataplaneModel()
    graph = make_graph(model.apply)
    out: list[DataplaneState] = []
    previous: DatastoreState = {}
    for index, step in enumerate(steps):
        for event in diff_events(previous, step.state, revision=index + 1, reverse_keys=reverse_keys):
            graph.on_event(event)
        if index == 0:
            graph.on_event(InSync())
        graph.flush()
        if not model.in_sync:
            raise AssertionError("no InSync after the first flush that followed the datastore's InSync")
        previous = step.state
        out.append(model.state())
    return out


def _late_snapshot_replay(make_graph: Callable[[Sink], Graph], steps: Sequence[Step]) -> list[DataplaneState]:
    return replay(make_graph, [Step({}, EMPTY), *steps])[1:]


def variants(steps: Sequence[Step]) -> dict[str, tuple[list[Step], dict[str, Any]]]:
    """The reorderings of a sequence, by name -> (steps, replay options)."""
    steps = list(steps)
    empties: list[Step] = []
    for step in steps:
        if empties:
            empties.append(Step({}, EMPTY))
        empties.append(step)
    return {
        "as-given": (steps, {}),
        "keys-reversed": (steps, {"reverse_keys": True}),
        "states-reversed": (steps[::-1], {}),
        "states-reversed-keys-reversed": (steps[::-1], {"reverse_keys": True}),
        "empties": (empties, {}),
        "squashed": (steps[-1:], {}),
    }


def check_sequence(make_graph: Callable[[Sink], Graph], steps: Sequence[Step]) -> None:
    """Replay `steps` in every variant; raise AssertionError naming the variant and step on mismatch."""
    runs = {name: (seq, replay(make_graph, seq, **opts)) for name, (seq, opts) in variants(steps).items()}
    runs["late-snapshot"] = (list(steps), _late_snapshot_replay(make_graph, steps))
    for name, (seq, states) in runs.items():
        for index, (step, actual) in enumerate(zip(seq, states, strict=True)):
            diffs = step.expected.differences(actual)
            if diffs:
                raise AssertionError(f"variant {name}, step {index}: " + "; ".join(diffs))
