"""The agent's configuration table: types, layer precedence, problems, generated reference doc."""

from __future__ import annotations

from pathlib import Path

import pytest

from tortie.agent import config as cfg
from tortie.agent.config_doc import render_reference
from tortie.agent.config_types import parse_bool, parse_duration

REPO = Path(__file__).resolve().parents[3]


def test_committed_reference_doc_matches_the_table() -> None:
    committed = (REPO / "docs" / "reference" / "agent-config.md").read_text(encoding="utf-8")
    hint = "regenerate: python -m tortie.agent.config_doc > docs/reference/agent-config.md"
    assert committed == render_reference(), hint


def test_every_param_is_documented_once() -> None:
    doc = render_reference()
    for param in cfg.PARAMS:
        assert doc.count(f"| `{param.name}` |") == 1
        assert param.help


@pytest.mark.parametrize(("raw", "seconds"), [
    ("90", 90.0), (90, 90.0), ("90s", 90.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), (" 2.5 ", 2.5),
])
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "abc", "10x", "1m 30s", "-5", True])
def test_bad_durations(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(raw)


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("Y", True), ("1", True), ("t", True),
                                            ("false", False), ("No", False), ("0", False), (False, False)])
def test_booleans(raw: object, value: bool) -> None:
    assert parse_bool(raw) is value


def test_defaults_without_any_source() -> None:
    resolved = cfg.resolve([])
    assert resolved["route_refresh_interval"] == 90.0
    assert resolved["health_port"] == 9099
    assert resolved["prometheus_metrics_port"] == 9091
    assert resolved["ip_forwarding"] == "Enabled"
    assert isinstance(resolved["interface_prefix"], tuple) and resolved["interface_prefix"]
    assert resolved["hostname"]  # the OS host name
    assert resolved.problems == ()
    assert set(resolved.origin.values()) == {"default"}


def test_precedence_default_felix_global_node_file_env_cli() -> None:
    global_spec = {"routeRefreshInterval": "10s", "healthPort": 1001, "interfacePrefix": "cali",
                   "reportingInterval": "5s", "ipv6Support": False}
    node_spec = {"routeRefreshInterval": "20s", "healthPort": 1002, "interfacePrefix": "tap"}
    file_layer = cfg.file_layer_from_text("[agent]\nhealthPort = 1003\nhealth_host = 127.0.0.2\n"
                                          "routeRefreshInterval=30\n", "file test.cfg")
    env = cfg.env_layer({"TORTIE_HEALTH_PORT": "1004", "TORTIE_HOSTNAME": "h-env", "PATH": "/bin"})
    cli = cfg.cli_layer({"hostname": "h-cli", "datastore": None})
    local = cfg.LocalConfig(file_layer, env, cli)
    resolved = local.resolve(global_spec, node_spec, hostname="h-cli")
    assert resolved.problems == ()
    assert resolved["ipv6_support"] is False  # only in the global FelixConfiguration
    assert resolved["interface_prefix"] == ("tap",)  # node over global
    assert resolved["route_refresh_interval"] == 30.0  # file over node
    assert resolved["health_port"] == 1004  # env over file
    assert resolved["hostname"] == "h-cli"  # command line over env
    assert resolved["reporting_interval"] == 5.0
    assert resolved.origin["health_port"] == "environment"
    assert resolved.origin["interface_prefix"] == "FelixConfiguration node.h-cli"


def test_invalid_value_falls_back_to_the_next_layer_and_is_reported() -> None:
    resolved = cfg.resolve([
        cfg.felix_layer("default", {"healthPort": 2000}),
        cfg.felix_layer("node.h", {"healthPort": "not-a-port", "ipForwarding": "Sideways"}),
        cfg.env_layer({"TORTIE_ROUTE_REFRESH_INTERVAL": "-3"}),
    ])
    assert resolved["health_port"] == 2000
    assert resolved["ip_forwarding"] == "Enabled"
    assert resolved["route_refresh_interval"] == 90.0
    names = sorted(p.name for p in resolved.problems)
    assert names == ["health_port", "ip_forwarding", "route_refresh_interval"]


def test_unknown_names_and_forbidden_sources_are_reported() -> None:
    resolved = cfg.resolve([
        cfg.felix_layer("default", {"bpfEnabled": True, "datastore": "etcd://x"}),
        cfg.file_layer_from_text("[agent]\nno_such_thing = 1\n[other]\nx=1\n", "file f"),
    ])
    messages = sorted(str(p) for p in resolved.problems)
    assert any("bpfEnabled" in s and "unknown" in s for s in messages)
    assert any("datastore" in s and "cannot be set from datastore" in s for s in messages)
    assert any("no_such_thing" in s for s in messages)
    assert any("[other]" in s for s in messages)
    assert resolved["datastore"] == ""


def test_lists_and_interface_prefix_validation() -> None:
    ok = cfg.resolve([cfg.env_layer({"TORTIE_INTERFACE_PREFIX": "cali, tap ,"})])
    assert ok["interface_prefix"] == ("cali", "tap")
    bad = cfg.resolve([cfg.env_layer({"TORTIE_INTERFACE_PREFIX": "a b"})])
    assert bad["interface_prefix"] == cfg.PARAMS_BY_NAME["interface_prefix"].default
    assert [p.name for p in bad.problems] == ["interface_prefix"]


def test_load_local_reads_the_named_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.cfg"
    path.write_text("[agent]\nroute_refresh_interval = 1m\n", encoding="utf-8")
    local = cfg.load_local({"config_file": str(path)}, environ={})
    assert local.resolve()["route_refresh_interval"] == 60.0
    local_env = cfg.load_local({}, environ={"TORTIE_CONFIG_FILE": str(path)})
    assert local_env.resolve()["route_refresh_interval"] == 60.0


def test_missing_file_is_a_problem_only_when_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.cfg")
    assert cfg.load_local({"config_file": missing}, environ={}).resolve().problems
    assert cfg.read_file_layer(missing, required=False).problems == ()


def test_problem_reporter_logs_each_problem_once(caplog: pytest.LogCaptureFixture) -> None:
    reporter = cfg.ProblemReporter()
    problems = cfg.resolve([cfg.felix_layer("default", {"bogus": 1})]).problems
    with caplog.at_level("WARNING"):
        reporter.report(problems)
        reporter.report(problems)
    assert len([r for r in caplog.records if "bogus" in r.getMessage()]) == 1
