"""The datastore side without Neutron: CAS writer, resync, election, status parsing/flow-back."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from tortie.common.errors import Conflict
from tortie.datastore.api import KV, TxnOp
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.resources import ResourceStore
from tortie.model import WorkloadEndpointSpec, parse_resource

from networking_tortie.desired import NeutronSnapshot, desired_state
from networking_tortie.election import Elector
from networking_tortie.resync import Resyncer, list_owned
from networking_tortie.status import AgentStatusKey, EndpointStatusKey, StatusWatcher, parse_status_key
from networking_tortie.writer import DatastoreWriter, WriteConflict


def _wep(name: str, ip: str, node: str = "h1") -> Any:
    return parse_resource({
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "openstack"},
        "spec": {"orchestrator": "openstack", "node": node, "workload": "vm", "endpoint": name,
                 "interfaceName": "tap0123456789a", "ipNetworks": [f"{ip}/32"]},
    })


class RacingDatastore(MemoryDatastore):
    """Before each of the first `races` commits, another writer changes every key of the commit."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    def commit(self, ops: Sequence[TxnOp]) -> list[KV]:
        if self.races > 0:
            self.races -= 1
            for op in ops:
                current = self.get(op.key)
                value = dict(current.value) if current is not None else {"intruder": True}
                value["touched"] = self.races
                super().commit([TxnOp("put", op.key, value)])
        return super().commit(ops)


def test_writer_retries_compare_and_swap_then_wins() -> None:
    ds = RacingDatastore(races=2)
    writer = DatastoreWriter(ds, max_attempts=5)
    res = _wep("a", "10.0.0.1")
    assert writer.put_resource(res) == "updated"  # raced twice, third attempt replaces the intruder
    stored = ResourceStore(ds).get("WorkloadEndpoint", "a", "openstack")
    assert stored.spec_as(WorkloadEndpointSpec).ip_networks == ("10.0.0.1/32",)
    assert writer.put_resource(res) == "unchanged"


def test_writer_gives_up_after_bounded_attempts() -> None:
    ds = RacingDatastore(races=100)
    writer = DatastoreWriter(ds, max_attempts=3)
    with pytest.raises(WriteConflict):
        writer.put_resource(_wep("a", "10.0.0.1"))
    assert ds.races == 97


def test_writer_json_and_delete() -> None:
    ds = MemoryDatastore()
    writer = DatastoreWriter(ds)
    assert writer.put_json("/k", {"a": 1}) == "created"
    assert writer.put_json("/k", {"a": 1}) == "unchanged"
    assert writer.put_json("/k", {"a": 2}) == "updated"
    assert writer.delete_key("/k") == "deleted"
    assert writer.delete_key("/k") == "absent"


# -- resync ---------------------------------------------------------------------------------------------
PORT = {"id": "p-1", "device_id": "vm1", "device_owner": "compute:nova", "network_id": "n1",
        "project_id": "t", "mac_address": "fa:16:3e:00:00:01", "binding:host_id": "h1",
        "binding:vif_type": "tap",
        "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.65.0.5"}], "security_groups": ["sg1"]}
SG = {"id": "sg1", "name": "web", "security_group_rules": []}
SUBNET = {"id": "s1", "network_id": "n1", "cidr": "10.65.0.0/24", "gateway_ip": "10.65.0.1",
          "enable_dhcp": True, "dns_nameservers": [], "host_routes": []}
SNAPSHOT = NeutronSnapshot(ports=(PORT,), security_groups=(SG,), subnets=(SUBNET,),
                           networks=({"id": "n1", "name": "net", "mtu": 1500},))


def _desired() -> Any:
    return desired_state(SNAPSHOT).desired


def test_resync_creates_updates_deletes_only_owned_objects() -> None:
    ds = MemoryDatastore()
    store = ResourceStore(ds)
    resyncer = Resyncer(ds)
    first = resyncer.resync(_desired)
    assert len(first.created) == 5  # endpoint, policy, pool, profile, DHCP record
    assert resyncer.resync(_desired).changes == 0
    # Drift behind the driver's back.
    wep_key = next(k for k in list_owned(ds, "") if "/workloadendpoints/" in k)
    wep = store.decode(ds.get(wep_key))  # type: ignore[arg-type]
    store.update(wep.replace_spec(wep.spec_as(WorkloadEndpointSpec).__class__(
        **{**wep.spec_as(WorkloadEndpointSpec).__dict__, "ip_networks": ("10.9.9.9/32",)})))
    store.create(_wep("stale", "10.65.0.99"))
    policy_key = next(k for k in list_owned(ds, "") if "/networkpolicies/" in k)
    ds.delete(policy_key)
    dhcp_key = next(k for k in list_owned(ds, "") if k.startswith("/calico/dhcp/"))
    ds.put(dhcp_key, {"garbage": True})
    pool_key = next(k for k in list_owned(ds, "") if "/ippools/" in k)
    ds.put(pool_key, {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                      "metadata": {"name": "openstack-subnet-s1"}, "spec": {"cidr": "not a cidr"}})
    foreign = _wep("foreign", "10.1.1.1").replace_metadata(namespace="other")
    store.create(foreign)
    store.create(parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                                 "metadata": {"name": "user-pool"}, "spec": {"cidr": "10.200.0.0/16"}}))
    report = resyncer.resync(_desired)
    assert sorted(report.updated) == sorted([wep_key, dhcp_key, pool_key])
    assert report.created == [policy_key]
    assert report.deleted == ["/calico/resources/v3/projectcalico.org/workloadendpoints/openstack/stale"]
    assert resyncer.resync(_desired).changes == 0
    assert store.get("WorkloadEndpoint", "foreign", "other") is not None
    assert store.get("IPPool", "user-pool") is not None


