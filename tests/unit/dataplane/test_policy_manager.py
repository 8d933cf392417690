"""PolicyManager against the fake nftables: adoption, deltas, fail closed, repair, failures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tortie.calc.policy_graph import PolicyGraph
from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.kernel_watch import KernelChanges
from tortie.dataplane.managers.policy import PolicyManager
from tortie.dataplane.messages import ConfigUpdate, Message, WorkloadEndpointId
from tortie.dataplane.messages.policy import (
    EndpointPolicyRemove,
    EndpointPolicyUpdate,
    PolicyId,
    PolicyRemove,
)
from tortie.datastore.syncer import InSync
from tortie.testing.calc_harness import kv_event
from tortie.testing.nft_fake import FakeNftables
from tortie.testing.policy_world import ALLOW_ALL, gnp, key_of, wep

WORLD = [
    wep("a", "10.0.0.1/32", labels={"app": "a"}, profiles=["allow-all"], iface="tort-a"),
    wep("b", "10.0.0.2/32", labels={"app": "b"}, iface="tort-b"),
    wep("c", "10.0.1.3/32", node="h2", labels={"app": "a"}),
    ALLOW_ALL,
    gnp("b-in", selector="app == 'b'", ingress=[{"action": "Allow", "source": {"selector": "app == 'a'"}}]),
]


class Feed:
    """A PolicyGraph for h1 whose messages go to a list."""

    def __init__(self, objs: Sequence[Mapping[str, Any]]) -> None:
        self.out: list[Message] = []
        self.graph = PolicyGraph("h1", self.out.append)
        for obj in objs:
            self.graph.on_event(kv_event(key_of(obj), obj))
        self.graph.on_event(InSync())
        self.graph.flush()

    def put(self, obj: Mapping[str, Any] | None, key: str | None = None) -> list[Message]:
        self.out.clear()
        self.graph.on_event(kv_event(key or key_of(obj or {}), obj))
        self.graph.flush()
        return list(self.out)


def manager_with(fake: FakeNftables, msgs: list[Message]) -> PolicyManager:
    manager = PolicyManager(fake)
    manager.on_update(ConfigUpdate({"interface_prefix": ("tort",)}))
    for msg in msgs:
        manager.on_update(msg)
    manager.apply()
    return manager


def test_restart_adopts_the_table_without_a_batch() -> None:
    fake = FakeNftables()
    feed = Feed(WORLD)
    manager_with(fake, feed.out)
    assert len(fake.batches) == 1
    restarted = manager_with(fake, feed.out)
    assert len(fake.batches) == 1 and restarted.batches == 0


def test_a_label_change_moves_only_set_elements() -> None:
    fake = FakeNftables()
    feed = Feed(WORLD)
    manager = manager_with(fake, feed.out)
    relabelled = wep("c", "10.0.1.3/32", node="h2", labels={"app": "z"})
    for msg in feed.put(relabelled):
        manager.on_update(msg)
    manager.apply()
    batch = fake.batches[-1]
    assert [(next(iter(c)), next(iter(next(iter(c.values()))))) for c in batch] == [("delete", "element")]
    assert "10.0.1.3/32" not in set().union(*(fake.elements("tortie", s) for s in fake.tables["tortie"].sets))


def test_endpoint_without_policy_has_no_dispatch_entry_and_is_dropped() -> None:
    fake = FakeNftables()
    feed = Feed(WORLD)
    manager = manager_with(fake, feed.out)
    assert set(manager.desired.map_elements["from-wl"]) == {"tort-a", "tort-b"}
    manager.on_update(EndpointPolicyRemove(WorkloadEndpointId("default", "b")))
    manager.apply()
    tables = fake.tables["tortie"]
    assert "tort-b" not in tables.sets["from-wl"].elements and "tort-b" not in tables.sets["to-wl"].elements
    assert "fw-tort-b" not in tables.chains and "tw-tort-b" not in tables.chains
    # the dispatch chain's last rule drops unknown workload interfaces
    assert tables.chains["from-wl-dispatch"].rules[-1].expr == [{"drop": None}]


def test_foreign_rules_and_chains_are_repaired_on_resync() -> None:
    fake = FakeNftables()
    feed = Feed(WORLD)
    manager = manager_with(fake, feed.out)
    fake.add_foreign_rule("tortie", "tw-tort-b", comment="someone else")
    fake.run([{"add": {"chain": {"family": "inet", "table": "tortie", "name": "stray"}}}])
    manager.resync()
    manager.apply()
    assert "someone else" not in fake.rule_comments("tortie", "tw-tort-b")
    assert "stray" not in fake.tables["tortie"].chains


def test_resync_reads_back_only_when_the_nftables_generation_moved() -> None:
    fake = FakeNftables()
    feed = Feed(WORLD)
    manager = manager_with(fake, feed.out)
    relabelled = wep("c", "10.0.1.3/32", node="h2", labels={"app": "z"})
    for msg in feed.put(relabelled):
        manager.on_update(msg)
    manager.apply()
    lists, batches = fake.lists, len(fake.batches)
    manager.resync()
    assert manager.needs_apply
    manager.apply()
    assert (fake.lists, len(fake.batches)) == (lists, batches)  # nobody else changed anything
    fake.foreign_change()  # a transaction elsewhere in the namespace: the table may have changed
    manager.resync()
    manager.apply()
    # a read-back lists the policy table and its guard table (written in the same transactions)
    assert fake.lists == lists + 2 and len(fake.batches) == batches
    # a foreign transaction between two of our batches makes the next resync read back too
    for msg in feed.put(wep("c", "10.0.1.3/32", node="h2", labels={"app": "a"})):
        manager.on_update(msg)
    fake.foreign_change()
    manager.apply()
    manager.resync()
    manager.apply()
    assert fake.lists == lists + 4


def test_host_endpoint_by_expected_ips_follows_its_address() -> None:
    from tortie.dataplane.drivers.host_addresses import StaticHostAddresses
    from tortie.dataplane.drivers.links import Link, LinkEvent
    from tortie.testing.policy_world import hep

    fake = FakeNftables()
    addresses = StaticHostAddresses({"eth0": {"172.31.0.11"}, "eth1": {"192.0.2.1"}})
    manager = PolicyManager(fake, addresses=addresses)
    manager.on_update(ConfigUpdate({"interface_prefix": ("tort",)}))
    for msg in Feed([*WORLD, hep("by-ip", ips=["172.31.0.11"])]).out:
        manager.on_update(msg)
    manager.apply()
    assert set(fake.tables["tortie"].sets["hep-in"].elements) == {"eth0"}
    calls = addresses.calls
    manager.on_update(ConfigUpdate({"interface_prefix": ("tort",)}))  # unrelated: no address lookup
    addresses.addresses = {"eth0": frozenset(), "eth1": frozenset({"192.0.2.1", "172.31.0.11"})}
    manager.on_link_event(LinkEvent("up", Link("eth1", 3, True, "UP")))
    manager.apply()
    assert addresses.calls == calls + 1
    assert set(fake.tables["tortie"].sets["hep-in"].elements) == {"eth1"}
    addresses.addresses = {}  # the address is gone (no link event): the next refresh notices
    manager.resync()
    manager.apply()
    assert set(fake.tables["tortie"].sets["hep-in"].elements) == set()


def test_a_rejected_batch_is_retried_from_a_fresh_read_back() -> None:
    fake = FakeNftables()
    manager = PolicyManager(fake)
    for msg in Feed(WORLD).out:
        manager.on_update(msg)
    fake.fail_next()
    with pytest.raises(DataplaneError):
        manager.apply()
    assert manager.needs_apply and "tortie" not in fake.tables
    manager.apply()
    assert "tw-tort-b" in fake.tables["tortie"].chains and not manager.needs_apply


def test_a_policy_removed_while_referenced_stays_as_an_empty_chain() -> None:
    fake = FakeNftables()
    manager = manager_with(fake, Feed(WORLD).out)
    manager.on_update(PolicyRemove(PolicyId("GlobalNetworkPolicy", "", "b-in")))
    manager.apply()  # the endpoint chain still jumps there: the chain must stay (empty)
    assert fake.tables["tortie"].chains["pi-g.b-in"].rules == []


def test_interface_prefix_change_rerenders_dispatch() -> None:
    fake = FakeNftables()
    manager = manager_with(fake, Feed(WORLD).out)
    manager.on_update(ConfigUpdate({"interface_prefix": ("tort", "tap")}))
    manager.apply()
    expr = fake.tables["tortie"].chains["filter-forward"].rules[4].expr
    assert {"set": ["tort*", "tap*"]} in [m["match"]["right"] for m in expr if "match" in m]


def test_an_interface_passing_to_another_endpoint_in_one_batch_keeps_its_chains() -> None:
    fake = FakeNftables()
    manager = manager_with(fake, Feed(WORLD).out)
    old, new = WorkloadEndpointId("default", "b"), WorkloadEndpointId("another", "b")
    manager.on_update(EndpointPolicyRemove(old))  # a workload recreated in another namespace, whose
    manager.on_update(EndpointPolicyUpdate(new, "tort-b", ("10.0.0.2/32",)))  # interface name is reused
    manager.apply()
    tables = fake.tables["tortie"]
    assert "fw-tort-b" in tables.chains and "tw-tort-b" in tables.chains
    assert "tort-b" in tables.sets["from-wl"].elements and "tort-b" in tables.sets["to-wl"].elements
    assert "another/b" in str(tables.chains["tw-tort-b"].rules[-1].comment)


def tables_of(commands: Sequence[Mapping[str, Any]]) -> set[str]:
    found = set()
    for command in commands:
        kind, obj = next(iter(next(iter(command.values())).items()))
        found.add(obj["name"] if kind == "table" else obj["table"])
    return found


def test_kernel_events_rebuild_what_others_deleted_and_ignore_our_own_batches() -> None:
    fake = FakeNftables()
    feed = Feed(WORLD)
    manager = manager_with(fake, feed.out)
    assert {"tortie", "tortie-guard"} <= set(fake.tables) and len(fake.batches) == 1
    ours = fake.generation()
    assert ours is not None
    lists = fake.lists
    manager.on_kernel_changes(KernelChanges(nft={"tortie": frozenset({ours & 0xFFFF}),
                                                 "tortie-guard": frozenset({ours & 0xFFFF})}))
    manager.on_kernel_changes(KernelChanges(nft={"somebody-else": frozenset({ours + 5})}))
    assert not manager.needs_apply
    # someone deletes the policy table: one transaction brings back all of it (the guard was left)
    fake.run([{"delete": {"table": {"family": "inet", "name": "tortie"}}}])
    gone = fake.generation()
    assert gone is not None
    manager.on_kernel_changes(KernelChanges(nft={"tortie": frozenset({gone & 0xFFFF})}))
    assert manager.needs_apply
    manager.apply()
    assert fake.lists == lists + 2 and len(fake.batches) == 3
    assert fake.batches[-1][0] == {"add": {"table": {"family": "inet", "name": "tortie"}}}
    assert tables_of(fake.batches[-1]) == {"tortie"}
    first = fake.rule_comments("tortie", "filter-forward")[0]
    assert first is not None and first.endswith("seen by policy (tortie-guard)")
    # the guard deleted: rebuilt alone; lost notifications: a read-back that changes nothing
    fake.run([{"delete": {"table": {"family": "inet", "name": "tortie-guard"}}}])
    gone = fake.generation()
    assert gone is not None
    manager.on_kernel_changes(KernelChanges(nft={"tortie-guard": frozenset({gone & 0xFFFF})}))
    manager.apply()
    assert "tortie-guard" in fake.tables
    assert tables_of(fake.batches[-1]) == {"tortie-guard"}
    batches = len(fake.batches)
    manager.on_kernel_changes(KernelChanges(nft_lost=True))
    manager.apply()
    assert len(fake.batches) == batches


def test_an_endpoint_moves_only_its_own_verdict_map_entries() -> None:
    """Map entries are reconciled key by key: a host full of endpoints sends (and compares) only the
    interfaces of the endpoint that came, changed or went, and the kernel ends up as a fresh full
    render of the same state would have it."""
    many = [wep(f"w{i}", f"10.0.2.{i}/32", labels={"app": "a"}, iface=f"tort-w{i}") for i in range(1, 40)]
    fake = FakeNftables()
    feed = Feed([*WORLD, *many])
    manager = manager_with(fake, feed.out)

    def map_commands() -> list[tuple[str, list[str]]]:
        out = []
        for command in fake.batches[-1]:
            verb, body = next(iter(command.items()))
            element = body.get("element") if isinstance(body, dict) else None
            if element is not None and element["name"] in ("from-wl", "to-wl"):
                out.append((verb, sorted(e[0] if isinstance(e, list) else e for e in element["elem"])))
        return out

    def step(obj: Mapping[str, Any] | None, key: str | None = None) -> None:
        for msg in feed.put(obj, key):
            manager.on_update(msg)
        manager.apply()

    step(wep("new", "10.0.3.1/32", labels={"app": "b"}, iface="tort-new"))
    assert map_commands() == [("add", ["tort-new"]), ("add", ["tort-new"])]
    step(wep("new", "10.0.3.1/32", labels={"app": "b"}, iface="tort-new2"))  # its interface renamed
    assert map_commands() == [("delete", ["tort-new"]), ("add", ["tort-new2"])] * 2
    step(None, key_of(wep("new", "10.0.3.1/32")))
    assert map_commands() == [("delete", ["tort-new2"])] * 2
    wanted = {"tort-a", "tort-b", *(f"tort-w{i}" for i in range(1, 40))}
    for name in ("from-wl", "to-wl"):
        assert set(fake.tables["tortie"].sets[name].elements) == wanted
    # a fresh manager computing the same state from scratch finds the kernel exactly as it wants it
    assert manager_with(fake, Feed([*WORLD, *many]).out).batches == 0
