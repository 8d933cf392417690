"""Kubernetes objects -> the Calico-model objects tortie enforces them as (pure).

    translate(resource)        one Kubernetes Resource -> its one Calico Resource (tortie.k8s.names)
    translate_all(resources)   Calico resources unchanged, Kubernetes ones replaced by their translation
    in_force(stored, kubernetes)   one Calico kind as enforced: stored objects and translations
                                   (a translation shadows a stored object of the same key)

Inputs are validated Resources (tortie.model); outputs are Resources that pass tortie's own model
validation (a property test checks it), so every consumer (calc, `tortie policy trace`) can treat
them like stored Calico objects. The evaluation order this produces per pod and direction:

    tier kube-admin (ANPs by priority; Pass = leave the tier)
      -> tier default (Kubernetes NetworkPolicies at order 1000 and Calico policies)
      -> tier kube-baseline (the BANP)
      -> profile kns.<namespace> (allow all)

Module map: `names` (derived names and keys), `selectors` (label selector -> Calico selector),
`rules` (rule expansion), `network_policy` (Namespace, NetworkPolicy), `admin_policy` (ANP, BANP).
"""

from __future__ import annotations

from collections.abc import Iterable

from tortie.k8s import names
from tortie.k8s.admin_policy import translate_admin_policy
from tortie.k8s.network_policy import translate_namespace, translate_network_policy
from tortie.model import Resource


def translate(resource: Resource) -> Resource:
    """The Calico object a Kubernetes object is enforced as (annotated `tortie.io/translated-from`);
    ValueError for other kinds."""
    if resource.kind == names.NAMESPACE_KIND:
        out = translate_namespace(resource)
    elif resource.kind == names.NETWORK_POLICY_KIND:
        out = translate_network_policy(resource)
    elif resource.kind in (names.ADMIN_POLICY_KIND, names.BASELINE_POLICY_KIND):
        out = translate_admin_policy(resource)
    else:
        raise ValueError(f"{resource.kind} is not a Kubernetes kind tortie translates")
    meta = resource.metadata
    where = f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name
    return out.replace_metadata(annotations={names.TRANSLATED_FROM: f"{resource.kind} {where}"})


def translate_all(resources: Iterable[Resource]) -> list[Resource]:
    return [translate(r) if names.is_kubernetes_kind(r.kind) else r for r in resources]


def in_force(
    stored: Iterable[Resource], translations: Iterable[Resource]
) -> tuple[list[Resource], list[Resource]]:
    """What the agent enforces of one Calico kind, given its stored objects and the translations into
    it: the stored objects and the translations, a translation taking the place of a stored object at
    the same key (tortie.calc.kubernetes_calc), in key order; and the stored objects so shadowed."""
    by_key = {r.key: r for r in stored}
    shadowed = []
    for translation in translations:
        if translation.key in by_key:
            shadowed.append(by_key[translation.key])
        by_key[translation.key] = translation
    return [by_key[key] for key in sorted(by_key)], shadowed
