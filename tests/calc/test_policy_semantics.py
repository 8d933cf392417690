"""Calico's evaluation order and every rule match field, table-driven (reference §1.8-§1.15).

Each case is a small world, one packet and the expected verdict. The oracle (resources evaluated
directly), the dataplane path (calc -> messages -> rendered nft table -> interpreter) and the
user-space evaluator (calc -> messages -> `tortie.policy.trace`) must all give it: the table pins
the semantics, the property test (test_policy_properties.py) then checks they agree everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tortie.policy.trace import Packet
from tortie.testing.policy_world import (
    ALLOW_ALL,
    dataplane_decision,
    gnp,
    network_set,
    np,
    oracle_decision,
    profile,
    tier,
    trace_decision,
    wep,
)

A = wep("a", "10.0.0.1/32", labels={"app": "a"}, profiles=["allow-all"])
B = wep("b", "10.0.0.2/32", labels={"app": "b"})
B_OPEN = wep("b", "10.0.0.2/32", labels={"app": "b"}, profiles=["allow-all"])
C_REMOTE = wep(
    "c",
    "10.0.1.3/32",
    node="h2",
    labels={"app": "c"},
    ports=[{"name": "http", "protocol": "TCP", "port": 8080}],
)
TCP80 = Packet("10.0.0.1", "10.0.0.2", 6, 40000, 80)
A6 = wep("a", ["10.0.0.1/32", "fd00::1/128"], labels={"app": "a"}, profiles=["allow-all"])
B6 = wep("b", ["10.0.0.2/32", "fd00::2/128"], labels={"app": "b"})
TCP80_V6 = Packet("fd00::1", "fd00::2", 6, 40000, 80)
TCP81 = Packet("10.0.0.1", "10.0.0.2", 6, 40000, 81)
ALLOW_FROM_A = {"action": "Allow", "source": {"selector": "app == 'a'"}}
DENY = {"action": "Deny"}
ALLOW = {"action": "Allow"}


@dataclass(frozen=True)
class Case:
    name: str
    objs: tuple[dict[str, Any], ...]
    pkt: Packet = TCP80
    src: str | None = "a"
    dst: str | None = "b"
    expected: str = "accept"


CASES = [
    Case("no policy and no profile: default deny", (A, B, ALLOW_ALL), expected="drop"),
    Case("profile allows", (A, B_OPEN, ALLOW_ALL)),
    Case(
        "allow by selector and port",
        (
            A,
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"selector": "app == 'a'"},
                        "destination": {"ports": [80]},
                    }
                ],
            ),
        ),
    ),
    Case(
        "wrong port: end of tier denies",
        (
            A,
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}],
            ),
        ),
        pkt=TCP81,
        expected="drop",
    ),
    Case(
        "port range",
        (
            A,
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["70:90"]}}],
            ),
        ),
    ),
    Case(
        "notPorts",
        (
            A,
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"notPorts": [80]}}],
            ),
        ),
        expected="drop",
    ),
    Case(
        "tier default deny beats the profile",
        (
            A,
            B_OPEN,
            ALLOW_ALL,
            gnp("p", selector="app == 'b'", ingress=[{"action": "Allow", "protocol": "UDP"}]),
        ),
        expected="drop",
    ),
    Case(
        "tier with no applicable policy is skipped",
        (A, B_OPEN, ALLOW_ALL, gnp("p", selector="app == 'zz'", ingress=[DENY])),
    ),
    Case(
        "lower tier order first",
        (
            A,
            B,
            ALLOW_ALL,
            tier("t1", 10),
            tier("t2", 20),
            gnp("t1.deny", tier="t1", selector="all()", ingress=[DENY]),
            gnp("t2.allow", tier="t2", selector="all()", ingress=[ALLOW]),
        ),
        expected="drop",
    ),
    Case(
        "tier order reversed",
        (
            A,
            B,
            ALLOW_ALL,
            tier("t1", 30),
            tier("t2", 20),
            gnp("t1.deny", tier="t1", selector="all()", ingress=[DENY]),
            gnp("t2.allow", tier="t2", selector="all()", ingress=[ALLOW]),
        ),
    ),
    Case(
        "Pass goes to the next tier",
        (
            A,
            B,
            ALLOW_ALL,
            tier("t1", 10),
            gnp("t1.pass", tier="t1", selector="all()", ingress=[{"action": "Pass"}]),
            gnp("allow", selector="all()", ingress=[ALLOW]),
        ),
    ),
    Case(
        "Pass skips the rest of its tier",
        (
            A,
            B,
            ALLOW_ALL,
            tier("t1", 10),
            gnp("t1.a", tier="t1", order=1, selector="all()", ingress=[{"action": "Pass"}]),
            gnp("t1.b", tier="t1", order=2, selector="all()", ingress=[DENY]),
            gnp("allow", selector="all()", ingress=[ALLOW]),
        ),
    ),
    Case(
        "Pass to profiles", (A, B_OPEN, ALLOW_ALL, gnp("p", selector="all()", ingress=[{"action": "Pass"}]))
    ),
    Case(
        "Pass to nothing: default deny",
        (A, B, ALLOW_ALL, gnp("p", selector="all()", ingress=[{"action": "Pass"}])),
        expected="drop",
    ),
    Case(
        "tier default action Pass",
        (
            A,
            B_OPEN,
            ALLOW_ALL,
            tier("t1", 10, "Pass"),
            gnp("t1.x", tier="t1", selector="all()", ingress=[{"action": "Allow", "protocol": "UDP"}]),
        ),
    ),
    Case(
        "policy order within a tier",
        (
            A,
            B,
            ALLOW_ALL,
            gnp("z", order=1, selector="all()", ingress=[DENY]),
            gnp("a", order=2, selector="all()", ingress=[ALLOW]),
        ),
        expected="drop",
    ),
    Case(
        "equal order: by name",
        (
            A,
            B,
            ALLOW_ALL,
            gnp("z", order=1, selector="all()", ingress=[DENY]),
            gnp("a", order=1, selector="all()", ingress=[ALLOW]),
        ),
    ),
    Case(
        "no order is last",
        (
            A,
            B,
            ALLOW_ALL,
            gnp("a", selector="all()", ingress=[DENY]),
            gnp("z", order=99, selector="all()", ingress=[ALLOW]),
        ),
    ),
    Case("Log continues", (A, B, ALLOW_ALL, gnp("p", selector="all()", ingress=[{"action": "Log"}, ALLOW]))),
    Case(
        "egress-only policy is not ingress",
        (A, B_OPEN, ALLOW_ALL, gnp("p", selector="app == 'b'", egress=[DENY])),
    ),
    Case(
        "explicit Ingress type with no rules denies",
        (A, B_OPEN, ALLOW_ALL, gnp("p", selector="app == 'b'", types=["Ingress"])),
        expected="drop",
    ),
    Case(
        "egress policy of the source",
        (
            A,
            B_OPEN,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'a'",
                egress=[{"action": "Deny", "destination": {"selector": "app == 'b'"}}, ALLOW],
            ),
        ),
        expected="drop",
    ),
    Case(
        "NetworkPolicy applies only in its namespace",
        (A, B_OPEN, ALLOW_ALL, np("p", "other", ingress=[DENY])),
    ),
    Case(
        "NetworkPolicy rule selectors stay in its namespace",
        (
            wep("a", "10.0.0.1/32", namespace="ns2", labels={"app": "a"}, profiles=["allow-all"]),
            wep("b", "10.0.0.2/32", namespace="ns1"),
            ALLOW_ALL,
            np("p", "ns1", ingress=[ALLOW_FROM_A]),
        ),
        expected="drop",
    ),
    Case(
        "namespaceSelector reaches another namespace",
        (
            wep("a", "10.0.0.1/32", namespace="ns2", labels={"app": "a"}, profiles=["allow-all"]),
            wep("b", "10.0.0.2/32", namespace="ns1"),
            ALLOW_ALL,
            profile("kns.ns2", labels_to_apply={"pcns.env": "dev"}),
            np(
                "p",
                "ns1",
                ingress=[
                    {
                        "action": "Allow",
                        "source": {"selector": "app == 'a'", "namespaceSelector": "env == 'dev'"},
                    }
                ],
            ),
        ),
    ),
    Case(
        "namespaceSelector by name",
        (
            wep("a", "10.0.0.1/32", namespace="ns2", profiles=["allow-all"]),
            wep("b", "10.0.0.2/32", namespace="ns1"),
            ALLOW_ALL,
            np(
                "p",
                "ns1",
                ingress=[
                    {"action": "Allow", "source": {"namespaceSelector": "projectcalico.org/name == 'ns2'"}}
                ],
            ),
        ),
    ),
    Case(
        "global() namespaceSelector: only global sets",
        (
            wep("b", "10.0.0.2/32", namespace="ns1"),
            ALLOW_ALL,
            network_set("ext", ["8.8.8.0/24"], labels={"kind": "ext"}),
            np(
                "p",
                "ns1",
                ingress=[
                    {
                        "action": "Allow",
                        "source": {"selector": "kind == 'ext'", "namespaceSelector": "global()"},
                    }
                ],
            ),
        ),
        pkt=Packet("8.8.8.8", "10.0.0.2", 6, 1, 80),
        src=None,
    ),
    Case(
        "GlobalNetworkSet membership",
        (
            B,
            ALLOW_ALL,
            network_set("ext", ["8.8.8.0/24"], labels={"kind": "ext"}),
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "source": {"selector": "kind == 'ext'"}}],
            ),
        ),
        pkt=Packet("8.8.8.8", "10.0.0.2", 6, 1, 80),
        src=None,
    ),
    Case(
        "namespaced NetworkSet is not matched from another namespace",
        (
            B,
            ALLOW_ALL,
            network_set("ext", ["8.8.8.0/24"], namespace="other", labels={"kind": "ext"}),
            np("p", "default", ingress=[{"action": "Allow", "source": {"selector": "kind == 'ext'"}}]),
        ),
        pkt=Packet("8.8.8.8", "10.0.0.2", 6, 1, 80),
        src=None,
        expected="drop",
    ),
    Case(
        "nets",
        (
            B,
            ALLOW_ALL,
            gnp("p", selector="all()", ingress=[{"action": "Allow", "source": {"nets": ["192.168.0.0/16"]}}]),
        ),
        pkt=Packet("192.168.3.4", "10.0.0.2", 6, 1, 80),
        src=None,
    ),
    Case(
        "notNets",
        (
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="all()",
                ingress=[{"action": "Allow", "source": {"notNets": ["192.168.0.0/16"]}}],
            ),
        ),
        pkt=Packet("192.168.3.4", "10.0.0.2", 6, 1, 80),
        src=None,
        expected="drop",
    ),
    Case(
        "notSelector",
        (
            A,
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "source": {"notSelector": "app == 'a'"}}],
            ),
        ),
        expected="drop",
    ),
    Case(
        "notSelector admits non-Calico sources",
        (
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "source": {"notSelector": "app == 'a'"}}],
            ),
        ),
        pkt=Packet("8.8.8.8", "10.0.0.2", 6, 1, 80),
        src=None,
    ),
    Case(
        "named port of the destination",
        (
            A,
            C_REMOTE,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'a'",
                egress=[
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "destination": {"selector": "app == 'c'", "ports": ["http"]},
                    }
                ],
            ),
        ),
        pkt=Packet("10.0.0.1", "10.0.1.3", 6, 1, 8080),
        dst="c",
    ),
    Case(
        "named port: other port",
        (
            A,
            C_REMOTE,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'a'",
                egress=[
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "destination": {"selector": "app == 'c'", "ports": ["http"]},
                    }
                ],
            ),
        ),
        pkt=Packet("10.0.0.1", "10.0.1.3", 6, 1, 80),
        dst="c",
        expected="drop",
    ),
    Case(
        "named port: protocol from the endpoint",
        (
            A,
            C_REMOTE,
            ALLOW_ALL,
            gnp("p", selector="app == 'a'", egress=[{"action": "Allow", "destination": {"ports": ["http"]}}]),
        ),
        pkt=Packet("10.0.0.1", "10.0.1.3", 17, 1, 8080),
        dst="c",
        expected="drop",
    ),
    Case(
        "ICMP type",
        (
            A,
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}}],
            ),
        ),
        pkt=Packet("10.0.0.1", "10.0.0.2", 1, icmp_type=8, icmp_code=0),
    ),
    Case(
        "ICMP type and code",
        (
            A,
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 1}}],
            ),
        ),
        pkt=Packet("10.0.0.1", "10.0.0.2", 1, icmp_type=8, icmp_code=0),
        expected="drop",
    ),
    Case(
        "notICMP",
        (
            A,
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 8, "code": 0}}],
            ),
        ),
        pkt=Packet("10.0.0.1", "10.0.0.2", 1, icmp_type=0, icmp_code=0),
    ),
    Case(
        "protocol by number",
        (A, B, ALLOW_ALL, gnp("p", selector="app == 'b'", ingress=[{"action": "Allow", "protocol": 17}])),
        pkt=Packet("10.0.0.1", "10.0.0.2", 17, 1, 53),
    ),
    Case(
        "notProtocol",
        (
            A,
            B,
            ALLOW_ALL,
            gnp("p", selector="app == 'b'", ingress=[{"action": "Allow", "notProtocol": "TCP"}]),
        ),
        expected="drop",
    ),
    Case(
        "ipVersion 6 does not match IPv4",
        (A, B, ALLOW_ALL, gnp("p", selector="app == 'b'", ingress=[{"action": "Allow", "ipVersion": 6}])),
        expected="drop",
    ),
    Case(
        "serviceAccounts by name",
        (
            wep("a", "10.0.0.1/32", service_account="sa1", profiles=["allow-all"]),
            B,
            ALLOW_ALL,
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "source": {"serviceAccounts": {"names": ["sa1"]}}}],
            ),
        ),
    ),
    Case(
        "serviceAccounts selector",
        (
            wep("a", "10.0.0.1/32", service_account="sa1", profiles=["allow-all"]),
            B,
            ALLOW_ALL,
            profile("ksa.default.sa1", labels_to_apply={"pcsa.team": "x"}),
            gnp(
                "p",
                selector="app == 'b'",
                ingress=[{"action": "Allow", "source": {"serviceAccounts": {"selector": "team == 'y'"}}}],
            ),
        ),
        expected="drop",
    ),
    Case(
        "labelsToApply from a profile",
        (
            wep("a", "10.0.0.1/32", profiles=["allow-all", "tagger"]),
            B,
            ALLOW_ALL,
            profile("tagger", labels_to_apply={"app": "a"}),
            gnp("p", selector="app == 'b'", ingress=[ALLOW_FROM_A]),
        ),
    ),
    Case(
        "profiles in order",
        (
            A,
            wep("b", "10.0.0.2/32", profiles=["deny-all", "allow-all"]),
            ALLOW_ALL,
            profile("deny-all", ingress=[DENY], egress=[DENY]),
        ),
        expected="drop",
    ),
    Case(
        "a missing profile allows nothing",
        (A, wep("b", "10.0.0.2/32", profiles=["gone", "allow-all"]), ALLOW_ALL),
    ),
    Case(
        "anti-spoofing",
        (A, B_OPEN, ALLOW_ALL),
        pkt=Packet("10.0.0.99", "10.0.0.2", 6, 1, 80),
        expected="drop",
    ),
    Case(
        "allowSpoofedSourcePrefixes",
        (wep("a", "10.0.0.1/32", profiles=["allow-all"], allow_spoofed=["10.9.0.0/16"]), B_OPEN, ALLOW_ALL),
        pkt=Packet("10.9.1.1", "10.0.0.2", 6, 1, 80),
    ),
    Case(
        "IPv6 endpoint traffic",
        (
            wep("a", ["10.0.0.1/32", "fd00::1/128"], profiles=["allow-all"]),
            wep("b", ["10.0.0.2/32", "fd00::2/128"], labels={"app": "b"}),
            ALLOW_ALL,
            gnp("p", selector="app == 'b'", ingress=[{"action": "Allow", "source": {"nets": ["fd00::/64"]}}]),
        ),
        pkt=Packet("fd00::1", "fd00::2", 6, 1, 80),
    ),
    Case(
        "ipVersion 6 matches IPv6",
        (A6, B6, ALLOW_ALL, gnp("p", selector="app == 'b'", ingress=[{"action": "Allow", "ipVersion": 6}])),
        pkt=TCP80_V6,
    ),
    Case(
        "ipVersion 4 does not match IPv6",
        (A6, B6, ALLOW_ALL, gnp("p", selector="app == 'b'", ingress=[{"action": "Allow", "ipVersion": 4}])),
        pkt=TCP80_V6,
        expected="drop",
    ),
    Case(
        "ICMPv6 type with ipVersion 6",
        (A6, B6, ALLOW_ALL, gnp("p", selector="app == 'b'", ingress=[
            {"action": "Allow", "ipVersion": 6, "protocol": "ICMPv6", "icmp": {"type": 128}}])),
        pkt=Packet("fd00::1", "fd00::2", 58, icmp_type=128, icmp_code=0),
    ),
    Case(
        "ICMPv6 type: another type is not matched",
        (A6, B6, ALLOW_ALL, gnp("p", selector="app == 'b'", ingress=[
            {"action": "Allow", "ipVersion": 6, "protocol": "ICMPv6", "icmp": {"type": 128}}])),
        pkt=Packet("fd00::1", "fd00::2", 58, icmp_type=129, icmp_code=0),
        expected="drop",
    ),
    Case(
        "notICMP with ICMPv6: another type matches",
        (A6, B6, ALLOW_ALL, gnp("p", selector="app == 'b'", ingress=[
            {"action": "Allow", "protocol": "ICMPv6", "notICMP": {"type": 128, "code": 0}}])),
        pkt=Packet("fd00::1", "fd00::2", 58, icmp_type=129, icmp_code=0),
    ),
    Case(
        "notICMP with ICMPv6: the negated type and code do not",
        (A6, B6, ALLOW_ALL, gnp("p", selector="app == 'b'", ingress=[
            {"action": "Allow", "protocol": "ICMPv6", "notICMP": {"type": 128, "code": 0}}])),
        pkt=Packet("fd00::1", "fd00::2", 58, icmp_type=128, icmp_code=0),
        expected="drop",
    ),
    Case(
        "protocol ICMP does not match ICMPv6",
        (A6, B6, ALLOW_ALL, gnp("p", selector="app == 'b'", ingress=[
            {"action": "Allow", "protocol": "ICMP"}])),
        pkt=Packet("fd00::1", "fd00::2", 58, icmp_type=128, icmp_code=0),
        expected="drop",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_evaluation_order_and_matches(case: Case) -> None:
    objs = list(case.objs)
    assert oracle_decision(objs, "h1", case.pkt, case.src, case.dst) == case.expected, "oracle"
    assert dataplane_decision(objs, "h1", case.pkt, case.src, case.dst) == case.expected, "rendered dataplane"
    assert trace_decision(objs, "h1", case.pkt, case.src, case.dst) == case.expected, "user-space evaluator"


def test_default_allow_profile_is_synthesised_unless_defined() -> None:
    objs = [A, ALLOW_ALL, wep("b", "10.0.0.2/32", profiles=["projectcalico-default-allow"])]
    assert oracle_decision(objs, "h1", TCP80, "a", "b") == "accept"
    assert dataplane_decision(objs, "h1", TCP80, "a", "b") == "accept"
    assert trace_decision(objs, "h1", TCP80, "a", "b") == "accept"
    objs.append(profile("projectcalico-default-allow", ingress=[DENY]))
    assert oracle_decision(objs, "h1", TCP80, "a", "b") == "drop"
    assert dataplane_decision(objs, "h1", TCP80, "a", "b") == "drop"
    assert trace_decision(objs, "h1", TCP80, "a", "b") == "drop"
