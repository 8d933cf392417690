"""etcd faults the datastore layer must survive, on a real 3-member cluster, each printing what it measured:

* the leader SIGKILLed during 500 resource applies: every acknowledged write is present afterwards on
  every member (the killed one too, once back), and a list+watch consumer's view equals the store;
* a watch whose resume revision was compacted while it was away gets one RESYNC (the contract's
  signal to list again), and a re-list from there equals the store;
* a watch attached to the leader when it dies moves to another member and delivers every event once,
  in revision order.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tortie.common.errors import DatastoreUnavailable
from tortie.datastore.api import KV, EventType, Watch, WatchEvent
from tortie.datastore.etcd import EtcdDatastore
from tortie.datastore.resources import ResourceStore
from tortie.model import parse_resource
from tortie.testing.etcd_cluster import EtcdCluster

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

APPLIES = 500
PREFIX = "/calico/resources/v3/projectcalico.org/globalnetworksets/"


def _network_set(i: int) -> Any:
    return parse_resource({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
        "metadata": {"name": f"fault-{i:04d}", "labels": {"i": str(i)}},
        "spec": {"nets": [f"10.{i // 250}.{i % 250}.0/24"]},
    })


class View:
    """What an agent's syncer keeps: list, then apply watch events; RESYNC means list again."""

    def __init__(self, ds: EtcdDatastore, prefix: str) -> None:
        self.ds, self.prefix = ds, prefix
        self.state: dict[str, tuple[int, dict[str, Any]]] = {}
        self.resyncs = 0
        self.watch: Watch = self._list()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _list(self) -> Watch:
        kvs, revision = self.ds.list(self.prefix)
        self.state = {kv.key: (kv.mod_revision, kv.value) for kv in kvs}
        return self.ds.watch(self.prefix, revision)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ev = self.watch.get(timeout=0.2)
            except DatastoreUnavailable:
                self.watch = self._list()
                continue
            if ev is None:
                continue
            if ev.type is EventType.RESYNC:
                self.resyncs += 1
                self.watch = self._list()
            elif ev.type is EventType.PUT:
                assert ev.value is not None
                self.state[ev.key] = (ev.revision, ev.value)
            else:
                self.state.pop(ev.key, None)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.watch.close()


