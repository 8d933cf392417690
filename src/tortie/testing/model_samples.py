"""Canonical valid samples of every resource kind, for round-trip tests at every layer (model, store, CLI).

`VALID[kind]` is a wire-form dict in canonical form: loading it and writing it back yields it unchanged.
`REFUSED` lists objects Calico's validator accepts but tortie refuses because it does not implement
them (yet): (wire object, field path, the start of the message), see `tortie.model.support`.
"""

from __future__ import annotations

from typing import Any

V3 = "projectcalico.org/v3"


def obj(
    kind: str, name: str, spec: dict[str, Any], *, namespace: str | None = None, **meta: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata.update(meta)
    return {"apiVersion": V3, "kind": kind, "metadata": metadata, "spec": spec}


RULE_IN = {
    "action": "Allow",
    "ipVersion": 4,
    "protocol": "TCP",
    "source": {
        "nets": ["10.0.0.0/8"],
        "notNets": ["10.1.0.0/16"],
        "selector": 'role == "frontend"',
        "notSelector": "has(quarantine)",
        "namespaceSelector": 'team in {"a", "b"}',
        "ports": [1024, "2000:3000", "metrics"],
        "notPorts": [1025],
        "serviceAccounts": {"names": ["frontend"], "selector": "tier == 'web'"},
    },
    "destination": {"nets": ["192.168.0.0/16"], "ports": [80, 443, "8000:8080", "http"]},
    "metadata": {"annotations": {"note": "frontends reach the web tier"}},
}
RULE_ICMP = {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}, "notICMP": {"type": 5}}
RULE_EGRESS = {
    "action": "Allow",
    "notProtocol": 132,
    "destination": {"nets": ["10.96.0.10/32"], "notNets": ["10.96.0.0/24"]},
}

