"""Datastore URL parsing and the default location."""

from __future__ import annotations

from pathlib import Path

import pytest

from tortie.common.errors import UserError
from tortie.datastore.etcd import EtcdDatastore
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.datastore.url import (
    PASSWORD_ENV_VAR,
    credentials_to_environment,
    default_datastore_url,
    default_sqlite_path,
    open_datastore,
    redact_url,
)


def test_sqlite_url_opens_file_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "ds.db"
    ds = open_datastore(f"sqlite://{path}")
    try:
        assert isinstance(ds, SqliteDatastore)
        assert path.exists()
        assert path.stat().st_mode & 0o777 == 0o600
        ds.create("/k", {"v": 1})
    finally:
        ds.close()
    again = open_datastore(f"sqlite://{path}")
    try:
        kv = again.get("/k")
        assert kv is not None and kv.value == {"v": 1}
    finally:
        again.close()


def test_sqlite_url_with_four_slashes_is_the_same_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "ds.db"
    for url in (f"sqlite://{path}", f"sqlite:///{path}"):
        ds = open_datastore(url)
        try:
            assert isinstance(ds, SqliteDatastore) and ds.path == path
        finally:
            ds.close()


def test_memory_url_gives_a_new_empty_store() -> None:
    a, b = open_datastore("memory://"), open_datastore("memory://")
    assert isinstance(a, MemoryDatastore) and a is not b
    a.create("/k", {})
    assert b.get("/k") is None


def test_etcd_url_endpoints_and_options(tmp_path: Path) -> None:
    ds = open_datastore("etcd://10.0.0.1:2379,10.0.0.2,[fd00::1]:3379?timeout=2")
    assert isinstance(ds, EtcdDatastore)
    assert ds.endpoints == ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://[fd00::1]:3379"]
    ds.close()
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    tls = open_datastore(f"etcds://h1:2379?cacert={ca}&username=u&password=p")
    assert isinstance(tls, EtcdDatastore)
    assert tls.endpoints == ["https://h1:2379"]
    tls.close()


@pytest.mark.parametrize(
    "url, needle",
    [
        ("nonsense", "no scheme"),
        ("redis://h", "unknown scheme"),
        ("sqlite://relative.db", "absolute path"),
        ("sqlite://///too/many.db", "absolute path"),
        ("sqlite:///dir/", "directory"),
        ("sqlite:///x.db?mode=ro", "no options"),
        ("memory://somewhere", "takes no"),
        ("etcd://", "no etcd host"),
        ("etcd://h:2379/path", "no path"),
        ("etcd://h:notaport", "etcd endpoint"),
        ("etcd://h1:2379,,h2:2379", "empty host"),
        ("etcd://h:2379?colour=blue", "unknown option 'colour'"),
        ("etcd://h:2379?timeout=-1", "timeout"),
        ("etcd://h:2379?cacert=/nonexistent", "etcds://"),
        ("etcds://h:2379?cacert=/nonexistent/ca.pem", "does not exist"),
        ("etcd://u:p@h:2379", "username"),
        ("etcd://h:2379?username=u", "password"),
    ],
)
def test_bad_urls_raise_user_error(url: str, needle: str) -> None:
    with pytest.raises(UserError) as err:
        open_datastore(url)
    assert needle in str(err.value)


def test_password_is_redacted_in_errors() -> None:
    with pytest.raises(UserError) as err:
        open_datastore("etcd://h:2379?password=hunter2&bogus=1")
    assert "hunter2" not in str(err.value)
    assert redact_url("etcd://h?username=u&password=s3cret") == "etcd://h?username=u&password=***"


def test_default_url_env_and_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORTIE_DATASTORE", "memory://")
    assert default_datastore_url() == "memory://"
    assert isinstance(open_datastore(), MemoryDatastore)
    monkeypatch.delenv("TORTIE_DATASTORE")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_sqlite_path() == tmp_path / "state" / "tortie" / "datastore.db"
    assert default_datastore_url() == f"sqlite://{tmp_path}/state/tortie/datastore.db"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_sqlite_path() == tmp_path / ".local" / "state" / "tortie" / "datastore.db"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_datastore_url() == "sqlite:///var/lib/tortie/datastore.db"


def _password_of(url: str) -> str | None:
    ds = open_datastore(url)
    assert isinstance(ds, EtcdDatastore)
    try:
        return ds._password
    finally:
        ds.close()


def test_password_from_a_private_file(tmp_path: Path) -> None:
    secret = tmp_path / "etcd-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    assert _password_of(f"etcd://h:2379?username=tortie&password_file={secret}") == "s3cret"
    secret.chmod(0o640)
    with pytest.raises(UserError) as err:
        open_datastore(f"etcd://h:2379?username=tortie&password_file={secret}")
    assert "mode 0640" in str(err.value) and f"chmod 600 {secret}" in str(err.value)
    secret.chmod(0o400)
    with pytest.raises(UserError) as err:
        open_datastore(f"etcd://h:2379?username=tortie&password_file={secret}&password=x")
    assert "not both" in str(err.value) and "password=***" in str(err.value)
    with pytest.raises(UserError) as err:
        open_datastore(f"etcd://h:2379?username=tortie&password_file={tmp_path}/missing")
    assert "cannot read password_file" in str(err.value)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(UserError, match="is empty"):
        open_datastore(f"etcd://h:2379?username=tortie&password_file={empty}")


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV_VAR, "from-env")
    assert _password_of("etcd://h:2379?username=tortie") == "from-env"
    assert _password_of("etcd://h:2379?username=tortie&password=in-url") == "in-url"
    assert _password_of("etcd://h:2379") is None  # no username: no authentication


def test_credentials_move_from_the_url_to_the_environment() -> None:
    url, env = credentials_to_environment("etcds://h1:2379,h2:2379?cacert=/ca.pem&username=u&password=p%26q")
    assert url == "etcds://h1:2379,h2:2379?cacert=/ca.pem&username=u"
    assert env == {PASSWORD_ENV_VAR: "p&q"}
    assert credentials_to_environment("etcd://h:2379?username=u") == ("etcd://h:2379?username=u", {})
    assert credentials_to_environment("sqlite:///var/lib/x.db") == ("sqlite:///var/lib/x.db", {})


def test_redaction_covers_userinfo() -> None:
    assert redact_url("etcd://u:hunter2@h:2379") == "etcd://***@h:2379"
    with pytest.raises(UserError) as err:
        open_datastore("etcd://u:hunter2@h:2379")
    assert "hunter2" not in str(err.value)
