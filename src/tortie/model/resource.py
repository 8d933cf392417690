"""`Resource`: one validated object (projectcalico.org/v3, or a Kubernetes kind tortie accepts), and the
per-kind table that decodes it.

Input: a wire-form mapping (`apiVersion`, `kind`, `metadata`, `spec`, optional `status`).
Output: a frozen `Resource` whose `spec` is the kind's typed record (IPPoolSpec, ...), or a
`ValidationError` listing every problem of the object. The pair (apiVersion, kind) names the kind
(tortie.model.kinds): `Resource.kind` is tortie's name for it, e.g. `NetworkPolicy` (Calico's) or
`NetworkPolicy.networking.k8s.io` (Kubernetes'). `Resource.to_wire()` is the inverse: a JSON-safe
dict in canonical form (keys apiVersion, kind, metadata, spec, status; only fields that were given;
the manifest's own apiVersion and kind), such that `parse_resource(r.to_wire()) == r`.

The kind table (`MODELS`) holds, per kind, the spec codec and the resource-level checks that need
the metadata (name rules, reserved tiers, policy tier prefixes). Scope rules: namespaced kinds need
`metadata.namespace` (or the caller's `default_namespace`), cluster-scoped kinds must not have one.

Import cost: `MODELS` names each kind's spec module and imports it on the first lookup of that kind
(`KindTable`), so validating an IPPool does not load the Felix, BGP or policy specs. Short-lived
processes (the CNI plugins) depend on this; `Spec`, the union of all spec types, is built on first
access for the same reason.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from tortie.model import kinds
from tortie.model.fields import check_dns_label
from tortie.model.metadata import METADATA, Metadata, check_name
from tortie.model.problems import Issues, Problem, ValidationError, describe_value
from tortie.model.schema import JSONValue, Struct
from tortie.model.support import check_rejections

if TYPE_CHECKING:
    from tortie.model.specs_bgp import BGPConfigurationSpec, BGPPeerSpec, NodeSpec
    from tortie.model.specs_bgp_filter import BGPFilterSpec
    from tortie.model.specs_controllers import KubeControllersConfigurationSpec
    from tortie.model.specs_endpoint import HostEndpointSpec, WorkloadEndpointSpec
    from tortie.model.specs_felix import FelixConfigurationSpec
    from tortie.model.specs_ipam import (
        BlockAffinitySpec,
        IPAMBlockSpec,
        IPAMConfigurationSpec,
        IPAMHandleSpec,
        IPPoolSpec,
        IPReservationSpec,
    )
    from tortie.model.specs_k8s import K8sNetworkPolicySpec, NamespaceSpec
    from tortie.model.specs_k8s_admin import AdminNetworkPolicySpec, BaselineAdminNetworkPolicySpec
    from tortie.model.specs_node_status import CalicoNodeStatusSpec
    from tortie.model.specs_policy import (
        GlobalNetworkPolicySpec,
        GlobalNetworkSetSpec,
        NetworkPolicySpec,
        NetworkSetSpec,
        ProfileSpec,
        TierSpec,
    )

    Spec: TypeAlias = (
        IPPoolSpec | IPReservationSpec | BGPConfigurationSpec | BGPPeerSpec | BGPFilterSpec | NodeSpec
        | FelixConfigurationSpec | TierSpec | NetworkPolicySpec | GlobalNetworkPolicySpec | ProfileSpec
        | NetworkSetSpec | GlobalNetworkSetSpec | WorkloadEndpointSpec | HostEndpointSpec
        | IPAMConfigurationSpec | IPAMBlockSpec | BlockAffinitySpec | IPAMHandleSpec
        | KubeControllersConfigurationSpec | CalicoNodeStatusSpec
        | NamespaceSpec | K8sNetworkPolicySpec | AdminNetworkPolicySpec | BaselineAdminNetworkPolicySpec
    )

API_VERSION = kinds.API_VERSION
S = TypeVar("S")
ResourceCheck = Callable[[Metadata, Any, Issues], None]


@dataclass(frozen=True)
class KindModel:
    """How one kind's spec is decoded and which metadata-dependent checks apply."""

    kind: str
    spec: Struct[Any]
    checks: tuple[ResourceCheck, ...] = ()


@dataclass(frozen=True)
class KindSource:
    """Where a kind's model lives: the module defining its spec codec (attribute `spec`) and the
    functions (attributes `checks`) run on the whole resource."""

    module: str
    spec: str
    checks: tuple[str, ...] = ()

    def load(self, kind: str) -> KindModel:
        # __import__ rather than importlib.import_module: the same import, but visible to
        # `python -X importtime`, which is how start-up cost is examined (docs/design/cni.md).
        __import__(self.module)
        module = sys.modules[self.module]
        spec = getattr(module, self.spec)
        if not isinstance(spec, Struct):
            raise TypeError(f"{self.module}.{self.spec} is not a Struct (the spec codec of {kind})")
        return KindModel(kind, spec, tuple(getattr(module, name) for name in self.checks))


