"""The datastore conformance suite against every backend: memory, sqlite (a temp file) and a real etcd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.datastore.api import Datastore
from tortie.datastore.etcd import EtcdDatastore
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.testing.bad_records import BadRecordConformance, write_raw_etcd, write_raw_sqlite
from tortie.testing.datastore_conformance import Backend, DatastoreConformance
from tortie.testing.etcd_cluster import EtcdCluster, GrpcProxy


def _compact(ds: Datastore, revision: int) -> None:
    assert isinstance(ds, (MemoryDatastore, SqliteDatastore, EtcdDatastore))
    ds.compact(revision)


@pytest.fixture(scope="module")
def grpc_proxy(etcd_single: EtcdCluster) -> Iterator[GrpcProxy]:
    with GrpcProxy(etcd_single) as proxy:
        yield proxy


@pytest.fixture(
    params=[
        "memory", "sqlite", pytest.param("etcd", marks=pytest.mark.etcd),
        pytest.param("etcd-grpc-watch", marks=pytest.mark.etcd),
        pytest.param("etcd-via-grpc-proxy", marks=pytest.mark.etcd),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened: list[Datastore] = []
    name: str = request.param
    if name == "memory":
        store = MemoryDatastore()
        opened.append(store)

        def open_memory() -> Datastore:
            return store

        yield Backend(name, open_memory, _compact, write_raw=lambda k, t: store.put_raw(k, t).mod_revision)
    elif name == "sqlite":
        path = tmp_path / "state" / "datastore.db"

        def open_sqlite() -> Datastore:
            ds = SqliteDatastore(path)
            opened.append(ds)
            return ds

        yield Backend(name, open_sqlite, _compact, write_raw=lambda k, t: write_raw_sqlite(path, k, t))
    else:
        cluster = request.getfixturevalue("etcd_single")
        options: dict[str, object] = {}
        if name == "etcd-grpc-watch":
            options["watch_grpc"] = True
        elif name == "etcd-via-grpc-proxy":
            options["watch_endpoints"] = [request.getfixturevalue("grpc_proxy").target]

        def open_etcd() -> Datastore:
            ds = EtcdDatastore(cluster.client_endpoints, **options)  # type: ignore[arg-type]
            opened.append(ds)
            return ds

        endpoint = cluster.client_endpoints[0]
        yield Backend(
            name, open_etcd, _compact, lease_ttl=2.0,
            write_raw=lambda k, t: write_raw_etcd(endpoint, k, t.encode()),
        )
    for ds in opened:
        ds.close()


class TestDatastoreConformance(DatastoreConformance):
    """Every test of the suite, once per backend."""


class TestBadRecords(BadRecordConformance):
    """A stored value that is not a JSON object never stops a read or a watch, on every backend."""
