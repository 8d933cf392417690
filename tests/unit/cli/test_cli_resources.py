"""The calicoctl-style verbs end to end, in-process, against an embedded SQLite datastore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tortie.cli.main import main

POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 10.20.0.0/16
  natOutgoing: true
"""

POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: prod
spec:
  selector: app == "web"
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, "8000:8080"]
"""

BAD = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: good-one}
spec: {cidr: 10.30.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: bad-one}
spec: {cidr: 10.31.0.0/16, blockSize: 40}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: bad-selector}
spec: {selector: "app =="}
"""


def _write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_apply_get_round_trip(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = _write(tmp_path, "m.yaml", POOL + "---\n" + POLICY)
    rc, out, _ = tortie("apply", "-f", f)
    assert rc == 0, out
    assert "IPPool pool-a created" in out
    rc, out, _ = tortie("get", "ippool", "pool-a", "-o", "yaml")
    assert rc == 0
    got = yaml.safe_load(out)
    want = yaml.safe_load(POOL)
    meta = got["metadata"]
    assert {"resourceVersion", "uid", "creationTimestamp", "generation"} <= set(meta)
    assert meta["generation"] == 1
    for k in ("resourceVersion", "uid", "creationTimestamp", "generation"):
        meta.pop(k)
    assert got == want
    # yaml output applies back unchanged: nothing to update.
    f2 = _write(tmp_path, "back.yaml", out)
    rc, out2, _ = tortie("apply", "-f", f2)
    assert rc == 0
    assert "unchanged" in out2


def test_get_table_and_aliases(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tortie("apply", "-f", _write(tmp_path, "m.yaml", POOL + "---\n" + POLICY))
    rc, out, _ = tortie("get", "pools", "-o", "wide")
    assert rc == 0
    assert "CIDR" in out and "10.20.0.0/16" in out and "NAT" in out
    rc, out, _ = tortie("get", "np", "-n", "prod")
    assert rc == 0 and "allow-web" in out
    rc, out, _ = tortie("get", "policy")  # default namespace is empty
    assert rc == 0 and "allow-web" not in out
    rc, out, _ = tortie("get", "pol", "-A", "-o", "name")
    assert out.strip() == "networkpolicy/allow-web"
    rc, out, _ = tortie("get", "pol", "-A", "-o", "json")
    assert json.loads(out)["metadata"]["name"] == "allow-web"


def test_invalid_batch_writes_nothing_and_names_every_problem(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = _write(tmp_path, "bad.yaml", BAD)
    rc, _, err = tortie("apply", "-f", f)
    assert rc == 1
    assert "bad.yaml" in err
    assert "document 1" in err and "spec.blockSize" in err
    assert "document 2" in err and "spec.selector" in err
    rc, _, err = tortie("get", "ippool", "good-one")
    assert rc == 1 and "not found" in err


def test_validate_exit_codes(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rc, out, _ = tortie("validate", "-f", _write(tmp_path, "ok.yaml", POOL))
    assert rc == 0
    rc, out, _ = tortie("validate", "-f", _write(tmp_path, "bad.yaml", BAD))
    assert rc == 1
    assert "spec.blockSize" in out


def test_create_replace_delete(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = _write(tmp_path, "p.yaml", POOL)
    assert tortie("create", "-f", f)[0] == 0
    rc, _, err = tortie("create", "-f", f)
    assert rc == 1 and "already exists" in err
    assert tortie("create", "--skip-exists", "-f", f)[0] == 0
    changed = _write(tmp_path, "p2.yaml", POOL.replace("natOutgoing: true", "natOutgoing: false"))
    assert tortie("replace", "-f", changed)[0] == 0
    rc, out, _ = tortie("get", "ippool", "pool-a", "-o", "json")
    assert json.loads(out)["spec"]["natOutgoing"] is False
    assert tortie("delete", "ippool", "pool-a")[0] == 0
    rc, _, err = tortie("delete", "ippool", "pool-a")
    assert rc == 1 and "not found" in err
    assert tortie("delete", "ippool", "pool-a", "--skip-not-exists")[0] == 0
    rc, _, err = tortie("replace", "-f", f)
    assert rc == 1 and "not found" in err


def test_stale_resource_version_is_a_conflict(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tortie("apply", "-f", _write(tmp_path, "p.yaml", POOL))
    rc, out, _ = tortie("get", "ippool", "pool-a", "-o", "yaml")
    stale = out
    assert tortie("label", "ippool", "pool-a", "x=1")[0] == 0
    rc, _, err = tortie("apply", "-f", _write(tmp_path, "stale.yaml", stale))
    assert rc == 1
    assert "resourceVersion" in err and "stale" in err


def test_patch_and_label(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tortie("apply", "-f", _write(tmp_path, "p.yaml", POOL))
    assert tortie("patch", "ippool", "pool-a", "-p", '{"spec": {"disabled": true}}')[0] == 0
    assert tortie("label", "ippool", "pool-a", "team=net")[0] == 0
    rc, _, err = tortie("label", "ippool", "pool-a", "team=other")
    assert rc == 1 and "--overwrite" in err
    assert tortie("label", "ippool", "pool-a", "team=other", "--overwrite")[0] == 0
    rc, out, _ = tortie("get", "ippool", "pool-a", "-o", "json")
    obj = json.loads(out)
    assert obj["spec"]["disabled"] is True
    assert obj["metadata"]["labels"] == {"team": "other"}
    assert tortie("label", "ippool", "pool-a", "team-")[0] == 0
    rc, out, _ = tortie("get", "ippool", "pool-a", "-o", "json")
    assert not json.loads(out)["metadata"].get("labels")
    rc, _, err = tortie("patch", "ippool", "pool-a", "-p", '{"spec": {"blockSize": 99}}')
    assert rc == 1 and "blockSize" in err


def test_unknown_kind_and_unreachable_datastore(tortie, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc, _, err = tortie("get", "frobnicators")
    assert rc == 1 and "unknown resource kind" in err
    rc = main(["--datastore", "etcd://127.0.0.1:1", "get", "ippools"])
    assert rc == 2


def test_stdin_and_directory(tortie, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "a.yaml").write_text(POOL)
    (d / "b.json").write_text(json.dumps(yaml.safe_load(POLICY)))
    (d / "notes.txt").write_text("ignored")
    rc, out, _ = tortie("apply", "-f", str(d))
    assert rc == 0 and "2 resource(s)" in out
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(POOL.replace("pool-a", "pool-b")))
    rc, out, _ = tortie("apply", "-f", "-")
    assert rc == 0 and "pool-b" in out


FELIX_KNOBS = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {ipv6Support: false, chainInsertMode: Append}
"""

L7 = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: fine}
spec: {cidr: 10.40.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: l7}
spec:
  ingress: [{action: Allow, http: {methods: [GET]}}]
"""


def test_apply_warns_about_knobs_tortie_does_not_turn_and_succeeds(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = _write(tmp_path, "felix.yaml", FELIX_KNOBS)
    for verb in ("validate", "apply"):
        rc, out, err = tortie(verb, "-f", f)
        assert rc == 0, err
        assert (f"warning: {f}: document 0 (FelixConfiguration/default): spec.chainInsertMode: accepted but "
                "has no effect: tortie programs nftables") in err
        assert "ipv6Support" not in err
    rc, out, _ = tortie("get", "felixconfig", "default", "-o", "json")
    assert json.loads(out)["spec"] == {"ipv6Support": False, "chainInsertMode": "Append"}


def test_apply_refuses_what_it_cannot_honour_and_writes_nothing(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = _write(tmp_path, "l7.yaml", L7)
    rc, _, err = tortie("apply", "-f", f)
    assert rc == 1
    assert "document 1 (GlobalNetworkPolicy/l7): spec.ingress[0].http: is not supported by tortie" in err
    rc, _, err = tortie("get", "ippool", "fine")
    assert rc != 0 and "not found" in err


def test_generation_counts_spec_changes_and_get_output_applies_again(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = _write(tmp_path, "pool.yaml", POOL)
    assert tortie("apply", "-f", f)[0] == 0
    assert tortie("label", "ippool", "pool-a", "team=net")[0] == 0  # metadata only: same generation
    rc, out, _ = tortie("get", "ippool", "pool-a", "-o", "yaml")
    assert yaml.safe_load(out)["metadata"]["generation"] == 1
    changed = _write(tmp_path, "changed.yaml", out.replace("natOutgoing: true", "natOutgoing: false"))
    rc, applied, err = tortie("apply", "-f", changed)
    assert rc == 0 and "updated" in applied, err
    rc, out, _ = tortie("get", "ippool", "pool-a", "-o", "yaml")
    assert yaml.safe_load(out)["metadata"]["generation"] == 2
