"""Writing bad records the way another tool would: bytes tortie never writes, stored as they are.

tortie only ever stores JSON objects, but an operator editing the store by hand, an older version or a
torn write can leave anything under a key. Tests of "one bad record never stops the rest" (datastore
conformance, the CLI, the fault suite) plant such values with these helpers:

* `write_raw_sqlite(path, key, text)` — one write transaction on the sqlite file, exactly as the
  backend records a put (kv row, event-log row, store revision), without encoding the value;
* `write_raw_etcd(endpoint, key, data)` — a plain put through etcd's gateway (`/v3/kv/put`);
* `MemoryDatastore.put_raw(key, text)` does the same for the in-memory backend.

Each returns the revision of the write. `BadRecordConformance` is the part of the datastore
conformance suite that checks the contract's "bad records" rules with them. Nothing here is used by
the product.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import ssl
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tortie.common.errors import Conflict
from tortie.datastore.api import Datastore, EventType
from tortie.testing.datastore_conformance import Backend, drain


def write_raw_sqlite(path: str | Path, key: str, text: str) -> int:
    """Store `text` under `key` in the sqlite datastore file at `path`; returns the new revision."""
    conn = sqlite3.connect(str(path), timeout=5.0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        revision = int(conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()[0]) + 1
        old = conn.execute("SELECT value, create_revision FROM kv WHERE key = ?", (key,)).fetchone()
        conn.execute(
            "INSERT INTO kv (key, value, mod_revision, create_revision, lease) VALUES (?, ?, ?, ?, NULL)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision,"
            " lease = NULL",
            (key, text, revision, old[1] if old else revision),
        )
        conn.execute(
            "INSERT INTO events (revision, seq, key, type, value, prev_value) VALUES (?, 0, ?, 'put', ?, ?)",
            (revision, key, text, old[0] if old else None),
        )
        conn.execute("UPDATE meta SET revision = ? WHERE id = 1", (revision,))
        conn.execute("COMMIT")
        return revision
    finally:
        conn.close()


def write_raw_etcd(
    endpoint: str, key: str, data: bytes, *, context: ssl.SSLContext | None = None,
    token: str | None = None,
) -> int:
    """Put `data` under `key` through the gateway of the etcd member at `endpoint` (http(s)://h:p)."""
    body = {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(data).decode()}
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token
    req = urllib.request.Request(
        f"{endpoint.rstrip('/')}/v3/kv/put", data=json.dumps(body).encode(), headers=headers
    )
    with urllib.request.urlopen(req, timeout=5.0, context=context) as resp:
        reply = json.loads(resp.read().decode())
    return int(reply["header"]["revision"])


class BadRecordConformance:
    """The contract's "bad records" rules, run against every backend (needs `Backend.write_raw`).

    Mix into a test class beside `DatastoreConformance`; it uses the same `backend` fixture.
    """

    BAD = ('{"kind": "WorkloadEndpoint", "spec": ', "[1, 2]", "not json at all")

    @pytest.fixture
    def ds(self, backend: Backend) -> Datastore:
        return backend.open()

    @staticmethod
    def _raw(backend: Backend) -> Callable[[str, str], int]:
        assert backend.write_raw is not None, f"backend {backend.name} gives no write_raw"
        return backend.write_raw

    @pytest.mark.parametrize("text", BAD)
    def test_list_and_get_report_a_bad_record_and_keep_the_rest(
        self, ds: Datastore, backend: Backend, text: str
    ) -> None:
        p = backend.prefix
        ds.create(p + "a", {"v": 1})
        rev = self._raw(backend)(p + "b", text)
        ds.create(p + "c", {"v": 3})
        kvs, _ = ds.list(p)
        assert [(kv.key, kv.value, kv.problem is None) for kv in kvs] == [
            (p + "a", {"v": 1}, True), (p + "b", {}, False), (p + "c", {"v": 3}, True)
        ]
        bad = ds.get(p + "b")
        assert bad is not None and bad.mod_revision == rev and bad.value == {}
        assert bad.problem and "JSON" in bad.problem
        assert bad.raw is not None and bad.raw.startswith(text[:5])
        good = ds.get(p + "a")
        assert good is not None and good.problem is None and good.raw is None

    def test_watch_delivers_a_bad_record_flagged_and_goes_on(self, ds: Datastore, backend: Backend) -> None:
        p = backend.prefix
        watch = ds.watch(p, ds.current_revision())
        try:
            ds.create(p + "a", {"v": 1})
            self._raw(backend)(p + "a", "{torn")
            ds.create(p + "b", {"v": 2})
            events = drain(watch, 3)
            assert [(e.type, e.key, e.value, e.problem is None) for e in events] == [
                (EventType.PUT, p + "a", {"v": 1}, True),
                (EventType.PUT, p + "a", {}, False),
                (EventType.PUT, p + "b", {"v": 2}, True),
            ]
            assert events[1].prev_value == {"v": 1}
            deleted = ds.delete(p + "a")  # a bad record can always be deleted by key
            assert deleted.problem is not None and deleted.value == {}
            (gone,) = drain(watch, 1)
            assert gone.type is EventType.DELETE and gone.key == p + "a" and gone.prev_value is None
            assert ds.get(p + "a") is None
        finally:
            watch.close()

    def test_a_bad_record_can_be_replaced(self, ds: Datastore, backend: Backend) -> None:
        p = backend.prefix
        rev = self._raw(backend)(p + "k", "nope")
        with pytest.raises(Conflict):
            ds.update(p + "k", {"v": 1}, expected_revision=rev + 1000)
        kv = ds.update(p + "k", {"v": 1}, expected_revision=rev)
        assert kv.problem is None and ds.get(p + "k") == kv
