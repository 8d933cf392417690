"""Every kind round-trips YAML -> store -> YAML unchanged (apart from store-maintained metadata), and the
ResourceStore keeps its metadata and batch promises, on every backend: memory, sqlite, real etcd."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tortie.common.errors import AlreadyExists, Conflict, NotFound
from tortie.datastore.etcd import EtcdDatastore
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.resources import ResourceStore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.model import dump_yaml, load_resources, parse_resource
from tortie.testing.etcd_cluster import EtcdCluster
from tortie.testing.model_samples import VALID

STORE_META = ("resourceVersion", "uid", "creationTimestamp", "generation")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def own_etcd() -> Iterator[EtcdCluster]:
    # A cluster of this module's own: resource keys are fixed Calico keys, so sharing one with other
    # tests could collide.
    with EtcdCluster(members=1) as cluster:
        yield cluster


@pytest.fixture(params=["memory", "sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResourceStore]:
    if request.param == "memory":
        ds: Any = MemoryDatastore()
    elif request.param == "sqlite":
        ds = SqliteDatastore(tmp_path / "ds.db")
    else:
        cluster = request.getfixturevalue("own_etcd")
        ds = EtcdDatastore(cluster.client_endpoints)
        kvs, _ = ds.list("/calico/")
        for kv in kvs:  # start each test from an empty store
            ds.delete(kv.key)
    yield ResourceStore(ds)
    ds.close()


def _strip(wire: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(wire)
    for k in STORE_META:
        out["metadata"].pop(k, None)
    return out


def test_every_kind_round_trips_through_the_store(store: ResourceStore) -> None:
    resources = [parse_resource(w) for w in VALID.values()]
    text_in = dump_yaml(resources)
    results = store.apply_all(load_resources(text_in), mode="create")
    assert [r.action for r in results] == ["created"] * len(resources)
    back = [store.get(r.kind, r.metadata.name, r.metadata.namespace) for r in resources]
    for original, stored in zip(VALID.values(), back, strict=True):
        wire = stored.to_wire()
        assert set(STORE_META) <= set(wire["metadata"]), stored.kind
        assert _strip(wire) == original, stored.kind
    # The YAML printed back applies again as "unchanged": nothing is rewritten.
    again = store.apply_all(load_resources(dump_yaml(back)), mode="apply")
    assert {r.action for r in again} == {"unchanged"}


def test_examples_round_trip(store: ResourceStore) -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        resources = load_resources(path.read_text(), source=str(path))
        store.apply_all(resources)
        for res in resources:
            got = store.get(res.kind, res.metadata.name, res.metadata.namespace)
            assert _strip(got.to_wire()) == res.to_wire(), f"{path.name}: {res.kind}/{res.metadata.name}"


def test_store_maintains_metadata(store: ResourceStore) -> None:
    pool = parse_resource(VALID["IPPool"])
    created = store.create(pool)
    assert created.metadata.uid and created.metadata.creation_timestamp and created.metadata.resource_version
    changed = created.replace_metadata(labels={"team": "net"})
    updated = store.update(changed)
    assert updated.metadata.uid == created.metadata.uid
    assert updated.metadata.creation_timestamp == created.metadata.creation_timestamp
    assert int(str(updated.metadata.resource_version)) > int(str(created.metadata.resource_version))
    # The stale version is refused, with a message that says what to do.
    with pytest.raises(Conflict, match="stale"):
        store.update(created.replace_metadata(labels={"team": "other"}))
    with pytest.raises(AlreadyExists):
        store.create(pool)
    store.delete("IPPool", pool.metadata.name)
    with pytest.raises(NotFound):
        store.get("IPPool", pool.metadata.name)


def test_batch_is_all_or_nothing(store: ResourceStore) -> None:
    pool = parse_resource(VALID["IPPool"])
    tier = parse_resource(VALID["Tier"])
    store.create(tier)
    # A create batch in which the second object exists writes nothing at all.
    with pytest.raises(AlreadyExists):
        store.apply_all([pool, tier], mode="create")
    with pytest.raises(NotFound):
        store.get("IPPool", pool.metadata.name)
    # A batch carrying a stale resourceVersion writes nothing either.
    current = store.get("Tier", tier.metadata.name)
    store.update(current.replace_metadata(labels={"x": "1"}))
    with pytest.raises(Conflict):
        store.apply_all([pool, current.replace_metadata(labels={"x": "2"})])
    with pytest.raises(NotFound):
        store.get("IPPool", pool.metadata.name)
