"""EtcdDatastore against real etcd: 3-member failover, watch resumption, TLS, auth, the cluster fixture."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tortie.common.errors import AlreadyExists, DatastoreUnavailable, NotFound
from tortie.datastore.api import EventType, WatchEvent
from tortie.datastore.etcd import EtcdDatastore
from tortie.datastore.syncer import InSync, Syncer, SyncEvent, Update
from tortie.datastore.url import open_datastore
from tortie.testing.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.etcd

KEYS = 300


def _collect(watch: object, sink: list[WatchEvent]) -> threading.Thread:
    def run() -> None:
        for ev in watch:  # type: ignore[attr-defined]
            sink.append(ev)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _wait(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_three_member_failover_loses_and_repeats_nothing() -> None:
    with EtcdCluster(members=3) as cluster:
        ds = EtcdDatastore(cluster.client_endpoints, timeout=5.0)
        other = EtcdDatastore(list(reversed(cluster.client_endpoints)), timeout=5.0)
        p = "/failover/"
        start = ds.current_revision()
        seen_same: list[WatchEvent] = []
        seen_other: list[WatchEvent] = []
        w_same, w_other = ds.watch(p, start), other.watch(p, start)
        collectors = [_collect(w_same, seen_same), _collect(w_other, seen_other)]
        acked: dict[str, int] = {}
        ambiguous: list[str] = []
        progress = threading.Event()

        def writer() -> None:
            for i in range(KEYS):
                key, value = f"{p}k{i:04d}", {"i": i}
                retried = False
                while True:
                    try:
                        acked[key] = ds.create(key, value).mod_revision
                        break
                    except DatastoreUnavailable:
                        retried = True  # ack lost or no member reachable: try again
                        time.sleep(0.05)
                    except AlreadyExists:
                        assert retried, f"{key} existed before we wrote it"
                        got = ds.get(key)
                        assert got is not None and got.value == value
                        ambiguous.append(key)
                        acked[key] = got.mod_revision
                        break
                if i == KEYS // 3:
                    progress.set()

        t = threading.Thread(target=writer)
        t.start()
        try:
            assert progress.wait(60)
            victim_url = ds.endpoint
            victim = cluster.client_endpoints.index(victim_url)
            cluster.kill(victim)
            t.join(120)
            assert not t.is_alive()
            assert ds.endpoint != victim_url  # the client failed over
            assert len(acked) == KEYS
            for key, rev in acked.items():
                kv = other.get(key)
                assert kv is not None and kv.mod_revision == rev
            for seen in (seen_same, seen_other):
                _wait(lambda seen=seen: len(seen) >= KEYS, 30, "watchers to catch up")
                time.sleep(0.3)
                assert [(e.type, e.key, e.revision) for e in seen] == [
                    (EventType.PUT, key, rev) for key, rev in sorted(acked.items(), key=lambda kv: kv[1])
                ]
            # the killed member comes back and catches up
            cluster.restart(victim)
            back = EtcdDatastore([cluster.client_endpoints[victim]])
            last = back.get(f"{p}k{KEYS - 1:04d}")
            assert last is not None and last.mod_revision == acked[f"{p}k{KEYS - 1:04d}"]
            back.close()
        finally:
            w_same.close()
            w_other.close()
            for c in collectors:
                c.join(5)
            ds.close()
            other.close()


def _retry(write: Callable[[], object]) -> None:
    """Retry a write whose outcome was unknown (a member died under it); NotFound means it landed."""
    for _ in range(20):
        try:
            write()
            return
        except DatastoreUnavailable:
            time.sleep(0.1)
        except NotFound:
            return
    pytest.fail("write kept failing")


@pytest.mark.slow
def test_syncer_survives_member_loss_without_spurious_events() -> None:
    with EtcdCluster(members=3) as cluster:
        ds = EtcdDatastore(cluster.client_endpoints)
        for i in range(20):
            ds.create(f"/sync/k{i:02d}", {"i": i})
        got: list[SyncEvent] = []
        syncer = Syncer(ds, ["/sync/"], got.append, backoff_initial=0.05)
        syncer.start()
        try:
            _wait(lambda: InSync() in got, 10, "first InSync")
            cluster.kill(cluster.client_endpoints.index(ds.endpoint))
            _retry(lambda: ds.put("/sync/k00", {"i": "changed"}))
            _retry(lambda: ds.delete("/sync/k01"))
            _wait(lambda: len(got) >= 23, 20, "changes after the member loss")
            time.sleep(0.3)
            after = got[21:]
            assert [type(e).__name__ for e in after] == ["Update", "Delete"]
            assert isinstance(after[0], Update) and after[0].value == {"i": "changed"}
        finally:
            syncer.stop()
            ds.close()
        assert syncer.failure is None


def test_cluster_fixture_kill_and_restart(etcd_single: EtcdCluster) -> None:
    ds = open_datastore(etcd_single.url)
    try:
        ds.put("/fixture/k", {"v": 1})
        pid = etcd_single.pid(0)
        assert pid is not None
        etcd_single.kill(0)
        assert etcd_single.pid(0) is None
        with pytest.raises(OSError):
            os.kill(pid, 0)
        etcd_single.restart(0)
        kv = ds.get("/fixture/k")
        assert kv is not None and kv.value == {"v": 1}
        assert etcd_single.leader_index() == 0
    finally:
        ds.close()


def test_tls_client_certificates() -> None:
    with EtcdCluster(members=1, tls=True) as cluster:
        assert cluster.url.startswith("etcds://")
        ds = open_datastore(cluster.url)
        try:
            watch = ds.watch("/tls/", ds.current_revision())
            kv = ds.create("/tls/k", {"secure": True})
            ev = watch.get(timeout=5)
            assert ev is not None and ev.revision == kv.mod_revision
            watch.close()
        finally:
            ds.close()
        assert cluster.tls is not None
        no_cert = EtcdDatastore(cluster.client_endpoints, ca_cert=str(cluster.tls.ca_cert), timeout=1.0)
        with pytest.raises(DatastoreUnavailable):
            no_cert.get("/tls/k")
        no_cert.close()


def test_username_password_auth() -> None:
    with EtcdCluster(members=1) as cluster:
        ep = cluster.client_endpoints[0]
        env = {"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        setup = (["user", "add", "root:rootpw"], ["user", "grant-role", "root", "root"], ["auth", "enable"])
        for args in setup:
            subprocess.run(["etcdctl", "--endpoints", ep, *args], check=True, capture_output=True, env=env)
        ds = open_datastore(f"etcd://{ep.removeprefix('http://')}?username=root&password=rootpw")
        try:
            watch = ds.watch("/auth/", ds.current_revision())
            kv = ds.create("/auth/k", {})
            ev = watch.get(timeout=5)
            assert ev is not None and ev.revision == kv.mod_revision
            lease = ds.grant_lease(10)
            ds.refresh_lease(lease)
            ds.revoke_lease(lease)
            watch.close()
        finally:
            ds.close()
        wrong = EtcdDatastore([ep], username="root", password="wrong", timeout=1.0)
        with pytest.raises(DatastoreUnavailable) as err:
            wrong.get("/auth/k")
        assert "password" in str(err.value)
        wrong.close()


def test_idle_watch_reconnects_without_loss_or_duplicates(etcd_single: EtcdCluster) -> None:
    ds = EtcdDatastore(etcd_single.client_endpoints, idle_reconnect=0.5)
    try:
        watch = ds.watch("/idle/", ds.current_revision())
        a = ds.create("/idle/a", {})
        time.sleep(1.6)  # several idle re-opens from the last delivered revision
        b = ds.create("/idle/b", {})
        got = [watch.get(timeout=5), watch.get(timeout=5), watch.get(timeout=0.5)]
        assert [(e.key, e.revision) if e else None for e in got] == [
            ("/idle/a", a.mod_revision), ("/idle/b", b.mod_revision), None
        ]
        watch.close()
    finally:
        ds.close()


def test_cluster_in_caller_dir_cleans_only_its_own_files(tmp_path: Path) -> None:
    keep = tmp_path / "caller-file"
    keep.write_text("mine")
    with EtcdCluster(members=1, data_dir=tmp_path) as cluster:
        pid = cluster.pid(0)
        assert pid is not None and (tmp_path / "m0.etcd").is_dir()
    with pytest.raises(OSError):
        os.kill(pid, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["caller-file"]
