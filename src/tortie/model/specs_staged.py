"""Specs of the staged (preview) policy kinds: StagedNetworkPolicy, StagedGlobalNetworkPolicy and
StagedKubernetesNetworkPolicy.

A staged policy is never enforced: the agent does not watch these kinds, so no calc, nft rule or
route ever comes from one. Its only effect is the "pending" verdict of flow records
(`tortie.flows.staged`), the verdict the policy set would give if the staged policies were applied,
and `tortie policy promote NAME`, which applies it as the real kind.

Each spec is Calico's: the enforced kind's fields plus `stagedAction` (reference §1.8). The enforced
kind of a StagedKubernetesNetworkPolicy (`projectcalico.org/v3`, namespaced) is the Kubernetes
`networking.k8s.io/v1` NetworkPolicy: its spec is that kind's (podSelector, policyTypes, ingress,
egress, validated as the API server validates them) and it previews the Kubernetes NetworkPolicy of
the same namespace and name (enforced as `knp.default.<name>`, tortie.k8s).

* `Set` (the default): the staged policy stands in for the enforced policy of the same kind,
  namespace and name (added if there is none);
* `Delete`: the enforced policy of that name is taken away; every spec field but `tier` must then be
  empty (Calico's rule; a staged Kubernetes policy has no tier, so all of its fields), so a Delete
  says nothing but which policy goes.

Calico's other values, `Learn` and `Ignore`, belong to its policy recommendation controller, which
tortie does not have; they are refused. Staged GlobalNetworkPolicies with `doNotTrack`, `preDNAT` or
`applyOnForward` are refused too (by the support table, `tortie.model.support_staged`): flow records
come from the filter stage of endpoints, so a preview of those stages could not be shown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from tortie.model.problems import Issues, join
from tortie.model.schema import Enum, Struct, Wire, uses
from tortie.model.specs_k8s import EVERYTHING, K8S_NETWORK_POLICY_SPEC, K8sNetworkPolicySpec
from tortie.model.specs_policy import (
    DEFAULT_TIER,
    GLOBAL_NETWORK_POLICY_SPEC,
    NETWORK_POLICY_SPEC,
    RESERVED_TIER_ORDERS,
    GlobalNetworkPolicySpec,
    NetworkPolicySpec,
    check_policy_resource,
)

if TYPE_CHECKING:
    from tortie.model.resource import Resource

SET, DELETE = "Set", "Delete"
# Learn and Ignore are decoded so that the refusal can say why (`_check_action`).
STAGED_ACTION = Enum(SET, DELETE, "Learn", "Ignore")
# staged kind -> the kind it previews (and becomes when promoted)
ENFORCED_KIND = {
    "StagedNetworkPolicy": "NetworkPolicy",
    "StagedGlobalNetworkPolicy": "GlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy": "NetworkPolicy.networking.k8s.io",
}
STAGED_KINDS = tuple(ENFORCED_KIND)
__all__ = ["check_policy_resource"]  # the resource-level check the kind table names (tier prefixes)


class _StagedAction:
    staged_action: str | None

    @property
    def effective_staged_action(self) -> str:
        return self.staged_action or SET


@dataclass(frozen=True, kw_only=True)
class StagedNetworkPolicySpec(NetworkPolicySpec, _StagedAction):
    staged_action: Annotated[str | None, Wire(STAGED_ACTION)] = None


@dataclass(frozen=True, kw_only=True)
class StagedGlobalNetworkPolicySpec(GlobalNetworkPolicySpec, _StagedAction):
    staged_action: Annotated[str | None, Wire(STAGED_ACTION)] = None


@dataclass(frozen=True, kw_only=True)
class StagedKubernetesNetworkPolicySpec(K8sNetworkPolicySpec, _StagedAction):
    staged_action: Annotated[str | None, Wire(STAGED_ACTION)] = None


StagedSpec = StagedNetworkPolicySpec | StagedGlobalNetworkPolicySpec | StagedKubernetesNetworkPolicySpec
_ENFORCED_SPEC: dict[type[Any], type[Any]] = {
    StagedNetworkPolicySpec: NetworkPolicySpec,
    StagedGlobalNetworkPolicySpec: GlobalNetworkPolicySpec,
    StagedKubernetesNetworkPolicySpec: K8sNetworkPolicySpec,
}


def has_tier(kind: str) -> bool:
    """Whether staged policies of `kind` name a tier (the Kubernetes one does not: it is in `default`)."""
    return kind != "StagedKubernetesNetworkPolicy"


def enforced_spec(spec: StagedSpec) -> Any:
    """The enforced kind's spec with the same field values (without `stagedAction`)."""
    target = _ENFORCED_SPEC[type(spec)]
    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(target)}
    return target(**values)


