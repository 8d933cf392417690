"""Dispatcher: routes parsed datastore updates to the calculators interested in their kind.

Inputs: `on_update(key, kind, value)` from the validation filter, where `value` is the parsed object
(a `tortie.model` Resource, an IPAM record, or a FelixConfiguration spec) or None when the key is
gone or invalid. Outputs: calls to every listener registered for `kind`, in registration order.

WorkloadEndpoints come in two kinds, split by the validation filter (the one place that decides
locality): `WORKLOAD_ENDPOINT` listeners get this host's endpoints, parsed; `REMOTE_WORKLOAD_ENDPOINT`
listeners get the other hosts' endpoints as raw wire values (None when one leaves that side).

`kind_of_key(key)` classifies a raw datastore key by prefix (Calico's etcd v3 layout, reference §1.16):
v3 resources by their plural, IPAM blocks and host affinities by their /calico/ipam/v2 paths, the
Kubernetes kinds by their roots under /tortie/kubernetes/. Keys of no interest classify as None and
are dropped before any parsing. The policy calculator registers for NetworkPolicy, Profile, ... and
the Kubernetes kinds here (`policy_graph.attach_policy_calc`).
"""

from __future__ import annotations

from collections.abc import Callable

from tortie.ipam.keys import BLOCK_ROOT, HOST_ROOT
from tortie.model.kinds import KINDS, KUBERNETES_ROOT, RESOURCE_ROOT

Listener = Callable[[str, object | None], None]

BLOCK_KIND = "IPAMBlock"
AFFINITY_KIND = "BlockAffinity"
WORKLOAD_ENDPOINT = "WorkloadEndpoint"
REMOTE_WORKLOAD_ENDPOINT = "WorkloadEndpoint(remote)"

_KIND_BY_PLURAL = {k.plural: k.kind for k in KINDS if not k.root}
_KUBERNETES_ROOTS = tuple((k.root, k.kind) for k in KINDS if k.root.startswith(KUBERNETES_ROOT))


def kind_of_key(key: str) -> str | None:
    """The kind stored at `key`, or None for keys the calc does not know."""
    if key.startswith(RESOURCE_ROOT):
        plural = key[len(RESOURCE_ROOT):].split("/", 1)[0]
        return _KIND_BY_PLURAL.get(plural)
    if key.startswith(BLOCK_ROOT):
        return BLOCK_KIND
    if key.startswith(HOST_ROOT):
        return AFFINITY_KIND
    if key.startswith(KUBERNETES_ROOT):
        return next((kind for root, kind in _KUBERNETES_ROOTS if key.startswith(root)), None)
    return None


class Dispatcher:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def register(self, kind: str, listener: Listener) -> None:
        self._listeners.setdefault(kind, []).append(listener)

    def wants(self, kind: str) -> bool:
        return kind in self._listeners

    def on_update(self, key: str, kind: str, value: object | None) -> None:
        for listener in self._listeners.get(kind, ()):
            listener(key, value)
