"""Table-driven validation, part 1 (envelope, metadata, pools, rules, policies; part 2 is
test_model_validation_infra.py): each broken input is reported at the exact field path with a helpful
message, and valid edge cases are accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tortie.model import ValidationError, parse_resource, validate_resource

V3 = "projectcalico.org/v3"

BASE: dict[str, dict[str, Any]] = {
    "IPPool": {"metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/16"}},
    "IPReservation": {"metadata": {"name": "r"}, "spec": {}},
    "BGPConfiguration": {"metadata": {"name": "default"}, "spec": {}},
    "BGPPeer": {"metadata": {"name": "peer"}, "spec": {"peerIP": "10.0.0.1", "asNumber": 65000}},
    "Node": {"metadata": {"name": "node-1"}, "spec": {}},
    "FelixConfiguration": {"metadata": {"name": "default"}, "spec": {}},
    "Tier": {"metadata": {"name": "t"}, "spec": {}},
    "NetworkPolicy": {"metadata": {"name": "np", "namespace": "ns"}, "spec": {}},
    "GlobalNetworkPolicy": {"metadata": {"name": "gnp"}, "spec": {}},
    "Profile": {"metadata": {"name": "prof"}, "spec": {}},
    "NetworkSet": {"metadata": {"name": "set", "namespace": "ns"}, "spec": {}},
    "GlobalNetworkSet": {"metadata": {"name": "gset"}, "spec": {}},
    "WorkloadEndpoint": {
        "metadata": {"name": "n1-k8s-pod-eth0", "namespace": "ns"},
        "spec": {"node": "n1", "interfaceName": "cali1", "ipNetworks": ["10.0.0.1/32"]},
    },
    "HostEndpoint": {"metadata": {"name": "hep"}, "spec": {"node": "n1", "interfaceName": "eth0"}},
    "IPAMConfiguration": {"metadata": {"name": "default"}, "spec": {}},
    "IPAMBlock": {"metadata": {"name": "10.0.0.0-26"}, "spec": {"cidr": "10.0.0.0/26"}},
    "BlockAffinity": {
        "metadata": {"name": "n1/ipv4/block/10.0.0.0-26"},
        "spec": {"state": "confirmed", "node": "n1", "cidr": "10.0.0.0/26"},
    },
    "IPAMHandle": {"metadata": {"name": "h1"}, "spec": {"handleID": "h1"}},
}


def make(
    kind: str,
    *,
    spec: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The kind's base object with spec/metadata/top-level keys merged in (None values delete)."""
    obj: dict[str, Any] = {"apiVersion": V3, "kind": kind, **copy.deepcopy(BASE[kind])}
    for target, patch in ((obj["spec"], spec), (obj["metadata"], meta), (obj, top)):
        for key, value in (patch or {}).items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    for key in drop:
        obj.pop(key, None)
    return obj


def rule(**fields: Any) -> dict[str, Any]:
    return {"action": "Allow", **fields}


@pytest.mark.parametrize("kind", sorted(BASE))
def test_base_objects_are_valid(kind: str) -> None:
    assert validate_resource(make(kind)) == []