VALID: dict[str, dict[str, Any]] = {
    "IPPool": obj(
        "IPPool",
        "pool-v4",
        {
            "cidr": "10.244.0.0/16",
            "vxlanMode": "Never",
            "ipipMode": "Never",
            "natOutgoing": True,
            "disabled": False,
            "disableBGPExport": False,
            "blockSize": 26,
            "nodeSelector": "all()",
            "allowedUses": ["Workload", "Tunnel"],
            "assignmentMode": "Automatic",
        },
        labels={"env": "prod", "example.com/tier": ""},
        annotations={"Owner": "net-team"},
    ),
    "IPReservation": obj("IPReservation", "reserved", {"reservedCIDRs": ["10.244.0.0/24", "fd00::1/128"]}),
    "BGPConfiguration": obj(
        "BGPConfiguration",
        "default",
        {
            "logSeverityScreen": "Info",
            "nodeToNodeMeshEnabled": True,
            "asNumber": 64512,
            "listenPort": 179,
            "bindMode": "NodeIP",
            "nodeMeshPassword": {"secretKeyRef": {"name": "bgp-secrets", "key": "mesh"}},
            "nodeMeshMaxRestartTime": "120s",
            "communities": [
                {"name": "pods", "value": "64512:100"},
                {"name": "big", "value": "64512:1:4294967295"},
            ],
            "prefixAdvertisements": [{"cidr": "10.244.0.0/16", "communities": ["pods", "65000:1"]}],
            "ignoredInterfaces": ["docker*", "virbr0"],
            "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}, {"cidr": "fd00:96::/112"}],
            "serviceExternalIPs": [{"cidr": "203.0.113.0/24"}],
            "serviceLoadBalancerIPs": [{"cidr": "198.51.100.64/26"}],
            "serviceLoadBalancerAggregation": "Enabled",
            "localWorkloadPeeringIPV4": "169.254.0.179",
            "localWorkloadPeeringIPV6": "fdc9:9723:9bc::1",
            "programClusterRoutes": "EnabledNoEncapOnly",
            "ipv4NormalRoutePriority": 1024,
            "ipv6NormalRoutePriority": 1024,
        },
    ),
    "BGPPeer": obj(
        "BGPPeer",
        "tor",
        {
            "nodeSelector": 'rack == "r1"',
            "peerIP": "[fd00::1]:1179",
            "asNumber": 65001,
            "localASNumber": 64513,
            "nextHopMode": "Self",
            "password": {"secretKeyRef": {"name": "bgp", "key": "tor"}},
            "sourceAddress": "None",
            "maxRestartTime": "2m",
            "keepaliveTime": "30s",
            "reversePeering": "Manual",
            "ttlSecurity": 2,
            "numAllowedLocalASNumbers": 1,
            "reachableBy": "fd00::fe",
            "filters": ["from-tor"],
        },
    ),
    "BGPFilter": obj(
        "BGPFilter",
        "from-tor",
        {
            "exportV4": [
                {"action": "Accept", "matchOperator": "In", "cidr": "77.0.0.0/16", "source": "RemotePeers"},
                {"action": "Reject", "interface": "*.calico"},
                {"action": "Accept", "peerType": "eBGP", "operations": [
                    {"addCommunity": {"value": "65000:100"}}, {"prependASPath": {"prefix": [64512]}}]},
            ],
            "importV4": [
                {"action": "Accept", "matchOperator": "In", "cidr": "55.0.0.0/16",
                 "prefixLength": {"min": 30}},
                {"action": "Reject", "matchOperator": "NotIn", "cidr": "44.0.0.0/16"},
                {"action": "Reject", "communities": {"values": ["65000:1:2"]},
                 "asPathPrefix": [65000, 65001]},
            ],
            "exportV6": [{"action": "Reject", "source": "RemotePeers"}],
            "importV6": [
                {"action": "Accept", "matchOperator": "Equal", "cidr": "5000::/64",
                 "prefixLength": {"min": 64, "max": 96}},
                {"action": "Reject"},
            ],
        },
    ),
    "CalicoNodeStatus": obj(
        "CalicoNodeStatus",
        "node-1-status",
        {"node": "node-1", "classes": ["Agent", "BGP", "Routes"], "updatePeriodSeconds": 10},
    ),
    "Node": obj(
        "Node",
        "node-1",
        {
            "bgp": {
                "asNumber": 64513,
                "ipv4Address": "10.0.1.21/24",
                "ipv6Address": "fd00:1::21/64",
                "ipv4IPIPTunnelAddr": "10.244.3.0",
                "routeReflectorClusterID": "224.0.0.1",
            },
            "ipv4VXLANTunnelAddr": "10.244.3.1",
            "vxlanTunnelMACAddr": "66:5e:1c:30:aa:01",
            "ipv6VXLANTunnelAddr": "fd00:244::1",
            "vxlanTunnelMACAddrV6": "66:5e:1c:30:aa:02",
            "orchRefs": [{"orchestrator": "k8s", "nodeName": "node-1"}],
            "wireguard": {"interfaceIPv4Address": "10.244.3.2"},
            "addresses": [{"address": "10.0.1.21", "type": "InternalIP"}],
            "interfaces": [{"name": "eth0", "addresses": ["10.0.1.21"]}],
        },
    ),
    "FelixConfiguration": obj(
        "FelixConfiguration",
        "default",
        {
            "healthEnabled": True,
            "healthPort": 9099,
            "prometheusMetricsEnabled": False,
            "logSeverityScreen": "info",
            "interfacePrefix": "cali,tap",
            "ipv6Support": True,
            "routeRefreshInterval": "90s",
            "iptablesMarkMask": 4294901760,
            "chainInsertMode": "Insert",
            "defaultEndpointToHostAction": "Accept",
            "failsafeInboundHostPorts": [
                {"protocol": "TCP", "port": 22},
                {"protocol": "UDP", "port": 68, "net": "10.0.0.0/8"},
            ],
            "failsafeOutboundHostPorts": [],
            "kubeNodePortRanges": ["30000:32767"],
            "natPortRange": "32768:65000",
            "routeTableRanges": [{"min": 1, "max": 250}],
            "programClusterRoutes": "EnabledIPIPOnly",
            "ipForwarding": "Enabled",
            "externalNodesList": ["10.9.0.0/16"],
            "ipipEnabled": False,
            "ipipMTU": 1480,
            "vxlanPort": 4789,
            "vxlanVNI": 4096,
            "wireguardEnabled": False,
            "wireguardListeningPort": 51820,
            "wireguardInterfaceName": "wireguard.cali",
            "metadataAddr": "127.0.0.1",
            "metadataPort": 8775,
            "openstackRegion": "region-one",
            "reportingInterval": "30s",
            "reportingTTL": "90s",
            "usageReportingEnabled": False,
            "healthTimeoutOverrides": [{"name": "CalcGraph", "timeout": "1m30s"}],
            "bpfLogFilters": {"all": "tcp"},
            "goGCThreshold": -1,
        },
    ),
    "Tier": obj("Tier", "security", {"order": 100, "defaultAction": "Pass"}),
    "NetworkPolicy": obj(
        "NetworkPolicy",
        "security.allow-web",
        {
            "tier": "security",
            "order": 10.5,
            "selector": 'app == "web"',
            "serviceAccountSelector": "has(sa)",
            "types": ["Ingress", "Egress"],
            "ingress": [RULE_IN, RULE_ICMP],
            "egress": [RULE_EGRESS],
            "performanceHints": ["AssumeNeededOnEveryNode"],
        },
        namespace="shop",
    ),
    "GlobalNetworkPolicy": obj(
        "GlobalNetworkPolicy",
        "untracked-ssh",
        {
            "order": 1,
            "selector": "has(host-endpoint)",
            "namespaceSelector": "all()",
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"namespaceSelector": "global()"},
                    "destination": {"ports": [22]},
                }
            ],
            "doNotTrack": True,
            "applyOnForward": True,
        },
    ),
    "StagedNetworkPolicy": obj(
        "StagedNetworkPolicy",
        "security.deny-db",
        {
            "stagedAction": "Set",
            "tier": "security",
            "order": 5,
            "selector": 'app == "db"',
            "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [5432]}}],
        },
        namespace="shop",
    ),
    "StagedGlobalNetworkPolicy": obj(
        "StagedGlobalNetworkPolicy",
        "untracked-ssh",
        {"stagedAction": "Delete"},
    ),
    "StagedKubernetesNetworkPolicy": obj(
        "StagedKubernetesNetworkPolicy",
        "db-from-web",
        {
            "stagedAction": "Set",
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}
            ],
        },
        namespace="shop",
    ),
    "Profile": obj(
        "Profile",
        "kns.shop",
        {
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {"pcns.projectcalico.org/name": "shop"},
        },
    ),
    "NetworkSet": obj(
        "NetworkSet",
        "partners",
        {"nets": ["192.0.2.0/28", "2001:db8::/32"]},
        namespace="shop",
        labels={"role": "partner"},
    ),
    "GlobalNetworkSet": obj("GlobalNetworkSet", "threats", {"nets": ["198.51.100.7/32"]}),
    "WorkloadEndpoint": obj(
        "WorkloadEndpoint",
        "node--1-k8s-web--0-eth0",
        {
            "orchestrator": "k8s",
            "workload": "web-0",
            "node": "node-1",
            "containerID": "abc123",
            "pod": "web-0",
            "endpoint": "eth0",
            "serviceAccountName": "web",
            "ipNetworks": ["10.244.3.5/32", "fd00:244::5/128"],
            "ipNATs": [{"internalIP": "10.244.3.5", "externalIP": "172.16.0.5"},
                       {"internalIP": "fd00:244::5", "externalIP": "2001:db8::5"}],
            "ipv4Gateway": "169.254.1.1",
            "ipv6Gateway": "fe80::1",
            "profiles": ["kns.shop", "ksa.shop.web"],
            "interfaceName": "cali12345678901",
            "mac": "ee:ee:ee:ee:ee:ee",
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 8080},
                {"protocol": "UDP", "port": 53, "hostPort": 5353, "hostIP": "10.0.1.21"},
            ],
            "allowSpoofedSourcePrefixes": ["10.250.0.0/24"],
            "qosControls": {"ingressBandwidth": 10000000, "ingressBurst": 80000, "egressBandwidth": 5000000,
                            "egressPeakrate": 8000000, "egressMinburst": 1514, "ingressPacketRate": 1000,
                            "egressMaxConnections": 100},
        },
        namespace="shop",
        labels={"app": "web"},
    ),
    "HostEndpoint": obj(
        "HostEndpoint",
        "node-1-eth0",
        {
            "node": "node-1",
            "interfaceName": "eth0",
            "expectedIPs": ["10.0.1.21", "fd00:1::21"],
            "profiles": ["projectcalico-default-allow"],
            "ports": [{"name": "ssh", "protocol": "TCP", "port": 22}],
        },
    ),
    "KubeControllersConfiguration": obj(
        "KubeControllersConfiguration",
        "default",
        {
            "logSeverityScreen": "Info",
            "healthChecks": "Enabled",
            "etcdV3CompactionPeriod": "10m",
            "prometheusMetricsPort": 9094,
            "controllers": {
                "node": {"reconcilerPeriod": "5m", "syncLabels": "Enabled",
                         "hostEndpoint": {"autoCreate": "Disabled"}, "leakGracePeriod": "15m"},
                "policy": {"reconcilerPeriod": "5m"},
                "namespace": {"reconcilerPeriod": "5m"},
            },
        },
    ),
    "IPAMConfiguration": obj(
        "IPAMConfiguration",
        "default",
        {
            "strictAffinity": True,
            "maxBlocksPerHost": 4,
            "autoAllocateBlocks": True,
            "kubeVirtVMAddressPersistence": "Enabled",
            "ipCooldownSeconds": 30,
        },
    ),
    "IPAMBlock": obj(
        "IPAMBlock",
        "10-244-3-0-26",
        {
            "cidr": "10.244.3.0/26",
            "affinity": "host:node-1",
            "affinityClaimTime": "2024-01-01T00:00:00Z",
            "allocations": [0, None, 1, None],
            "unallocated": [1, 3],
            "attributes": [
                {
                    "handle_id": "ipip-tunnel-addr-node-1",
                    "secondary": {"node": "node-1", "type": "ipipTunnelAddress"},
                },
                {
                    "handle_id": "k8s-pod-network.abc",
                    "secondary": {"pod": "web-0"},
                    "releasedAt": "2024-01-02T00:00:00Z",
                },
            ],
            "sequenceNumber": 7,
            "sequenceNumberForAllocation": {"0": 1, "2": 7},
            "deleted": False,
            "strictAffinity": False,
        },
    ),
    "BlockAffinity": obj(
        "BlockAffinity",
        "node-1/ipv4/block/10.244.3.0-26",
        {
            "state": "confirmed",
            "node": "node-1",
            "cidr": "10.244.3.0/26",
            "type": "host",
            "deleted": False,
        },
    ),
    "IPAMHandle": obj(
        "IPAMHandle",
        "k8s-pod-network.abc",
        {
            "handleID": "k8s-pod-network.abc",
            "block": {"10.244.3.0/26": 1},
            "deleted": False,
        },
    ),
    # Kubernetes kinds, under their own apiVersions (tortie.model.specs_k8s*, tortie.k8s)
    "Namespace": {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"team": "web", "kubernetes.io/metadata.name": "shop"}},
        "spec": {},
    },
    "NetworkPolicy.networking.k8s.io": {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": "shop"},
        "spec": {
            "podSelector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db", "cache"]}],
            },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "ports": [
                        {"protocol": "TCP", "port": 80, "endPort": 90},
                        {"port": "http"},
                        {"protocol": "UDP"},
                    ],
                    "from": [
                        {"podSelector": {"matchLabels": {"role": "lb"}}, "namespaceSelector": {}},
                        {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}},
                    ],
                },
                {},
            ],
            "egress": [
                {"to": [{"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]}}]}
            ],
        },
    },
    "AdminNetworkPolicy.policy.networking.k8s.io": {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "AdminNetworkPolicy",
        "metadata": {"name": "cluster-guard"},
        "spec": {
            "priority": 10,
            "subject": {"pods": {"namespaceSelector": {"matchLabels": {"env": "prod"}}, "podSelector": {}}},
            "ingress": [
                {
                    "action": "Pass",
                    "from": [{"namespaces": {"matchLabels": {"env": "prod"}}}],
                    "name": "same-env-decides-itself",
                    "ports": [{"portNumber": {"port": 443, "protocol": "TCP"}}, {"namedPort": "metrics"}],
                },
                {"action": "Deny", "from": [{"namespaces": {}}]},
            ],
            "egress": [
                {
                    "action": "Allow",
                    "to": [{"networks": ["10.96.0.0/12", "fd00::/8"]}],
                    "ports": [{"portRange": {"start": 5000, "end": 6000, "protocol": "UDP"}}],
                }
            ],
        },
    },
    "BaselineAdminNetworkPolicy.policy.networking.k8s.io": {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": {
            "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}], "name": "isolate-namespaces"}],
        },
    },
}


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    (obj("NetworkPolicy", "l7", {"ingress": [{"action": "Allow", "http": {"methods": ["GET"]}}]},
         namespace="shop"), "spec.ingress[0].http", "is not supported by tortie"),
    (obj("GlobalNetworkPolicy", "svc", {"egress": [
        {"action": "Allow", "destination": {"services": {"name": "kube-dns", "namespace": "kube-system"}}}]}),
     "spec.egress[0].destination.services", "is not implemented yet"),
    (obj("IPPool", "ipip", {"cidr": "10.9.0.0/16", "ipipMode": "CrossSubnet"}), "spec.ipipMode",
     "is not supported by tortie"),
    (obj("IPPool", "by-ns", {"cidr": "10.9.0.0/16", "namespaceSelector": "has(pods)"}),
     "spec.namespaceSelector", "is not implemented yet"),
    (obj("FelixConfiguration", "default", {"wireguardEnabled": True}), "spec.wireguardEnabled",
     "is not supported by tortie"),
    (obj("FelixConfiguration", "default", {"natOutgoingAddress": "10.0.0.5"}), "spec.natOutgoingAddress",
     "is not supported by tortie"),
    (obj("BGPFilter", "prio", {"importV4": [{"action": "Accept", "priority": 512}]}),
     "spec.importV4[0].priority", "is not implemented yet"),
    (obj("BGPFilter", "prio", {"exportV6": [
        {"action": "Accept", "operations": [{"setPriority": {"value": 256}}]}]}),
     "spec.exportV6[0].operations[0].setPriority", "is not implemented yet"),
    (obj("BGPConfiguration", "default", {"serviceLoadBalancerAggregation": "Disabled"}),
     "spec.serviceLoadBalancerAggregation", "is not implemented yet"),
]
