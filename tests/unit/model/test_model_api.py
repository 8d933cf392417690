"""The typed model as other code uses it: effective values (Calico defaults), the Resource API,
values built in code, and property tests for the primitive codecs."""

from __future__ import annotations

import ipaddress
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tortie.model import (
    API_VERSION,
    BGPConfigurationSpec,
    BGPPeerSpec,
    EntityRule,
    FrozenMap,
    GlobalNetworkPolicySpec,
    IPAMBlockSpec,
    IPAMConfigurationSpec,
    IPPoolSpec,
    Metadata,
    NetworkPolicySpec,
    Port,
    ProtocolValue,
    Resource,
    Rule,
    TierSpec,
    dump_yaml,
    duration_seconds,
    effective_tier_order,
    load_resources,
    parse_resource,
    validate_resource,
)


def wire(kind: str, spec: dict[str, Any], name: str = "x", namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


# -- effective values ----------------------------------------------------------------------------
def test_ippool_defaults_are_effective_values_not_stored() -> None:
    res = parse_resource(wire("IPPool", {"cidr": "10.0.0.0/16"}))
    pool = res.spec_as(IPPoolSpec)
    assert pool.block_size is None and pool.node_selector is None
    assert pool.effective_block_size == 26
    assert pool.effective_ipip_mode == pool.effective_vxlan_mode == "Never"
    assert pool.effective_nat_outgoing is False and pool.effective_disabled is False
    assert pool.effective_disable_bgp_export is False
    assert pool.effective_node_selector == "all()"
    assert pool.effective_allowed_uses == ("Workload", "Tunnel")
    assert pool.effective_assignment_mode == "Automatic"
    assert pool.ip_version == 4 and pool.network == ipaddress.ip_network("10.0.0.0/16")
    assert res.to_wire()["spec"] == {"cidr": "10.0.0.0/16"}
    v6 = parse_resource(wire("IPPool", {"cidr": "fd00::/64"})).spec_as(IPPoolSpec)
    assert v6.effective_block_size == 122


@pytest.mark.parametrize(
    ("ingress", "egress", "types", "effective"),
    [
        (False, False, None, ("Ingress",)),
        (True, False, None, ("Ingress",)),
        (False, True, None, ("Egress",)),
        (True, True, None, ("Ingress", "Egress")),
        (True, True, ["Egress"], ("Egress",)),
        (False, False, ["Egress", "Ingress"], ("Egress", "Ingress")),
    ],
)
def test_policy_types_inference(
    ingress: bool, egress: bool, types: list[str] | None, effective: tuple[str, ...]
) -> None:
    spec: dict[str, Any] = {}
    if ingress:
        spec["ingress"] = [{"action": "Allow"}]
    if egress:
        spec["egress"] = [{"action": "Deny"}]
    if types is not None:
        spec["types"] = types
    for kind, namespace in (("NetworkPolicy", "ns"), ("GlobalNetworkPolicy", None)):
        res = parse_resource(wire(kind, spec, namespace=namespace))
        policy = res.spec
        assert isinstance(policy, NetworkPolicySpec | GlobalNetworkPolicySpec)
        assert policy.effective_types == effective
        assert "types" not in res.to_wire()["spec"] or types is not None


def test_policy_defaults() -> None:
    policy = parse_resource(wire("GlobalNetworkPolicy", {})).spec_as(GlobalNetworkPolicySpec)
    assert policy.effective_tier == "default"
    assert policy.effective_order == math.inf
    assert policy.effective_selector == "all()"
    ordered = parse_resource(wire("GlobalNetworkPolicy", {"order": 10, "tier": "sec"}, name="sec.p"))
    assert ordered.spec_as(GlobalNetworkPolicySpec).effective_order == 10.0


def test_tier_effective_values() -> None:
    assert TierSpec().effective_order == math.inf
    assert TierSpec().effective_default_action == "Deny"
    assert TierSpec(order=5.0, default_action="Pass").effective_default_action == "Pass"
    assert effective_tier_order("default", TierSpec()) == 1_000_000
    assert effective_tier_order("kube-admin", TierSpec()) == 1_000
    assert effective_tier_order("kube-baseline", TierSpec()) == 10_000_000
    assert effective_tier_order("sec", TierSpec()) == math.inf
    assert effective_tier_order("sec", TierSpec(order=3.0)) == 3.0


def test_bgp_and_ipam_effective_values() -> None:
    bgp = BGPConfigurationSpec()
    assert (bgp.effective_as_number, bgp.effective_listen_port, bgp.effective_log_severity_screen) == (
        64512,
        179,
        "Info",
    )
    assert bgp.effective_node_to_node_mesh_enabled is True
    assert BGPConfigurationSpec(node_to_node_mesh_enabled=False).effective_node_to_node_mesh_enabled is False
    ipam = IPAMConfigurationSpec()
    assert ipam.effective_max_blocks_per_host == 20 and ipam.effective_auto_allocate_blocks is True
    assert ipam.effective_strict_affinity is False


def test_peer_helpers() -> None:
    peer = parse_resource(wire("BGPPeer", {"peerIP": "[fd00::1]:1179", "asNumber": "1.1"})).spec_as(
        BGPPeerSpec
    )
    assert peer.peer_address == ("fd00::1", 1179)
    assert peer.as_number == 65537
    assert peer.is_global
    assert BGPPeerSpec(peer_ip="10.0.0.1", as_number=1).peer_address == ("10.0.0.1", None)


def test_rule_model() -> None:
    res = parse_resource(
        wire(
            "GlobalNetworkPolicy",
            {
                "ingress": [
                    {
                        "action": "Allow",
                        "protocol": "tcp",
                        "source": {"nets": ["10.1.0.0/16"]},
                        "destination": {"ports": [80, "8000:8080", "http"]},
                    }
                ]
            },
        )
    )
    rule = res.spec_as(GlobalNetworkPolicySpec).ingress[0]
    assert isinstance(rule, Rule)
    assert (
        rule.protocol == ProtocolValue("TCP") and rule.protocol.number == 6 and rule.protocol.supports_ports
    )
    assert rule.destination.ports == (Port.single(80), Port.range(8000, 8080), Port.named("http"))
    assert [str(p) for p in rule.destination.ports] == ["80", "8000:8080", "http"]
    assert rule.effective_ip_version == 4
    assert rule.source.selector is None and rule.destination.nets == ()
    assert Rule(action="Allow").source == EntityRule()


def test_protocol_value() -> None:
    assert ProtocolValue(17).name is None and ProtocolValue(17).supports_ports
    assert ProtocolValue("ICMPv6").is_icmpv6 and ProtocolValue(1).is_icmp
    assert not ProtocolValue("UDPLite").supports_ports


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("1m30s", 90), ("500ms", 0.5), ("1.5h", 5400), ("0", 0)]
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


