"""Text in and out: YAML/JSON streams <-> validated `Resource` lists.

Input (`load_resources`): YAML (one or many `---`-separated documents) or JSON (an object or an
array of objects). Any document may be a list wrapper — `kind: List` (apiVersion `v1` or
projectcalico.org/v3) or `kind: <Kind>List` as calicoctl and kubectl print (with the items' own
apiVersion, e.g. networking.k8s.io/v1 NetworkPolicyList) — whose `items` are resources.
Output: the resources in input order, or one `ValidationError` with the problems of every
document (syntax errors included, with line numbers).

Limits (`tortie.model.input_limits`): a text over 64 MiB, nesting deeper than 100 levels or a YAML
document expanding (aliases included) past a million values is one problem naming the source, never a
`RecursionError`.

YAML is read with the YAML 1.2 core schema rather than PyYAML's 1.1 default, so `yes`/`on` stay
strings, `80:59` is not a base-60 number, `0755` is decimal and timestamps stay strings. Duplicate
keys are errors.

Output: `dump_yaml` writes one document per resource separated by `---` (keys in the order
apiVersion, kind, metadata, spec, status; spec fields in declaration order); `dump_json` writes a
single object for exactly one resource and `{"apiVersion": "v1", "kind": "List", "items": [...]}`
otherwise. Both load back to equal resources.
"""

import json
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import yaml

from tortie.model.input_limits import (
    MAX_MANIFEST_BYTES,
    DepthGuard,
    InputTooDeep,
    InputTooLarge,
    check_size,
    load_json,
)
from tortie.model.kinds import API_VERSION, KindInfo, api_versions_of, manifest_kind_info
from tortie.model.problems import Problem, ValidationError, describe_value
from tortie.model.resource import Resource, identify, problems_of
from tortie.model.support import notices

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_CORE_RESOLVERS = (
    (_BOOL, _BOOL_RE, "tTfF"), (_INT, _INT_RE, "-+0123456789"), (_FLOAT, _FLOAT_RE, "-+0123456789."),
)


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars, duplicate-key detection and input limits: nodes
    nested deeper than `MAX_DEPTH` or a document expanding (aliases included) past
    `MAX_EXPANDED_NODES` values stop composition with `InputTooDeep` before anything recurses deeply."""

    guard: DepthGuard
    _sizes: dict[int, int]

    def compose_document(self) -> yaml.Node | None:
        self._sizes = {}
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        self.guard.enter(where)
        try:
            node: yaml.Node | None = super().compose_node(parent, index)
        finally:
            self.guard.leave()
        if node is None or id(node) in self._sizes:  # an alias: its size is already known
            return node
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._sizes.get(id(child), 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
        self._sizes[id(node)] = size
        self.guard.check_nodes(size, where)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable keys are reported by the base class
            if duplicate:
                raise _DuplicateKey(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    return int(text, 0) if text.startswith(("0o", "0x")) else int(text, 10)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _rx, _first in _CORE_RESOLVERS:
    _Loader.add_implicit_resolver(_tag, _rx, list(_first))
_Loader.add_constructor(_INT, _construct_int)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that also quotes strings the core-schema loader would read as non-strings."""


for _tag, _rx, _first in _CORE_RESOLVERS:
    _Dumper.add_implicit_resolver(_tag, _rx, list(_first))


# -- reading ----------------------------------------------------------------------------------------
def _syntax_problem(source: str, document: int, what: str, line: int | None, column: int | None,
                    message: str) -> Problem:
    where = f" at line {line}, column {column}" if line is not None else ""
    return Problem(source, document, "", "", "", f"{what} syntax error{where}: {message}")


def _limit_problem(source: str, document: int, exc: InputTooDeep | InputTooLarge) -> Problem:
    return Problem(source, document, "", "", "", str(exc).removeprefix(f"{source}: "))


