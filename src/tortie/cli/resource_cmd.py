"""calicoctl-style resource verbs: apply, create, replace, delete, get, patch, label, validate.

    tortie apply|create|replace -f FILE|DIR|- [-R]
    tortie delete (-f FILE|DIR|- | KIND NAME [NAME..] | --key KEY [--key KEY..]) [-n NS] [--skip-not-exists]
    tortie get KIND [NAME..] [-n NS | -A] [-o ps|wide|yaml|json|name]
    tortie get --key KEY [-o json]                   (the stored value as it is, valid or not)
    tortie patch KIND NAME -p JSON [-n NS]          (JSON merge patch, RFC 7386)
    tortie label KIND NAME key=value|key- [...] [--overwrite] [-n NS]
    tortie validate -f FILE|DIR|-

Every multi-document write is validated completely first and then written in one datastore
transaction: if any document is invalid, or any write would conflict, nothing is written. Checks
across objects run before the write too: a staged policy's tier must exist, and a BGPPeer for one
node must use a peerIP family that node has a BGP address in (`tortie.model.bgp_peer_family`). Fields
tortie accepts but does not act on draw a warning on stderr (file, document, object, field, and what
tortie does instead); the verb still succeeds (`tortie.model.support`, docs/reference/compatibility.md).

Bad records (a stored value that is not JSON or not a valid resource, written by hand or by another
tool): `get KIND` lists the others and reports each bad one on stderr by key (exit 0); `get KIND NAME`
of one is an error naming the key; `delete KIND NAME` removes it all the same, and `delete --key KEY`
removes any value under tortie's keys (`/calico/`, `/tortie/kubernetes/`). `get --key KEY` shows what
is stored.

Kinds are named by their manifests' apiVersion and kind (files) or by kind name or alias (command
line): `networkpolicy`/`np` is Calico's NetworkPolicy, `netpol`/`knp` (or
`networkpolicies.networking.k8s.io`) Kubernetes'; `ns`, `anp`, `banp` the other Kubernetes kinds.
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
from tortie.datastore.resources import BadRecord, ResourceStore, removal_hint
from tortie.k8s.names import TRANSLATED_FROM, translated_from
from tortie.k8s.translate import in_force, translate
from tortie.model import Problem, Resource, ValidationError, parse_resource
from tortie.model.kinds import KUBERNETES_ROOT, kind_info
from tortie.model.support import notices

# every key tortie writes is under one of these (Calico's resources, IPAM and status; Kubernetes kinds)
_KEY_ROOTS = ("/calico/", KUBERNETES_ROOT)


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
    p.add_argument("--key", action="append", default=None, metavar="KEY",
                   help="delete the value stored at this datastore key, valid or not (repeatable)")
    p.set_defaults(func=_run_delete)

    p = sub.add_parser("get", help="show resources")
    p.add_argument("kind", nargs="?", help="resource kind or alias (e.g. ippool, gnp, wep)")
    p.add_argument("names", nargs="*")
    p.add_argument("--key", default=None, metavar="KEY",
                   help="show the value stored at this datastore key as it is (-o json: with its revisions)")
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


def _load(args: argparse.Namespace, *, warn: bool = False) -> list[Resource]:
    """The resources of -f FILE..; with `warn`, what they ask for that tortie does not act on is
    printed to stderr first (`tortie.model.support`): the verb still succeeds."""
    warnings: list[Problem] = []
    resources = read_manifests(args.filename, recursive=args.recursive,
                               default_namespace=getattr(args, "namespace", None), warnings=warnings)
    if warn:
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return resources


def _run_write(args: argparse.Namespace) -> int:
    resources = _load(args, warn=True)  # every document validated before anything is written
    store = ResourceStore(open_store(args))
    mode = {"apply": "apply", "create": "create", "replace": "replace"}[args.verb]
    if args.verb == "create" and args.skip_exists:
        resources = [r for r in resources if store.ds.get(r.key) is None]
    from tortie.model.bgp_peer_family import peer_family_problems
    from tortie.model.pool_overlap import encap_conflicts
    from tortie.model.specs_staged import missing_tiers  # loads the policy specs: only when writing

    problems = missing_tiers(resources, lambda t: store.ds.get(kind_info("Tier").key(t)) is not None)
    problems += peer_family_problems(resources, lambda name: _stored(store, "Node", name))
    problems += encap_conflicts(resources, lambda: _stored_all(store, "IPPool"))
    if problems:
        raise UserError("; ".join(problems) + "; nothing was written")
    results = store.apply_all(resources, mode=mode)
    for r in results:
        res = r.resource
        ns = f"{res.metadata.namespace}/" if res.metadata.namespace else ""
        print(f"{res.kind} {ns}{res.metadata.name} {r.action}")
    print(f"Successfully processed {len(results)} resource(s)")
    return 0


def _run_delete(args: argparse.Namespace) -> int:
    if args.key:
        if args.filename or args.kind:
            raise UserError("give --key KEY on its own, without -f FILE or KIND NAME")
        return _delete_keys(args)
    store = ResourceStore(open_store(args))
    bad: list[str] = []  # keys of named resources whose stored value is not a valid resource
    if args.filename:
        if args.kind:
            raise UserError("give either -f FILE or KIND NAME, not both")
        targets = _load(args)
    else:
        if not args.kind or not args.names:
            raise UserError("usage: tortie delete KIND NAME [NAME..], -f FILE or --key KEY")
        info = _kind(args.kind)
        targets = []
        for name in args.names:
            ns = _ns(info.namespaced, args.namespace)
            try:
                targets.append(store.get(info.kind, name, ns))
            except NotFound:
                source = next((t.metadata.annotations[TRANSLATED_FROM]
                               for t in _translations(store, info.kind, ns, [])
                               if t.metadata.name == name), None)
                if source is not None:
                    raise UserError(f"{info.kind} {name} is the translation of {source}, not a stored "
                                    "object: delete or change that object instead") from None
                if not args.skip_not_exists:
                    raise
            except ValidationError:
                bad.append(info.key(name, ns) if info.namespaced else info.key(name))
    if args.skip_not_exists:
        targets = [t for t in targets if store.ds.get(t.key) is not None]
    targets = [t.replace_metadata(resource_version=None) for t in targets]
    results = store.apply_all(targets, mode="delete")
    for r in results:
        print(f"{r.resource.kind} {r.resource.metadata.name} deleted")
    for key in bad:
        store.delete_key(key)
        print(f"{key} deleted (its stored value was not a valid resource)")
    print(f"Successfully deleted {len(results) + len(bad)} resource(s)")
    return 0


def _checked_key(key: str) -> str:
    if not any(key.startswith(root) and key != root for root in _KEY_ROOTS):
        raise UserError(f"--key {key!r}: tortie's keys start with {' or '.join(_KEY_ROOTS)}")
    return key


def _delete_keys(args: argparse.Namespace) -> int:
    store = ResourceStore(open_store(args))
    deleted = 0
    for key in args.key:
        try:
            kv = store.delete_key(_checked_key(key))
        except NotFound:
            if not args.skip_not_exists:
                raise
            continue
        note = " (its stored value was not valid JSON)" if kv.problem else ""
        print(f"{key} deleted{note}")
        deleted += 1
    print(f"Successfully deleted {deleted} key(s)")
    return 0


def _get_key(args: argparse.Namespace) -> int:
    if args.kind or args.names:
        raise UserError("give --key KEY on its own, without KIND NAME")
    key = _checked_key(args.key)
    kv = ResourceStore(open_store(args)).ds.get(key)
    if kv is None:
        raise NotFound(f"nothing is stored at key {key!r}")
    text = kv.raw if kv.raw is not None else json.dumps(kv.value, ensure_ascii=False, separators=(",", ":"))
    if args.output == "json":
        record = {"key": kv.key, "modRevision": kv.mod_revision, "createRevision": kv.create_revision,
                  "lease": kv.lease, "problem": kv.problem, "value": text}
        print(json.dumps(record, indent=2, ensure_ascii=False))
    else:
        print(text)
    if kv.problem:
        print(f"warning: {key}: {kv.problem}; {removal_hint(key)}", file=sys.stderr)
    return 0


def _run_get(args: argparse.Namespace) -> int:
    if args.key is not None:
        return _get_key(args)
    if not args.kind:
        raise UserError("usage: tortie get KIND [NAME..] or tortie get --key KEY")
    info = _kind(args.kind)
    store = ResourceStore(open_store(args))
    bad: list[BadRecord] = []
    if args.names:
        ns = _ns(info.namespaced, args.namespace)
        translations = {t.metadata.name: t for t in _translations(store, info.kind, ns, bad)}
        resources = [translations.get(n) or store.get(info.kind, n, ns) for n in args.names]
    else:
        scope = (args.namespace or "default") if info.namespaced and not args.all_namespaces else None
        resources, bad = store.scan(info.kind, scope)
        translations = {t.key: t for t in _translations(store, info.kind, scope, bad)}
        resources, shadowed = in_force(resources, translations.values())
        for r in shadowed:
            print(f"warning: {r.kind} {_label(r)} is shadowed by the translation of "
                  f"{translations[r.key].metadata.annotations[TRANSLATED_FROM]}, which the agent "
                  "enforces instead", file=sys.stderr)
    print_resources(info.kind, resources, args.output)
    for b in bad:
        print(f"warning: skipped the invalid record at {b.key}: {b.reason}; {removal_hint(b.key)}",
              file=sys.stderr)
    return 0


def _translations(store: ResourceStore, kind: str, namespace: str | None,
                  bad: list[BadRecord]) -> list[Resource]:
    """The translations of the Kubernetes objects into `kind` (Profile, NetworkPolicy or
    GlobalNetworkPolicy; none for other kinds) in `namespace` (None: all): `get` lists them as the
    agent enforces them, as calicoctl lists Kubernetes policies in Kubernetes mode."""
    out: list[Resource] = []
    for source in translated_from(kind):
        found, skipped = store.scan(source, namespace if kind_info(source).namespaced else None)
        bad += skipped
        out += [translate(resource) for resource in found]
    return out


def _label(resource: Resource) -> str:
    meta = resource.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name


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
    resource = parse_resource(wire, source="<patch>")
    for notice in notices(resource):
        print(f"warning: {notice}", file=sys.stderr)
    updated = store.update(resource)
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
        resources = _load(args, warn=True)
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


def _stored_all(store: ResourceStore, kind: str) -> list[Resource]:
    """The valid stored objects of `kind` (bad records are reported by the verbs that read them)."""
    valid, _bad = store.scan(kind)
    return valid


def _stored(store: ResourceStore, kind: str, name: str) -> Resource | None:
    """The stored object, None when there is none or it is not a valid resource (a bad record is
    reported by the verbs that read it, not by the checks that merely look it up)."""
    try:
        return store.get(kind, name)
    except (NotFound, ValidationError):
        return None
