"""What tortie does with every field of every kind: implemented, warned, or rejected.

The rule (issue 18): nothing accepted is ignored. Every field the model accepts is either acted on by
product code, or `tortie validate`/`apply` says clearly that it is not:

* `Implemented(by=...)`: the named modules act on the field as Calico does (a test checks that each
  named module reads it);
* `Warned(instead=...)`: a tuning knob of Calico's own implementation; accepted, and a warning names
  the kind, the object, the field and what tortie does instead;
* `Rejected(reason=...)`: ignoring it would change routing or security, so the object is refused
  (`not_yet=True`: another issue implements it; the message says "not implemented yet");
* `Informational(note=...)`: descriptive data that Calico does not act on either (annotations,
  a Node's orchestrator references); kept and shown, never a behaviour.

A field may depend on its value: its entry is a tuple of statuses, tried in order; a status with a
`when` predicate applies only to values it accepts (`condition` says which, for the reference
table), and the last status is unconditional. `Default(note)` is only for such a last status: the
remaining values ask for nothing beyond what tortie always does (e.g. `vxlanMode: Never`).

Inputs: decoded `Resource`s (`check_rejections`, `notices`) and the kind table (`field_rows`).
Outputs: rejection messages at field paths (the resource layer turns them into validation problems),
`Notice`s (warnings for the CLI), and the rows of docs/reference/compatibility.md.

The table is data, one module per spec family (`SUPPORT_MODULES`: `support_ipam`, `support_bgp`,
...), loaded only when a record of that family is checked, so a process that decodes one kind (the
CNI plugin) loads one table. `Notice`s of whole objects (a BGPPeer that names no peer, a
node-specific BGPConfiguration setting a cluster-wide field) come from `support_notices`.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from tortie.model.schema import ListOf, MapOf, Struct

if TYPE_CHECKING:
    from tortie.model.resource import Resource


@dataclass(frozen=True)
class Implemented:
    by: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class Default:
    note: str


@dataclass(frozen=True)
class Informational:
    note: str


@dataclass(frozen=True)
class Warned:
    instead: str
    when: Callable[[Any], bool] | None = None
    condition: str = ""


@dataclass(frozen=True)
class Rejected:
    reason: str
    when: Callable[[Any], bool] | None = None
    condition: str = ""
    not_yet: bool = False

    @property
    def message(self) -> str:
        head = "is not implemented yet" if self.not_yet else "is not supported by tortie"
        return f"{head}: {self.reason}"


Status = Implemented | Default | Informational | Warned | Rejected
FieldSupport = tuple[Status, ...]


# -- helpers for writing the table ---------------------------------------------------------------
def impl(*by: str, note: str = "") -> FieldSupport:
    return (Implemented(tuple(f"tortie.{m}" for m in by), note),)


def info(note: str) -> FieldSupport:
    return (Informational(note),)


def warn(instead: str) -> FieldSupport:
    return (Warned(instead),)


def reject(reason: str, *, not_yet: bool = False) -> FieldSupport:
    return (Rejected(reason, not_yet=not_yet),)


def unless(defaults: tuple[Any, ...], status: Warned | Rejected, note: str) -> FieldSupport:
    """`status` for any value outside `defaults`; `Default(note)` for the values in it."""
    shown = ", ".join(str(d).lower() if isinstance(d, bool) else str(d) for d in defaults)
    if isinstance(status, Warned):
        first: Warned | Rejected = Warned(status.instead, lambda v: v not in defaults, f"other than {shown}")
    else:
        first = Rejected(status.reason, lambda v: v not in defaults, f"other than {shown}", status.not_yet)
    return (first, Default(note))



def warn_unless(defaults: tuple[Any, ...], instead: str, note: str) -> FieldSupport:
    """A warning for values other than `defaults`, which already mean what tortie does."""
    return unless(defaults, Warned(instead), note)


@dataclass(frozen=True)
class Notice:
    """A warning about one accepted object: `path` is a field path ("" for the whole object)."""

    kind: str
    name: str
    namespace: str | None
    path: str
    message: str

    def __str__(self) -> str:
        who = f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"
        return f"{who}: {self.path}: {self.message}" if self.path else f"{who}: {self.message}"


# spec module -> the module holding its support table (attribute TABLE)
SUPPORT_MODULES: dict[str, str] = {
    "tortie.model.metadata": "tortie.model.support_metadata",
    "tortie.model.specs_controllers": "tortie.model.support_metadata",
    "tortie.model.specs_ipam": "tortie.model.support_ipam",
    "tortie.model.specs_policy": "tortie.model.support_policy",
    "tortie.model.rules": "tortie.model.support_policy",
    "tortie.model.specs_endpoint": "tortie.model.support_endpoint",
    "tortie.model.specs_bgp": "tortie.model.support_bgp",
    "tortie.model.specs_bgp_filter": "tortie.model.support_bgp_filter",
    "tortie.model.specs_node_status": "tortie.model.support_node_status",
    "tortie.model.specs_felix": "tortie.model.support_felix",
    "tortie.model.specs_staged": "tortie.model.support_staged",
    "tortie.model.specs_k8s": "tortie.model.support_k8s",
    "tortie.model.specs_k8s_admin": "tortie.model.support_k8s",
}


def support_of(cls: type[Any], attr: str) -> FieldSupport:
    """The statuses of field `attr` of record class `cls` (KeyError when it is not classified)."""
    return _support_of(cast(type, cls), attr)


@functools.cache
def _support_of(cls: type, attr: str) -> FieldSupport:
    name = SUPPORT_MODULES.get(cls.__module__)
    if name is None:
        raise KeyError(f"{cls.__module__} has no support table (tortie.model.support.SUPPORT_MODULES)")
    __import__(name)
    table: Mapping[tuple[type[Any], str], FieldSupport] = sys.modules[name].TABLE
    entry = table.get((cls, attr))
    if entry is None:
        raise KeyError(f"{cls.__name__}.{attr} is not classified in {name}")
    return entry


def status_for(entry: FieldSupport, value: object) -> Status:
    """The status that applies to `value` (see the module docstring)."""
    for status in entry:
        when = getattr(status, "when", None)
        if when is None or when(value):
            return status
    raise ValueError("a field's last status must apply to every value")


def nested_struct(codec: object) -> Struct[Any] | None:
    """The record codec inside a field's codec (a Struct, or the Struct of a list or map), if any."""
    if isinstance(codec, Struct):
        return codec
    if isinstance(codec, ListOf | MapOf):
        return nested_struct(codec.item if isinstance(codec, ListOf) else codec.value)
    return None


