"""Staged policies: validation of `stagedAction`, and `tortie policy promote` on a sqlite datastore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tortie.cli.main import main
from tortie.datastore.resources import ResourceStore
from tortie.datastore.url import open_datastore
from tortie.model import ValidationError, parse_resource
from tortie.model.specs_staged import StagedNetworkPolicySpec
from tortie.testing.policy_world import gnp, key_of, tier

API = "projectcalico.org/v3"


def staged(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"team": "db"}}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


DENY_DB = staged(
    "StagedNetworkPolicy", "deny-db", {"selector": "app == 'db'", "ingress": [{"action": "Deny"}]}, "prod"
)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite://{tmp_path / 'ds.db'}"
    ds = open_datastore(url)
    for obj in (
        DENY_DB,
        tier("sec", 10),
        gnp("old", selector="all()", ingress=[{"action": "Allow"}]),
        staged("StagedGlobalNetworkPolicy", "old", {"stagedAction": "Delete"}),
        staged("StagedGlobalNetworkPolicy", "sec.gate", {"tier": "sec", "ingress": [{"action": "Pass"}]}),
        staged("StagedGlobalNetworkPolicy", "lost.gate", {"tier": "lost", "ingress": [{"action": "Pass"}]}),
        staged("StagedGlobalNetworkPolicy", "deny-db", {"ingress": [{"action": "Deny"}]}),
    ):
        ds.put(key_of(obj), obj)
    ds.close()
    return url


def store(url: str) -> ResourceStore:
    return ResourceStore(open_datastore(url))


def test_staged_spec_defaults_to_set_and_keeps_the_enforced_fields() -> None:
    r = parse_resource(DENY_DB)
    assert r.key == "/calico/resources/v3/projectcalico.org/stagednetworkpolicies/prod/deny-db"
    spec = r.spec_as(StagedNetworkPolicySpec)
    assert spec.effective_staged_action == "Set" and spec.effective_types == ("Ingress",)
    assert parse_resource(r.to_wire()) == r


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"stagedAction": "Learn"}, "spec.stagedAction: 'Learn' is not supported by tortie"),
        ({"stagedAction": "Bogus"}, "spec.stagedAction: 'Bogus' is not valid"),
        ({"stagedAction": "Delete", "selector": "all()"}, "spec.selector: must be empty when stagedAction"),
        ({"doNotTrack": True, "applyOnForward": True}, "spec.doNotTrack: is not supported by tortie: flow"),
    ],
)
def test_bad_staged_specs_are_refused_with_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_resource(staged("StagedGlobalNetworkPolicy", "x", spec))
    assert message in str(exc.value)


def test_promote_set_creates_the_policy_and_removes_the_staged_one(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--datastore", url, "policy", "promote", "prod/deny-db"]) == 0
    assert "NetworkPolicy prod/deny-db created" in capsys.readouterr().out
    s = store(url)
    promoted = s.get("NetworkPolicy", "deny-db", "prod")
    assert promoted.metadata.labels == {"team": "db"}
    assert promoted.to_wire()["spec"] == {"selector": "app == 'db'", "ingress": [{"action": "Deny"}]}
    assert s.list("StagedNetworkPolicy") == []


def test_promote_delete_removes_the_enforced_policy(url: str) -> None:
    assert main(["--datastore", url, "policy", "promote", "old", "--keep-staged"]) == 0
    s = store(url)
    assert s.list("GlobalNetworkPolicy") == []
    assert "old" in [r.metadata.name for r in s.list("StagedGlobalNetworkPolicy")]
    # nothing left to delete: a clear error, nothing written
    assert main(["--datastore", url, "policy", "promote", "old"]) == 1


def test_promote_into_a_tier_and_errors(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--datastore", url, "policy", "promote", "sec.gate", "--dry-run"]) == 0
    assert '"action": "apply"' in capsys.readouterr().out
    assert store(url).list("GlobalNetworkPolicy")[0].metadata.name == "old"  # dry run wrote nothing
    assert main(["--datastore", url, "policy", "promote", "sec.gate"]) == 0
    assert main(["--datastore", url, "policy", "promote", "lost.gate"]) == 1
    assert "tier 'lost' does not exist" in capsys.readouterr().err
    assert main(["--datastore", url, "policy", "promote", "-n", "prod", "deny-db"]) == 1
    assert "say which with --kind" in capsys.readouterr().err
    assert main(["--datastore", url, "policy", "promote", "nope"]) == 1
    assert "no staged policy 'nope'" in capsys.readouterr().err


def test_apply_refuses_a_staged_policy_in_a_missing_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path / 'ds.db'}"
    manifest = tmp_path / "staged.yaml"
    manifest.write_text(
        "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: t9.x}\n"
        "spec: {tier: t9, ingress: [{action: Deny}]}\n"
    )
    assert main(["--datastore", url, "apply", "-f", str(manifest)]) == 1
    assert "tier 't9' does not exist" in capsys.readouterr().err
    manifest.write_text(
        manifest.read_text() + "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t9}\n"
        "spec: {order: 5}\n"
    )
    assert main(["--datastore", url, "apply", "-f", str(manifest)]) == 0
