"""Host endpoints, failsafes, workload-to-host, forward/preDNAT/doNotTrack stages (reference §3.12,
§1.15 items 9-10), on the rendered table (interpreter) and, where they have a say, the oracle and
the user-space evaluator."""

from __future__ import annotations

from typing import Any

import pytest

from tortie.dataplane.messages.policy import HostEndpointId
from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.interp import NftPacket, forward, run_hook
from tortie.dataplane.nft.ir import Ruleset
from tortie.dataplane.nft.ruleset import render_ruleset
from tortie.policy import trace
from tortie.policy.trace import Packet, Stage
from tortie.testing.policy_oracle import PolicyWorld, evaluate_endpoint
from tortie.testing.policy_world import ALLOW_ALL, gnp, hep, policy_state, resources, wep

HOST_IP = "172.31.0.11"
PEER = "172.31.0.12"
HEP = hep("h1-eth0", iface="eth0", ips=[HOST_IP], labels={"role": "host"})
WL = wep("w", "10.0.0.1/32", profiles=["allow-all"], iface="tortw")


def table(objs: list[dict[str, Any]], **config: Any) -> Ruleset:
    return render_ruleset(policy_state(objs, "h1", RenderConfig(**config)))


def to_host(
    rs: Ruleset,
    protocol: int,
    port: int | None = None,
    iif: str = "eth0",
    src: str = PEER,
    icmp: int | None = None,
) -> str:
    pkt = NftPacket(
        src,
        HOST_IP,
        protocol,
        40000 if port else None,
        port,
        icmp,
        0 if icmp is not None else None,
        iifname=iif,
    )
    return run_hook(rs, "input", pkt).verdict


def test_no_host_endpoint_means_host_traffic_is_not_policed() -> None:
    rs = table([WL, ALLOW_ALL])
    assert to_host(rs, 6, 80) == "accept"


def test_host_endpoint_is_default_deny_except_failsafes() -> None:
    rs = table([HEP])
    assert to_host(rs, 6, 80) == "drop"
    assert to_host(rs, 1, icmp=8) == "drop"
    assert to_host(rs, 6, 22) == "accept"  # SSH failsafe
    assert to_host(rs, 17, 68) == "accept"  # DHCP failsafe
    assert to_host(rs, 6, 80, iif="lo", src="127.0.0.1") == "accept"  # loopback is never a host endpoint
    out = NftPacket(HOST_IP, PEER, 17, 40000, 53, oifname="eth0")
    assert run_hook(rs, "output", out).verdict == "accept"  # DNS failsafe out
    assert run_hook(rs, "output", NftPacket(HOST_IP, PEER, 6, 40000, 443, oifname="eth0")).verdict == "drop"
    world = PolicyWorld(resources([HEP]))
    assert (
        evaluate_endpoint(
            world, world.of("HostEndpoint")[0], "ingress", Packet(PEER, HOST_IP, 6, 40000, 80)
        ).verdict
        == "deny"
    )


def test_custom_failsafes() -> None:
    from tortie.dataplane.nft.config import FailsafePort

    rs = table([HEP], failsafe_inbound=(FailsafePort(6, 2222, "172.31.0.0/24"),))
    assert to_host(rs, 6, 22) == "drop"
    assert to_host(rs, 6, 2222) == "accept"
    assert to_host(rs, 6, 2222, src="192.0.2.1") == "drop"


def test_policy_on_a_host_endpoint() -> None:
    rs = table(
        [HEP, gnp("ping", selector="role == 'host'", ingress=[{"action": "Allow", "protocol": "ICMP"}])]
    )
    assert to_host(rs, 1, icmp=8) == "accept"
    assert to_host(rs, 6, 80) == "drop"


def test_all_interfaces_host_endpoint() -> None:
    rs = table([hep("all", iface="*")])
    assert to_host(rs, 6, 80, iif="eth1") == "drop"
    assert to_host(rs, 6, 22, iif="eth1") == "accept"
    assert to_host(rs, 6, 80, iif="lo", src="127.0.0.1") == "accept"


