"""Object metadata (name, namespace, labels, annotations, store-maintained fields) and name rules.

Input: the `metadata` mapping of a wire object. Output: a frozen `Metadata`. The naming rules that
depend on the kind (policy, tier, IPAM object names) live here too, as `check_name(kind, name)`;
the resource layer applies them together with the namespace rules (namespaced kinds need a
namespace, cluster-scoped kinds must not have one).

Invariant: `resource_version`, `uid`, `creation_timestamp` and `generation` are maintained by the
datastore layer (tortie.datastore.resources); the model only carries them, so the output of
`tortie get -o yaml` applies again unchanged.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from tortie.model.fields import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    LABEL_NAME,
    check_annotation_key,
    check_dns_label,
    check_dns_subdomain,
    check_label_key,
    check_label_value,
)
from tortie.model.frozen import FrozenMap
from tortie.model.schema import Int, MapOf, Struct, Text, Wire

_ANNOTATIONS_MAX_BYTES = 256 * 1024


def _annotations_size(annotations: FrozenMap[str, str]) -> str | None:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > _ANNOTATIONS_MAX_BYTES:
        return f"annotations total {size} bytes; at most {_ANNOTATIONS_MAX_BYTES} are allowed"
    return None


LABELS = MapOf(Text(check_label_value), key=check_label_key)
ANNOTATIONS = MapOf(Text(), key=check_annotation_key, check=_annotations_size)
EMPTY: FrozenMap[str, str] = FrozenMap()


@dataclass(frozen=True, kw_only=True)
class Metadata:
    """Kubernetes-style object metadata, as far as Calico's v3 resources use it."""

    name: Annotated[str, Wire(Text(non_empty=True))]
    namespace: Annotated[str | None, Wire(LABEL_NAME)] = None
    labels: Annotated[Mapping[str, str], Wire(LABELS)] = EMPTY
    annotations: Annotated[Mapping[str, str], Wire(ANNOTATIONS)] = EMPTY
    resource_version: Annotated[str | None, Wire(Text())] = None
    uid: Annotated[str | None, Wire(Text(), "uid")] = None
    creation_timestamp: Annotated[str | None, Wire(Text())] = None
    generation: Annotated[int | None, Wire(Int(0))] = None

    def __post_init__(self) -> None:
        # Accept plain dicts from callers; store immutable, hashable maps.
        if not isinstance(self.labels, FrozenMap):
            object.__setattr__(self, "labels", FrozenMap(self.labels))
        if not isinstance(self.annotations, FrozenMap):
            object.__setattr__(self, "annotations", FrozenMap(self.annotations))


_SERVER_SET = "set by a Kubernetes API server; tortie keeps no such field (remove it)"
METADATA = Struct(Metadata, hints={
    "generateName": "not supported: give every resource an explicit name",
    "managedFields": _SERVER_SET, "selfLink": _SERVER_SET,
})

# -- name rules per kind ------------------------------------------------------------------------------
_NP_NAME_RE = re.compile(
    rf"^(({DNS1123_LABEL})(\.{DNS1123_LABEL})?|((knp|ossg)\.default\.({DNS1123_SUBDOMAIN})))$"
)
_GNP_NAME_RE = re.compile(
    rf"^(({DNS1123_LABEL}\.)?{DNS1123_LABEL}|(kanp\.adminnetworkpolicy|kbanp\.baselineadminnetworkpolicy)"
    rf"\.({DNS1123_SUBDOMAIN}))$"
)
# Names of policies translated from Kubernetes objects (tortie.k8s): prefix -> the policy's tier. The
# prefixes are Calico's; the admin tiers are the model's reserved kube-admin / kube-baseline.
KUBERNETES_POLICY_PREFIXES = {
    "knp.default.": "default",
    "ossg.default.": "default",
    "kanp.adminnetworkpolicy.": "kube-admin",
    "kbanp.baselineadminnetworkpolicy.": "kube-baseline",
}
_IPAM_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/-]+$")

_POLICY_KINDS = ("NetworkPolicy", "GlobalNetworkPolicy")
_IPAM_KINDS = ("IPAMBlock", "BlockAffinity", "IPAMHandle")
_STAGED_POLICY_KINDS = ("StagedNetworkPolicy", "StagedGlobalNetworkPolicy")


def check_name(kind: str, name: str) -> str:
    """Validate a resource name for its kind; raises ValueError with the rule that was broken.

    * Tier: a DNS-1123 label (no dots; tier names prefix policy names).
    * NetworkPolicy: a DNS-1123 label, optionally `<tier>.` prefixed, or `knp.default.<subdomain>` /
      `ossg.default.<subdomain>` (Kubernetes- and OpenStack-derived policies).
    * GlobalNetworkPolicy: a DNS-1123 label, optionally `<tier>.` prefixed, or
      `kanp.adminnetworkpolicy.<subdomain>` / `kbanp.baselineadminnetworkpolicy.<subdomain>` (derived
      from Kubernetes AdminNetworkPolicy / BaselineAdminNetworkPolicy).
    * Namespace: a DNS-1123 label (Kubernetes' rule for namespace names).
    The 253-character limit applies to the part after a Kubernetes-derived prefix, since the prefix is
    added to a Kubernetes name that may itself have 253 characters.
    * IPAMBlock, BlockAffinity, IPAMHandle: names are encodings chosen by tortie.ipam (CIDRs with
      '-', host/affinity paths with '/', handle ids); any of [A-Za-z0-9_.:/-] without empty path
      segments.
    * everything else: a DNS-1123 subdomain.
    """
    if kind in ("Tier", "Namespace"):
        return check_dns_label(name)
    if kind in _POLICY_KINDS:
        derived = next((p for p in KUBERNETES_POLICY_PREFIXES if name.startswith(p)), "")
        if len(name) - len(derived) > 253:
            raise ValueError(f"name is too long ({len(name)} characters; at most 253)")
        pattern = _NP_NAME_RE if kind == "NetworkPolicy" else _GNP_NAME_RE
        if not pattern.match(name):
            allowed = ("a DNS-1123 label (lower-case letters, digits, '-'), optionally prefixed by "
                       "'<tier>.'")
            raise ValueError(f"{name!r} is not a valid {kind} name: use {allowed}")
        return name
    if kind in _STAGED_POLICY_KINDS:
        if len(name) > 253 or not _GNP_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a valid {kind} name: use a DNS-1123 label, optionally "
                             "prefixed by '<tier>.'")
        return name
    if kind in _IPAM_KINDS:
        if not _IPAM_NAME_RE.match(name) or name.startswith("/") or name.endswith("/") or "//" in name:
            raise ValueError(f"{name!r} is not a valid {kind} name: use letters, digits and '_.:/-' "
                             "without empty '/' segments")
        return name
    return check_dns_subdomain(name)


def policy_name_tier(name: str) -> str | None:
    """The tier prefix of a policy name (`sec.allow-dns` -> `sec`), None if the name has none.
    Kubernetes/OpenStack-derived names belong to their prefix's tier (KUBERNETES_POLICY_PREFIXES)."""
    for prefix, tier in KUBERNETES_POLICY_PREFIXES.items():
        if name.startswith(prefix):
            return tier
    head, dot, _ = name.partition(".")
    return head if dot else None


__all__ = ["METADATA", "Metadata", "check_label_key", "check_label_value", "check_name", "policy_name_tier"]
