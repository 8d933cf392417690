"""Specs of the policy kinds: Tier, NetworkPolicy, GlobalNetworkPolicy, Profile, NetworkSet,
GlobalNetworkSet (reference §1.8-§1.11).

Each spec is a frozen record that stores exactly what the user wrote (None = not given) and offers
`effective_*` accessors that apply Calico's defaults:

* Tier: order None = "last" (infinity), except the reserved tiers (`effective_tier_order`);
  defaultAction Deny.
* policies: tier `default`, order None = last, selector `all()`, and `effective_types` inferred
  from the rules as Calico does when `types` is omitted: Ingress if there are no egress rules
  (also when there are no rules at all), Egress if there are only egress rules, both if both.

Resource-level rules that need the name (reserved tier orders, policy tier prefixes, reserved
network-set labels) are the `check_*_resource` functions, registered by tortie.model.resource.
"""

import math
from dataclasses import dataclass
from typing import Annotated, Any

from tortie.model.fields import LABEL_NAME, SELECTOR, cidr_text, selector_text
from tortie.model.frozen import EMPTY_MAP, FrozenMap
from tortie.model.metadata import LABELS, Metadata, policy_name_tier
from tortie.model.problems import Issues, join
from tortie.model.rules import RULES, Rule, check_rule_list
from tortie.model.schema import Bool, Enum, FieldCheck, Float, ListOf, Struct, Wire, uses

DEFAULT_TIER = "default"
RESERVED_TIER_ORDERS = {"default": 1_000_000.0, "kube-admin": 1_000.0, "kube-baseline": 10_000_000.0}
INGRESS, EGRESS = "Ingress", "Egress"
POLICY_SELECTOR = selector_text(max_len=1024)
TYPES = ListOf(Enum(INGRESS, EGRESS), unique=True, max_items=2)
PERFORMANCE_HINTS = ListOf(Enum("AssumeNeededOnEveryNode"), unique=True)


# -- Tier -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class TierSpec:
    order: Annotated[float | None, Wire(Float())] = None
    default_action: Annotated[str | None, Wire(Enum("Deny", "Pass"))] = None

    @property
    def effective_order(self) -> float:
        """order, or infinity ("last") when omitted. For reserved tiers use `effective_tier_order`."""
        return self.order if self.order is not None else math.inf

    @property
    def effective_default_action(self) -> str:
        return self.default_action or "Deny"


def effective_tier_order(name: str, spec: TierSpec) -> float:
    """A tier's order including the fixed orders of the reserved tiers (default, kube-admin,
    kube-baseline) when their order is omitted."""
    if spec.order is not None:
        return spec.order
    return RESERVED_TIER_ORDERS.get(name, math.inf)


def check_tier_resource(meta: Metadata, spec: TierSpec, issues: Issues) -> None:
    fixed = RESERVED_TIER_ORDERS.get(meta.name)
    if fixed is not None and spec.order is not None and spec.order != fixed:
        issues.add("spec.order", f"the {meta.name!r} tier's order must be {int(fixed)}")


# -- NetworkPolicy / GlobalNetworkPolicy --------------------------------------------------------------
def _infer_types(ingress: tuple[Rule, ...], egress: tuple[Rule, ...]) -> tuple[str, ...]:
    if egress and ingress:
        return (INGRESS, EGRESS)
    if egress:
        return (EGRESS,)
    return (INGRESS,)


class _PolicyDefaults:
    """Calico's defaults for the fields both policy kinds share (see the module docstring)."""

    tier: str | None
    order: float | None
    selector: str | None
    types: tuple[str, ...]
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]

    @property
    def effective_tier(self) -> str:
        return self.tier or DEFAULT_TIER

    @property
    def effective_order(self) -> float:
        return self.order if self.order is not None else math.inf

    @property
    def effective_selector(self) -> str:
        return self.selector or "all()"

    @property
    def effective_types(self) -> tuple[str, ...]:
        return self.types or _infer_types(self.ingress, self.egress)


@dataclass(frozen=True, kw_only=True)
class NetworkPolicySpec(_PolicyDefaults):
    tier: Annotated[str | None, Wire(LABEL_NAME)] = None
    order: Annotated[float | None, Wire(Float())] = None
    selector: Annotated[str | None, Wire(POLICY_SELECTOR)] = None
    service_account_selector: Annotated[str | None, Wire(SELECTOR)] = None
    types: Annotated[tuple[str, ...], Wire(TYPES)] = ()
    ingress: Annotated[tuple[Rule, ...], Wire(RULES)] = ()
    egress: Annotated[tuple[Rule, ...], Wire(RULES)] = ()
    performance_hints: Annotated[tuple[str, ...], Wire(PERFORMANCE_HINTS)] = ()


