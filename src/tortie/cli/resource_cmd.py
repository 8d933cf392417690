"""calicoctl-style resource verbs: apply, create, replace, delete, get, patch, label, validate.

    tortie apply|create|replace -f FILE|DIR|- [-R]
    tortie delete (-f FILE|DIR|- | KIND NAME [NAME..]) [-n NS] [--skip-not-exists]
    tortie get KIND [NAME..] [-n NS | -A] [-o ps|wide|yaml|json|name]
    tortie patch KIND NAME -p JSON [-n NS]          (JSON merge patch, RFC 7386)
    tortie label KIND NAME key=value|key- [...] [--overwrite] [-n NS]
    tortie validate -f FILE|DIR|-

Every multi-document write is validated completely first and then written in one datastore
transaction: if any document is invalid, or any write would conflict, nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tortie.cli.context import open_store
from tortie.cli.manifests import read_manifests
from tortie.cli.output import print_resources
from tortie.common.errors import NotFound, UserError
from tortie.datastore.resources import ResourceStore
from tortie.model import Resource, ValidationError, parse_resource
from tortie.model.kinds import kind_info


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, help_text in (
        ("apply", "create or update resources from files"),
        ("create", "create resources from files (fail if any exists)"),
        ("replace", "replace existing resources from files (fail if any is missing)"),
    ):
        p = sub.add_parser(verb, help=help_text)
        _add_file_args(p, required=True)
        p.add_argument("--skip-exists", action="store_true", help="(create) ignore resources that exist")
        p.set_defaults(func=_run_write, verb=verb)

    p = sub.add_parser("delete", help="delete resources named in files or on the command line")
    _add_file_args(p, required=False)
    p.add_argument("kind", nargs="?", help="resource kind or alias")
    p.add_argument("names", nargs="*", help="resource names")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("--skip-not-exists", action="store_true", help="ignore resources that do not exist")
    p.set_defaults(func=_run_delete)

    p = sub.add_parser("get", help="show resources")
    p.add_argument("kind", help="resource kind or alias (e.g. ippool, gnp, wep)")
    p.add_argument("names", nargs="*")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-o", "--output", default="ps", choices=["ps", "wide", "yaml", "yml", "json", "name"])
    p.set_defaults(func=_run_get)

    p = sub.add_parser("patch", help="apply a JSON merge patch to one resource")
    p.add_argument("kind")
    p.add_argument("name")
    p.add_argument("-p", "--patch", required=True,
                   help="JSON merge patch, e.g. '{\"spec\":{\"disabled\":true}}'")
    p.add_argument("-n", "--namespace", default=None)
    p.set_defaults(func=_run_patch)

    p = sub.add_parser("label", help="add, change or remove labels of one resource")
    p.add_argument("kind")
    p.add_argument("name")
    p.add_argument("labels", nargs="+", help="key=value to set, key- to remove")
    p.add_argument("--overwrite", action="store_true", help="allow changing an existing label's value")
    p.add_argument("-n", "--namespace", default=None)
    p.set_defaults(func=_run_label)

    p = sub.add_parser("validate", help="check manifests offline; exit 1 if any is invalid")
    _add_file_args(p, required=True)
    p.set_defaults(func=_run_validate)


def _add_file_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("-f", "--filename", action="append", required=required, default=None,
                   help="file, directory or - for stdin (repeatable)")
    p.add_argument("-R", "--recursive", action="store_true", help="recurse into directories")


def _load(args: argparse.Namespace) -> list[Resource]:
    return read_manifests(args.filename, recursive=args.recursive,
                          default_namespace=getattr(args, "namespace", None))


def _run_write(args: argparse.Namespace) -> int:
    resources = _load(args)  # every document validated before anything is written
    store = ResourceStore(open_store(args))
    mode = {"apply": "apply", "create": "create", "replace": "replace"}[args.verb]
    if args.verb == "create" and args.skip_exists:
        resources = [r for r in resources if store.ds.get(r.key) is None]
    results = store.apply_all(resources, mode=mode)
    for r in results:
        res = r.resource
        ns = f"{res.metadata.namespace}/" if res.metadata.namespace else ""
        print(f"{res.kind} {ns}{res.metadata.name} {r.action}")
    print(f"Successfully processed {len(results)} resource(s)")
    return 0


def _run_delete(args: argparse.Namespace) -> int:
    store = ResourceStore(open_store(args))
    if args.filename:
        if args.kind:
            raise UserError("give either -f FILE or KIND NAME, not both")
        targets = _load(args)
    else:
        if not args.kind or not args.names:
            raise UserError("usage: tortie delete KIND NAME [NAME..] or tortie delete -f FILE")
        info = _kind(args.kind)
        targets = []
        for name in args.names:
            try:
                targets.append(store.get(info.kind, name, _ns(info.namespaced, args.namespace)))
            except NotFound:
                if not args.skip_not_exists:
                    raise
    if args.skip_not_exists:
        targets = [t for t in targets if store.ds.get(t.key) is not None]
    targets = [t.replace_metadata(resource_version=None) for t in targets]
    results = store.apply_all(targets, mode="delete")
    for r in results:
        print(f"{r.resource.kind} {r.resource.metadata.name} deleted")
    print(f"Successfully deleted {len(results)} resource(s)")
    return 0


def _run_get(args: argparse.Namespace) -> int:
    info = _kind(args.kind)
    store = ResourceStore(open_store(args))
    if args.names:
        resources = [store.get(info.kind, n, _ns(info.namespaced, args.namespace)) for n in args.names]
    elif info.namespaced and not args.all_namespaces:
        resources = store.list(info.kind, args.namespace or "default")
    else:
        resources = store.list(info.kind)
    print_resources(info.kind, resources, args.output)
    return 0


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = _merge_patch(result.get(k), v)
    return result


def _rewrite(args: argparse.Namespace, change: Any) -> int:
    info = _kind(args.kind)
    store = ResourceStore(open_store(args))
    current = store.get(info.kind, args.name, _ns(info.namespaced, args.namespace))
    wire = change(current.to_wire())
    meta = wire.setdefault("metadata", {})
    for immutable in ("name", "namespace"):
        if meta.get(immutable) != current.to_wire()["metadata"].get(immutable):
            raise UserError(f"metadata.{immutable} cannot be changed")
    meta["resourceVersion"] = current.metadata.resource_version  # CAS against what we read
    updated = store.update(parse_resource(wire, source="<patch>"))
    print(f"{updated.kind} {updated.metadata.name} updated")
    return 0


def _run_patch(args: argparse.Namespace) -> int:
    try:
        patch = json.loads(args.patch)
    except json.JSONDecodeError as exc:
        raise UserError(f"--patch is not valid JSON: {exc}") from None
    if not isinstance(patch, dict):
        raise UserError("--patch must be a JSON object (a merge patch)")
    return _rewrite(args, lambda wire: _merge_patch(wire, patch))


def _run_label(args: argparse.Namespace) -> int:
    def change(wire: dict[str, Any]) -> dict[str, Any]:
        meta = wire.setdefault("metadata", {})
        labels = dict(meta.get("labels") or {})
        for item in args.labels:
            if item.endswith("-") and "=" not in item:
                labels.pop(item[:-1], None)
                continue
            key, sep, value = item.partition("=")
            if not sep:
                raise UserError(f"label {item!r}: use key=value to set or key- to remove")
            if key in labels and labels[key] != value and not args.overwrite:
                raise UserError(f"label {key!r} already has value {labels[key]!r}; use --overwrite")
            labels[key] = value
        meta["labels"] = labels
        return wire

    return _rewrite(args, change)


def _run_validate(args: argparse.Namespace) -> int:
    try:
        resources = _load(args)
    except ValidationError as exc:
        for problem in exc.problems:
            print(str(problem))
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"{len(resources)} resource(s) valid")
    return 0


def _kind(name: str) -> Any:
    try:
        return kind_info(name)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None


def _ns(namespaced: bool, namespace: str | None) -> str | None:
    return (namespace or "default") if namespaced else None