class KindTable(Mapping[str, KindModel]):
    """kind name -> KindModel, in a fixed order. A kind's spec module is imported on the first lookup
    of that kind, so a process validating a few kinds (the CNI plugins) loads only their modules;
    membership, iteration and `len` never import anything."""

    def __init__(self, sources: Mapping[str, KindSource]) -> None:
        self._sources = dict(sources)
        self._loaded: dict[str, KindModel] = {}

    def __getitem__(self, kind: str) -> KindModel:
        model = self._loaded.get(kind)
        if model is None:
            model = self._sources[kind].load(kind)  # KeyError for an unknown kind, as a dict
            self._loaded[kind] = model
        return model

    def __contains__(self, kind: object) -> bool:
        return kind in self._sources

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def __repr__(self) -> str:
        return f"KindTable({list(self._sources)!r}, loaded={list(self._loaded)!r})"


_IPAM = "tortie.model.specs_ipam"
_BGP = "tortie.model.specs_bgp"
_POLICY = "tortie.model.specs_policy"
_ENDPOINT = "tortie.model.specs_endpoint"
_STAGED = "tortie.model.specs_staged"
_K8S = "tortie.model.specs_k8s"
_K8S_ADMIN = "tortie.model.specs_k8s_admin"
MODELS: Mapping[str, KindModel] = KindTable({
    "IPPool": KindSource(_IPAM, "IPPOOL_SPEC"),
    "IPReservation": KindSource(_IPAM, "IPRESERVATION_SPEC"),
    "BGPConfiguration": KindSource(_BGP, "BGP_CONFIGURATION_SPEC"),
    "BGPPeer": KindSource(_BGP, "BGP_PEER_SPEC"),
    "BGPFilter": KindSource("tortie.model.specs_bgp_filter", "BGP_FILTER_SPEC"),
    "Node": KindSource(_BGP, "NODE_SPEC"),
    "FelixConfiguration": KindSource("tortie.model.specs_felix", "FELIX_CONFIGURATION_SPEC",
                                     ("check_felix_resource",)),
    "Tier": KindSource(_POLICY, "TIER_SPEC", ("check_tier_resource",)),
    "NetworkPolicy": KindSource(_POLICY, "NETWORK_POLICY_SPEC", ("check_policy_resource",)),
    "GlobalNetworkPolicy": KindSource(_POLICY, "GLOBAL_NETWORK_POLICY_SPEC", ("check_policy_resource",)),
    "StagedNetworkPolicy": KindSource(_STAGED, "STAGED_NETWORK_POLICY_SPEC", ("check_policy_resource",)),
    "StagedGlobalNetworkPolicy": KindSource(_STAGED, "STAGED_GLOBAL_NETWORK_POLICY_SPEC",
                                            ("check_policy_resource",)),
    "StagedKubernetesNetworkPolicy": KindSource(_STAGED, "STAGED_KUBERNETES_NETWORK_POLICY_SPEC"),
    "Profile": KindSource(_POLICY, "PROFILE_SPEC"),
    "NetworkSet": KindSource(_POLICY, "NETWORK_SET_SPEC", ("check_network_set_resource",)),
    "GlobalNetworkSet": KindSource(_POLICY, "GLOBAL_NETWORK_SET_SPEC", ("check_network_set_resource",)),
    "WorkloadEndpoint": KindSource(_ENDPOINT, "WORKLOAD_ENDPOINT_SPEC"),
    "HostEndpoint": KindSource(_ENDPOINT, "HOST_ENDPOINT_SPEC"),
    "IPAMConfiguration": KindSource(_IPAM, "IPAM_CONFIGURATION_SPEC"),
    "IPAMBlock": KindSource(_IPAM, "IPAM_BLOCK_SPEC"),
    "BlockAffinity": KindSource(_IPAM, "BLOCK_AFFINITY_SPEC"),
    "IPAMHandle": KindSource(_IPAM, "IPAM_HANDLE_SPEC"),
    "KubeControllersConfiguration": KindSource("tortie.model.specs_controllers",
                                               "KUBE_CONTROLLERS_CONFIGURATION_SPEC"),
    "CalicoNodeStatus": KindSource("tortie.model.specs_node_status", "CALICO_NODE_STATUS_SPEC"),
    "Namespace": KindSource(_K8S, "NAMESPACE_SPEC", ("check_namespace_resource",)),
    "NetworkPolicy.networking.k8s.io": KindSource(_K8S, "K8S_NETWORK_POLICY_SPEC"),
    "AdminNetworkPolicy.policy.networking.k8s.io": KindSource(_K8S_ADMIN, "ADMIN_NETWORK_POLICY_SPEC"),
    "BaselineAdminNetworkPolicy.policy.networking.k8s.io": KindSource(
        _K8S_ADMIN, "BASELINE_ADMIN_NETWORK_POLICY_SPEC", ("check_baseline_resource",)),
})
_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")
_STATUS = JSONValue()