@uses("stagedAction")
def _check_action(spec: Any, path: str, issues: Issues) -> None:
    if spec.staged_action in ("Learn", "Ignore"):
        issues.add(join(path, "stagedAction"), f"{spec.staged_action!r} is not supported by tortie: "
                   "Learn and Ignore belong to Calico's policy recommendation controller; use Set or Delete")


_DELETE_KEEPS = frozenset({"tier", "staged_action"})


@uses("stagedAction")
def _check_delete(spec: Any, path: str, issues: Issues) -> None:
    if spec.effective_staged_action != DELETE:
        return
    for f in dataclasses.fields(spec):
        if f.name in _DELETE_KEEPS:
            continue
        value = getattr(spec, f.name)
        # Calico's podSelector is a struct, not a pointer: `podSelector: {}` is its zero value too
        if value not in (None, (), f.default) and not (f.name == "pod_selector" and value == EVERYTHING):
            wire = STAGED_NETWORK_POLICY_SPEC_WIRE.get(f.name, f.name)
            only = ("only tier may be given" if hasattr(spec, "tier")
                    else "no other field may be given")
            issues.add(join(path, wire), "must be empty when stagedAction is Delete (a Delete names the "
                       f"policy to take away; {only})")


STAGED_NETWORK_POLICY_SPEC = Struct(
    StagedNetworkPolicySpec, checks=[*NETWORK_POLICY_SPEC.checks, _check_action, _check_delete],
    hints=NETWORK_POLICY_SPEC.hints,
)
STAGED_GLOBAL_NETWORK_POLICY_SPEC = Struct(
    StagedGlobalNetworkPolicySpec,
    checks=[*GLOBAL_NETWORK_POLICY_SPEC.checks, _check_action, _check_delete],
)
STAGED_KUBERNETES_NETWORK_POLICY_SPEC = Struct(
    StagedKubernetesNetworkPolicySpec,
    checks=[*K8S_NETWORK_POLICY_SPEC.checks, _check_action, _check_delete],
    hints=K8S_NETWORK_POLICY_SPEC.hints,
)
STAGED_NETWORK_POLICY_SPEC_WIRE = {
    f.attr: f.wire
    for codec in (
        STAGED_NETWORK_POLICY_SPEC, STAGED_GLOBAL_NETWORK_POLICY_SPEC, STAGED_KUBERNETES_NETWORK_POLICY_SPEC
    )
    for f in codec.fields
}


def missing_tiers(resources: Sequence[Resource], tier_exists: Callable[[str], bool]) -> list[str]:
    """Problems of staged policies (among `resources`) whose tier neither exists nor is among
    `resources` (Calico's API server refuses a policy in a missing tier; so does `tortie apply`)."""
    written = {r.metadata.name for r in resources if r.kind == "Tier"}
    out = []
    for r in resources:
        if r.kind not in ENFORCED_KIND or not has_tier(r.kind):
            continue
        tier = r.spec.effective_tier  # type: ignore[union-attr]
        if tier in written or tier == DEFAULT_TIER or tier in RESERVED_TIER_ORDERS or tier_exists(tier):
            continue
        ns = f"{r.metadata.namespace}/" if r.metadata.namespace else ""
        out.append(f"{r.kind} {ns}{r.metadata.name}: spec.tier: tier {tier!r} does not exist; create the "
                   "Tier first (or in the same manifest)")
    return out
