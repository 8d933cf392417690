"""The node's VXLAN tunnel addresses on a memory datastore: allocated under Calico's handle while a
VXLAN pool serves the node, kept across reconciles and pool disabling, released when the pool
leaves VXLAN; the MAC is stable; IPAM's audit stays clean; the keeper thread follows pool edits."""

from __future__ import annotations

import time
from typing import Any

from tortie.common.ipfamily import V4, V6
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.resources import ResourceStore
from tortie.ipam import audit
from tortie.ipam.allocator import Ipam
from tortie.ipam.snapshot import take_snapshot
from tortie.model import parse_resource
from tortie.model.kinds import kind_info
from tortie.node.tunnel_addresses import TunnelAddressKeeper, handle_for, reconcile, tunnel_mac


def put(ds: MemoryDatastore, kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None,
        ) -> None:
    meta: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    store = ResourceStore(ds)
    store.apply_all([parse_resource({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta,
                                     "spec": spec})], mode="apply")


def node_spec(ds: MemoryDatastore, name: str = "h1") -> dict[str, Any]:
    kv = ds.get(kind_info("Node").key(name))
    assert kv is not None
    return dict(kv.value["spec"])


def test_allocate_keep_disable_and_release() -> None:
    ds = MemoryDatastore()
    assert reconcile(ds, "h1") == {}  # no Node yet: nothing to do
    put(ds, "Node", "h1", {"bgp": {"ipv4Address": "172.31.0.11/24"}})
    put(ds, "IPPool", "p", {"cidr": "10.244.0.0/16", "vxlanMode": "Always"})
    fields = reconcile(ds, "h1")
    address = fields["ipv4VXLANTunnelAddr"]
    assert fields["vxlanTunnelMACAddr"] == tunnel_mac("h1", V4)
    held = Ipam(ds).get_assignment(address)
    assert held is not None and held.handle == handle_for("h1", V4) == "vxlan-tunnel-addr-h1"
    assert held.attrs["type"] == "vxlanTunnelAddress" and held.block_host == "h1"
    assert node_spec(ds)["bgp"] == {"ipv4Address": "172.31.0.11/24"}  # other fields untouched
    revision = ds.get(kind_info("Node").key("h1")).mod_revision  # type: ignore[union-attr]
    assert reconcile(ds, "h1") == fields
    assert ds.get(kind_info("Node").key("h1")).mod_revision == revision  # type: ignore[union-attr]
    assert audit.check(take_snapshot(ds)) == []
    put(ds, "IPPool", "p", {"cidr": "10.244.0.0/16", "vxlanMode": "CrossSubnet", "disabled": True})
    assert reconcile(ds, "h1") == fields  # disabled: kept
    put(ds, "IPPool", "p", {"cidr": "10.244.0.0/16", "vxlanMode": "Never"})
    assert reconcile(ds, "h1") == {}
    assert "ipv4VXLANTunnelAddr" not in node_spec(ds) and Ipam(ds).ips_by_handle("vxlan-tunnel-addr-h1") == []


def test_lost_allocation_and_foreign_address_are_replaced_and_ipv6_has_its_own() -> None:
    ds = MemoryDatastore()
    put(ds, "Node", "h1", {"bgp": {"ipv4Address": "172.31.0.11/24"}, "ipv4VXLANTunnelAddr": "10.99.0.1",
                           "vxlanTunnelMACAddr": "66:00:00:00:00:01"})
    put(ds, "IPPool", "p", {"cidr": "10.244.0.0/16", "vxlanMode": "Always"})
    put(ds, "IPPool", "p6", {"cidr": "fd00:244::/48", "vxlanMode": "Always"})
    fields = reconcile(ds, "h1")
    assert fields["ipv4VXLANTunnelAddr"].startswith("10.244.")  # not from a VXLAN pool: replaced
    assert fields["vxlanTunnelMACAddr"] == "66:00:00:00:00:01"  # the stored MAC stays
    assert fields["ipv6VXLANTunnelAddr"].startswith("fd00:244:")
    assert fields["vxlanTunnelMACAddrV6"] == tunnel_mac("h1", V6) != tunnel_mac("h1", V4)
    Ipam(ds).release_by_handle("vxlan-tunnel-addr-h1")  # an operator released it
    again = reconcile(ds, "h1")
    held = Ipam(ds).get_assignment(again["ipv4VXLANTunnelAddr"])
    assert held is not None and held.handle == "vxlan-tunnel-addr-h1"


def test_pool_selection_follows_node_selector_and_tunnel_use() -> None:
    ds = MemoryDatastore()
    put(ds, "Node", "h1", {"bgp": {"ipv4Address": "172.31.0.11/24"}}, labels={"rack": "a"})
    put(ds, "IPPool", "b-only", {"cidr": "10.244.0.0/16", "vxlanMode": "Always",
                                 "nodeSelector": "rack == 'b'"})
    put(ds, "IPPool", "no-tunnel", {"cidr": "10.245.0.0/16", "vxlanMode": "Always",
                                    "allowedUses": ["Workload"]})
    assert reconcile(ds, "h1") == {}
    put(ds, "IPPool", "a", {"cidr": "10.246.0.0/16", "vxlanMode": "Always", "nodeSelector": "rack == 'a'"})
    assert reconcile(ds, "h1")["ipv4VXLANTunnelAddr"].startswith("10.246.")


def test_keeper_follows_pool_changes() -> None:
    ds = MemoryDatastore()
    put(ds, "Node", "h1", {"bgp": {"ipv4Address": "172.31.0.11/24"}})
    keeper = TunnelAddressKeeper(ds, "h1")
    keeper.start()
    try:
        put(ds, "IPPool", "p", {"cidr": "10.244.0.0/16", "vxlanMode": "Always"})
        deadline = time.monotonic() + 10
        while "ipv4VXLANTunnelAddr" not in node_spec(ds) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "ipv4VXLANTunnelAddr" in node_spec(ds)
        put(ds, "IPPool", "p", {"cidr": "10.244.0.0/16"})
        while "ipv4VXLANTunnelAddr" in node_spec(ds) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "ipv4VXLANTunnelAddr" not in node_spec(ds)
    finally:
        keeper.stop()
