"""The web view's server on loopback: API answers, filter errors, the token and Host guards."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tortie.common.errors import UserError
from tortie.datastore.memory import MemoryDatastore
from tortie.flows.records import Counts, FlowRecord, Peer
from tortie.flows.store import FlowStore
from tortie.flows.ui_sources import UiSources
from tortie.flows.web import WebServer, check_listen, make_app, parse_listen
from tortie.testing.k8s_world import admin_policy, network_policy
from tortie.testing.policy_world import key_of, np

TOKEN = "s3cret-token-0123456789"


def record(action: str, port: int) -> FlowRecord:
    rule = f"default|NetworkPolicy(prod/db)|ingress[0]|{action}"
    return FlowRecord(0, 9e9, "h1", "dst", Peer("workload", "web", "prod", ip="10.0.0.1"),
                      Peer("workload", "db", "prod", ip="10.0.0.2"), "tcp", port, action, (rule,), action,
                      (rule,), Counts(1, 1), Counts(60, 60), 1, 0, 1)


@pytest.fixture
def sources(tmp_path: Path) -> UiSources:
    FlowStore(tmp_path / "h1").write([record("allow", 80), record("deny", 5432)])
    ds = MemoryDatastore()
    obj = np("db", "prod", selector="app == 'db'", ingress=[{"action": "Allow"}])
    ds.put(key_of(obj), obj)
    return UiSources(lambda: {"h1": tmp_path / "h1"}, lambda: _Unclosed(ds), lambda host: None)


class _Unclosed:
    """The shared memory datastore, which a request's close() must not end."""

    def __init__(self, ds: MemoryDatastore) -> None:
        self.ds = ds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ds, name)

    def close(self) -> None:
        return None


@pytest.fixture
def server(sources: UiSources) -> Iterator[WebServer]:
    srv = WebServer(make_app(sources), "127.0.0.1", 0).start()
    yield srv
    srv.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_api_answers_and_filters(server: WebServer) -> None:
    status, body = get(server.url + "api/flows?action=deny")
    assert status == 200 and [f["port"] for f in body["flows"]] == [5432]
    flow = body["flows"][0]
    assert flow["source"]["name"] == "web"
    assert flow["policies"] == ["default|NetworkPolicy(prod/db)|ingress[0]|deny"]
    status, body = get(server.url + "api/policies")
    assert status == 200 and body["policies"][0]["hits"] == {"allow": 1, "deny": 1}
    assert get(server.url + "api/flows?action=drop") == (400, {"error": "--action 'drop': use allow or deny"})
    status, body = get(server.url + "api/flows?colour=red")
    assert status == 400 and "unknown filter 'colour'" in body["error"]
    with urllib.request.urlopen(server.url, timeout=10) as page:
        assert b"<table id=\"flows\">" in page.read()


def test_loopback_listener_refuses_foreign_host_headers(server: WebServer) -> None:
    status, body = get(server.url + "api/flows", {"Host": "evil.example:80"})
    assert status == 403 and "loopback" in body["error"]
    assert get(server.url + "api/flows", {"Host": f"localhost:{server.port}"})[0] == 200


def test_token_guard(sources: UiSources) -> None:
    srv = WebServer(make_app(sources, token=TOKEN, loopback=False), "127.0.0.1", 0).start()
    try:
        assert get(srv.url + "api/flows")[0] == 401
        assert get(srv.url + "api/flows", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(srv.url + "api/flows", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    finally:
        srv.stop()


def test_listen_rules() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0) and parse_listen("9000") == ("127.0.0.1", 9000)
    check_listen("::1", False, None)
    with pytest.raises(UserError, match="--allow-remote"):
        check_listen("0.0.0.0", False, None)
    with pytest.raises(UserError, match="token of at least 16"):
        check_listen("0.0.0.0", True, "short")
    check_listen("0.0.0.0", True, TOKEN)
    with pytest.raises(UserError, match="give HOST:PORT"):
        parse_listen("localhost:http")


def test_policies_list_kubernetes_and_staged_kubernetes_policies_with_their_hits(tmp_path: Path) -> None:
    hit = "default|StagedKubernetesNetworkPolicy(prod/db-only)|end-of-tier|deny"
    allowed = ("kube-admin|GlobalNetworkPolicy(kanp.adminnetworkpolicy.pass-prod)|ingress[0]|pass",
               "default|NetworkPolicy(prod/knp.default.db)|ingress[0]|allow")
    FlowStore(tmp_path / "h1").write([
        FlowRecord(0, 9e9, "h1", "dst", Peer("workload", "web", "prod", ip="10.0.0.1"),
                   Peer("workload", "db", "prod", ip="10.0.0.2"), "tcp", 80, "allow", allowed, "deny",
                   (hit,), Counts(1, 1), Counts(60, 60), 1, 0, 1)
    ])
    ds = MemoryDatastore()
    staged = {"apiVersion": "projectcalico.org/v3", "kind": "StagedKubernetesNetworkPolicy",
              "metadata": {"name": "db-only", "namespace": "prod"},
              "spec": {"podSelector": {"matchLabels": {"app": "db"}}}}
    subject = {"namespaces": {"matchLabels": {"env": "prod"}}}
    for obj in (staged, network_policy("db", "prod", {"podSelector": {}}),
                admin_policy("pass-prod", 7, subject, ingress=[{"action": "Pass", "from": [subject]}])):
        ds.put(key_of(obj), obj)
    sources = UiSources(lambda: {"h1": tmp_path / "h1"}, lambda: _Unclosed(ds), lambda host: None)
    entry, knp, anp = sources.policies()["policies"]
    assert entry["kind"] == "StagedKubernetesNetworkPolicy" and entry["stagedAction"] == "Set"
    assert entry["hits"] == {"deny": 1} and entry["tier"] == "default"
    assert entry["selector"] == 'podSelector: {"matchLabels": {"app": "db"}}'
    assert (knp["kind"], knp["namespace"], knp["name"], knp["tier"], knp["order"]) == (
        "NetworkPolicy.networking.k8s.io", "prod", "db", "default", 1000)
    assert knp["enforcedAs"] == "knp.default.db" and knp["hits"] == {"allow": 1}
    assert (anp["kind"], anp["name"], anp["tier"], anp["order"]) == (
        "AdminNetworkPolicy.policy.networking.k8s.io", "pass-prod", "kube-admin", 7)
    assert anp["hits"] == {"pass": 1} and anp["selector"] == f"subject: {json.dumps(subject, sort_keys=True)}"
