"""Every kind has a canonical valid sample that survives wire -> Resource -> wire/YAML/JSON unchanged;
non-canonical spellings are canonicalised; the shipped examples load and the invalid manifests fail."""

from __future__ import annotations

import copy
import glob
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tortie.model import (
    MODELS,
    ValidationError,
    dump_json,
    dump_yaml,
    load_resources,
    parse_resource,
)

REPO = Path(__file__).resolve().parents[2]
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
    "http": {"methods": ["GET", "HEAD"], "paths": [{"exact": "/healthz"}, {"prefix": "/api/"}]},
    "metadata": {"annotations": {"note": "frontends reach the web tier"}},
}
RULE_ICMP = {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}, "notICMP": {"type": 5}}
RULE_EGRESS = {
    "action": "Allow",
    "notProtocol": 132,
    "destination": {"services": {"name": "kube-dns", "namespace": "kube-system"}},
}

VALID: dict[str, dict[str, Any]] = {
    "IPPool": obj(
        "IPPool",
        "pool-v4",
        {
            "cidr": "10.244.0.0/16",
            "vxlanMode": "Never",
            "ipipMode": "CrossSubnet",
            "natOutgoing": True,
            "disabled": False,
            "disableBGPExport": False,
            "blockSize": 26,
            "nodeSelector": "all()",
            "namespaceSelector": "has(pods)",
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
            "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}],
            "serviceExternalIPs": [{"cidr": "203.0.113.0/24"}],
            "serviceLoadBalancerIPs": [{"cidr": "198.51.100.0/24"}],
            "serviceLoadBalancerAggregation": "Disabled",
            "communities": [
                {"name": "pods", "value": "64512:100"},
                {"name": "big", "value": "64512:1:4294967295"},
            ],
            "prefixAdvertisements": [{"cidr": "10.244.0.0/16", "communities": ["pods", "65000:1"]}],
            "ignoredInterfaces": ["docker*", "virbr0"],
            "localWorkloadPeeringIPV4": "169.254.0.179",
            "localWorkloadPeeringIPV6": "fe80::179",
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
            "password": {"secretKeyRef": {"name": "bgp", "key": "tor", "optional": False}},
            "sourceAddress": "None",
            "maxRestartTime": "2m",
            "keepaliveTime": "30s",
            "numAllowedLocalASNumbers": 1,
            "ttlSecurity": 1,
            "reachableBy": "fd00::fe",
            "filters": ["export-pods"],
            "reversePeering": "Manual",
        },
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
            "natOutgoingAddress": "10.0.0.5",
            "routeTableRanges": [{"min": 1, "max": 250}],
            "programClusterRoutes": "EnabledIPIPOnly",
            "ipForwarding": "Enabled",
            "externalNodesList": ["10.9.0.0/16"],
            "ipipEnabled": True,
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
            "ipNATs": [{"internalIP": "10.244.3.5", "externalIP": "172.16.0.5"}],
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
            "qosControls": {"ingressBandwidth": 1000000, "egressPacketRate": 1000},
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
}


def test_every_kind_has_a_sample() -> None:
    assert set(VALID) == set(MODELS)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_canonical_sample_round_trips(kind: str) -> None:
    wire = VALID[kind]
    res = parse_resource(copy.deepcopy(wire), source="sample.yaml")
    assert res.kind == kind
    assert res.to_wire() == wire
    assert json.loads(json.dumps(res.to_wire())) == wire  # JSON-safe
    assert load_resources(dump_yaml([res])) == [res]
    assert load_resources(dump_json([res])) == [res]
    hash(res)  # frozen values all the way down


def test_all_samples_in_one_stream_keep_order() -> None:
    resources = [parse_resource(w) for w in VALID.values()]
    text = dump_yaml(resources)
    assert text.count("\n---\n") == len(resources) - 1
    assert load_resources(text) == resources
    assert load_resources(dump_json(resources)) == resources


def test_yaml_key_order_is_stable() -> None:
    res = parse_resource({**VALID["Tier"], "status": {"conditions": []}})
    keys = [line.split(":")[0] for line in dump_yaml([res]).splitlines() if not line.startswith(" ")]
    assert keys == ["apiVersion", "kind", "metadata", "spec", "status"]


@pytest.mark.parametrize(
    ("kind", "field", "given", "canonical"),
    [
        (
            "NetworkSet",
            "nets",
            ["10.0.0.5/24", "10.1.2.3", "FD00:0:0::1/64"],
            ["10.0.0.0/24", "10.1.2.3/32", "fd00::/64"],
        ),
        ("IPReservation", "reservedCIDRs", ["10.9.9.9"], ["10.9.9.9/32"]),
        ("HostEndpoint", "expectedIPs", ["FD00::0001"], ["fd00::1"]),
        ("WorkloadEndpoint", "ipNetworks", ["10.0.0.7"], ["10.0.0.7/32"]),
        ("WorkloadEndpoint", "mac", "EE-EE-EE-EE-EE-0A", "ee:ee:ee:ee:ee:0a"),
        ("BGPPeer", "asNumber", "1.10", 65546),
        ("BGPPeer", "asNumber", "64512", 64512),
        ("BGPPeer", "peerIP", "[FD00::0001]:179", "[fd00::1]:179"),
        ("Tier", "order", 100.0, 100),
        (
            "FelixConfiguration",
            "failsafeInboundHostPorts",
            [{"protocol": "tcp", "port": 22}],
            [{"protocol": "TCP", "port": 22}],
        ),
    ],
)
def test_non_canonical_inputs_are_canonicalised(kind: str, field: str, given: Any, canonical: Any) -> None:
    base = {
        "NetworkSet": obj("NetworkSet", "s", {}, namespace="ns"),
        "IPReservation": obj("IPReservation", "r", {}),
        "HostEndpoint": obj("HostEndpoint", "h", {"node": "n1"}),
        "WorkloadEndpoint": obj("WorkloadEndpoint", "w", {}, namespace="ns"),
        "BGPPeer": obj("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1}),
        "Tier": obj("Tier", "t", {}),
        "FelixConfiguration": obj("FelixConfiguration", "default", {}),
    }[kind]
    base["spec"][field] = given
    res = parse_resource(base)
    assert res.to_wire()["spec"][field] == canonical
    assert parse_resource(res.to_wire()) == res


def test_rule_spellings_are_canonicalised() -> None:
    rule = {
        "action": "Allow",
        "protocol": "sctp",
        "notProtocol": "6",
        "source": {"ports": ["53"]},
        "destination": {"ports": ["80:80", "http"], "nets": ["10.0.0.9/8"]},
    }
    wire = obj("GlobalNetworkPolicy", "p", {"ingress": [rule]})
    got = parse_resource(wire).to_wire()["spec"]["ingress"][0]
    assert got["protocol"] == "SCTP"
    assert got["notProtocol"] == 6
    assert got["destination"] == {"nets": ["10.0.0.0/8"], "ports": [80, "http"]}


def test_omitted_and_empty_values_are_not_emitted() -> None:
    wire = {
        "apiVersion": V3,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "p", "labels": {}, "annotations": None},
        "spec": {
            "ingress": [],
            "egress": [{"action": "Deny", "source": {}, "destination": {"nets": []}}],
            "selector": None,
            "types": [],
        },
    }
    assert parse_resource(wire).to_wire() == {
        "apiVersion": V3,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"egress": [{"action": "Deny"}]},
    }


