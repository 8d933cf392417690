"""Where a Kubernetes object's translation lives: the Calico kind, name and datastore key it becomes.

Every Kubernetes object translates into exactly one Calico-model object whose name says where it came
from (Calico's own prefixes, so Calico's tools recognise them too):

    v1 Namespace <ns>                    Profile kns.<ns>
    NetworkPolicy <ns>/<n>               NetworkPolicy <ns>/knp.default.<n>    (tier default, order 1000)
    AdminNetworkPolicy <n>               GlobalNetworkPolicy kanp.adminnetworkpolicy.<n>    (tier kube-admin)
    BaselineAdminNetworkPolicy default   GlobalNetworkPolicy kbanp.baselineadminnetworkpolicy.default
                                                                                (tier kube-baseline)

Each translation carries the annotation `tortie.io/translated-from: <Kubernetes kind> [<ns>/]<name>`,
so `tortie get` of it says where it comes from. `derived_key` maps the datastore key of a Kubernetes
object to the key of its translation, so that a consumer of datastore events (the calc) can remove a
translation knowing only the deleted key.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortie.model.kinds import KINDS, KindInfo, kind_info

NAMESPACE_KIND = "Namespace"
NETWORK_POLICY_KIND = "NetworkPolicy.networking.k8s.io"
ADMIN_POLICY_KIND = "AdminNetworkPolicy.policy.networking.k8s.io"
BASELINE_POLICY_KIND = "BaselineAdminNetworkPolicy.policy.networking.k8s.io"
KUBERNETES_KINDS = (NAMESPACE_KIND, NETWORK_POLICY_KIND, ADMIN_POLICY_KIND, BASELINE_POLICY_KIND)

NAMESPACE_PROFILE_PREFIX = "kns."
NETWORK_POLICY_PREFIX = "knp.default."
ADMIN_POLICY_PREFIX = "kanp.adminnetworkpolicy."
BASELINE_POLICY_PREFIX = "kbanp.baselineadminnetworkpolicy."
DEFAULT_TIER = "default"
ADMIN_TIER = "kube-admin"
BASELINE_TIER = "kube-baseline"
TRANSLATED_FROM = "tortie.io/translated-from"


@dataclass(frozen=True)
class Derived:
    """The Calico object a Kubernetes object translates into."""

    kind: str
    name: str
    namespace: str | None = None

    @property
    def key(self) -> str:
        return kind_info(self.kind).key(self.name, self.namespace)


_DERIVED = {
    NAMESPACE_KIND: ("Profile", NAMESPACE_PROFILE_PREFIX),
    NETWORK_POLICY_KIND: ("NetworkPolicy", NETWORK_POLICY_PREFIX),
    ADMIN_POLICY_KIND: ("GlobalNetworkPolicy", ADMIN_POLICY_PREFIX),
    BASELINE_POLICY_KIND: ("GlobalNetworkPolicy", BASELINE_POLICY_PREFIX),
}


def derived(kind: str, name: str, namespace: str | None = None) -> Derived:
    """The translation of Kubernetes object `kind` `namespace`/`name` (KeyError: not a Kubernetes kind)."""
    calico_kind, prefix = _DERIVED[kind]
    return Derived(calico_kind, prefix + name, namespace if kind == NETWORK_POLICY_KIND else None)


def _kind_of_key(key: str) -> KindInfo | None:
    for info in KINDS:
        if info.kind in _DERIVED and key.startswith(info.prefix):
            return info
    return None


def derived_key(key: str) -> str | None:
    """The datastore key of the translation of the Kubernetes object stored at `key`; None when `key`
    is not a Kubernetes object's key."""
    info = _kind_of_key(key)
    if info is None:
        return None
    parts = key[len(info.prefix) :].split("/")
    if len(parts) != (2 if info.namespaced else 1) or not all(parts):
        return None
    namespace, name = (parts[0], parts[1]) if info.namespaced else (None, parts[0])
    return derived(info.kind, name, namespace).key


def is_kubernetes_kind(kind: str) -> bool:
    return kind in _DERIVED


def translated_from(calico_kind: str) -> tuple[str, ...]:
    """The Kubernetes kinds whose translations are of `calico_kind` (() for the other kinds)."""
    return tuple(kind for kind, (target, _prefix) in _DERIVED.items() if target == calico_kind)