def test_forwarded_traffic_is_policed_only_by_apply_on_forward_policies() -> None:
    through = NftPacket("192.0.2.1", "198.51.100.1", 6, 1, 80, iifname="eth0", oifname="eth1")
    assert forward(table([HEP]), through).verdict == "accept"
    fwd = gnp(
        "fwd",
        selector="role == 'host'",
        applyOnForward=True,
        ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [443]}}],
    )
    assert forward(table([HEP, fwd]), through).verdict == "drop"


def test_pre_dnat_and_do_not_track() -> None:
    pre = gnp(
        "pre",
        selector="role == 'host'",
        applyOnForward=True,
        preDNAT=True,
        ingress=[{"action": "Deny", "source": {"nets": ["192.0.2.0/24"]}}],
    )
    raw = gnp(
        "raw",
        selector="role == 'host'",
        applyOnForward=True,
        doNotTrack=True,
        ingress=[{"action": "Allow", "protocol": "UDP"}],
    )
    rs = table([HEP, pre, raw])
    bad = NftPacket("192.0.2.1", HOST_IP, 6, 1, 22, iifname="eth0")
    assert run_hook(rs, "prerouting", bad).verdict == "drop"  # before DNAT and before failsafes
    ok = NftPacket(PEER, HOST_IP, 6, 1, 80, iifname="eth0")
    assert run_hook(rs, "prerouting", ok).verdict == "accept"  # no preDNAT verdict: normal policy decides
    assert to_host(rs, 6, 80) == "drop"
    udp = run_hook(rs, "prerouting", NftPacket(PEER, HOST_IP, 17, 1, 5000, iifname="eth0"))
    assert udp.verdict == "accept" and udp.notrack


@pytest.mark.parametrize(("action", "verdict"), [("Drop", "drop"), ("Accept", "accept")])
def test_workload_to_host(action: str, verdict: str) -> None:
    rs = table([WL, ALLOW_ALL], endpoint_to_host_action=action)
    assert to_host(rs, 6, 80, iif="tortw", src="10.0.0.1") == verdict
    # egress policy of the workload comes first
    denied = table(
        [WL, ALLOW_ALL, gnp("no", selector="all()", egress=[{"action": "Deny"}])],
        endpoint_to_host_action=action,
    )
    assert to_host(denied, 6, 80, iif="tortw", src="10.0.0.1") == "drop"


def test_workload_to_host_allowances_come_before_egress_policy_and_anti_spoofing() -> None:
    deny_all = gnp("no", selector="all()", egress=[{"action": "Deny"}])
    rs = table([WL, ALLOW_ALL, deny_all])
    # DHCP DISCOVER: from 0.0.0.0:68 to the broadcast address, port 67 (the source is not the endpoint's)
    discover = NftPacket("0.0.0.0", "255.255.255.255", 17, 68, 67, iifname="tortw")
    assert run_hook(rs, "input", discover).verdict == "accept"
    solicit = NftPacket("fe80::1", "ff02::1:2", 17, 546, 547, iifname="tortw")
    assert run_hook(rs, "input", solicit).verdict == "accept"
    for protocol in (17, 6):
        assert to_host(rs, protocol, 53, iif="tortw", src="10.0.0.1") == "accept"  # DNS
    assert to_host(rs, 17, 123, iif="tortw", src="10.0.0.1") == "drop"  # anything else: egress policy
    assert to_host(rs, 6, 80, iif="tortw", src="10.0.0.1") == "drop"
    # forwarded traffic is not concerned: the egress policy still denies DNS to other hosts
    fwd = NftPacket("10.0.0.1", "192.0.2.53", 17, 5000, 53, iifname="tortw", oifname="eth0")
    assert forward(rs, fwd).verdict == "drop"


def test_workload_to_host_allowances_are_configurable() -> None:
    from tortie.dataplane.nft.config import render_config

    deny_all = gnp("no", selector="all()", egress=[{"action": "Deny"}])
    off = render_config({"workload_to_host_allow": []}, RenderConfig())
    rs = render_ruleset(policy_state([WL, ALLOW_ALL, deny_all], "h1", off))
    discover = NftPacket("0.0.0.0", "255.255.255.255", 17, 68, 67, iifname="tortw")
    assert run_hook(rs, "input", discover).verdict == "drop"
    only_ntp = render_config({"workload_to_host_allow": ["udp:10.0.0.0/24:123"]}, RenderConfig())
    rs = render_ruleset(policy_state([WL, ALLOW_ALL, deny_all], "h1", only_ntp))
    assert to_host(rs, 17, 123, iif="tortw", src="10.0.0.1") == "accept"
    assert to_host(rs, 17, 53, iif="tortw", src="10.0.0.1") == "drop"