C = pytest.param
CASES = [
    # -- envelope ---------------------------------------------------------------------------------
    C("IPPool", {"top": {"apiVersion": "v1"}}, "apiVersion", "not supported", id="api-version"),
    C("IPPool", {"drop": ("apiVersion",)}, "apiVersion", "is required", id="api-version-missing"),
    C("IPPool", {"top": {"kind": "ippool"}}, "kind", "use 'IPPool'", id="kind-alias"),
    C("IPPool", {"top": {"kind": "Frobnicator"}}, "kind", "unknown kind", id="kind-unknown"),
    C("IPPool", {"top": {"specs": {}}}, "specs", "unknown field", id="top-level-unknown"),
    C("IPPool", {"top": {"spec": ["x"]}}, "spec", "expected a mapping", id="spec-not-mapping"),
    C("IPPool", {"top": {"status": "ok"}}, "status", "expected a mapping", id="status-not-mapping"),
    # -- metadata and names -----------------------------------------------------------------------
    C("IPPool", {"meta": {"name": None}}, "metadata.name", "is required", id="name-missing"),
    C("IPPool", {"meta": {"name": 5}}, "metadata.name", "expected a string", id="name-type"),
    C("IPPool", {"meta": {"name": "Bad_Name"}}, "metadata.name", "not a valid name", id="name-dns1123"),
    C("IPPool", {"meta": {"name": "a" * 254}}, "metadata.name", "too long", id="name-too-long"),
    C("Tier", {"meta": {"name": "a.b"}}, "metadata.name", "not a valid name", id="tier-name-dot"),
    C("Tier", {"meta": {"name": "a" * 64}}, "metadata.name", "at most 63", id="tier-name-long"),
    C(
        "NetworkPolicy",
        {"meta": {"name": "a.b.c"}},
        "metadata.name",
        "not a valid NetworkPolicy name",
        id="np-name-two-dots",
    ),
    C(
        "GlobalNetworkPolicy",
        {"meta": {"name": "knp.default.x"}},
        "metadata.name",
        "not a valid GlobalNetworkPolicy name",
        id="gnp-knp-name",
    ),
    C(
        "GlobalNetworkPolicy",
        {"meta": {"name": "sec.allow"}},
        "metadata.name",
        "does not match the policy's tier",
        id="gnp-prefix-tier",
    ),
    C(
        "NetworkPolicy",
        {"meta": {"name": "sec.allow"}, "spec": {"tier": "other"}},
        "metadata.name",
        "does not match the policy's tier",
        id="np-prefix-tier",
    ),
    C(
        "IPAMHandle",
        {"meta": {"name": "a//b"}},
        "metadata.name",
        "not a valid IPAMHandle name",
        id="ipam-name",
    ),
    C(
        "NetworkPolicy",
        {"meta": {"namespace": None}},
        "metadata.namespace",
        "is required",
        id="namespace-missing",
    ),
    C(
        "IPPool",
        {"meta": {"namespace": "ns"}},
        "metadata.namespace",
        "is not allowed",
        id="namespace-forbidden",
    ),
    C(
        "NetworkSet",
        {"meta": {"namespace": "Bad"}},
        "metadata.namespace",
        "not a valid name",
        id="namespace-format",
    ),
    C("IPPool", {"meta": {"labels": {"-bad": "x"}}}, "metadata.labels.-bad", "not valid", id="label-key"),
    C(
        "IPPool",
        {"meta": {"labels": {"Example.com/x": "y"}}},
        "metadata.labels['Example.com/x']",
        "must be a DNS subdomain",
        id="label-key-prefix",
    ),
    C(
        "IPPool",
        {"meta": {"labels": {"k": "v" * 64}}},
        "metadata.labels.k",
        "at most 63",
        id="label-value-long",
    ),
    C("IPPool", {"meta": {"labels": {"k": "a b"}}}, "metadata.labels.k", "not valid", id="label-value-chars"),
    C(
        "IPPool",
        {"meta": {"labels": {"k": 1}}},
        "metadata.labels.k",
        "expected a string",
        id="label-value-type",
    ),
    C(
        "IPPool",
        {"meta": {"annotations": {"bad key!": "x"}}},
        "metadata.annotations['bad key!']",
        "annotation key",
        id="annotation-key",
    ),
    C(
        "IPPool",
        {"meta": {"generateName": "x-"}},
        "metadata.generateName",
        "not supported",
        id="generate-name",
    ),
    C(
        "NetworkSet",
        {"meta": {"labels": {"projectcalico.org/namespace": "x"}}},
        "metadata.labels['projectcalico.org/namespace']",
        "reserved",
        id="networkset-reserved-label",
    ),
    C(
        "Tier",
        {"meta": {"name": "default"}, "spec": {"order": 5}},
        "spec.order",
        "must be 1000000",
        id="default-tier-order",
    ),
    # -- types ------------------------------------------------------------------------------------
    C("IPPool", {"spec": {"natOutgoing": "yes"}}, "spec.natOutgoing", "expected a boolean", id="bool-type"),
    C("IPPool", {"spec": {"blockSize": "26"}}, "spec.blockSize", "expected an integer", id="int-type"),
    C("IPPool", {"spec": {"blockSize": True}}, "spec.blockSize", "expected an integer", id="bool-is-not-int"),
    C("IPPool", {"spec": {"allowedUses": "Workload"}}, "spec.allowedUses", "expected a list", id="list-type"),
    C(
        "IPPool",
        {"spec": {"natoutgoing": True}},
        "spec.natoutgoing",
        "did you mean 'natOutgoing'",
        id="unknown-field-hint",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"selctor": "a == 'b'"})]}},
        "spec.ingress[0].source.selctor",
        "unknown field",
        id="unknown-nested-field",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [None]}},
        "spec.ingress[0]",
        "must not be null",
        id="null-rule",
    ),
    # -- IPPool -----------------------------------------------------------------------------------
    C("IPPool", {"spec": {"cidr": None}}, "spec.cidr", "is required", id="pool-cidr-missing"),
    C(
        "IPPool",
        {"spec": {"cidr": "10.0.0.1/16"}},
        "spec.cidr",
        "not strictly masked",
        id="pool-cidr-unmasked",
    ),
    C("IPPool", {"spec": {"cidr": "10.0.0.0/33"}}, "spec.cidr", "prefix length 33", id="pool-cidr-prefix"),
    C(
        "IPPool",
        {"spec": {"cidr": "10.0.0/16"}},
        "spec.cidr",
        "not a valid IP address",
        id="pool-cidr-garbage",
    ),
    C(
        "IPPool",
        {"spec": {"cidr": "10.0.0.0/255.255.0.0"}},
        "spec.cidr",
        "must be a number",
        id="pool-cidr-netmask",
    ),
    C(
        "IPPool",
        {"spec": {"blockSize": 33}},
        "spec.blockSize",
        "IPv4 block sizes must be 20-32",
        id="block-v4-high",
    ),
    C(
        "IPPool",
        {"spec": {"blockSize": 19}},
        "spec.blockSize",
        "IPv4 block sizes must be 20-32",
        id="block-v4-low",
    ),
    C(
        "IPPool",
        {"spec": {"cidr": "fd00::/48", "blockSize": 64}},
        "spec.blockSize",
        "IPv6 block sizes must be 116-128",
        id="block-v6",
    ),
    C(
        "IPPool",
        {"spec": {"cidr": "10.0.0.0/28"}},
        "spec.cidr",
        "smaller than one /26 block",
        id="pool-too-small",
    ),
    C("IPPool", {"spec": {"cidr": "169.254.1.0/24"}}, "spec.cidr", "link-local", id="link-local-v4"),
    C("IPPool", {"spec": {"cidr": "fe80::/64"}}, "spec.cidr", "link-local", id="link-local-v6"),
    C(
        "IPPool",
        {"spec": {"cidr": "fd00::/48", "ipipMode": "Always"}},
        "spec.ipipMode",
        "not supported on IPv6",
        id="ipip-v6",
    ),
    C(
        "IPPool",
        {"spec": {"ipipMode": "Always", "vxlanMode": "CrossSubnet"}},
        "spec.ipipMode",
        "cannot both be enabled",
        id="ipip-and-vxlan",
    ),
    C(
        "IPPool",
        {"spec": {"ipipMode": "always"}},
        "spec.ipipMode",
        "must be one of Never, Always, CrossSubnet",
        id="ipip-mode-value",
    ),
    C(
        "IPPool",
        {"spec": {"vxlanMode": "Sometimes"}},
        "spec.vxlanMode",
        "must be one of",
        id="vxlan-mode-value",
    ),
    C(
        "IPPool",
        {"spec": {"allowedUses": ["Workload", "Pets"]}},
        "spec.allowedUses[1]",
        "must be one of",
        id="allowed-uses-value",
    ),
    C(
        "IPPool",
        {"spec": {"allowedUses": ["Tunnel", "Tunnel"]}},
        "spec.allowedUses[1]",
        "more than once",
        id="allowed-uses-dup",
    ),
    C(
        "IPPool",
        {"spec": {"allowedUses": ["LoadBalancer", "Workload"]}},
        "spec.allowedUses",
        "cannot be combined",
        id="lb-mixed",
    ),
    C(
        "IPPool",
        {"spec": {"allowedUses": ["LoadBalancer"], "vxlanMode": "Always"}},
        "spec.allowedUses",
        "cannot use IPIP or VXLAN",
        id="lb-encap",
    ),
    C(
        "IPPool",
        {"spec": {"allowedUses": ["LoadBalancer"], "nodeSelector": "has(lb)"}},
        "spec.nodeSelector",
        "must select all()",
        id="lb-node-selector",
    ),
    C(
        "IPPool",
        {"spec": {"allowedUses": ["LoadBalancer"], "disableBGPExport": True}},
        "spec.disableBGPExport",
        "cannot disable BGP export",
        id="lb-bgp-export",
    ),
    C(
        "IPPool",
        {"spec": {"nodeSelector": "rack =="}},
        "spec.nodeSelector",
        "invalid selector",
        id="pool-selector",
    ),
    C(
        "IPPool",
        {"spec": {"assignmentMode": "Auto"}},
        "spec.assignmentMode",
        "must be one of",
        id="assignment",
    ),
    C(
        "IPReservation",
        {"spec": {"reservedCIDRs": ["bogus"]}},
        "spec.reservedCIDRs[0]",
        "not a valid IP address",
        id="reservation-cidr",
    ),
    # -- rules ------------------------------------------------------------------------------------
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [{"protocol": "TCP"}]}},
        "spec.ingress[0].action",
        "is required",
        id="action-missing",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [{"action": "allow"}]}},
        "spec.ingress[0].action",
        "must be one of Allow, Deny, Log, Pass",
        id="action-value",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="FOO")]}},
        "spec.ingress[0].protocol",
        "not a valid protocol",
        id="protocol-name",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol=0)]}},
        "spec.ingress[0].protocol",
        "1-255",
        id="protocol-zero",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(notProtocol=256)]}},
        "spec.ingress[0].notProtocol",
        "1-255",
        id="protocol-256",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol=True)]}},
        "spec.ingress[0].protocol",
        "expected a protocol",
        id="protocol-type",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(destination={"ports": [80]})]}},
        "spec.ingress[0].destination.ports",
        "must set protocol to TCP, UDP or SCTP",
        id="ports-need-protocol",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"egress": [rule(source={"notPorts": ["1:2"]})]}},
        "spec.egress[0].source.notPorts",
        "must set protocol",
        id="notports-need-protocol",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="ICMP", destination={"ports": ["http"]})]}},
        "spec.ingress[0].destination.ports",
        "has no ports",
        id="ports-with-icmp",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol=47, destination={"ports": [1]})]}},
        "spec.ingress[0].destination.ports",
        "has no ports",
        id="ports-with-gre",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="TCP", destination={"ports": [0]})]}},
        "spec.ingress[0].destination.ports[0]",
        "1-65535",
        id="port-zero",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="TCP", destination={"ports": [65536]})]}},
        "spec.ingress[0].destination.ports[0]",
        "1-65535",
        id="port-too-big",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="TCP", destination={"ports": ["90:80"]})]}},
        "spec.ingress[0].destination.ports[0]",
        "must not exceed",
        id="port-range-order",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="TCP", destination={"ports": ["0:80"]})]}},
        "spec.ingress[0].destination.ports[0]",
        "1-65535",
        id="port-range-zero",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="TCP", destination={"ports": ["web server"]})]}},
        "spec.ingress[0].destination.ports[0]",
        "not a valid port",
        id="port-name",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="TCP", destination={"ports": [1.5]})]}},
        "spec.ingress[0].destination.ports[0]",
        "expected a port",
        id="port-type",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="TCP", destination={"ports": list(range(1, 52))})]}},
        "spec.ingress[0].destination.ports",
        "at most 50",
        id="ports-limit",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(icmp={"type": 8})]}},
        "spec.ingress[0].icmp",
        "must set protocol to ICMP or ICMPv6",
        id="icmp-needs-protocol",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="TCP", notICMP={"type": 8})]}},
        "spec.ingress[0].notICMP",
        "must set protocol to ICMP",
        id="noticmp-needs-protocol",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="ICMP", icmp={"type": 255})]}},
        "spec.ingress[0].icmp.type",
        "0-254",
        id="icmp-type-range",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="ICMP", icmp={"type": 3, "code": 256})]}},
        "spec.ingress[0].icmp.code",
        "0-255",
        id="icmp-code-range",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="ICMP", icmp={"code": 1})]}},
        "spec.ingress[0].icmp.code",
        "needs an ICMP type",
        id="icmp-code-without-type",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="ICMP", ipVersion=6)]}},
        "spec.ingress[0].ipVersion",
        "must be 4",
        id="icmp-ipv6",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(notProtocol="ICMPv6", ipVersion=4)]}},
        "spec.ingress[0].ipVersion",
        "must be 6",
        id="icmpv6-ipv4",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(ipVersion=5)]}},
        "spec.ingress[0].ipVersion",
        "must be 4 or 6",
        id="ip-version-value",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(ipVersion=4, source={"nets": ["fd00::/8"]})]}},
        "spec.ingress[0].source.nets",
        "ipVersion is 4",
        id="nets-vs-ip-version",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"nets": ["10.0.0.0/8", "fd00::/8"]})]}},
        "spec.ingress[0].source.nets",
        "mixes IPv4 and IPv6",
        id="nets-mixed-in-field",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"nets": ["10.0.0.0/8"]}, destination={"notNets": ["fd00::/8"]})]}},
        "spec.ingress[0].destination.notNets",
        "mixes IPv4 and IPv6",
        id="nets-mixed-across",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"notNets": ["0.0.0.0/0"]})]}},
        "spec.ingress[0].source.notNets[0]",
        "matches every address",
        id="not-nets-v4-all",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"egress": [rule(destination={"notNets": ["10.0.0.0/8", "::/0"]})]}},
        "spec.egress[0].destination.notNets[1]",
        "matches every address",
        id="not-nets-v6-all",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"nets": ["10.0.0.0/8x"]})]}},
        "spec.ingress[0].source.nets[0]",
        "not a valid CIDR",
        id="net-garbage",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"selector": "global()"})]}},
        "spec.ingress[0].source.selector",
        "only valid in a rule namespaceSelector",
        id="global-in-selector",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"notSelector": "a == 'x' && global()"})]}},
        "spec.ingress[0].source.notSelector",
        "global()",
        id="global-in-not-selector",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"namespaceSelector": "global() && has(a)"})]}},
        "spec.ingress[0].source.namespaceSelector",
        "cannot be combined",
        id="global-combined",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"selector": "a in {"})]}},
        "spec.ingress[0].source.selector",
        "invalid selector",
        id="selector-syntax",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [{"action": "Deny", "http": {"methods": ["GET"]}}]}},
        "spec.ingress[0].http",
        "only valid in Allow rules",
        id="http-deny",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="UDP", http={"methods": ["GET"]})]}},
        "spec.ingress[0].protocol",
        "TCP",
        id="http-udp",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"egress": [rule(http={"methods": ["GET"]})]}},
        "spec.egress[0].http",
        "not allowed in egress rules",
        id="http-egress",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(http={"methods": ["GET", "GET"]})]}},
        "spec.ingress[0].http.methods[1]",
        "more than once",
        id="http-methods-dup",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(http={"paths": [{"exact": "/a", "prefix": "/b"}]})]}},
        "spec.ingress[0].http.paths[0]",
        "exactly one of exact or prefix",
        id="http-path-both",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(http={"paths": [{"prefix": "api?"}]})]}},
        "spec.ingress[0].http.paths[0]",
        "must start with '/'",
        id="http-path-format",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"egress": [rule(destination={"services": {"name": "dns"}})]}},
        "spec.egress[0].destination.services.namespace",
        "is required in a cluster-scoped policy",
        id="gnp-service-namespace",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"ingress": [rule(destination={"services": {"name": "web"}})]}},
        "spec.ingress[0].destination.services",
        "not allowed in the destination of an ingress rule",
        id="ingress-dst-services",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"egress": [rule(source={"services": {"name": "web"}})]}},
        "spec.egress[0].source.services",
        "not allowed in the source of an egress rule",
        id="egress-src-services",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"egress": [rule(destination={"services": {"name": "web"}, "selector": "a == 'b'"})]}},
        "spec.egress[0].destination.services",
        "cannot be combined with selector",
        id="services-and-selector",
    ),
    C(
        "NetworkPolicy",
        {
            "spec": {
                "egress": [rule(protocol="TCP", destination={"services": {"name": "web"}, "ports": [80]})]
            }
        },
        "spec.egress[0].destination.ports",
        "cannot be combined with destination services",
        id="services-ports",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"egress": [rule(destination={"services": {}})]}},
        "spec.egress[0].destination.services.name",
        "is required",
        id="services-name",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"ingress": [rule(metadata={"annotations": {"a": 1}})]}},
        "spec.ingress[0].metadata.annotations.a",
        "expected a string",
        id="rule-annotation",
    ),
    # -- policies ---------------------------------------------------------------------------------
    C(
        "NetworkPolicy",
        {"spec": {"types": ["Ingress", "Ingress"]}},
        "spec.types[1]",
        "more than once",
        id="types-dup",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"types": ["ingress"]}},
        "spec.types[0]",
        "must be one of Ingress, Egress",
        id="types-value",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"doNotTrack": True}},
        "spec.doNotTrack",
        "only valid in a GlobalNetworkPolicy",
        id="np-do-not-track",
    ),
    C(
        "NetworkPolicy",
        {"spec": {"namespaceSelector": "all()"}},
        "spec.namespaceSelector",
        "only valid in a GlobalNetworkPolicy",
        id="np-namespace-selector",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"doNotTrack": True}},
        "spec.applyOnForward",
        "must be true",
        id="untracked-needs-forward",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"preDNAT": True}},
        "spec.applyOnForward",
        "must be true",
        id="prednat-needs-forward",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"preDNAT": True, "doNotTrack": True, "applyOnForward": True}},
        "spec.preDNAT",
        "cannot both be true",
        id="prednat-and-untracked",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"preDNAT": True, "applyOnForward": True, "egress": [rule()]}},
        "spec.egress",
        "cannot have egress rules",
        id="prednat-egress",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"preDNAT": True, "applyOnForward": True, "types": ["Egress"]}},
        "spec.types",
        "cannot have type Egress",
        id="prednat-egress-type",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"selector": "global()"}},
        "spec.selector",
        "only valid in a rule",
        id="policy-selector-global",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"namespaceSelector": "global()"}},
        "spec.namespaceSelector",
        "only valid in a rule",
        id="policy-namespace-selector-global",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"selector": "a == 'b' && " * 100 + "all()"}},
        "spec.selector",
        "too long",
        id="policy-selector-length",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"order": "first"}},
        "spec.order",
        "expected a number",
        id="order-type",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"order": float("nan")}},
        "spec.order",
        "not a finite number",
        id="order-nan",
    ),
    C("GlobalNetworkPolicy", {"spec": {"tier": "Security"}}, "spec.tier", "not a valid name", id="tier-ref"),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"performanceHints": ["Fast"]}},
        "spec.performanceHints[0]",
        "AssumeNeededOnEveryNode",
        id="perf-hints",
    ),
    C(
        "Tier",
        {"spec": {"defaultAction": "Allow"}},
        "spec.defaultAction",
        "must be one of Deny, Pass",
        id="tier-default-action",
    ),
    C(
        "Profile",
        {"spec": {"labelsToApply": {"a b": "c"}}},
        "spec.labelsToApply['a b']",
        "not valid",
        id="profile-labels",
    ),
    C(
        "Profile",
        {"spec": {"egress": [rule(protocol="UDP", icmp={"type": 1})]}},
        "spec.egress[0].icmp",
        "must set protocol to ICMP",
        id="profile-rule",
    ),
    C("NetworkSet", {"spec": {"nets": ["10.0.0.0/40"]}}, "spec.nets[0]", "prefix length", id="netset-net"),
    C(
        "GlobalNetworkSet",
        {"spec": {"nets": "10.0.0.0/8"}},
        "spec.nets",
        "expected a list",
        id="gnetset-type",
    ),
]


