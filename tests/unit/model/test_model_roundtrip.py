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
from tortie.testing.model_samples import V3, VALID, obj

REPO = Path(__file__).resolve().parents[3]


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
