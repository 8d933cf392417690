"""Floating IPs (WorkloadEndpoint ipNATs): the NAT table's render, and the FloatingIPManager against
the fake kernel and fake nftables (routes of the external addresses, the table, adoption, drift,
removal, rejected batches)."""

from __future__ import annotations

from typing import Any

import pytest

from tortie.common.errors import DataplaneError
from tortie.common.ipfamily import V4
from tortie.dataplane.drivers.routes import Route
from tortie.dataplane.managers.floating_ips import FloatingIPManager
from tortie.dataplane.messages import (
    IPNat,
    PoolRemove,
    PoolUpdate,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.nft.floating import TABLE, render_floating, resolve_nats
from tortie.dataplane.nft.ir import rule_json
from tortie.dataplane.routetable import RouteTable
from tortie.testing.kernel_fake import FakeKernel
from tortie.testing.nft_fake import FakeNftables

A, B = WorkloadEndpointId("ns", "a"), WorkloadEndpointId("ns", "b")


def wep(eid: WorkloadEndpointId, iface: str, *nats: tuple[str, str]) -> WorkloadEndpointUpdate:
    v4 = tuple(f"{i}/32" for i, _ in nats if ":" not in i)
    v6 = tuple(f"{i}/128" for i, _ in nats if ":" in i)
    return WorkloadEndpointUpdate(id=eid, interface_name=iface, ipv4_nets=v4, ipv6_nets=v6,
                                  ip_nats=tuple(IPNat(i, e) for i, e in nats))


def exprs(ruleset: Any, chain: str) -> list[list[Any]]:
    return [rule_json(TABLE, chain, r)["rule"]["expr"] for r in ruleset.chains[chain].rules]


def test_render_dnat_hairpin_and_egress_snat_per_family() -> None:
    dnat = {"192.0.2.10": "10.0.0.2", "192.0.2.11": "10.0.0.2", "2001:db8::10": "fd00::2"}
    ruleset = render_floating(dnat, ["10.0.0.0/16", "fd00::/64", "10.0.1.0/24"])
    assert {c: ch.base.hook if ch.base else None for c, ch in ruleset.chains.items()} == {
        "nat-prerouting": "prerouting", "nat-output": "output", "fip-dnat": None,
        "nat-postrouting": "postrouting"}
    assert ruleset.chains["nat-postrouting"].base.priority == 99  # type: ignore[union-attr]
    assert ruleset.chains["nat-prerouting"].base.priority == -100  # type: ignore[union-attr]
    dnat_rules = exprs(ruleset, "fip-dnat")
    assert [r[1] for r in dnat_rules] == [
        {"dnat": {"family": "ip", "addr": "10.0.0.2"}},
        {"dnat": {"family": "ip", "addr": "10.0.0.2"}},
        {"dnat": {"family": "ip6", "addr": "fd00::2"}},
    ]
    assert [r[0]["match"]["right"] for r in dnat_rules] == ["192.0.2.10", "192.0.2.11", "2001:db8::10"]
    post = exprs(ruleset, "nat-postrouting")
    # hairpin and egress per internal address; the lowest external address is the source
    assert post[0] == [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": f}}, "right": "10.0.0.2"}}
        for f in ("saddr", "daddr")
    ] + [
        {"snat": {"family": "ip", "addr": "192.0.2.10"}},
    ]
    assert post[1][1] == {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                                    "right": "@all-pools-4"}}
    assert post[3][2] == {"snat": {"family": "ip6", "addr": "2001:db8::10"}}
    # contained pools are dropped from the interval set; each family has its own set
    assert ruleset.elements == {"all-pools-4": frozenset({"10.0.0.0/16"}),
                                "all-pools-6": frozenset({"fd00::/64"})}


def test_render_nothing_without_nats_and_a_family_without_nats_has_no_set() -> None:
    assert not render_floating({}, ["10.0.0.0/16"]).chains
    ruleset = render_floating({"192.0.2.10": "10.0.0.2"}, ["10.0.0.0/16", "fd00::/64"])
    assert set(ruleset.sets) == {"all-pools-4"}


def test_an_external_address_claimed_twice_goes_to_the_first_endpoint() -> None:
    dnat, lost = resolve_nats({B: (IPNat("10.0.0.3", "192.0.2.10"),), A: (IPNat("10.0.0.2", "192.0.2.10"),)})
    assert dnat == {"192.0.2.10": "10.0.0.2"}
    assert lost == [(B, IPNat("10.0.0.3", "192.0.2.10"))]


class Bed:
    def __init__(self, kernel: FakeKernel | None = None, nft: FakeNftables | None = None,
                 *, families: tuple[Any, ...] | None = None) -> None:
        self.kernel = kernel or FakeKernel()
        self.nft = nft or FakeNftables()
        kwargs = {"families": families} if families else {}
        self.table = RouteTable(self.kernel, self.kernel, **kwargs)
        self.mgr = FloatingIPManager(self.table, self.nft)
        self.kernel.start_monitor(self.table.on_link_event)

    def apply(self) -> None:
        for manager in (self.mgr, self.table):
            if manager.needs_apply:
                manager.apply()

    def dnat_targets(self) -> list[str]:
        listed = self.nft.list_table(TABLE) or []
        rules = [o["rule"] for o in listed if "rule" in o]
        return sorted(str(r["expr"][1]) for r in rules if r["chain"] == "fip-dnat")