@pytest.mark.parametrize(("kind", "change", "path", "fragment"), CASES)
def test_invalid_input_is_reported_at_its_path(
    kind: str, change: dict[str, Any], path: str, fragment: str
) -> None:
    problems = validate_resource(make(kind, **change), source="case.yaml")
    found = [(p.path, p.message) for p in problems]
    assert any(p == path and fragment in m for p, m in found), found
    assert all(p.source == "case.yaml" and p.document == 0 for p in problems)
    with pytest.raises(ValidationError):
        parse_resource(make(kind, **change))


VALID_EDGES = [
    C("NetworkPolicy", {"meta": {"name": "knp.default.allow-all.v2"}}, id="np-knp-name"),
    C(
        "NetworkPolicy",
        {"meta": {"name": "ossg.default.0b3c6e0c-ffff-4c1e-9a4e-1234567890ab"}},
        id="np-ossg-name",
    ),
    C("NetworkPolicy", {"meta": {"name": "default.allow"}}, id="np-default-prefix"),
    C("GlobalNetworkPolicy", {"meta": {"name": "sec.allow"}, "spec": {"tier": "sec"}}, id="gnp-tier-prefix"),
    C("GlobalNetworkPolicy", {"spec": {"tier": "sec"}}, id="gnp-tier-without-prefix"),
    C("Tier", {"meta": {"name": "default"}, "spec": {"order": 1000000}}, id="default-tier"),
    C("Tier", {"meta": {"name": "kube-admin"}}, id="kube-admin-tier-no-order"),
    C("IPPool", {"spec": {"cidr": "10.0.0.0/28", "disabled": True}}, id="disabled-small-pool"),
    C("IPPool", {"spec": {"cidr": "10.0.0.0/8", "blockSize": 20}}, id="block-20"),
    C("IPPool", {"spec": {"cidr": "fd00::/120", "blockSize": 128}}, id="block-128"),
    C("IPPool", {"spec": {"allowedUses": ["LoadBalancer"], "nodeSelector": "all()"}}, id="lb-pool"),
    C("IPPool", {"meta": {"labels": {"example.com/name": "", "a_b.c-d": "A_b.c-D"}}}, id="labels"),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(destination={"ports": ["http", "metrics"]})]}},
        id="named-ports-without-protocol",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="udp", destination={"ports": ["1:65535"]})]}},
        id="lowercase-protocol-full-range",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol=1, icmp={"type": 8})]}},
        id="icmp-by-number",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(protocol="ICMPv6", ipVersion=6, icmp={"type": 128})]}},
        id="icmpv6",
    ),
    C(
        "GlobalNetworkPolicy",
        {
            "spec": {
                "ingress": [
                    rule(ipVersion=6, source={"nets": ["fd00::/8"]}, destination={"notNets": ["fd00:1::/64"]})
                ]
            }
        },
        id="v6-nets",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"namespaceSelector": " global( ) "})]}},
        id="global-with-spaces",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [rule(source={"selector": "label == 'global()'"})]}},
        id="global-in-string",
    ),
    C(
        "GlobalNetworkPolicy",
        {"spec": {"ingress": [{"action": "Log"}, {"action": "Pass"}, {"action": "Deny"}]}},
        id="all-actions",
    ),
    C("BGPPeer", {"spec": {"asNumber": "65535.65535"}}, id="asdot-max"),
    C("BGPPeer", {"spec": {"asNumber": 4294967295}}, id="asn-max"),
    C("BGPPeer", {"spec": {"peerIP": "fd00::1"}}, id="peer-v6-no-port"),
    C("BGPPeer", {"spec": {"peerIP": "10.0.0.1:179"}}, id="peer-ip-port"),
    C("BGPPeer", {"spec": {"peerIP": None, "asNumber": None, "peerSelector": "has(rr)"}}, id="peer-selector"),
    C("Node", {"spec": {"bgp": {"ipv4Address": "10.0.0.5"}}}, id="node-bare-ip"),
    C("HostEndpoint", {"spec": {"interfaceName": "*"}}, id="hep-wildcard"),
    C("HostEndpoint", {"spec": {"interfaceName": None, "expectedIPs": ["10.0.0.1"]}}, id="hep-expected-only"),
    C(
        "WorkloadEndpoint",
        {"spec": {"ports": [{"protocol": "UDP", "port": 53, "hostPort": 53}]}},
        id="wep-host-port-no-name",
    ),
    C(
        "FelixConfiguration",
        {"spec": {"defaultEndpointToHostAction": "ACCEPT", "chainInsertMode": "append"}},
        id="felix-case-insensitive",
    ),
    C(
        "FelixConfiguration",
        {
            "spec": {
                "iptablesLockProbeInterval": "50ms",
                "usageReportingInterval": "24h",
                "reportingTTL": "1m30s",
                "netlinkTimeout": "0",
            }
        },
        id="felix-durations",
    ),
    C("IPAMConfiguration", {"spec": {"strictAffinity": True, "autoAllocateBlocks": False}}, id="ipam-strict"),
]


