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
