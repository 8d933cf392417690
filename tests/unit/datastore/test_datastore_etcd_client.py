"""EtcdDatastore behaviour that needs no etcd: endpoint parsing and "nothing answers"."""

from __future__ import annotations

import time

import pytest

from tortie.common.errors import DatastoreUnavailable, UserError
from tortie.datastore.etcd import EtcdDatastore, parse_endpoint
from tortie.testing.etcd_cluster import free_port


def test_parse_endpoint_forms() -> None:
    assert parse_endpoint("h", "http") == ("http", "h", 2379)
    assert parse_endpoint("h:1", "https") == ("https", "h", 1)
    assert parse_endpoint("https://h:2", "http") == ("https", "h", 2)
    assert parse_endpoint("[::1]:3", "http") == ("http", "::1", 3)
    for bad in ("", "ftp://h", "h:x", "http://h:1/path"):
        with pytest.raises(UserError):
            parse_endpoint(bad, "http")


def test_half_configured_tls_or_auth_is_rejected() -> None:
    with pytest.raises(UserError):
        EtcdDatastore(["h"], cert="/c")
    with pytest.raises(UserError):
        EtcdDatastore(["h"], username="u")
    with pytest.raises(UserError):
        EtcdDatastore([])


def test_no_endpoint_answers_is_unavailable() -> None:
    ds = EtcdDatastore([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"], timeout=0.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(DatastoreUnavailable) as err:
            ds.get("/k")
        assert "127.0.0.1" in str(err.value)
        with pytest.raises(DatastoreUnavailable):
            ds.create("/k", {})  # refused connections were never sent: retried, then unavailable
        watch = ds.watch("/", 0)
        with pytest.raises(DatastoreUnavailable):
            watch.get(timeout=10)
        assert watch.get(timeout=0.1) is None
        assert time.monotonic() - t0 < 10
    finally:
        ds.close()