def test_resync_conflicts_count_as_raced_and_are_retried_in_a_bounded_number_of_passes() -> None:
    ds = MemoryDatastore()
    calls = 0

    def read_desired() -> Any:
        # A concurrent postcommit writes the endpoint between our listing and our repair, once.
        nonlocal calls
        calls += 1
        if calls == 1:
            desired = _desired()
            key = next(k for k in desired.resources if "/workloadendpoints/" in k)
            ResourceStore(ds).create(desired.resources[key])
        return _desired()

    report = Resyncer(ds, max_passes=3).resync(read_desired)
    assert len(report.raced) == 1
    assert report.passes == 2
    assert Resyncer(ds).resync(_desired).changes == 0


def test_resync_always_racing_stops_after_max_passes() -> None:
    ds = RacingDatastore(races=1000)
    report = Resyncer(ds, max_passes=2).resync(_desired)
    assert report.passes == 2
    assert report.raced


# -- election ---------------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_election_single_master_takeover_and_clean_step_down() -> None:
    clock = FakeClock()
    ds = MemoryDatastore(clock=clock)
    changes: list[tuple[str, bool]] = []
    a = Elector(lambda: ds, "/e", name="a", interval=1, ttl=3, on_change=lambda m: changes.append(("a", m)))
    b = Elector(lambda: ds, "/e", name="b", interval=1, ttl=3, on_change=lambda m: changes.append(("b", m)))
    assert a.tick() is True
    assert b.tick() is False
    assert a.tick() is True  # refresh
    clock.now += 2
    assert a.tick() is True and b.tick() is False
    # a stops refreshing (dies): after the TTL its key is gone and b takes over.
    clock.now += 3.5
    assert b.tick() is True
    assert ds.get("/e").value["server"] == "b"  # type: ignore[union-attr]
    # a wakes up: its lease is gone, so it steps down instead of believing it is master.
    assert a.tick() is False
    b.stop()
    assert ds.get("/e") is None  # clean step-down removes the key at once
    assert a.tick() is True
    assert changes == [("a", True), ("b", True), ("a", False), ("b", False), ("a", True)]


def test_election_rejects_ttl_not_above_interval() -> None:
    with pytest.raises(ValueError):
        Elector(MemoryDatastore, "/e", interval=5, ttl=5)


def test_election_reaps_key_of_dead_local_process() -> None:
    ds = MemoryDatastore()
    lease = ds.grant_lease(60)
    ds.create("/e", {"server": "me", "pid": 2**22 + 12345, "id": "x"}, lease=lease)  # no such pid
    elector = Elector(lambda: ds, "/e", name="me", interval=1, ttl=3)
    assert elector.tick() is False  # first step frees the dead process's key
    assert elector.tick() is True


def test_election_threads_agree_on_one_master() -> None:
    ds = MemoryDatastore()
    electors = [Elector(lambda: ds, "/e", name=f"s{i}", interval=0.05, ttl=1, check_interval=0.02).start()
                for i in range(3)]
    try:
        done = threading.Event()
        done.wait(0.3)
        assert sum(e.is_master for e in electors) == 1
    finally:
        for e in electors:
            e.stop()
    assert ds.get("/e") is None


# -- status ---------------------------------------------------------------------------------------------
def test_parse_status_keys() -> None:
    base = "/calico/felix/v2/no-region/host/h1/"
    assert parse_status_key(base + "status") == AgentStatusKey("h1")
    assert parse_status_key(base + "workload/openstack/vm%2F1/endpoint/p-1") == EndpointStatusKey(
        "h1", "openstack", "vm/1", "p-1")
    assert parse_status_key(base + "last_reported_status") is None
    assert parse_status_key("/calico/felix/v2/region-r1/host/h1/status") is None
    assert parse_status_key("/calico/felix/v2/region-r1/host/h1/status", "r1") == AgentStatusKey("h1")


def test_status_watcher_reports_ports_and_agents() -> None:
    ds = MemoryDatastore()
    base = "/calico/felix/v2/no-region/host/h1/"
    ds.put(base + "workload/openstack/vm1/endpoint/p-1", {"status": "up"})
    ds.put(base + "workload/k8s/ns%2Fpod/endpoint/eth0", {"status": "up"})
    ports: list[tuple[str, str, str]] = []
    agents: list[tuple[str, bool]] = []
    seen = threading.Event()

    def on_port(port: str, host: str, status: str) -> None:
        ports.append((port, host, status))
        if len(ports) >= 3:
            seen.set()

    watcher = StatusWatcher(ds, "", on_port, lambda h, f: agents.append((h, f))).start()
    try:
        ds.put(base + "status", {"time": "t", "uptime": 1.0, "first_update": True})
        ds.put(base + "workload/openstack/vm1/endpoint/p-1", {"status": "down"})
        ds.delete(base + "workload/openstack/vm1/endpoint/p-1")
        assert seen.wait(5)
    finally:
        watcher.stop()
    assert ports == [("p-1", "h1", "ACTIVE"), ("p-1", "h1", "DOWN"), ("p-1", "h1", "DOWN")]
    assert agents == [("h1", True)]


def test_conflict_is_what_the_store_raises() -> None:
    ds = MemoryDatastore()
    kv = ds.create("/x", {"a": 1})
    ds.put("/x", {"a": 2})
    with pytest.raises(Conflict):
        ds.update("/x", {"a": 3}, expected_revision=kv.mod_revision)
