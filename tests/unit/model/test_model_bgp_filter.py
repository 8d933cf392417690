"""BGPFilter, the BGPPeer fields that use it and CalicoNodeStatus, case by case as Calico's validator
decides them (libcalico-go validator v3 tests, BGPFilterRuleV4/V6 and BGPPeerSpec entries; the CRD's
rules), plus the two places tortie is stricter (documented in docs/reference/resources.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tortie.model import ValidationError, parse_resource

V3 = "projectcalico.org/v3"


def bgp_filter(**rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "BGPFilter", "metadata": {"name": "f"}, "spec": rules}


def problems(obj: dict[str, Any]) -> list[str]:
    try:
        parse_resource(obj)
    except ValidationError as exc:
        return [str(p) for p in exc.problems]
    return []


# (rule, family) Calico accepts.
ACCEPTED: list[tuple[dict[str, Any], int]] = [
    ({"interface": "ethx", "source": "RemotePeers", "cidr": "192.168.0.0/26", "matchOperator": "In",
      "action": "Accept"}, 4),
    ({"interface": "*.calico", "cidr": "192.168.0.0/26", "matchOperator": "In", "action": "Accept"}, 4),
    ({"interface": "eth*", "source": "RemotePeers", "action": "Accept"}, 4),
    ({"interface": "ethx", "source": "RemotePeers", "cidr": "ffee::/64", "matchOperator": "In",
      "action": "Accept"}, 6),
    ({"interface": "*.calico", "cidr": "ee2::dddd/128", "matchOperator": "In", "action": "Accept"}, 6),
    ({"interface": "ethx.", "action": "Accept"}, 6),
    ({"source": "RemotePeers", "action": "Reject"}, 4),
    ({"source": "RemotePeers", "action": "Reject"}, 6),
    ({"cidr": "10.0.10.0/32", "matchOperator": "In", "action": "Accept"}, 4),
    ({"cidr": "10.0.10.0/32", "matchOperator": "NotIn", "action": "Accept"}, 4),
    ({"cidr": "10.0.10.0/32", "matchOperator": "Equal", "action": "Accept"}, 4),
    ({"cidr": "10.0.10.0/32", "matchOperator": "NotEqual", "action": "Reject"}, 4),
    ({"cidr": "ffff::/128", "matchOperator": "NotEqual", "action": "Accept"}, 6),
    ({"action": "Reject"}, 4),
    ({"action": "Reject"}, 6),
    ({"cidr": "10.0.10.0/24", "matchOperator": "In", "action": "Reject", "prefixLength": {"min": 25}}, 4),
    ({"cidr": "10.0.10.0/24", "matchOperator": "In", "action": "Reject", "prefixLength": {"max": 30}}, 4),
    ({"cidr": "ffff::/128", "matchOperator": "In", "action": "Reject", "prefixLength": {"min": 65}}, 6),
    ({"cidr": "fd00::/8", "matchOperator": "In", "action": "Reject", "prefixLength": {"max": 96}}, 6),
    ({"peerType": "iBGP", "communities": {"values": ["65000:100"]}, "asPathPrefix": [65000],
      "action": "Accept", "operations": [{"addCommunity": {"value": "65000:200"}},
                                         {"prependASPath": {"prefix": [65001, 65002]}}]}, 4),
    ({"peerType": "eBGP", "communities": {"values": ["65000:100:999"]}, "asPathPrefix": [65000, 65001],
      "action": "Accept"}, 6),
]

# (rule, family, field path under the rule, start of the message).
REFUSED: list[tuple[dict[str, Any], int, str, str]] = [
    ({"interface": "eth&", "action": "Reject"}, 4, "interface", "'eth&' is not a valid interface"),
    ({"interface": "%face", "action": "Reject"}, 4, "interface", "'%face' is not a valid"),
    ({"interface": "\"ace", "action": "Reject"}, 4, "interface", ""),
    ({"interface": "$cali", "action": "Reject"}, 6, "interface", ""),
    ({"interface": "eth#", "action": "Reject"}, 6, "interface", ""),
    ({"source": "xyz", "action": "Reject"}, 4, "source", "'xyz' is not valid: must be one of RemotePeers"),
    ({"source": "xyz", "action": "Reject"}, 6, "source", ""),
    ({"cidr": "x.x.x.x/26", "matchOperator": "In", "action": "Accept"}, 4, "cidr", ""),
    ({"cidr": "ffee::/64", "matchOperator": "In", "action": "Accept"}, 4, "cidr", ""),
    ({"cidr": "xxxx::/64", "matchOperator": "In", "action": "Accept"}, 6, "cidr", ""),
    ({"cidr": "10.0.10.0/32", "matchOperator": "In", "action": "Accept"}, 6, "cidr", ""),
    ({"cidr": "10.0.10.0/32", "matchOperator": "fancyOperator", "action": "Accept"}, 4, "matchOperator",
     "'fancyOperator' is not valid"),
    ({"cidr": "ffff::/128", "matchOperator": "fancyOperator", "action": "Accept"}, 6, "matchOperator", ""),
    ({"matchOperator": "NotEqual", "action": "Reject"}, 4, "cidr", "cidr and matchOperator must both"),
    ({"matchOperator": "NotEqual", "action": "Reject"}, 6, "cidr", "cidr and matchOperator must both"),
    ({"cidr": "10.0.10.0/32", "action": "Reject"}, 4, "matchOperator", "cidr and matchOperator must both"),
    ({"cidr": "ffff::/128", "action": "Reject"}, 6, "matchOperator", "cidr and matchOperator must both"),
    ({"cidr": "10.0.10.0/32", "matchOperator": "NotEqual", "action": "ActionX"}, 4, "action", ""),
    ({"cidr": "ffff::/128", "matchOperator": "NotEqual"}, 6, "action", "is required"),
    ({"cidr": "10.0.10.0/24", "matchOperator": "In", "action": "Reject", "prefixLength": {"max": 64}}, 4,
     "prefixLength.max", "64 is out of range"),
    ({"interface": "ethx.", "action": "Reject", "prefixLength": {"min": 16}}, 4, "prefixLength",
     "needs cidr"),
    ({"cidr": "ffff::/128", "matchOperator": "In", "action": "Reject", "prefixLength": {"min": -16}}, 6,
     "prefixLength.min", "-16 is out of range"),
    ({"interface": "*.calico", "action": "Reject", "prefixLength": {"min": 120}}, 6, "prefixLength",
     "needs cidr"),
    # The CRD's rules.
    ({"action": "Reject", "operations": [{"addCommunity": {"value": "1:2"}}]}, 4, "operations",
     "may only be used with action Accept"),
    ({"action": "Accept", "operations": [{}]}, 4, "operations[0]", "exactly one of"),
    ({"action": "Accept",
      "operations": [{"addCommunity": {"value": "1:2"}, "prependASPath": {"prefix": [1]}}]},
     4, "operations[0]", "exactly one of"),
    ({"action": "Accept", "communities": {"values": ["1:2", "3:4"]}}, 4, "communities.values",
     "has 2 entries; at most 1"),
    ({"action": "Accept", "communities": {"values": ["65536:1"]}}, 4, "communities.values[0]",
     "'65536:1' is not a valid community"),
    ({"action": "Accept", "peerType": "internal"}, 4, "peerType", "'internal' is not valid"),
    ({"action": "Accept", "operations": [{"prependASPath": {"prefix": []}}]}, 4,
     "operations[0].prependASPath.prefix", "must list at least one value"),
    # Stricter than Calico: BIRD would refuse the pattern `10.0.0.0/24{24,16}` and drop every session.
    ({"cidr": "10.0.0.0/24", "matchOperator": "In", "action": "Reject", "prefixLength": {"max": 16}}, 4,
     "prefixLength", "no route can match"),
    ({"cidr": "fd00::/64", "matchOperator": "In", "action": "Reject",
      "prefixLength": {"min": 100, "max": 90}}, 6, "prefixLength", "no route can match"),
]


@pytest.mark.parametrize(("rule", "family"), ACCEPTED)
def test_rules_calico_accepts(rule: dict[str, Any], family: int) -> None:
    for direction in ("import", "export"):
        assert problems(bgp_filter(**{f"{direction}V{family}": [rule]})) == []


@pytest.mark.parametrize(("rule", "family", "path", "start"), REFUSED)
def test_rules_calico_refuses(rule: dict[str, Any], family: int, path: str, start: str) -> None:
    found = problems(bgp_filter(**{f"importV{family}": [rule]}))
    where = f"): spec.importV{family}[0].{path}: {start}"
    assert any(where in p for p in found), found


def test_cidr_is_masked_and_the_rule_order_kept() -> None:
    res = parse_resource(bgp_filter(importV4=[
        {"action": "Reject", "cidr": "10.0.0.1/24", "matchOperator": "In"}, {"action": "Accept"}]))
    assert res.to_wire()["spec"]["importV4"] == [
        {"matchOperator": "In", "action": "Reject", "cidr": "10.0.0.0/24"}, {"action": "Accept"}]


def test_calico_documentation_sample_is_accepted() -> None:
    sample = bgp_filter(
        exportV4=[{"action": "Accept", "matchOperator": "In", "cidr": "77.0.0.0/16", "source": "RemotePeers"},
                  {"action": "Reject", "interface": "*.calico"}],
        importV4=[{"action": "Accept", "matchOperator": "In", "cidr": "55.0.0.0/16",
                   "prefixLength": {"min": 30}},
                  {"action": "Reject", "matchOperator": "NotIn", "cidr": "44.0.0.0/16"}],
        exportV6=[{"action": "Reject", "source": "RemotePeers"},
                  {"action": "Reject", "interface": "*.calico"}],
        importV6=[{"action": "Accept", "matchOperator": "Equal", "cidr": "5000::0/64"}, {"action": "Reject"}],
    )
    assert problems(sample) == []


def peer(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "p"}, "spec": spec}


@pytest.mark.parametrize(("spec", "path"), [
    ({"localWorkloadSelector": "has(labelone)"}, "spec.asNumber"),
    ({"localWorkloadSelector": "has(labelone)", "peerSelector": "has(labeltwo)", "asNumber": 61234},
     "spec.peerSelector"),
    ({"localWorkloadSelector": "has(labelone)", "peerIP": "192.168.1.1", "asNumber": 61234}, "spec.peerIP"),
    ({"reachableBy": "10.0.0.1"}, "spec.reachableBy"),
    ({"reachableBy": "fd00::1"}, "spec.reachableBy"),
    ({"peerIP": "192.168.1.1:500", "reachableBy": "not-an-ip"}, "spec.reachableBy"),
    ({"peerIP": "192.168.1.1", "reachableBy": "fd00::1"}, "spec.reachableBy"),
    ({"peerIP": "[9000::]:500", "reachableBy": "10.0.0.1"}, "spec.reachableBy"),
    ({"peerIP": "10.0.0.1", "asNumber": 65000, "ttlSecurity": 256}, "spec.ttlSecurity"),
    ({"peerIP": "10.0.0.1", "asNumber": 65000, "numAllowedLocalASNumbers": -1},
     "spec.numAllowedLocalASNumbers"),
    ({"peerIP": "10.0.0.1", "asNumber": 65000, "filters": ["Not_A_Name"]}, "spec.filters[0]"),
])
def test_peer_fields_calico_refuses(spec: dict[str, Any], path: str) -> None:
    assert any(f": {path}: " in p for p in problems(peer(**spec))), problems(peer(**spec))


@pytest.mark.parametrize("spec", [
    {"peerIP": "192.168.1.1:500", "reachableBy": "192.168.1.254"},
    {"peerIP": "[9000::]:500", "reachableBy": "9000::fe"},
    {"localWorkloadSelector": "color == 'red'", "asNumber": 65123, "filters": ["no-export", "accept-nested"]},
    {"peerIP": "10.0.0.1", "asNumber": 65000, "ttlSecurity": 1, "numAllowedLocalASNumbers": 3},
])
def test_peer_fields_calico_accepts(spec: dict[str, Any]) -> None:
    assert problems(peer(**spec)) == []


def node_status(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "CalicoNodeStatus", "metadata": {"name": "s"}, "spec": spec}


def test_calico_node_status_request() -> None:
    ok = parse_resource(node_status(node="my-kadm-node-0", classes=["Agent", "BGP", "Routes"],
                                    updatePeriodSeconds=10))
    assert ok.to_wire()["spec"]["classes"] == ["Agent", "BGP", "Routes"]
    assert problems(node_status(node="n", classes=["Agent"], updatePeriodSeconds=0)) == []
    assert any("spec.classes[0]: 'Bird' is not valid" in p for p in problems(node_status(classes=["Bird"])))
    assert any("spec.updatePeriodSeconds: 86401 is out of range" in p
               for p in problems(node_status(updatePeriodSeconds=86401)))
    assert any("spec.classes[1]" in p for p in problems(node_status(classes=["BGP", "BGP"])))
    with_status = node_status(node="n")
    with_status["status"] = {"lastUpdated": "2021-10-18T13:22:03Z", "agent": {"birdV4": {"state": "Ready"}}}
    assert parse_resource(with_status).status == with_status["status"]