def _given(value: object, empty: object) -> bool:
    return value is not None and not (empty is not None and value == empty)


def walk(record: object, struct: Struct[Any], path: str) -> Iterator[tuple[type[Any], str, str, object]]:
    """(record class, attr, wire path, value) for every field given in `record`, depth first."""
    for spec in struct.fields:
        value = getattr(record, spec.attr)
        if not _given(value, spec.empty):
            continue
        here = f"{path}.{spec.wire}" if path else spec.wire
        yield struct.cls, spec.attr, here, value
        sub = nested_struct(spec.codec)
        if sub is None:
            continue
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                if item is not None:
                    yield from walk(item, sub, f"{here}[{i}]")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                yield from walk(item, sub, f"{here}[{key!r}]")
        elif dataclasses.is_dataclass(value):
            yield from walk(value, sub, here)


# Per record class: the fields that may be rejected (their support) and the nested records that may
# hold such fields, computed once, so checking an object only visits what could refuse it.
_Plan = tuple[tuple[str, str, object, "FieldSupport | None", "Struct[Any] | None"], ...]
_PLANS: dict[type[Any], _Plan] = {}


def _plan(struct: Struct[Any]) -> _Plan:
    plan = _PLANS.get(struct.cls)
    if plan is None:
        _PLANS[struct.cls] = ()  # provisional, for recursive record types
        steps = []
        for spec in struct.fields:
            support = support_of(struct.cls, spec.attr)
            rejectable = any(isinstance(status, Rejected) for status in support)
            sub = nested_struct(spec.codec)
            if sub is not None and not _plan(sub):
                sub = None
            if rejectable or sub is not None:
                steps.append((spec.attr, spec.wire, spec.empty, support if rejectable else None, sub))
        plan = _PLANS[struct.cls] = tuple(steps)
    return plan


def check_rejections(spec: object, struct: Struct[Any], path: str = "spec") -> list[tuple[str, str]]:
    """(path, message) for every given field whose status is Rejected; [] when none."""
    out: list[tuple[str, str]] = []
    for attr, wire, empty, support, sub in _plan(struct):
        value = getattr(spec, attr)
        if not _given(value, empty):
            continue
        here = f"{path}.{wire}"
        if support is not None:
            status = status_for(support, value)
            if isinstance(status, Rejected):
                out.append((here, status.message))
                continue
        if sub is None:
            continue
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                if item is not None:
                    out.extend(check_rejections(item, sub, f"{here}[{i}]"))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                out.extend(check_rejections(item, sub, f"{here}[{key!r}]"))
        else:
            out.extend(check_rejections(value, sub, here))
    return out


def notices(resource: Resource) -> list[Notice]:
    """Warnings for one accepted resource: its Warned fields and whole-object notices."""
    from tortie.model.resource import MODELS
    from tortie.model.support_notices import KIND_WARNINGS, RESOURCE_NOTICES

    meta = resource.metadata

    def notice(path: str, message: str) -> Notice:
        return Notice(resource.kind, meta.name, meta.namespace, path, message)

    kind_warning = KIND_WARNINGS.get(resource.kind)
    if kind_warning is not None:
        return [notice("", kind_warning)]
    out: list[Notice] = []
    for cls, attr, path, value in walk(resource.spec, MODELS[resource.kind].spec, "spec"):
        status = status_for(support_of(cls, attr), value)
        if isinstance(status, Warned):
            out.append(notice(path, f"accepted but has no effect: {status.instead}"))
    extra = RESOURCE_NOTICES.get(resource.kind)
    if extra is not None:
        out.extend(notice(path, message) for path, message in extra(resource))
    return out


@dataclass(frozen=True)
class FieldRow:
    """One row of the compatibility reference: a field path of a kind and its statuses."""

    kind: str
    path: str
    cls: type[Any]
    attr: str
    support: FieldSupport


def field_rows(kind: str, struct: Struct[Any], path: str = "spec") -> Iterator[FieldRow]:
    """Every field of a kind's spec, nested records included (list elements written `[]`)."""
    for spec in struct.fields:
        here = f"{path}.{spec.wire}"
        yield FieldRow(kind, here, struct.cls, spec.attr, support_of(struct.cls, spec.attr))
        sub = nested_struct(spec.codec)
        if sub is not None:
            suffix = "[]" if isinstance(spec.codec, ListOf) else ""
            yield from field_rows(kind, sub, here + suffix)
