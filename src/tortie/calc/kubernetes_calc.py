"""Kubernetes objects -> the Calico objects they are enforced as, merged with the stored Calico objects.

    Namespace, NetworkPolicy.networking.k8s.io,         tortie.k8s.translate
    AdminNetworkPolicy, BaselineAdminNetworkPolicy  -------------------------+
                                                                             v
    stored Profile, NetworkPolicy, GlobalNetworkPolicy --------------> effective object per Calico key
                                                                             |
                         PolicyCalc.on_profile / on_network_policy / on_global_network_policy

Inputs: the dispatcher's parsed Resource (or None: deleted or invalid) for the four Kubernetes kinds
and for the three Calico kinds a translation can be. Output: calls to the policy calc's listener of
the translation's kind, with the Calico object that is in force at that key — only when it changed.
To the policy calc a translation is a stored Calico object like any other (Calico's etcd layout,
`tortie.k8s.names.derived_key`), so everything downstream (label indexes, IP sets, tiers, rules,
`tortie policy trace`) treats both alike.

Precedence: while a Kubernetes object exists its translation is in force at its key, and a stored
Calico object of the same kind and name (a Profile `kns.<ns>`, a NetworkPolicy `<ns>/knp.default.<n>`,
a GlobalNetworkPolicy `kanp.adminnetworkpolicy.<n>` or `kbanp.baselineadminnetworkpolicy.default`)
is shadowed, with a warning; when the Kubernetes object goes, the stored one is in force again. This
is Calico's precedence: those names belong to the Kubernetes objects (Calico's API refuses to create
a `knp.default.` policy, and in etcd mode its kube-controllers overwrite such keys from the Kubernetes
objects).

Cost: one translation per change of a Kubernetes object; the policy calc does the rest
incrementally. A relabelled Namespace changes only the labelsToApply of profile `kns.<ns>`, which the
label indexes apply to that profile's children: the namespace's own endpoints and network sets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tortie.k8s.names import KUBERNETES_KINDS, derived_key
from tortie.k8s.translate import translate
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)

Listener = Callable[[str, Any], None]
CALICO_KINDS = ("Profile", "NetworkPolicy", "GlobalNetworkPolicy")


class KubernetesCalc:
    """See the module docstring. `downstream` maps each Calico kind to its policy calc listener."""

    def __init__(self, downstream: Mapping[str, Listener]) -> None:
        self._downstream = dict(downstream)
        self._translated: dict[str, Any] = {}  # Calico key -> translation of the Kubernetes object
        self._sources: dict[str, str] = {}  # Calico key -> key of the Kubernetes object
        self._stored: dict[str, Any] = {}  # Calico key -> stored Calico object
        self._sent: dict[str, Any] = {}  # Calico key -> what the policy calc holds
        self.invalid_count = 0

    def listeners(self) -> dict[str, Listener]:
        """kind -> dispatcher listener, for the Kubernetes kinds and the Calico kinds they shadow."""
        out: dict[str, Listener] = dict.fromkeys(KUBERNETES_KINDS, self.on_kubernetes)
        for kind in CALICO_KINDS:
            out[kind] = self._stored_listener(kind)
        return out

    def on_kubernetes(self, key: str, resource: Any) -> None:
        target = derived_key(key)
        if target is None:
            return
        translation = None
        if resource is not None:
            try:
                translation = translate(resource)
            except (ValueError, TypeError) as exc:  # validated input translates; never stop the others
                self.invalid_count += 1
                log.warning(
                    "Kubernetes object not translated, treated as absent key=%s reason=%r", key, str(exc)
                )
        if translation is None:
            self._translated.pop(target, None)
            self._sources.pop(target, None)
        else:
            self._translated[target] = translation
            self._sources[target] = key
        self._send(target)

    def _stored_listener(self, kind: str) -> Listener:
        def on_stored(key: str, resource: Any) -> None:
            if resource is None:
                self._stored.pop(key, None)
            else:
                self._stored[key] = resource
            self._send(key, kind)

        return on_stored

    def _send(self, key: str, kind: str | None = None) -> None:
        translation = self._translated.get(key)
        stored = self._stored.get(key)
        if translation is not None and stored is not None:
            log.warning(
                "stored object shadowed by a Kubernetes object's translation (the translation is enforced) "
                "key=%s kubernetes=%s",
                key,
                self._sources.get(key),
            )
        effective = translation if translation is not None else stored
        if effective is None and key not in self._sent:
            return
        if effective is not None and self._sent.get(key) == effective:
            return
        kind = kind or _calico_kind(key)
        if effective is None:
            del self._sent[key]
        else:
            self._sent[key] = effective
        self._downstream[kind](key, effective)


def _calico_kind(key: str) -> str:
    for kind in CALICO_KINDS:
        if key.startswith(kind_info(kind).prefix):
            return kind
    raise ValueError(f"{key} is not the key of a Profile, NetworkPolicy or GlobalNetworkPolicy")
