"""The table of resource kinds: kind name, plural, scope, aliases, apiVersion, datastore key prefix.

This is the single place that knows how a kind is spelled in manifests and on the command line and
where its objects live in the datastore (Calico's etcd v3 layout, reference §1.16):

    /calico/resources/v3/projectcalico.org/<plural>/<name>               cluster-scoped
    /calico/resources/v3/projectcalico.org/<plural>/<namespace>/<name>   namespaced
    /calico/ipam/v2/...                                                  IPAM objects (see tortie.ipam)
    /tortie/kubernetes/<group>/<plural>/[<namespace>/]<name>             Kubernetes kinds (below)

Kubernetes kinds (v1 Namespace, networking.k8s.io/v1 NetworkPolicy, policy.networking.k8s.io/v1alpha1
AdminNetworkPolicy and BaselineAdminNetworkPolicy) are stored as written, under a root of their own
(group `core` for the core API group), so that no Calico tool sharing the store mistakes them for
Calico objects; tortie.k8s translates them into the Calico model. Their kind *name* in tortie is
kubectl's qualified spelling (`NetworkPolicy.networking.k8s.io`) whenever the group is not the core
group: Calico has a NetworkPolicy too, and a kind name must say which one it is. `manifest_kind` is
what manifests write (`kind: NetworkPolicy`) and `api_version` tells the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass

API_VERSION = "projectcalico.org/v3"
RESOURCE_ROOT = "/calico/resources/v3/projectcalico.org/"
KUBERNETES_ROOT = "/tortie/kubernetes/"
CORE_V1 = "v1"
NETWORKING_V1 = "networking.k8s.io/v1"
POLICY_V1ALPHA1 = "policy.networking.k8s.io/v1alpha1"


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    namespaced: bool
    aliases: tuple[str, ...]
    root: str = ""  # key prefix override (IPAM objects live under /calico/ipam/v2/)
    api_version: str = API_VERSION
    wire_kind: str = ""  # the manifest's `kind` when it differs from `kind` (qualified Kubernetes kinds)

    @property
    def manifest_kind(self) -> str:
        """The `kind` a manifest of this kind carries (`NetworkPolicy` for both NetworkPolicies)."""
        return self.wire_kind or self.kind

    @property
    def prefix(self) -> str:
        """Key prefix under which every object of this kind is stored (ends with '/')."""
        return self.root or f"{RESOURCE_ROOT}{self.plural}/"

    def key(self, name: str, namespace: str | None = None) -> str:
        """Datastore key of one object. Namespaced kinds need a namespace."""
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: a namespace is required")
            return f"{self.prefix}{namespace}/{name}"
        return f"{self.prefix}{name}"

    def list_prefix(self, namespace: str | None = None) -> str:
        """Prefix for listing: all objects, or those of one namespace for namespaced kinds."""
        if self.namespaced and namespace:
            return f"{self.prefix}{namespace}/"
        return self.prefix


KINDS: tuple[KindInfo, ...] = (
    KindInfo("IPPool", "ippools", False, ("ippool", "ippools", "ipp", "ipps", "pool", "pools")),
    KindInfo("IPReservation", "ipreservations", False,
             ("ipreservation", "ipreservations", "reservation", "reservations")),
    KindInfo("BGPConfiguration", "bgpconfigurations", False,
             ("bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs")),
    KindInfo("BGPPeer", "bgppeers", False, ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps")),
    KindInfo("BGPFilter", "bgpfilters", False, ("bgpfilter", "bgpfilters", "bgpf", "bgpfs", "bf", "bfs")),
    KindInfo("Node", "nodes", False, ("node", "nodes", "no", "nos")),
    KindInfo("FelixConfiguration", "felixconfigurations", False,
             ("felixconfiguration", "felixconfigurations", "felixconfig", "felixconfigs")),
    KindInfo("Tier", "tiers", False, ("tier", "tiers")),
    KindInfo("NetworkPolicy", "networkpolicies", True,
             ("networkpolicy", "networkpolicies", "policy", "policies", "np", "nps", "pol", "pols")),
    KindInfo("GlobalNetworkPolicy", "globalnetworkpolicies", False,
             ("globalnetworkpolicy", "globalnetworkpolicies", "gnp", "gnps")),
    KindInfo("StagedNetworkPolicy", "stagednetworkpolicies", True,
             ("stagednetworkpolicy", "stagednetworkpolicies", "snp", "snps")),
    KindInfo("StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies", False,
             ("stagedglobalnetworkpolicy", "stagedglobalnetworkpolicies", "sgnp", "sgnps")),
    KindInfo("StagedKubernetesNetworkPolicy", "stagedkubernetesnetworkpolicies", True,
             ("stagedkubernetesnetworkpolicy", "stagedkubernetesnetworkpolicies", "sknp", "sknps")),
    KindInfo("Profile", "profiles", False, ("profile", "profiles", "pro", "pros")),
    KindInfo("NetworkSet", "networksets", True, ("networkset", "networksets", "netset", "netsets")),
    KindInfo("GlobalNetworkSet", "globalnetworksets", False,
             ("globalnetworkset", "globalnetworksets", "gnetset", "gnetsets")),
    KindInfo("WorkloadEndpoint", "workloadendpoints", True,
             ("workloadendpoint", "workloadendpoints", "wep", "weps")),
    KindInfo("HostEndpoint", "hostendpoints", False, ("hostendpoint", "hostendpoints", "hep", "heps")),
    # IPAM objects keep Calico's /calico/ipam/v2 layout; their names are encoded by tortie.ipam
    # (block "10.0.0.0-26", affinity "<host>/ipv4/block/10.0.0.0-26", handle id) so that the generic
    # key() still yields Calico's keys.
    KindInfo("IPAMConfiguration", "ipamconfigurations", False,
             ("ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"),
             "/calico/ipam/v2/config/"),
    KindInfo("IPAMBlock", "ipamblocks", False, ("ipamblock", "ipamblocks", "block", "blocks"),
             "/calico/ipam/v2/assignment/"),
    KindInfo("BlockAffinity", "blockaffinities", False,
             ("blockaffinity", "blockaffinities", "affinity", "affinities"), "/calico/ipam/v2/host/"),
    KindInfo("IPAMHandle", "ipamhandles", False, ("ipamhandle", "ipamhandles", "handle", "handles"),
             "/calico/ipam/v2/handle/"),
    KindInfo("KubeControllersConfiguration", "kubecontrollersconfigurations", False,
             ("kubecontrollersconfiguration", "kubecontrollersconfigurations")),
    KindInfo("CalicoNodeStatus", "caliconodestatuses", False,
             ("caliconodestatus", "caliconodestatuses", "nodestatus", "nodestatuses")),
    # Kubernetes kinds (tortie.k8s translates them; docs/reference/kubernetes-policy.md).
    KindInfo("Namespace", "namespaces", False, ("namespace", "namespaces", "ns"),
             KUBERNETES_ROOT + "core/namespaces/", CORE_V1),
    KindInfo("NetworkPolicy.networking.k8s.io", "networkpolicies.networking.k8s.io", True,
             ("networkpolicies.networking.k8s.io", "netpol", "netpols", "knp", "knps"),
             KUBERNETES_ROOT + "networking.k8s.io/networkpolicies/", NETWORKING_V1, "NetworkPolicy"),
    KindInfo("AdminNetworkPolicy.policy.networking.k8s.io", "adminnetworkpolicies.policy.networking.k8s.io",
             False, ("adminnetworkpolicies.policy.networking.k8s.io", "adminnetworkpolicy",
                     "adminnetworkpolicies", "anp", "anps"),
             KUBERNETES_ROOT + "policy.networking.k8s.io/adminnetworkpolicies/", POLICY_V1ALPHA1,
             "AdminNetworkPolicy"),
    KindInfo("BaselineAdminNetworkPolicy.policy.networking.k8s.io",
             "baselineadminnetworkpolicies.policy.networking.k8s.io", False,
             ("baselineadminnetworkpolicies.policy.networking.k8s.io", "baselineadminnetworkpolicy",
              "baselineadminnetworkpolicies", "banp", "banps"),
             KUBERNETES_ROOT + "policy.networking.k8s.io/baselineadminnetworkpolicies/", POLICY_V1ALPHA1,
             "BaselineAdminNetworkPolicy"),
)

# Calico kinds tortie knows but cannot apply yet: kind -> why (refused with this reason, never
# reported as an unknown kind).
NOT_YET_KINDS: dict[str, str] = {}

_BY_KIND = {k.kind: k for k in KINDS}
_BY_ALIAS = {alias: k for k in KINDS for alias in (*k.aliases, k.kind.lower())}
_BY_MANIFEST = {(k.api_version, k.manifest_kind): k for k in KINDS}
API_VERSIONS = tuple(dict.fromkeys(k.api_version for k in KINDS))


def kind_info(kind: str) -> KindInfo:
    """Look up a kind by its wire name (`IPPool`) or any calicoctl alias, case-insensitively.

    Raises KeyError with a message listing the known kinds.
    """
    info = _BY_KIND.get(kind) or _BY_ALIAS.get(kind.lower())
    if info is None:
        known = ", ".join(k.kind for k in KINDS)
        raise KeyError(f"unknown resource kind {kind!r}; known kinds: {known}")
    return info


def manifest_kind_info(api_version: str, kind: str) -> KindInfo | None:
    """The kind a manifest's (apiVersion, kind) pair names, or None if there is no such kind."""
    return _BY_MANIFEST.get((api_version, kind))


def api_versions_of(kind: str) -> tuple[str, ...]:
    """Every apiVersion under which a manifest `kind` exists (`NetworkPolicy`: two of them)."""
    return tuple(k.api_version for k in KINDS if k.manifest_kind == kind)
