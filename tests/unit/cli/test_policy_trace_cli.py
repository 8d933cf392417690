"""`tortie policy trace` on a sqlite datastore: verdict, the deciding rules, exit codes, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tortie.cli.main import main
from tortie.datastore.url import open_datastore
from tortie.testing.policy_world import ALLOW_ALL, gnp, key_of, tier, wep


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite://{tmp_path / 'ds.db'}"
    ds = open_datastore(url)
    for obj in (
        wep("a", "10.0.0.1/32", labels={"app": "a"}, profiles=["allow-all"]),
        wep("b", "10.0.0.2/32", node="h2", labels={"app": "b"}),
        ALLOW_ALL,
        tier("sec", 10),
        gnp(
            "sec.gate",
            tier="sec",
            selector="app == 'b'",
            ingress=[{"action": "Pass", "source": {"selector": "app == 'a'"}}, {"action": "Deny"}],
        ),
        gnp(
            "b-in",
            selector="app == 'b'",
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}],
        ),
    ):
        ds.put(key_of(obj), obj)
    ds.close()
    return url


def test_allowed_packet_names_the_rules(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--datastore", url, "policy", "trace", "--from", "default/a", "--to", "b", "--port", "80"]) == 0
    )
    out = capsys.readouterr().out
    assert "host h1 (egress of default/a): ACCEPT" in out
    assert "rule GlobalNetworkPolicy(sec.gate) ingress[0]: Pass (next tier)" in out
    assert "rule GlobalNetworkPolicy(b-in) ingress[0]: Allow" in out
    assert "verdict: ACCEPT" in out


def test_denied_packet_exits_3_with_the_default_action(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--datastore", url, "policy", "trace", "--from", "a", "--to", "10.0.0.2", "--port", "81"]) == 3
    )
    out = capsys.readouterr().out
    assert "end of tier default: default action Deny" in out and "verdict: DROP" in out


def test_json_output_and_external_source(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "--datastore",
                url,
                "policy",
                "trace",
                "--from",
                "192.0.2.9",
                "--to",
                "b",
                "--protocol",
                "icmp",
                "-o",
                "json",
            ]
        )
        == 3
    )
    result = json.loads(capsys.readouterr().out)
    assert result["dataplane"] == "drop" and result["agree"]
    assert [h["host"] for h in result["hops"]] == ["h2"]


def test_unknown_endpoint_is_a_user_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--datastore", url, "policy", "trace", "--from", "nope", "--to", "b"]) == 1
    assert "no WorkloadEndpoint 'nope'" in capsys.readouterr().err


@pytest.fixture
def dual_url(tmp_path: Path) -> str:
    """Dual-stack endpoints c (h1) and d (h2); d allows ICMPv6 echo from c and TCP 80 over IPv4 only."""
    url = f"sqlite://{tmp_path / 'dual.db'}"
    ds = open_datastore(url)
    c = wep("c", "10.0.0.3/32", labels={"app": "c"}, profiles=["allow-all"])
    c["spec"]["ipNetworks"].append("fd00::3/128")
    d = wep("d", "10.0.0.4/32", node="h2", labels={"app": "d"})
    d["spec"]["ipNetworks"].append("fd00::4/128")
    only6 = wep("e", "fd00::5/128", labels={"app": "e"}, profiles=["allow-all"])
    v4_only = wep("f", "10.0.0.6/32", node="h2", labels={"app": "f"})
    policy = gnp(
        "d-in",
        selector="app == 'd'",
        ingress=[
            {
                "action": "Allow",
                "protocol": "ICMPv6",
                "icmp": {"type": 128},
                "source": {"selector": "app == 'c'"},
            },
            {"action": "Allow", "protocol": "TCP", "ipVersion": 4, "destination": {"ports": [80]}},
        ],
    )
    for obj in (c, d, only6, v4_only, ALLOW_ALL, policy):
        ds.put(key_of(obj), obj)
    ds.close()
    return url


def test_dual_stack_ends_are_traced_in_the_family_asked_for(
    dual_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def trace(*argv: str) -> tuple[int, dict[str, object]]:
        rc = main(["--datastore", dual_url, "policy", "trace", *argv, "-o", "json"])
        return rc, json.loads(capsys.readouterr().out or "{}")

    rc, out = trace("--from", "c", "--to", "d", "--protocol", "icmp", "--ip-family", "6")
    assert rc == 0 and out["packet"] == "icmpv6 type 128 code 0 fd00::3 -> fd00::4" and out["agree"]
    rc, out = trace("--from", "c", "--to", "d", "--protocol", "icmp")  # IPv4 first: echo type 8 denied
    assert rc == 3 and out["packet"] == "icmp type 8 code 0 10.0.0.3 -> 10.0.0.4"
    assert trace("--from", "c", "--to", "d")[0] == 0  # tcp/80 over IPv4
    rc, out = trace("--from", "c", "--to", "fd00::4")  # an address decides the family: not over IPv6
    assert rc == 3 and str(out["packet"]).startswith("tcp fd00::3:40000")
    rc, out = trace("--from", "e", "--to", "d", "--protocol", "icmp")  # e has IPv6 only
    assert rc == 3 and "fd00::5 -> fd00::4" in str(out["packet"])
    assert main(["--datastore", dual_url, "policy", "trace", "--from", "e", "--to", "f"]) == 1
    assert "no IP family in common" in capsys.readouterr().err
    argv = ["--from", "c", "--to", "f", "--ip-family", "6"]
    assert main(["--datastore", dual_url, "policy", "trace", *argv]) == 1
    assert "has no IPv6 address" in capsys.readouterr().err
    argv = ["--from", "c", "--to", "d", "--protocol", "icmpv6", "--ip-family", "4"]
    assert main(["--datastore", dual_url, "policy", "trace", *argv]) == 1
    assert "is not the ICMP of IPv4" in capsys.readouterr().err
def test_vxlan_packets_from_a_workload_are_dropped(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--datastore", url, "policy", "trace", "--from", "a", "--to", "10.0.0.2", "--protocol", "udp"]
    assert main([*args, "--port", "4789"]) == 3
    out = capsys.readouterr().out
    assert "VXLAN packets from workloads" in out and "verdict: DROP" in out