@dataclass(frozen=True)
class Resource:
    """A validated resource. `kind` is tortie's kind name (tortie.model.kinds); `spec` is the kind's
    typed record; `status` is free-form data maintained by the system (read-only by convention;
    excluded from the hash)."""

    api_version: str
    kind: str
    metadata: Metadata
    spec: Spec
    status: Mapping[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def of(cls, kind: str, name: str, spec: Spec, *, namespace: str | None = None,
           labels: Mapping[str, str] | None = None,
           annotations: Mapping[str, str] | None = None) -> Resource:
        """Build a resource in code (not validated: call `validate_resource` if the values are not
        known to be valid)."""
        meta = Metadata(name=name, namespace=namespace, labels=labels or {}, annotations=annotations or {})
        return cls(kinds.kind_info(kind).api_version, kind, meta, spec)

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any], *, source: str = "<input>", document: int = 0) -> Resource:
        return parse_resource(obj, source=source, document=document)

    @property
    def key(self) -> str:
        """The datastore key (Calico's etcd v3 layout) of this resource."""
        return kinds.kind_info(self.kind).key(self.metadata.name, self.metadata.namespace)

    def to_wire(self) -> dict[str, Any]:
        """Canonical, JSON-safe wire form."""
        out: dict[str, Any] = {
            "apiVersion": self.api_version,
            "kind": kinds.kind_info(self.kind).manifest_kind,
            "metadata": METADATA.encode(self.metadata),
            "spec": MODELS[self.kind].spec.encode(self.spec),
        }
        if self.status is not None:
            out["status"] = _STATUS.encode(self.status)
        return out

    def replace_metadata(self, **changes: Any) -> Resource:
        """A copy with metadata fields replaced, e.g. `r.replace_metadata(resource_version=None)`."""
        return dataclasses.replace(self, metadata=dataclasses.replace(self.metadata, **changes))

    def replace_spec(self, spec: Spec) -> Resource:
        return dataclasses.replace(self, spec=spec)

    def spec_as(self, cls: type[S]) -> S:
        """The spec, typed as `cls` (raises TypeError if this resource's spec is another kind)."""
        if not isinstance(self.spec, cls):
            have = type(self.spec).__name__
            raise TypeError(f"{self.kind} {self.metadata.name} has a {have}, not a {cls.__name__}")
        return self.spec


def _check_kind(raw_kind: object, raw_api: object, issues: Issues) -> KindModel | None:
    """The kind a manifest's (apiVersion, kind) names; every problem with the pair is reported."""
    api = raw_api if isinstance(raw_api, str) else None
    if raw_api is not None and api is None:
        issues.add("apiVersion", f"expected a string, got {describe_value(raw_api)}")
    if raw_kind is None:
        issues.add("kind", "is required (e.g. kind: IPPool)")
        if raw_api is None:
            issues.add("apiVersion", f"is required (apiVersion: {API_VERSION})")
        return None
    if not isinstance(raw_kind, str):
        issues.add("kind", f"expected a string, got {describe_value(raw_kind)}")
        return None
    if raw_kind in kinds.NOT_YET_KINDS:
        issues.add("kind", f"{raw_kind} is not supported yet: {kinds.NOT_YET_KINDS[raw_kind]}")
        return None
    versions = kinds.api_versions_of(raw_kind)
    if not versions:
        try:
            canonical = kinds.kind_info(raw_kind).manifest_kind
        except KeyError:
            known = ", ".join(dict.fromkeys(kinds.kind_info(k).manifest_kind for k in MODELS))
            issues.add("kind", f"unknown kind {raw_kind!r}; known kinds: {known}")
            return None
        issues.add("kind", f"{raw_kind!r} is not a kind name: use {canonical!r}")
        return None
    if raw_api is None:
        issues.add("apiVersion", f"is required (apiVersion: {' or '.join(versions)})")
        return None
    info = kinds.manifest_kind_info(api, raw_kind) if api is not None else None
    if info is None:
        if api is not None:
            use = " or ".join(versions)
            issues.add("apiVersion", f"{api!r} is not supported for kind {raw_kind}: use {use}")
        return None
    return MODELS.get(info.kind)


