"""`tortie policy promote NAME`: apply a staged policy as the real kind, in one transaction.

    tortie policy promote [-n NS] [--kind snp|sgnp|sknp] NAME [--keep-staged] [--dry-run]

NAME is `namespace/name` or `name` (with `-n`, default namespace "default", for the namespaced
StagedNetworkPolicy and StagedKubernetesNetworkPolicy). A bare name matching staged policies of more
than one kind is ambiguous: `--kind` says which.

* stagedAction Set: the enforced kind (NetworkPolicy / GlobalNetworkPolicy / the Kubernetes
  networking.k8s.io/v1 NetworkPolicy) of the same name and namespace is created or replaced with the
  staged spec, labels and annotations;
* stagedAction Delete: the enforced policy of that name is deleted (an error if there is none);

and the staged policy is deleted in the same datastore transaction (`--keep-staged` keeps it): a
concurrent change to either object makes the whole promotion fail with a conflict, nothing half
done. A policy in a tier that does not exist is refused (the agent would have no tier order for
it), as Calico's API server does. `--dry-run` prints what would be written.
"""

from __future__ import annotations

import argparse
import json
from contextlib import closing
from typing import TYPE_CHECKING, Any

from tortie.cli.context import open_store
from tortie.common.errors import NotFound, UserError
from tortie.datastore.resources import ResourceStore
from tortie.model import Resource
from tortie.model.kinds import kind_info
from tortie.model.specs_policy import DEFAULT_TIER, RESERVED_TIER_ORDERS
from tortie.model.specs_staged import DELETE, ENFORCED_KIND, enforced_spec, has_tier

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers

_KINDS = {"snp": "StagedNetworkPolicy", "sgnp": "StagedGlobalNetworkPolicy",
          "sknp": "StagedKubernetesNetworkPolicy"}


def register_promote(verbs: SubParsers) -> None:
    p = verbs.add_parser("promote", help="apply a staged policy as the real kind (and delete the staged one)")
    p.add_argument("name", metavar="NAME", help="staged policy: namespace/name or name")
    p.add_argument("-n", "--namespace", default=None,
                   help="namespace of a StagedNetworkPolicy or StagedKubernetesNetworkPolicy")
    p.add_argument("--kind", choices=sorted(_KINDS), default=None,
                   help="snp (StagedNetworkPolicy), sgnp (StagedGlobalNetworkPolicy) or sknp "
                        "(StagedKubernetesNetworkPolicy), when NAME is more than one")
    p.add_argument("--keep-staged", action="store_true", help="keep the staged policy after promoting it")
    p.add_argument("--dry-run", action="store_true", help="print what would be written, write nothing")
    p.set_defaults(func=_promote)


def find_staged(store: ResourceStore, name: str, namespace: str | None, kind: str | None) -> Resource:
    """The staged policy NAME names (see the module docstring); UserError when none or ambiguous."""
    ns_part, _, bare = name.rpartition("/")
    if ns_part and namespace and ns_part != namespace:
        raise UserError(f"{name!r} names namespace {ns_part!r} but -n says {namespace!r}")
    ns = ns_part or namespace or "default"
    candidates: list[Resource] = []
    wanted = [_KINDS[kind]] if kind else list(_KINDS.values())
    for k in wanted:
        if k == "StagedGlobalNetworkPolicy" and ns_part:
            continue
        try:
            candidates.append(store.get(k, bare, ns if kind_info(k).namespaced else None))
        except NotFound:
            continue
    if not candidates:
        where = f" in namespace {ns!r}" if not ns_part or kind != "sgnp" else ""
        raise UserError(f"no staged policy {bare!r}{where} (looked for {', '.join(wanted)})")
    if len(candidates) > 1:
        short = {v: k for k, v in _KINDS.items()}
        found = " and ".join(c.kind for c in candidates)
        which = " or ".join(f"--kind {short[c.kind]}" for c in candidates)
        raise UserError(f"{bare!r} is {found} in {ns!r}: say which with {which}")
    return candidates[0]


def promotion(store: ResourceStore, staged: Resource, *, keep_staged: bool) -> list[tuple[str, Resource]]:
    """The writes that promote `staged`: (mode, resource) pairs for `ResourceStore.write_all`."""
    spec: Any = staged.spec
    target_kind = ENFORCED_KIND[staged.kind]
    meta = staged.metadata
    ns = meta.namespace if kind_info(target_kind).namespaced else None
    writes: list[tuple[str, Resource]] = []
    if spec.effective_staged_action == DELETE:
        try:
            enforced = store.get(target_kind, meta.name, ns)
        except NotFound:
            raise UserError(f"{staged.kind} {_label(meta.name, ns)} has stagedAction Delete but there is no "
                            f"{target_kind} {_label(meta.name, ns)} to delete") from None
        writes.append(("delete", enforced))
    else:
        tier = spec.effective_tier if has_tier(staged.kind) else DEFAULT_TIER
        if tier != DEFAULT_TIER and tier not in RESERVED_TIER_ORDERS:
            try:
                store.get("Tier", tier)
            except NotFound:
                raise UserError(f"{staged.kind} {_label(meta.name, ns)}: spec.tier: tier {tier!r} does not "
                                "exist; create the Tier first") from None
        enforced = Resource.of(target_kind, meta.name, enforced_spec(spec), namespace=ns,
                               labels=dict(meta.labels), annotations=dict(meta.annotations))
        writes.append(("apply", enforced))
    if not keep_staged:
        writes.append(("delete", staged))
    return writes


def _label(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name


def _promote(args: argparse.Namespace) -> int:
    with closing(open_store(args)) as ds:
        store = ResourceStore(ds)
        staged = find_staged(store, args.name, args.namespace, args.kind)
        writes = promotion(store, staged, keep_staged=args.keep_staged)
        if args.dry_run:
            for mode, res in writes:
                print(json.dumps({"action": mode, "object": res.to_wire()}, indent=2))
            return 0
        results = store.write_all(writes)
    for r in results:
        res = r.resource
        print(f"{res.kind} {_label(res.metadata.name, res.metadata.namespace)} {r.action}")
    return 0