@dataclass(frozen=True, kw_only=True)
class GlobalNetworkPolicySpec(_PolicyDefaults):
    tier: Annotated[str | None, Wire(LABEL_NAME)] = None
    order: Annotated[float | None, Wire(Float())] = None
    selector: Annotated[str | None, Wire(POLICY_SELECTOR)] = None
    namespace_selector: Annotated[str | None, Wire(SELECTOR)] = None
    service_account_selector: Annotated[str | None, Wire(SELECTOR)] = None
    types: Annotated[tuple[str, ...], Wire(TYPES)] = ()
    ingress: Annotated[tuple[Rule, ...], Wire(RULES)] = ()
    egress: Annotated[tuple[Rule, ...], Wire(RULES)] = ()
    do_not_track: Annotated[bool | None, Wire(Bool())] = None
    pre_dnat: Annotated[bool | None, Wire(Bool(), "preDNAT")] = None
    apply_on_forward: Annotated[bool | None, Wire(Bool())] = None
    performance_hints: Annotated[tuple[str, ...], Wire(PERFORMANCE_HINTS)] = ()


PolicySpec = NetworkPolicySpec | GlobalNetworkPolicySpec


def _rules_check(*, global_scope: bool) -> FieldCheck[Any]:
    """The check of a spec's ingress and egress rule lists (`global_scope`: not tied to a namespace)."""

    @uses("ingress", "egress")
    def check(spec: Any, path: str, issues: Issues) -> None:
        for direction in ("ingress", "egress"):
            check_rule_list(getattr(spec, direction), join(path, direction), issues, direction=direction,
                            global_scope=global_scope)

    return check


_check_namespaced_rules = _rules_check(global_scope=False)
_check_global_rules = _rules_check(global_scope=True)


@uses("doNotTrack", "preDNAT", "applyOnForward", "egress", "types")
def _check_gnp_modes(spec: GlobalNetworkPolicySpec, path: str, issues: Issues) -> None:
    if spec.do_not_track and spec.pre_dnat:
        issues.add(join(path, "preDNAT"), "preDNAT and doNotTrack cannot both be true")
    if spec.pre_dnat and spec.egress:
        issues.add(join(path, "egress"), "a preDNAT policy cannot have egress rules")
    if spec.pre_dnat and EGRESS in spec.types:
        issues.add(join(path, "types"), "a preDNAT policy cannot have type Egress")
    if (spec.do_not_track or spec.pre_dnat) and not spec.apply_on_forward:
        issues.add(join(path, "applyOnForward"), "must be true when preDNAT or doNotTrack is true")


_GNP_ONLY = "only valid in a GlobalNetworkPolicy"
NETWORK_POLICY_SPEC = Struct(NetworkPolicySpec, checks=[_check_namespaced_rules], hints={
    "namespaceSelector": _GNP_ONLY + " (a NetworkPolicy applies to its own namespace)",
    "doNotTrack": _GNP_ONLY, "preDNAT": _GNP_ONLY, "applyOnForward": _GNP_ONLY,
})
GLOBAL_NETWORK_POLICY_SPEC = Struct(GlobalNetworkPolicySpec, checks=[_check_global_rules, _check_gnp_modes])


def check_policy_resource(meta: Metadata, spec: PolicySpec, issues: Issues) -> None:
    """A tier-prefixed policy name (`<tier>.<name>`) must name the policy's own tier."""
    prefix = policy_name_tier(meta.name)
    if prefix is not None and prefix != spec.effective_tier:
        issues.add("metadata.name", f"name prefix {prefix!r} does not match the policy's tier "
                   f"{spec.effective_tier!r}: use '{spec.effective_tier}.<name>' or an unprefixed name")


# -- Profile ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ProfileSpec:
    ingress: Annotated[tuple[Rule, ...], Wire(RULES)] = ()
    egress: Annotated[tuple[Rule, ...], Wire(RULES)] = ()
    labels_to_apply: Annotated[FrozenMap[str, str], Wire(LABELS)] = EMPTY_MAP


PROFILE_SPEC = Struct(ProfileSpec, checks=[_check_global_rules])


# -- NetworkSet / GlobalNetworkSet ------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class NetworkSetSpec:
    nets: Annotated[tuple[str, ...], Wire(ListOf(cidr_text()))] = ()


@dataclass(frozen=True, kw_only=True)
class GlobalNetworkSetSpec:
    nets: Annotated[tuple[str, ...], Wire(ListOf(cidr_text()))] = ()


NETWORK_SET_SPEC = Struct(NetworkSetSpec)
GLOBAL_NETWORK_SET_SPEC = Struct(GlobalNetworkSetSpec)
RESERVED_NAMESPACE_LABEL = "projectcalico.org/namespace"


def check_network_set_resource(meta: Metadata, spec: object, issues: Issues) -> None:
    if RESERVED_NAMESPACE_LABEL in meta.labels:
        issues.add(join("metadata.labels", RESERVED_NAMESPACE_LABEL),
                   "this label is reserved (Calico sets it from the namespace)")


TIER_SPEC = Struct(TierSpec)
