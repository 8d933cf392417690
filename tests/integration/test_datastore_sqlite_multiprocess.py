"""Several OS processes sharing one sqlite datastore: two write, two watch (one of them in this process).

Every change must be seen by each watcher exactly once, in revision order, and both watchers must
see the same sequence.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tortie.datastore.api import EventType, WatchEvent
from tortie.datastore.sqlite import SqliteDatastore

WRITES_PER_WRITER = 150

_WRITER = textwrap.dedent(
    """
    import sys
    from tortie.datastore.sqlite import SqliteDatastore
    from tortie.common.errors import Conflict
    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ds = SqliteDatastore(path)
    for i in range(count):
        kv = ds.create(f"/mp/{name}/{i:04d}", {"writer": name, "i": i})
        if i % 5 == 0:
            ds.update(kv.key, {"writer": name, "i": i, "updated": True}, expected_revision=kv.mod_revision)
        # both writers CAS-increment one shared counter
        while True:
            c = ds.get("/mp/counter")
            try:
                ds.update("/mp/counter", {"n": c.value["n"] + 1}, expected_revision=c.mod_revision)
                break
            except Conflict:
                continue
    ds.close()
    """
)

_WATCHER = textwrap.dedent(
    """
    import json, sys
    from tortie.datastore.sqlite import SqliteDatastore
    path, after, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ds = SqliteDatastore(path)
    w = ds.watch("/mp/", after)
    print("ready", flush=True)
    for _ in range(count):
        ev = w.get(timeout=60)
        if ev is None:
            break
        print(json.dumps([ev.type.value, ev.key, ev.revision]), flush=True)
    ds.close()
    """
)


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_writer_processes_and_two_watchers(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    ds = SqliteDatastore(path)
    procs: list[subprocess.Popen[str]] = []
    try:
        ds.create("/mp/counter", {"n": 0})
        start = ds.current_revision()
        # per writer: creates, updates of every fifth key, counter increments
        per_writer = WRITES_PER_WRITER + WRITES_PER_WRITER // 5 + WRITES_PER_WRITER
        expected = 2 * per_writer
        watch = ds.watch("/mp/", start)
        remote = _spawn(_WATCHER, str(path), str(start), str(expected))
        procs.append(remote)
        assert remote.stdout is not None
        assert remote.stdout.readline().strip() == "ready"
        procs += [_spawn(_WRITER, str(path), name, str(WRITES_PER_WRITER)) for name in ("w1", "w2")]

        local: list[WatchEvent] = []
        for _ in range(expected):
            ev = watch.get(timeout=60)
            assert ev is not None, f"watch stalled after {len(local)} of {expected} events"
            local.append(ev)
        assert watch.get(timeout=0.3) is None
        for p in procs[1:]:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        out, err = remote.communicate(timeout=120)
        assert remote.returncode == 0, err
        remote_seq = [tuple(json.loads(line)) for line in out.splitlines()]

        revs = [e.revision for e in local]
        assert revs == sorted(revs) and len(set(revs)) == len(revs)  # one write per revision here
        assert revs[0] > start and revs[-1] == ds.current_revision()
        assert remote_seq == [(e.type.value, e.key, e.revision) for e in local]
        assert all(e.type is EventType.PUT for e in local)
        for name in ("w1", "w2"):
            creates = [e.key for e in local if e.key.startswith(f"/mp/{name}/") and e.prev_value is None]
            assert creates == [f"/mp/{name}/{i:04d}" for i in range(WRITES_PER_WRITER)]
        counter = ds.get("/mp/counter")
        assert counter is not None and counter.value["n"] == 2 * WRITES_PER_WRITER
        assert len([e for e in local if e.key == "/mp/counter"]) == 2 * WRITES_PER_WRITER
        kvs, _ = ds.list("/mp/")
        assert len(kvs) == 2 * WRITES_PER_WRITER + 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        ds.close()
