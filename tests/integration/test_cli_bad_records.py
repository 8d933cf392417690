"""Bad records through the CLI, on a real sqlite file and a real etcd: get reports, delete removes.

A value under a tortie key that is not JSON (torn, hand-written) or not a valid resource must never
stop `tortie get` of the others, never give a traceback, and must always be removable by key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tortie.cli.main import main
from tortie.datastore.sqlite import SqliteDatastore
from tortie.model.kinds import kind_info
from tortie.testing.bad_records import write_raw_etcd, write_raw_sqlite
from tortie.testing.etcd_cluster import EtcdCluster

POOLS = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: POOL-a}
spec: {cidr: 10.40.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: POOL-c}
spec: {cidr: 10.42.0.0/16}
"""

Run = Callable[..., tuple[int, str, str]]


class Store:
    def __init__(self, url: str, write_raw: Callable[[str, str], int]) -> None:
        self.url = url
        self.write_raw = write_raw


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        path = tmp_path / "ds.db"
        SqliteDatastore(path).close()  # the store exists before a record is planted in it
        yield Store(f"sqlite://{path}", lambda k, t: write_raw_sqlite(path, k, t))
    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd_single")
        endpoint = cluster.client_endpoints[0]
        yield Store(cluster.url, lambda k, t: write_raw_etcd(endpoint, k, t.encode()))


@pytest.fixture
def tortie(store: Store, capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        rc = main(["--datastore", store.url, *argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"  # the etcd member is shared by the session's tests


def _pool_key(name: str) -> str:
    return kind_info("IPPool").key(name)


@pytest.mark.parametrize(
    "text", ['{"apiVersion": "projectcalico.org/v3", "kind": "IPP', '{"kind": "IPPool", "spec": 7}']
)
def test_get_lists_the_others_and_names_the_bad_key(
    store: Store, tortie: Run, tmp_path: Path, prefix: str, text: str
) -> None:
    manifest = tmp_path / "pools.yaml"
    manifest.write_text(POOLS.replace("POOL", prefix))
    assert tortie("apply", "-f", str(manifest))[0] == 0
    bad_key = _pool_key(f"{prefix}-b")
    store.write_raw(bad_key, text)

    rc, out, err = tortie("get", "ippool", "-o", "name")
    assert rc == 0, err
    names = [line for line in out.split() if prefix in line]
    assert names == [f"ippool/{prefix}-a", f"ippool/{prefix}-c"]
    assert bad_key in err and f"tortie delete --key {bad_key}" in err and "Traceback" not in err
    print(f"tortie get stderr: {err.strip()}")

    rc, out, err = tortie("get", "ippool", f"{prefix}-b")
    assert rc == 1 and bad_key in err and "Traceback" not in err

    def same_text(shown: str) -> bool:  # not JSON: exactly as stored; JSON: the same document
        return shown == text if text.count("{") != text.count("}") else json.loads(shown) == json.loads(text)

    rc, out, err = tortie("get", "--key", bad_key)
    assert rc == 0 and same_text(out.strip())
    rc, out, _ = tortie("get", "--key", bad_key, "-o", "json")
    shown = json.loads(out)
    assert shown["key"] == bad_key and same_text(shown["value"]) and shown["modRevision"] > 0

    rc, out, err = tortie("delete", "--key", bad_key)
    assert rc == 0, err
    assert bad_key in out
    rc, _, err = tortie("get", "--key", bad_key)
    assert rc == 1 and "nothing is stored" in err
    rc, out, err = tortie("get", "ippool", "-o", "name")
    assert err == "" and f"ippool/{prefix}-a" in out


def test_delete_by_kind_and_name_removes_a_bad_record(store: Store, tortie: Run, prefix: str) -> None:
    key = _pool_key(f"{prefix}-x")
    store.write_raw(key, "not json")
    rc, out, err = tortie("delete", "ippool", f"{prefix}-x")
    assert rc == 0, err
    assert key in out
    assert tortie("get", "--key", key)[0] == 1


def test_a_bad_record_can_be_overwritten_by_apply(
    store: Store, tortie: Run, tmp_path: Path, prefix: str
) -> None:
    store.write_raw(_pool_key(f"{prefix}-a"), "[1, 2, 3]")
    manifest = tmp_path / "pools.yaml"
    manifest.write_text(POOLS.replace("POOL", prefix))
    rc, out, err = tortie("apply", "-f", str(manifest))
    assert rc == 0, err
    assert f"IPPool {prefix}-a updated" in out
    rc, out, _ = tortie("get", "ippool", f"{prefix}-a", "-o", "json")
    assert json.loads(out)["spec"]["cidr"] == "10.40.0.0/16"


def test_key_commands_stay_inside_tortie_keys(tortie: Run) -> None:
    for argv in (("delete", "--key", "/registry/x"), ("get", "--key", "/calico/"), ("get", "--key", "x")):
        rc, _, err = tortie(*argv)
        assert rc == 1 and "/calico/" in err
    rc, _, err = tortie("delete", "--key", "/calico/nothing/here")
    assert rc == 1 and "nothing is stored" in err
    rc, out, _ = tortie("delete", "--key", "/calico/nothing/here", "--skip-not-exists")
    assert rc == 0 and "0 key(s)" in out