def test_host_endpoint_known_by_expected_ips_is_enforced_on_the_interface_carrying_one() -> None:
    by_ip = hep("h1-by-ip", ips=["198.51.100.9", HOST_IP], labels={"role": "host"})
    addresses = {
        "eth0": frozenset({HOST_IP, "fe80::1"}),
        "eth1": frozenset({"192.0.2.1"}),
        "lo": frozenset({"127.0.0.1", HOST_IP}),
        "tortw": frozenset({HOST_IP}),  # a workload interface is never a host endpoint
    }
    state = policy_state([by_ip, WL, ALLOW_ALL], "h1")
    assert render_ruleset(state).map_elements["hep-in"] == {}  # no addresses known: nowhere
    state.interface_addresses = addresses
    rs = render_ruleset(state)
    assert set(rs.map_elements["hep-in"]) == {"eth0"}
    assert to_host(rs, 6, 80) == "drop"
    assert to_host(rs, 6, 22) == "accept"  # failsafe
    assert to_host(rs, 6, 80, iif="eth1") == "accept"  # not that endpoint's interface
    assert to_host(rs, 6, 80, iif="lo", src="127.0.0.1") == "accept"
    # an endpoint naming the interface wins it; the one by expectedIPs then has no interface
    named = hep("h1-eth0", iface="eth0", labels={"role": "other"})
    state = policy_state(
        [by_ip, named, gnp("ping", selector="role == 'other'", ingress=[{"action": "Allow"}])], "h1"
    )
    state.interface_addresses = addresses
    rs = render_ruleset(state)
    assert set(rs.map_elements["hep-in"]) == {"eth0"}
    assert to_host(rs, 6, 80) == "accept"  # the named endpoint's policy, not the default deny


STAGED = [
    HEP,
    gnp(
        "ssh",
        selector="role == 'host'",
        ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [22]}}],
    ),
    gnp(
        "fwd",
        selector="role == 'host'",
        applyOnForward=True,
        ingress=[{"action": "Deny", "protocol": "UDP"}],
    ),
    gnp(
        "pre",
        selector="role == 'host'",
        applyOnForward=True,
        preDNAT=True,
        ingress=[{"action": "Deny", "source": {"nets": ["192.0.2.0/24"]}}, {"action": "Pass"}],
    ),
    gnp(
        "raw",
        selector="role == 'host'",
        applyOnForward=True,
        doNotTrack=True,
        egress=[{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}],
    ),
]


@pytest.mark.parametrize("stage", ["normal", "forward", "pre_dnat", "untracked"])
@pytest.mark.parametrize("direction", ["ingress", "egress"])
@pytest.mark.parametrize(
    "pkt",
    [
        Packet(PEER, HOST_IP, 6, 40000, 22),
        Packet(PEER, HOST_IP, 6, 40000, 80),
        Packet("192.0.2.1", HOST_IP, 6, 40000, 22),
        Packet(PEER, HOST_IP, 17, 40000, 53),
        Packet(HOST_IP, PEER, 17, 40000, 53),
        Packet(PEER, HOST_IP, 1, icmp_type=8, icmp_code=0),
    ],
)
def test_host_endpoint_stages_evaluate_like_the_oracle(stage: Stage, direction: str, pkt: Packet) -> None:
    world = PolicyWorld(resources(STAGED))
    expected = evaluate_endpoint(world, world.of("HostEndpoint")[0], direction, pkt, stage)  # type: ignore[arg-type]
    state = policy_state(STAGED, "h1")
    ep = state.host_endpoints[HostEndpointId("h1-eth0")]
    actual = trace.evaluate_host_endpoint(state, ep, direction, pkt, stage)  # type: ignore[arg-type]
    assert (actual.verdict, actual.tier, actual.policy, actual.rule) == (
        expected.verdict,
        expected.tier,
        expected.policy,
        expected.rule,
    )