def _check_scope(model: KindModel | None, raw_meta: object, default_namespace: str | None,
                 issues: Issues) -> None:
    """Kind-specific name rules and namespace presence, from the raw metadata (so they are reported
    even when another metadata field is invalid). Types and formats are the codec's job."""
    if not isinstance(raw_meta, Mapping):
        return
    name, namespace = raw_meta.get("name"), raw_meta.get("namespace")
    if isinstance(name, str) and name:
        try:
            check_name(model.kind if model else "", name)
        except ValueError as exc:
            issues.add("metadata.name", str(exc))
    if model is None:
        return
    namespaced = kinds.kind_info(model.kind).namespaced
    if namespaced and namespace is None and not default_namespace:
        issues.add("metadata.namespace", f"is required: {model.kind} is a namespaced kind")
    elif not namespaced and namespace is not None:
        issues.add("metadata.namespace", f"is not allowed: {model.kind} is cluster-scoped")


def decode_resource(obj: object, issues: Issues, *, default_namespace: str | None = None) -> Resource | None:
    """Decode one wire object, adding every problem to `issues`; None if there was any."""
    if not isinstance(obj, Mapping):
        issues.add("", f"expected a resource (a mapping with apiVersion, kind, metadata and spec), "
                   f"got {describe_value(obj)}")
        return None
    start = len(issues)
    for key in obj:
        if key not in _TOP_LEVEL:
            issues.add(str(key), f"unknown field {str(key)!r}: a resource has only {', '.join(_TOP_LEVEL)}")
    model = _check_kind(obj.get("kind"), obj.get("apiVersion"), issues)
    meta = METADATA.decode(obj.get("metadata"), "metadata", issues)
    _check_scope(model, obj.get("metadata"), default_namespace, issues)
    if isinstance(meta, Metadata) and meta.namespace is None and default_namespace and model \
            and kinds.kind_info(model.kind).namespaced:
        try:
            meta = dataclasses.replace(meta, namespace=check_dns_label(default_namespace))
        except ValueError as exc:
            issues.add("metadata.namespace", f"default namespace: {exc}")
    spec = model.spec.decode(obj.get("spec"), "spec", issues) if model else None
    status = obj.get("status")
    if status is not None and not isinstance(status, Mapping):
        issues.add("status", f"expected a mapping, got {describe_value(status)}")
    elif status is not None:
        status = _STATUS.decode(status, "status", issues)
    if model is None or not isinstance(meta, Metadata) or not isinstance(spec, model.spec.cls):
        return None
    for check in model.checks:
        check(meta, spec, issues)
    for path, message in check_rejections(spec, model.spec):
        issues.add(path, message)
    if len(issues) > start:
        return None
    return Resource(kinds.kind_info(model.kind).api_version, model.kind, meta, spec, status)


def identify(obj: object) -> tuple[str, str]:
    """(kind, name) of a raw object as far as they can be read, for problem reports."""
    if not isinstance(obj, Mapping):
        return "", ""
    kind = obj.get("kind")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return (kind if isinstance(kind, str) else ""), (name if isinstance(name, str) else "")


def problems_of(obj: object, *, source: str = "<input>", document: int = 0, prefix: str = "",
                default_namespace: str | None = None) -> tuple[Resource | None, list[Problem]]:
    issues = Issues()
    resource = decode_resource(obj, issues, default_namespace=default_namespace)
    kind, name = identify(obj)
    return resource, issues.problems(source=source, document=document, kind=kind, name=name, prefix=prefix)


def parse_resource(obj: Mapping[str, Any], *, source: str = "<input>", document: int = 0,
                   default_namespace: str | None = None) -> Resource:
    """Validate one wire-form object; raises ValidationError with all of its problems."""
    resource, problems = problems_of(obj, source=source, document=document,
                                     default_namespace=default_namespace)
    if problems or resource is None:
        raise ValidationError(problems)
    return resource


def validate_resource(obj: Mapping[str, Any] | Resource, *, source: str = "<input>",
                      document: int = 0) -> list[Problem]:
    """Every problem of one object (a wire mapping, or a Resource built in code); [] when valid."""
    wire = obj.to_wire() if isinstance(obj, Resource) else obj
    return problems_of(wire, source=source, document=document)[1]


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """`Spec` (the union of every kind's spec type) is built on first use: it needs every spec
        module, which this module otherwise loads only per kind."""
        if name != "Spec":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        union = None
        for model in MODELS.values():
            union = model.spec.cls if union is None else union | model.spec.cls
        globals()["Spec"] = union
        return union
