"""tortie.k8s: Kubernetes network policy (v1 Namespace, networking.k8s.io/v1 NetworkPolicy,
policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy and BaselineAdminNetworkPolicy) translated into
tortie's tiered Calico model, the way libcalico-go converts them.

Pure functions over tortie.model values, no I/O: `tortie.k8s.translate.translate` and
`tortie.k8s.names.derived_key` are the seam a consumer of datastore events uses. The mapping, and what
is not supported, is documented in docs/reference/kubernetes-policy.md.
"""
