"""Support table of the policy kinds and their rules: data only (rules in `tortie.model.support`).

Keys are (record class, attribute). Policy is calculated by `tortie.calc` (`policy_rules` turns
rules into dataplane rules).
"""

from __future__ import annotations

from typing import Any

from tortie.model import rules as R
from tortie.model import specs_policy as P
from tortie.model.support import FieldSupport, impl, info, reject, warn

POLICY = ("calc.policy_rules",)
RESOLVER = "calc.policy_resolver"
SERVICE_MATCH = "service matches are not supported yet (see services)"

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (P.TierSpec, "order"): impl(RESOLVER),
    (P.TierSpec, "default_action"): impl(RESOLVER),
    **{(cls, attr): impl(*POLICY) for cls in (P.NetworkPolicySpec, P.GlobalNetworkPolicySpec)
       for attr in ("selector", "service_account_selector")},
    **{(cls, attr): impl(RESOLVER) for cls in (P.NetworkPolicySpec, P.GlobalNetworkPolicySpec)
       for attr in ("tier", "order", "types", "ingress", "egress")},
    **{(cls, "performance_hints"): warn("tortie computes every policy only where an endpoint needs it")
       for cls in (P.NetworkPolicySpec, P.GlobalNetworkPolicySpec)},
    (P.GlobalNetworkPolicySpec, "namespace_selector"): impl(*POLICY),
    (P.GlobalNetworkPolicySpec, "do_not_track"): impl(RESOLVER),
    (P.GlobalNetworkPolicySpec, "pre_dnat"): impl(RESOLVER),
    (P.GlobalNetworkPolicySpec, "apply_on_forward"): impl(RESOLVER),
    (P.ProfileSpec, "ingress"): impl(RESOLVER),
    (P.ProfileSpec, "egress"): impl(RESOLVER),
    (P.ProfileSpec, "labels_to_apply"): impl("calc.policy_calc"),
    (P.NetworkSetSpec, "nets"): impl("calc.policy_items"),
    (P.GlobalNetworkSetSpec, "nets"): impl("calc.policy_items"),
    (R.Rule, "action"): impl(*POLICY),
    (R.Rule, "ip_version"): impl(*POLICY),
    (R.Rule, "protocol"): impl(*POLICY),
    (R.Rule, "not_protocol"): impl(*POLICY),
    (R.Rule, "icmp"): impl(*POLICY),
    (R.Rule, "not_icmp"): impl(*POLICY),
    (R.Rule, "source"): impl(*POLICY),
    (R.Rule, "destination"): impl(*POLICY),
    (R.Rule, "http"): reject("HTTP matches need an application-layer proxy, which tortie does not have; "
                             "ignoring the match would allow every request it was meant to restrict"),
    (R.Rule, "metadata"): info("descriptive; Calico does not act on it either"),
    (R.RuleMetadata, "annotations"): info("descriptive; Calico does not act on them either"),
    (R.HTTPMatch, "methods"): reject("HTTP matches are not supported (see http)"),
    (R.HTTPMatch, "paths"): reject("HTTP matches are not supported (see http)"),
    (R.HTTPPath, "exact"): reject("HTTP matches are not supported (see http)"),
    (R.HTTPPath, "prefix"): reject("HTTP matches are not supported (see http)"),
    (R.ICMPFields, "type"): impl(*POLICY),
    (R.ICMPFields, "code"): impl(*POLICY),
    **{(R.EntityRule, attr): impl(*POLICY) for attr in (
        "nets", "not_nets", "selector", "not_selector", "namespace_selector", "ports", "not_ports",
        "service_accounts")},
    (R.EntityRule, "services"): reject(
        "matching the endpoints of a Kubernetes Service needs Services as a kind, which tortie does not have "
        "yet; the rule would match nothing", not_yet=True),
    (R.ServiceAccountMatch, "names"): impl(*POLICY),
    (R.ServiceAccountMatch, "selector"): impl(*POLICY),
    (R.ServiceMatch, "name"): reject(SERVICE_MATCH, not_yet=True),
    (R.ServiceMatch, "namespace"): reject(SERVICE_MATCH, not_yet=True),
}