def _yaml_documents(text: str, source: str) -> tuple[list[object], list[Problem]]:
    docs: list[object] = []
    loader = _Loader(text)
    loader.guard = DepthGuard(source)
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            docs.append(loader.get_data())
    except InputTooDeep as exc:
        return docs, [_limit_problem(source, len(docs), exc)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        return docs, [_syntax_problem(source, len(docs), "YAML", line, column, message)]
    except yaml.YAMLError as exc:
        return docs, [_syntax_problem(source, len(docs), "YAML", None, None, str(exc))]
    finally:
        loader.dispose()
    return docs, []


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _json_documents(text: str, source: str) -> tuple[list[object], list[Problem]]:
    try:
        data = load_json(text, source, object_pairs_hook=_no_duplicates)
    except InputTooDeep as exc:
        return [], [_limit_problem(source, 0, exc)]
    except json.JSONDecodeError as exc:
        return [], [_syntax_problem(source, 0, "JSON", exc.lineno, exc.colno, exc.msg)]
    except ValueError as exc:
        return [], [_syntax_problem(source, 0, "JSON", None, None, str(exc))]
    return (list(data) if isinstance(data, list) else [data]), []


def _list_kind(obj: Mapping[str, Any]) -> str | None:
    """'' for a generic `kind: List`, the item's manifest kind for `<Kind>List`, None if not a list
    wrapper."""
    kind = obj.get("kind")
    if kind == "List":
        return ""
    if isinstance(kind, str) and kind.endswith("List") and api_versions_of(kind[:-4]):
        return kind[:-4]
    return None


def _list_items(obj: Mapping[str, Any], item_kind: str, source: str, document: int,
                problems: list[Problem]) -> list[tuple[str, object]]:
    """(path prefix, item) pairs of a list wrapper; problems of the wrapper itself are recorded. Items
    of a `<Kind>List` take the wrapper's apiVersion and kind unless they give their own."""
    kind = str(obj.get("kind"))

    def problem(path: str, message: str) -> None:
        problems.append(Problem(source, document, kind, "", path, message))

    allowed_api = ("v1", API_VERSION) if not item_kind else api_versions_of(item_kind)
    api = obj.get("apiVersion")
    if api not in allowed_api:
        problem("apiVersion", f"{api!r} is not valid for {kind}: use {' or '.join(allowed_api)}")
    for key in obj:
        if key not in ("apiVersion", "kind", "metadata", "items"):
            problem(str(key), f"unknown field {str(key)!r}: a {kind} has apiVersion, kind, metadata, items")
    items = obj.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        problem("items", f"expected a list, got {describe_value(items)}")
        return []
    info: KindInfo | None = manifest_kind_info(api, item_kind) if isinstance(api, str) else None
    out: list[tuple[str, object]] = []
    for i, item in enumerate(items):
        if info is not None and isinstance(item, Mapping):
            item = {"apiVersion": info.api_version, "kind": info.manifest_kind, **item}
        out.append((f"items[{i}]", item))
    return out


def _resources_of(documents: Iterable[object], source: str, default_namespace: str | None,
                  problems: list[Problem], warnings: list[Problem] | None) -> list[Resource]:
    resources: list[Resource] = []
    for number, doc in enumerate(documents):
        if doc is None:
            continue  # an empty document (e.g. a trailing '---')
        entries: list[tuple[str, object]] = [("", doc)]
        if isinstance(doc, Mapping):
            item_kind = _list_kind(doc)
            if item_kind is not None:
                entries = _list_items(doc, item_kind, source, number, problems)
        for prefix, obj in entries:
            resource, found = problems_of(obj, source=source, document=number, prefix=prefix,
                                          default_namespace=default_namespace)
            problems.extend(found)
            if resource is not None:
                resources.append(resource)
                if warnings is not None:
                    warnings.extend(Problem(source, number, resource.kind, resource.metadata.name,
                                            f"{prefix}.{n.path}" if prefix and n.path else (prefix or n.path),
                                            n.message) for n in notices(resource))
    return resources


def load_resources(text: str, *, source: str = "<input>", default_namespace: str | None = None,
                   warnings: list[Problem] | None = None) -> list[Resource]:
    """Parse and validate every resource in a YAML or JSON text (see the module docstring).

    `default_namespace` is given to namespaced resources that do not name one (as `calicoctl -n`).
    Raises ValidationError carrying the problems of all documents. When `warnings` is given, the
    warnings about accepted resources (fields tortie accepts but does not act on, see
    `tortie.model.support`) are appended to it, each naming its source, document, object and field.
    """
    try:
        check_size(text, MAX_MANIFEST_BYTES, source)
    except InputTooLarge as exc:
        raise ValidationError([_limit_problem(source, 0, exc)]) from None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        documents, problems = _json_documents(text, source)
    else:
        documents, problems = _yaml_documents(text, source)
    syntax = list(problems)
    found: list[Problem] = []
    resources = _resources_of(documents, source, default_namespace, found, warnings)
    all_problems = sorted(found + syntax, key=lambda p: p.document)
    if all_problems:
        raise ValidationError(all_problems)
    return resources


# -- writing ----------------------------------------------------------------------------------------
def dump_yaml(resources: Sequence[Resource]) -> str:
    """One YAML document per resource, separated by `---` lines ("" for no resources)."""
    docs = [
        yaml.dump(r.to_wire(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
        for r in resources
    ]
    return "---\n".join(docs)


def dump_json(resources: Sequence[Resource]) -> str:
    """A single JSON object for one resource; a `v1` `List` with `items` for zero or several."""
    if len(resources) == 1:
        data: dict[str, Any] = resources[0].to_wire()
    else:
        data = {"apiVersion": "v1", "kind": "List", "items": [r.to_wire() for r in resources]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


__all__ = ["dump_json", "dump_yaml", "identify", "load_resources"]