# -- the Resource API ------------------------------------------------------------------------------
def test_resource_key_and_metadata_replacement() -> None:
    res = parse_resource(wire("NetworkPolicy", {}, name="np", namespace="shop"))
    assert res.key == "/calico/resources/v3/projectcalico.org/networkpolicies/shop/np"
    pool = parse_resource(wire("IPPool", {"cidr": "10.0.0.0/16"}, name="p"))
    assert pool.key == "/calico/resources/v3/projectcalico.org/ippools/p"
    stamped = pool.replace_metadata(resource_version="9", uid="u")
    assert stamped.metadata.resource_version == "9" and stamped.metadata.name == "p"
    assert pool.metadata.resource_version is None  # frozen: the original is unchanged
    assert stamped.replace_metadata(resource_version=None, uid=None) == pool
    with pytest.raises(AttributeError):
        pool.kind = "Tier"  # type: ignore[misc]


def test_spec_as_checks_the_kind() -> None:
    pool = parse_resource(wire("IPPool", {"cidr": "10.0.0.0/16"}))
    with pytest.raises(TypeError, match="IPPoolSpec, not a TierSpec"):
        pool.spec_as(TierSpec)


def test_resources_built_in_code_round_trip_and_validate() -> None:
    block = Resource.of(
        "IPAMBlock",
        "10.0.0.0-26",
        IPAMBlockSpec(
            cidr="10.0.0.0/26",
            affinity="host:n1",
            allocations=(0, None),
            unallocated=(1,),
            sequence_number=0,
            deleted=False,
        ),
    )
    assert validate_resource(block) == []
    assert block.to_wire()["spec"] == {
        "cidr": "10.0.0.0/26",
        "affinity": "host:n1",
        "allocations": [0, None],
        "unallocated": [1],
        "sequenceNumber": 0,
        "deleted": False,
    }
    assert parse_resource(block.to_wire()) == block
    assert load_resources(dump_yaml([block])) == [block]


def test_validate_resource_catches_bad_values_built_in_code() -> None:
    bad = Resource.of("IPPool", "p", IPPoolSpec(cidr="10.0.0.0/16", block_size=40), labels={"a b": "c"})
    paths = [p.path for p in validate_resource(bad)]
    assert paths == ["metadata.labels['a b']", "spec.blockSize"]


def test_metadata_accepts_plain_dicts_and_stays_hashable() -> None:
    meta = Metadata(name="x", labels={"a": "b"})
    assert isinstance(meta.labels, FrozenMap)
    assert meta.labels == {"a": "b"}
    assert hash(meta) == hash(Metadata(name="x", labels={"a": "b"}))
    res = Resource.of("Tier", "t", TierSpec(), labels={"a": "b"})
    assert {res, res} == {res}