def test_manager_programs_route_and_nat_and_removes_both() -> None:
    bed = Bed()
    bed.kernel.add_link("tort1")
    bed.mgr.on_update(PoolUpdate("p", "10.0.0.0/16", False))
    bed.mgr.on_update(wep(A, "tort1", ("10.0.0.2", "192.0.2.10"), ("fd00::2", "2001:db8::10")))
    bed.apply()
    assert set(bed.kernel.list_routes()) == {Route("192.0.2.10/32", ifname="tort1"),
                                             Route("2001:db8::10/128", ifname="tort1")}
    assert bed.table.stats()["floating_ip_routes"] == 2
    assert bed.dnat_targets() == ["{'dnat': {'family': 'ip', 'addr': '10.0.0.2'}}",
                                  "{'dnat': {'family': 'ip6', 'addr': 'fd00::2'}}"]
    assert bed.nft.elements(TABLE, "all-pools-4") == frozenset({"10.0.0.0/16"})
    # the field removed: route and table go
    bed.mgr.on_update(wep(A, "tort1"))
    bed.apply()
    assert bed.kernel.list_routes() == [] and bed.nft.list_table(TABLE) is None
    bed.mgr.on_update(wep(A, "tort1", ("10.0.0.2", "192.0.2.10")))
    bed.apply()
    bed.mgr.on_update(WorkloadEndpointRemove(A))
    bed.apply()
    assert bed.kernel.list_routes() == [] and bed.nft.list_table(TABLE) is None


def test_a_workload_address_wins_the_route_of_the_same_cidr() -> None:
    from tortie.dataplane.managers.endpoints import EndpointManager

    bed = Bed()
    bed.kernel.add_link("tort1")
    bed.kernel.add_link("tort2")
    endpoints = EndpointManager(bed.table, bed.kernel)
    other = WorkloadEndpointUpdate(id=B, interface_name="tort2", ipv4_nets=("192.0.2.10/32",))
    endpoints.on_update(other)
    bed.mgr.on_update(wep(A, "tort1", ("10.0.0.2", "192.0.2.10")))
    bed.apply()
    assert bed.table.programmed("192.0.2.10/32") == Route("192.0.2.10/32", ifname="tort2")


def test_restart_adopts_the_table_with_an_empty_batch() -> None:
    nft, kernel = FakeNftables(), FakeKernel()
    first = Bed(kernel, nft)
    kernel.add_link("tort1")
    first.mgr.on_update(wep(A, "tort1", ("10.0.0.2", "192.0.2.10")))
    first.apply()
    batches = len(nft.batches)
    kernel.stop_monitor()  # the first agent is gone
    second = Bed(kernel, nft)
    second.mgr.on_update(wep(A, "tort1", ("10.0.0.2", "192.0.2.10")))
    second.apply()
    assert len(nft.batches) == batches  # nothing rewritten
    assert kernel.list_routes() == [Route("192.0.2.10/32", ifname="tort1")]


def test_drift_is_repaired_on_resync_and_pools_follow() -> None:
    bed = Bed()
    bed.kernel.add_link("tort1")
    bed.mgr.on_update(wep(A, "tort1", ("10.0.0.2", "192.0.2.10")))
    bed.apply()
    bed.nft.add_foreign_rule(TABLE, "fip-dnat", "someone else")
    bed.mgr.resync()
    bed.apply()
    assert bed.nft.rule_comments(TABLE, "fip-dnat") == [next(iter(
        bed.mgr._nft.desired.chains["fip-dnat"].rules)).comment]
    bed.nft.run([{"delete": {"table": {"family": "inet", "name": TABLE}}}])
    bed.mgr.resync()
    bed.apply()
    assert bed.dnat_targets() == ["{'dnat': {'family': 'ip', 'addr': '10.0.0.2'}}"]
    bed.mgr.on_update(PoolUpdate("p", "10.1.0.0/16", True))
    bed.apply()
    assert bed.nft.elements(TABLE, "all-pools-4") == frozenset({"10.1.0.0/16"})
    bed.mgr.on_update(PoolRemove("p"))
    bed.apply()
    assert bed.nft.elements(TABLE, "all-pools-4") == frozenset()


def test_a_rejected_batch_is_retried_from_a_read_back() -> None:
    bed = Bed()
    bed.kernel.add_link("tort1")
    bed.mgr.on_update(wep(A, "tort1", ("10.0.0.2", "192.0.2.10")))
    bed.nft.fail_next()
    with pytest.raises(DataplaneError):
        bed.mgr.apply()
    assert bed.mgr.needs_apply
    lists = bed.nft.lists
    bed.apply()
    assert bed.nft.lists == lists + 1
    assert bed.dnat_targets() == ["{'dnat': {'family': 'ip', 'addr': '10.0.0.2'}}"]


def test_ipv6_mappings_are_left_out_when_the_host_serves_ipv4_only() -> None:
    bed = Bed(families=(V4,))
    bed.kernel.add_link("tort1")
    bed.mgr.on_update(wep(A, "tort1", ("10.0.0.2", "192.0.2.10"), ("fd00::2", "2001:db8::10")))
    bed.apply()
    assert bed.dnat_targets() == ["{'dnat': {'family': 'ip', 'addr': '10.0.0.2'}}"]
    assert bed.kernel.list_routes() == [Route("192.0.2.10/32", ifname="tort1")]
