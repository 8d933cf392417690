"""Calico names read back in Kubernetes terms (pure): how `tortie policy trace` explains a verdict in
the words of the manifests the user wrote.

    sources = KubernetesSources.of(resources)       every valid object of a datastore snapshot
    sources.annotate("rule NetworkPolicy(x/knp.default.web) ingress[2]: Allow")
        -> "... [Kubernetes NetworkPolicy x/web, spec.ingress[1].from[0]]"
    sources.isolated_by(policy_ids)                  the Kubernetes NetworkPolicies among them

Input: validated Resources (Calico and Kubernetes kinds alike). The Kubernetes ones are translated
again here (`tortie.k8s.translate`, the calc's own function), so a translated rule's place — the
`origin` annotation every translated rule carries, and an admin policy rule's `name` — is found by
the Calico rule's index. Owners are written the way the trace and the rendered table name them:
`NetworkPolicy(<ns>/<name>)`, `GlobalNetworkPolicy(<name>)`, `Profile(<name>)` or `profile <name>`.
A profile `kns.<ns>` that neither a Namespace nor a stored Profile defines is explained too (the
pods of that namespace allow nothing no policy allows: docs/reference/kubernetes-policy.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tortie.k8s import names
from tortie.k8s.translate import translate
from tortie.model import Resource

_KIND_WORDS = {
    names.NAMESPACE_KIND: "Namespace",
    names.NETWORK_POLICY_KIND: "NetworkPolicy",
    names.ADMIN_POLICY_KIND: "AdminNetworkPolicy",
    names.BASELINE_POLICY_KIND: "BaselineAdminNetworkPolicy",
}
_MENTION = re.compile(
    r"(?P<kind>NetworkPolicy|GlobalNetworkPolicy|Profile)\((?P<name>[^()\s]+)\)"
    r"(?: (?P<direction>ingress|egress)\[(?P<index>\d+)\])?"
    r"|profile (?P<profile>[a-z0-9.-]+)"
)


def owner_text(resource: Resource) -> str:
    """How the trace names a Calico object: `NetworkPolicy(ns/name)`, `GlobalNetworkPolicy(name)`..."""
    meta = resource.metadata
    if resource.kind == "NetworkPolicy":
        return f"NetworkPolicy({meta.namespace}/{meta.name})"
    return f"{resource.kind}({meta.name})"


@dataclass(frozen=True)
class Source:
    """The Kubernetes object behind one translated Calico object."""

    text: str  # "Kubernetes NetworkPolicy x/web"
    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)  # direction -> each rule's place


@dataclass
class KubernetesSources:
    by_owner: dict[str, Source]
    stored_profiles: frozenset[str]

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> KubernetesSources:
        by_owner: dict[str, Source] = {}
        stored: set[str] = set()
        for resource in resources:
            if resource.kind == "Profile":
                stored.add(resource.metadata.name)
            if not names.is_kubernetes_kind(resource.kind):
                continue
            meta = resource.metadata
            where = f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name
            calico = translate(resource)
            rules = {
                direction: tuple(_place(rule.metadata) for rule in getattr(calico.spec, direction))
                for direction in ("ingress", "egress")
            }
            by_owner[owner_text(calico)] = Source(f"Kubernetes {_KIND_WORDS[resource.kind]} {where}", rules)
        return cls(by_owner, frozenset(stored))

    def describe(self, owner: str, direction: str | None = None, index: int | None = None) -> str | None:
        """The Kubernetes words for a Calico owner (and one of its rules), or None if it is not one."""
        source = self.by_owner.get(owner)
        if source is None:
            if owner.startswith("Profile(" + names.NAMESPACE_PROFILE_PREFIX):
                profile = owner[len("Profile(") : -1]
                if profile not in self.stored_profiles:
                    ns = profile[len(names.NAMESPACE_PROFILE_PREFIX) :]
                    return f"no Namespace {ns}: its profile {profile} does not exist"
            return None
        if direction is None or index is None:
            return source.text
        places = source.rules.get(direction, ())
        place = places[index] if index < len(places) else ""
        return f"{source.text}, {place}" if place else source.text

    def annotate(self, text: str) -> str:
        """`text` with the Kubernetes words after every Calico owner (or rule) it mentions."""

        def words(match: re.Match[str]) -> str:
            if match.group("profile"):
                owner = f"Profile({match.group('profile')})"
                said = self.describe(owner)
            else:
                owner = f"{match.group('kind')}({match.group('name')})"
                index = match.group("index")
                said = self.describe(owner, match.group("direction"), int(index) if index else None)
            return f"{match.group(0)} [{said}]" if said else match.group(0)

        return _MENTION.sub(words, text)

    def isolated_by(self, owners: Iterable[str]) -> list[str]:
        """The Kubernetes NetworkPolicies among `owners` (their isolation is what denies by default)."""
        out = []
        for owner in owners:
            source = self.by_owner.get(owner)
            if source is not None and source.text.startswith("Kubernetes NetworkPolicy "):
                out.append(source.text)
        return out


def _place(meta: object) -> str:
    annotations = getattr(meta, "annotations", None) or {}
    place = str(annotations.get("origin", ""))
    name = annotations.get("name")
    return f"{place} (rule {name})" if name else place
