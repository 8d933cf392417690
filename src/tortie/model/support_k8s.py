"""Support table of the Kubernetes kinds (tortie.model.specs_k8s, specs_k8s_admin): data only.

Every field is translated by tortie.k8s into the Calico model (docs/reference/kubernetes-policy.md),
so each is Implemented by the translation module that reads it; the agent's calc reads these kinds and
enforces their translations (tortie.calc.kubernetes_calc).
"""

from __future__ import annotations

from typing import Any

from tortie.model import specs_k8s as K
from tortie.model import specs_k8s_admin as A
from tortie.model.support import FieldSupport, impl

SELECTORS = "k8s.selectors"
NETWORK_POLICY = "k8s.network_policy"
ADMIN_POLICY = "k8s.admin_policy"

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (K.LabelSelector, "match_labels"): impl(SELECTORS),
    (K.LabelSelector, "match_expressions"): impl(SELECTORS),
    **{(K.LabelSelectorRequirement, attr): impl(SELECTORS) for attr in ("key", "operator", "values")},
    **{
        (K.K8sNetworkPolicySpec, attr): impl(NETWORK_POLICY)
        for attr in ("pod_selector", "policy_types", "ingress", "egress")
    },
    **{
        (rule, attr): impl(NETWORK_POLICY)
        for rule, attr in (
            (K.NetworkPolicyIngressRule, "ports"),
            (K.NetworkPolicyIngressRule, "from_"),
            (K.NetworkPolicyEgressRule, "ports"),
            (K.NetworkPolicyEgressRule, "to"),
        )
    },
    **{
        (K.NetworkPolicyPeer, attr): impl(NETWORK_POLICY)
        for attr in ("pod_selector", "namespace_selector", "ip_block")
    },
    (K.IPBlock, "cidr"): impl(NETWORK_POLICY),
    (K.IPBlock, "except_"): impl(NETWORK_POLICY),
    **{(K.NetworkPolicyPort, attr): impl(NETWORK_POLICY) for attr in ("protocol", "port", "end_port")},
    **{
        (spec, attr): impl(ADMIN_POLICY)
        for spec in (A.AdminNetworkPolicySpec, A.BaselineAdminNetworkPolicySpec)
        for attr in ("subject", "ingress", "egress")
    },
    (A.AdminNetworkPolicySpec, "priority"): impl(ADMIN_POLICY),
    **{
        (cls, attr): impl(ADMIN_POLICY)
        for cls in (A.AdminPolicySubject, A.AdminIngressPeer, A.AdminEgressPeer)
        for attr in ("namespaces", "pods")
    },
    (A.AdminEgressPeer, "networks"): impl(ADMIN_POLICY),
    (A.NamespacedPod, "namespace_selector"): impl(ADMIN_POLICY),
    (A.NamespacedPod, "pod_selector"): impl(ADMIN_POLICY),
    **{
        (rule, attr): impl(ADMIN_POLICY)
        for rule in (A.AdminIngressRule, A.AdminEgressRule)
        for attr in ("action", "name", "ports")
    },
    (A.AdminIngressRule, "from_"): impl(ADMIN_POLICY),
    (A.AdminEgressRule, "to"): impl(ADMIN_POLICY),
    **{(A.AdminPolicyPort, attr): impl(ADMIN_POLICY) for attr in ("port_number", "port_range", "named_port")},
    (A.PortNumber, "port"): impl(ADMIN_POLICY),
    (A.PortNumber, "protocol"): impl(ADMIN_POLICY),
    **{(A.PortRange, attr): impl(ADMIN_POLICY) for attr in ("start", "end", "protocol")},
}