def test_explicit_false_and_empty_failsafe_list_are_kept() -> None:
    wire = obj("FelixConfiguration", "default", {"ipv6Support": False, "failsafeInboundHostPorts": []})
    assert parse_resource(wire).to_wire()["spec"] == {"ipv6Support": False, "failsafeInboundHostPorts": []}


def test_missing_spec_is_emitted_as_empty_mapping() -> None:
    res = parse_resource({"apiVersion": V3, "kind": "Tier", "metadata": {"name": "t"}})
    assert res.to_wire()["spec"] == {}


def test_store_maintained_metadata_round_trips() -> None:
    wire = obj("Tier", "t", {}, resourceVersion="17", uid="3f1c", creationTimestamp="2024-05-01T10:00:00Z")
    res = parse_resource(wire)
    assert (res.metadata.resource_version, res.metadata.uid) == ("17", "3f1c")
    assert res.to_wire() == wire
    text = dump_yaml([res])
    assert load_resources(text)[0].metadata.creation_timestamp == "2024-05-01T10:00:00Z"


def test_status_is_kept_as_data() -> None:
    wire = {**obj("Node", "n1", {}), "status": {"podCIDRs": ["10.0.0.0/24"], "wireguardPublicKey": "abc="}}
    res = parse_resource(wire)
    assert res.status == {"podCIDRs": ["10.0.0.0/24"], "wireguardPublicKey": "abc="}
    assert res.to_wire() == wire


# -- shipped files ------------------------------------------------------------------------------
EXAMPLES = sorted(glob.glob(str(REPO / "examples" / "*.yaml")))
INVALID = sorted(glob.glob(str(REPO / "tests" / "data" / "invalid" / "*.yaml")))


def test_there_are_examples_and_invalid_manifests() -> None:
    assert len(EXAMPLES) >= 5
    assert len(INVALID) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: Path(p).name)
def test_example_loads_cleanly_and_round_trips(path: str) -> None:
    resources = load_resources(Path(path).read_text(), source=path)
    assert resources
    assert load_resources(dump_yaml(resources)) == resources


def test_examples_cover_the_promised_kinds() -> None:
    kinds = {r.kind for p in EXAMPLES for r in load_resources(Path(p).read_text())}
    assert {
        "IPPool",
        "BGPConfiguration",
        "BGPPeer",
        "Tier",
        "GlobalNetworkPolicy",
        "NetworkPolicy",
        "Profile",
        "NetworkSet",
        "GlobalNetworkSet",
        "HostEndpoint",
    } <= kinds
    default_deny = [
        r
        for p in EXAMPLES
        for r in load_resources(Path(p).read_text())
        if r.kind == "GlobalNetworkPolicy" and r.metadata.name == "default-deny"
    ]
    assert default_deny


_EXPECT = re.compile(r"^# expect: (\S*) :: (.+)$", re.MULTILINE)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: Path(p).name)
def test_invalid_manifest_fails_with_the_announced_problems(path: str) -> None:
    text = Path(path).read_text()
    expected = _EXPECT.findall(text)
    assert expected, (
        "each invalid manifest announces its problems with '# expect: <path> :: <fragment>' lines"
    )
    with pytest.raises(ValidationError) as info:
        load_resources(text, source=Path(path).name)
    got = [(p.path, p.message) for p in info.value.problems]
    for want_path, fragment in expected:
        assert any(p == want_path and fragment in m for p, m in got), (want_path, fragment, got)
    assert all(p.source == Path(path).name for p in info.value.problems)


def test_yaml_of_samples_is_plain_yaml() -> None:
    # The output is ordinary YAML that other tools (PyYAML here) read to the same data.
    res = parse_resource(VALID["BGPConfiguration"])
    assert yaml.safe_load(dump_yaml([res])) == VALID["BGPConfiguration"]