def test_status_is_not_part_of_the_hash_but_of_equality() -> None:
    a = parse_resource({**wire("Node", {}), "status": {"podCIDRs": ["10.0.0.0/24"]}})
    b = parse_resource({**wire("Node", {}), "status": {"podCIDRs": ["10.0.1.0/24"]}})
    assert hash(a) == hash(b) and a != b


def test_frozen_map() -> None:
    m = FrozenMap({"b": 1, "a": 2})
    assert list(m) == ["b", "a"] and len(m) == 2 and m["a"] == 2
    assert m == {"a": 2, "b": 1} and m != {"a": 2}
    assert hash(m) == hash(FrozenMap([("a", 2), ("b", 1)]))
    assert m.to_dict() == {"b": 1, "a": 2}
    with pytest.raises(TypeError):
        m["c"] = 3  # type: ignore[index]


# -- property tests --------------------------------------------------------------------------------
@given(st.integers(0, 2**32 - 1))
def test_any_plain_as_number_round_trips(asn: int) -> None:
    res = parse_resource(wire("BGPConfiguration", {"asNumber": asn}))
    assert res.to_wire()["spec"]["asNumber"] == asn
    assert parse_resource(wire("BGPConfiguration", {"asNumber": str(asn)})) == res


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_asdot_means_high_times_65536_plus_low(high: int, low: int) -> None:
    res = parse_resource(wire("BGPConfiguration", {"asNumber": f"{high}.{low}"}))
    assert res.spec_as(BGPConfigurationSpec).as_number == high * 65536 + low


port_values = st.one_of(
    st.integers(1, 65535),
    st.tuples(st.integers(1, 65535), st.integers(1, 65535)).map(lambda t: f"{min(t)}:{max(t)}"),
    st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True),
)


@given(st.lists(port_values, min_size=1, max_size=10))
def test_any_valid_ports_round_trip(ports: list[int | str]) -> None:
    rule = {"action": "Allow", "protocol": "TCP", "destination": {"ports": ports}}
    res = parse_resource(wire("GlobalNetworkPolicy", {"ingress": [rule]}))
    out = res.to_wire()["spec"]["ingress"][0]["destination"]["ports"]
    assert parse_resource(res.to_wire()) == res
    for given_port, canonical in zip(ports, out, strict=True):
        if isinstance(given_port, str) and ":" in given_port:
            lo, hi = given_port.split(":")
            assert canonical == (int(lo) if lo == hi else given_port)
        else:
            assert canonical == given_port


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_any_ipv4_net_is_canonicalised_in_rules_and_sets(address: int, prefix: int) -> None:
    text = f"{ipaddress.IPv4Address(address)}/{prefix}"
    expected = str(ipaddress.ip_network(text, strict=False))
    res = parse_resource(wire("GlobalNetworkSet", {"nets": [text]}))
    assert res.to_wire()["spec"]["nets"] == [expected]
    assert load_resources(dump_yaml([res])) == [res]


@given(st.integers(0, 2**128 - 1), st.integers(116, 128))
def test_masked_ipv6_pools_round_trip(address: int, prefix: int) -> None:
    net = ipaddress.ip_network(f"{ipaddress.IPv6Address(address)}/{prefix}", strict=False)
    if net.overlaps(ipaddress.ip_network("fe80::/10")):
        return
    res = parse_resource(wire("IPPool", {"cidr": net.exploded, "blockSize": 128}))
    assert res.spec_as(IPPoolSpec).cidr == str(net)
    assert parse_resource(res.to_wire()) == res


@given(
    st.dictionaries(
        st.from_regex(
            r"([a-z0-9]{1,10}\.){0,2}[a-z]{1,10}/[A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?",
            fullmatch=True,
        ),
        st.from_regex(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,30}[A-Za-z0-9])?)?", fullmatch=True),
        max_size=5,
    )
)
def test_valid_labels_round_trip(labels: dict[str, str]) -> None:
    res = Resource.of("Tier", "t", TierSpec(), labels=labels)
    assert validate_resource(res) == []
    assert load_resources(dump_yaml([res])) == [res]


def test_reference_doc_mentions_every_field() -> None:
    from pathlib import Path

    from tortie.model import MODELS
    from tortie.model.rules import ENTITY_RULE, RULE

    doc = (Path(__file__).resolve().parents[3] / "docs" / "reference" / "resources.md").read_text()
    structs = [m.spec for m in MODELS.values()] + [RULE, ENTITY_RULE]
    missing = [f"{s.cls.__name__}.{f.wire}" for s in structs for f in s.fields if f"`{f.wire}`" not in doc]
    missing += [f"kind {kind}" for kind in MODELS if kind not in doc]
    assert missing == []
