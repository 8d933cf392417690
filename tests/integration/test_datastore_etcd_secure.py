"""tortie against a secured etcd: TLS with client certificates AND authentication (users, roles).

A real 3-member etcd cluster with certificates made by openssl for this test, `--client-cert-auth`, auth
enabled, and a `tortie` role limited to `/calico/`. The datastore URL carries the username and a
password file (never the password itself), as docs/operations.md tells operators to configure it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.cli.main import main
from tortie.common.errors import DatastoreUnavailable, UserError
from tortie.datastore.api import EventType, WatchEvent
from tortie.datastore.etcd import EtcdDatastore
from tortie.datastore.url import PASSWORD_ENV_VAR, open_datastore
from tortie.testing.etcd_cluster import EtcdCluster

pytestmark = [pytest.mark.etcd, pytest.mark.slow]


@pytest.fixture(scope="module")
def secure() -> Iterator[EtcdCluster]:
    with EtcdCluster(members=3, tls=True, auth=True) as cluster:
        yield cluster


def _drain(watch: object, n: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    while len(out) < n:
        ev = watch.get(timeout=15)  # type: ignore[attr-defined]
        assert ev is not None, f"watch delivered {len(out)} of {n}: {out}"
        out.append(ev)
    return out


def test_url_names_a_password_file_not_the_password(secure: EtcdCluster) -> None:
    assert secure.password_file is not None
    password = secure.password_file.read_text().strip()
    assert secure.url.startswith("etcds://") and "username=tortie" in secure.url
    assert password not in secure.url
    assert secure.password_file.stat().st_mode & 0o777 == 0o600


def test_reads_writes_watches_and_leases_with_tls_and_auth(secure: EtcdCluster) -> None:
    ds = open_datastore(secure.url)
    try:
        watch = ds.watch("/calico/secure/", ds.current_revision())
        kv = ds.create("/calico/secure/a", {"v": 1})
        lease = ds.grant_lease(10)
        ds.put("/calico/secure/b", {"v": 2}, lease=lease)
        ds.refresh_lease(lease)
        ds.revoke_lease(lease)
        events = _drain(watch, 3)
        assert [(e.type, e.key) for e in events] == [
            (EventType.PUT, "/calico/secure/a"), (EventType.PUT, "/calico/secure/b"),
            (EventType.DELETE, "/calico/secure/b"),
        ]
        assert events[0].revision == kv.mod_revision
        kvs, _ = ds.list("/calico/secure/")
        assert [k.key for k in kvs] == ["/calico/secure/a"]
        watch.close()
    finally:
        ds.close()


def test_role_limits_what_tortie_may_touch(secure: EtcdCluster) -> None:
    ds = open_datastore(secure.url)
    try:
        with pytest.raises(DatastoreUnavailable) as err:
            ds.put("/registry/not-ours", {"v": 1})
        assert "permission denied" in str(err.value)
    finally:
        ds.close()
    secure.add_user("reader", "reader-pw", prefix="/calico/", permission="READ")
    assert secure.tls is not None
    t = secure.tls
    reader = EtcdDatastore(secure.client_endpoints, ca_cert=str(t.ca_cert), cert=str(t.client_cert),
                           key=str(t.client_key), username="reader", password="reader-pw", timeout=2.0)
    try:
        reader.list("/calico/")
        with pytest.raises(DatastoreUnavailable) as err:
            reader.put("/calico/secure/by-reader", {})
        assert "permission denied" in str(err.value)
    finally:
        reader.close()


def test_wrong_password_missing_certificate_and_no_credentials_are_refused_clearly(
    secure: EtcdCluster, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    assert secure.password_file is not None
    url = secure.url.replace(str(secure.password_file), str(wrong))
    ds = open_datastore(url.replace("timeout=", "") + "&timeout=2")
    try:
        with pytest.raises(DatastoreUnavailable) as err:
            ds.get("/calico/secure/a")
        assert "not-the-password" not in str(err.value)
        assert "check the username/password" in str(err.value)
    finally:
        ds.close()
    assert secure.tls is not None
    no_cert = EtcdDatastore(secure.client_endpoints, ca_cert=str(secure.tls.ca_cert), username="tortie",
                            password=secure.password_file.read_text().strip(), timeout=1.0)
    with pytest.raises(DatastoreUnavailable):
        no_cert.get("/calico/secure/a")
    no_cert.close()
    t = secure.tls
    anonymous = EtcdDatastore(secure.client_endpoints, ca_cert=str(t.ca_cert), cert=str(t.client_cert),
                              key=str(t.client_key), timeout=1.0)
    with pytest.raises(DatastoreUnavailable):
        anonymous.get("/calico/secure/a")
    anonymous.close()
    loose = tmp_path / "loose"
    loose.write_text("x\n")
    loose.chmod(0o644)
    with pytest.raises(UserError, match="readable by its owner only"):
        open_datastore(secure.url.replace(str(secure.password_file), str(loose)))


def test_password_from_the_environment(secure: EtcdCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    assert secure.password_file is not None
    monkeypatch.setenv(PASSWORD_ENV_VAR, secure.password_file.read_text().strip())
    ds = open_datastore(secure.url.replace(f"&password_file={secure.password_file}", ""))
    try:
        assert ds.put("/calico/secure/env", {"ok": True}).mod_revision > 0
    finally:
        ds.close()


def test_member_loss_and_restart_with_tls_and_auth(secure: EtcdCluster) -> None:
    """The client's token survives a failover (tokens are cluster-wide) and is renewed when the
    restarted member no longer knows it."""
    ds = open_datastore(secure.url)
    assert isinstance(ds, EtcdDatastore)
    watch = ds.watch("/calico/failover/", ds.current_revision())
    try:
        ds.put("/calico/failover/k0", {"i": 0})
        victim = secure.client_endpoints.index(ds.endpoint)
        secure.kill(victim)
        for i in range(1, 20):
            for _ in range(3):  # a write in flight to the killed member is reported as unknown
                with contextlib.suppress(DatastoreUnavailable):
                    ds.put(f"/calico/failover/k{i}", {"i": i})
                    break
        secure.restart(victim)
        hosts = ",".join(e.removeprefix("https://") for e in secure.client_endpoints)
        ds2 = open_datastore(secure.url.replace(hosts, secure.client_endpoints[victim].removeprefix("https://")))
        try:
            got = ds2.get("/calico/failover/k19")
            assert got is not None and got.value == {"i": 19}
        finally:
            ds2.close()
        keys = {e.key for e in _drain(watch, 20)}
        assert keys == {f"/calico/failover/k{i}" for i in range(20)}
    finally:
        watch.close()
        ds.close()


def test_cli_against_the_secure_cluster(
    secure: EtcdCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "pool.yaml"
    manifest.write_text(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: secure-pool}\n"
        "spec: {cidr: 10.77.0.0/16}\n"
    )
    assert main(["--datastore", secure.url, "apply", "-f", str(manifest)]) == 0
    assert main(["--datastore", secure.url, "get", "ippool", "secure-pool", "-o", "name"]) == 0
    out, _ = capsys.readouterr()
    assert "ippool/secure-pool" in out
    assert secure.password_file is not None
    assert secure.password_file.read_text().strip() not in out


def test_concurrent_clients_share_nothing_but_the_cluster(secure: EtcdCluster) -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            ds = open_datastore(secure.url)
            try:
                for i in range(10):
                    ds.put(f"/calico/concurrent/{n}/{i}", {"i": i})
            finally:
                ds.close()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    ds = open_datastore(secure.url)
    try:
        assert len(ds.list("/calico/concurrent/")[0]) == 40
    finally:
        ds.close()
    assert os.environ.get(PASSWORD_ENV_VAR) is None