def _wait_equal(view: View, want: dict[str, tuple[int, dict[str, Any]]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if view.state == want:
            return
        time.sleep(0.1)
    missing = set(want) - set(view.state)
    pytest.fail(f"view differs from the store: {len(missing)} missing, {len(view.state)} vs {len(want)}")


def _store_state(kvs: list[KV]) -> dict[str, tuple[int, dict[str, Any]]]:
    return {kv.key: (kv.mod_revision, kv.value) for kv in kvs}


def test_leader_sigkill_during_500_applies_loses_no_acknowledged_write() -> None:
    with EtcdCluster(members=3) as cluster:
        ds = EtcdDatastore(cluster.client_endpoints, timeout=5.0)
        viewer = EtcdDatastore(list(reversed(cluster.client_endpoints)), timeout=5.0)
        store = ResourceStore(ds)
        view = View(viewer, PREFIX)
        acked: dict[str, int] = {}
        latencies: list[float] = []
        unknown_outcomes = 0
        killed: dict[str, Any] = {}
        try:
            for i in range(APPLIES):
                if i == APPLIES // 3:
                    leader = cluster.leader_index()
                    assert leader is not None
                    killed.update(index=leader, at=i, t=time.monotonic())
                    cluster.kill(leader)
                res = _network_set(i)
                t0 = time.monotonic()
                while True:
                    try:
                        result = store.apply_all([res])[0]
                        break
                    except DatastoreUnavailable:
                        unknown_outcomes += 1  # not acknowledged: an apply is idempotent, so try again
                        time.sleep(0.05)
                latencies.append(time.monotonic() - t0)
                acked[res.key] = int(result.resource.metadata.resource_version or 0)
            new_leader = cluster.leader_index()
            cluster.restart(killed["index"])
            back = EtcdDatastore([cluster.client_endpoints[killed["index"]]])
            try:
                for member in (ds, viewer, back):
                    kvs, _ = member.list(PREFIX)
                    present = {kv.key: kv.mod_revision for kv in kvs}
                    assert {k: present.get(k) for k in acked} == acked
            finally:
                back.close()
            kvs, _ = ds.list(PREFIX)
            _wait_equal(view, _store_state(kvs))
            slowest = max(latencies)
            print(
                f"\nleader m{killed['index']} SIGKILLed at apply {killed['at']}; new leader "
                f"m{new_leader}; acknowledged writes present afterwards: {len(acked)}/{APPLIES} on every "
                f"member; applies retried after an unknown outcome: {unknown_outcomes}; slowest apply "
                f"{slowest:.2f} s, median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms; "
                f"watcher's view equals the store ({len(view.state)} keys, resyncs {view.resyncs})"
            )
            assert len(acked) == APPLIES
        finally:
            view.stop()
            ds.close()
            viewer.close()


def test_watch_resuming_at_a_compacted_revision_resyncs_and_relists_to_the_store() -> None:
    with EtcdCluster(members=3) as cluster:
        leader = cluster.leader_index()
        victim = next(i for i in range(3) if i != leader)  # a follower: no election to wait for
        writer = EtcdDatastore([e for i, e in enumerate(cluster.client_endpoints) if i != victim])
        watcher = EtcdDatastore([cluster.client_endpoints[victim]], timeout=20.0)
        p = "/calico/compact/"
        try:
            for i in range(5):
                writer.put(f"{p}k{i}", {"i": i})
            _, revision = watcher.list(p)
            watch = watcher.watch(p, revision)
            writer.put(f"{p}k0", {"i": "seen"})
            first = watch.get(timeout=10)
            assert first is not None and first.value == {"i": "seen"}
            cluster.kill(victim)  # the watch's only member: it retries there, from its cursor
            for i in range(5, 30):
                writer.put(f"{p}k{i}", {"i": i})
            writer.delete(f"{p}k1")
            writer.compact(writer.current_revision())
            t0 = time.monotonic()
            cluster.restart(victim)
            events: list[WatchEvent] = []
            while True:
                ev = watch.get(timeout=20)
                assert ev is not None, f"no RESYNC after the member came back; got {events}"
                events.append(ev)
                if ev.type is EventType.RESYNC:
                    break
            waited = time.monotonic() - t0
            assert [e.type for e in events] == [EventType.RESYNC]  # nothing from the compacted range
            assert watch.get(timeout=0.5) is None  # the watch is over: list again
            relisted, rev2 = watcher.list(p)
            truth, _ = writer.list(p)
            assert _store_state(relisted) == _store_state(truth)
            assert events[0].revision <= rev2 + 1
            print(f"\nRESYNC (compacted up to revision {events[0].revision}) {waited:.2f} s after the "
                  f"member restart; re-list: {len(relisted)} keys, equal to the store")
        finally:
            writer.close()
            watcher.close()


def test_watch_on_the_leader_moves_on_when_it_dies() -> None:
    with EtcdCluster(members=3) as cluster:
        leader = cluster.leader_index()
        assert leader is not None
        order = [leader] + [i for i in range(3) if i != leader]
        watcher = EtcdDatastore([cluster.client_endpoints[i] for i in order], timeout=10.0)
        writer = EtcdDatastore([cluster.client_endpoints[i] for i in reversed(order)], timeout=10.0)
        p = "/calico/leader/"
        try:
            watch = watcher.watch(p, watcher.current_revision())
            assert watcher.endpoint == cluster.client_endpoints[leader]
            revisions: list[int] = []
            for i in range(100):
                if i == 30:
                    cluster.kill(leader)
                while True:
                    try:
                        revisions.append(writer.put(f"{p}k{i:03d}", {"i": i}).mod_revision)
                        break
                    except DatastoreUnavailable:
                        time.sleep(0.05)  # the election: puts are idempotent, so retry
            got: list[WatchEvent] = []
            deadline = time.monotonic() + 30
            while len(got) < 100 and time.monotonic() < deadline:
                ev = watch.get(timeout=1)
                if ev is not None:
                    got.append(ev)
            keys = [e.key for e in got]
            assert sorted(set(keys)) == [f"{p}k{i:03d}" for i in range(100)]
            assert [e.revision for e in got] == sorted(e.revision for e in got)  # revision order
            per_key_last = {e.key: e.revision for e in got}
            assert sorted(per_key_last.values())[-1] == max(revisions)
            assert watcher.endpoint != cluster.client_endpoints[leader]
            print(f"\nwatch on leader m{leader}: {len(got)} events after the kill, "
                  f"{len(keys) - len(set(keys))} repeated puts (retries), none lost, in order")
            watch.close()
        finally:
            watcher.close()
            writer.close()