@pytest.mark.parametrize(("kind", "change"), VALID_EDGES)
def test_valid_edge_cases_are_accepted(kind: str, change: dict[str, Any]) -> None:
    assert validate_resource(make(kind, **change)) == []


def test_every_problem_of_one_object_is_reported() -> None:
    wire = make(
        "IPPool",
        meta={"name": "Bad", "labels": {"k": "a b"}},
        spec={"blockSize": 40, "ipipMode": "sometimes", "natOutgoing": 1, "extra": True},
    )
    paths = {p.path for p in validate_resource(wire)}
    assert {"metadata.name", "metadata.labels.k", "spec.ipipMode", "spec.natOutgoing", "spec.extra"} <= paths


def test_cross_field_rules_still_run_when_an_unrelated_field_is_bad() -> None:
    wire = make("WorkloadEndpoint", spec={"mac": "bad", "ipNetworks": ["10.0.0.0/24"]})
    paths = {p.path for p in validate_resource(wire)}
    assert paths == {"spec.mac", "spec.ipNetworks[0]"}


def test_a_rejected_field_does_not_cause_follow_on_complaints() -> None:
    # protocol is bad, so the ports-need-protocol rule must not fire as well.
    wire = make("GlobalNetworkPolicy", spec={"ingress": [rule(protocol="TCPP", destination={"ports": [80]})]})
    assert [p.path for p in validate_resource(wire)] == ["spec.ingress[0].protocol"]


def test_problem_string_names_file_document_resource_path() -> None:
    problems = validate_resource(
        make("IPPool", meta={"name": "default-ipv4"}, spec={"blockSize": 33}), source="pool.yaml", document=2
    )
    assert [str(p) for p in problems] == [
        "pool.yaml: document 2 (IPPool/default-ipv4): spec.blockSize: 33 is out of range: "
        "IPv4 block sizes must be 20-32"
    ]
