"""Kubernetes label selectors as Calico selector text (pure).

Input: a `LabelSelector` (matchLabels AND matchExpressions). Output: Calico selector text with the
same meaning over a label map, the way libcalico-go's conversion writes it:

    matchLabels {k: v}          k == "v"            (keys sorted)
    In / NotIn                  k in {"a", "b"} / k not in {"a", "b"}   (NotIn: also true when absent)
    Exists / DoesNotExist       has(k) / !has(k)
    empty selector              all()

Pod selectors are prefixed `projectcalico.org/orchestrator == "k8s"`, so that Kubernetes policy selects
Kubernetes pods only (never a host endpoint, a network set or a non-Kubernetes workload); namespace
selectors are left unprefixed: the calc evaluates them against the namespace's labels (the `pcns.`
labels of profile `kns.<namespace>`).
"""

from __future__ import annotations

from tortie.model.specs_k8s import LabelSelector

ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
KUBERNETES_ORCHESTRATOR = "k8s"
IS_POD = f'{ORCHESTRATOR_LABEL} == "{KUBERNETES_ORCHESTRATOR}"'


def _values(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def selector_terms(sel: LabelSelector) -> list[str]:
    """The selector's requirements as Calico terms, to be ANDed ([] = everything)."""
    terms = [f'{key} == "{sel.match_labels[key]}"' for key in sorted(sel.match_labels)]
    for req in sel.match_expressions:
        if req.operator == "In":
            terms.append(f"{req.key} in {{{_values(req.values)}}}")
        elif req.operator == "NotIn":
            terms.append(f"{req.key} not in {{{_values(req.values)}}}")
        elif req.operator == "Exists":
            terms.append(f"has({req.key})")
        else:
            terms.append(f"!has({req.key})")
    return terms


def namespace_selector(sel: LabelSelector) -> str:
    """A namespaceSelector: `all()` for the empty selector (every namespace)."""
    return " && ".join(selector_terms(sel)) or "all()"


def pod_selector(sel: LabelSelector | None) -> str:
    """Pods (Kubernetes workloads) matching `sel`; None or empty: every pod."""
    return " && ".join([IS_POD, *selector_terms(sel or LabelSelector())])
