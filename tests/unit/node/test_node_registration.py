"""Node registration (`tortie.node.registration`): create, update owned fields only, CAS, conflicts."""

from __future__ import annotations

import ipaddress

import pytest

from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.resources import ResourceStore
from tortie.model import load_resources
from tortie.node.registration import (
    KEEP,
    REMOVE,
    NodeAddressConflict,
    NodeAddresses,
    desired_wire,
    register_node,
)

V4 = ipaddress.ip_interface("172.31.0.11/24")
V6 = ipaddress.ip_interface("fd00::11/64")


def test_creates_a_node_with_the_detected_addresses() -> None:
    ds = MemoryDatastore()
    res = register_node(ds, "h1", NodeAddresses(V4, V6, 65001))
    wire = res.to_wire()
    assert wire["metadata"]["name"] == "h1"
    assert wire["spec"]["bgp"] == {
        "ipv4Address": "172.31.0.11/24",
        "ipv6Address": "fd00::11/64",
        "asNumber": 65001,
    }
    assert ResourceStore(ds).get("Node", "h1").to_wire()["spec"] == wire["spec"]


def test_update_keeps_operator_fields_and_writes_nothing_when_unchanged() -> None:
    ds = MemoryDatastore()
    store = ResourceStore(ds)
    store.apply(
        load_resources("""
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h1, labels: {route-reflector: "true"}}
spec:
  bgp: {ipv4Address: 10.0.0.1/24, asNumber: 64999, routeReflectorClusterID: 244.0.0.1}
  orchRefs: [{orchestrator: k8s, nodeName: h1}]
""")[0]
    )
    res = register_node(ds, "h1", NodeAddresses(V4, REMOVE, None))
    wire = res.to_wire()
    assert wire["metadata"]["labels"] == {"route-reflector": "true"}
    assert wire["spec"]["bgp"] == {
        "ipv4Address": "172.31.0.11/24",
        "asNumber": 64999,
        "routeReflectorClusterID": "244.0.0.1",
    }
    assert wire["spec"]["orchRefs"] == [{"orchestrator": "k8s", "nodeName": "h1"}]
    revision = ds.get(res.key).mod_revision  # type: ignore[union-attr]
    again = register_node(ds, "h1", NodeAddresses(V4, REMOVE, None))
    assert ds.get(res.key).mod_revision == revision  # type: ignore[union-attr]
    assert again.to_wire()["spec"] == wire["spec"]


def test_removing_the_only_address_drops_the_empty_bgp_block() -> None:
    wire = desired_wire(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": "h1"},
            "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}},
        },
        "h1",
        NodeAddresses(REMOVE, KEEP),
    )
    assert "bgp" not in wire["spec"]
    ds = MemoryDatastore()
    res = register_node(ds, "h1", NodeAddresses(REMOVE, REMOVE))
    assert "bgp" not in res.to_wire()["spec"]


def test_an_address_another_node_uses_is_refused() -> None:
    ds = MemoryDatastore()
    register_node(ds, "h2", NodeAddresses(ipaddress.ip_interface("172.31.0.11/16"), REMOVE))
    with pytest.raises(NodeAddressConflict, match="h2"):
        register_node(ds, "h1", NodeAddresses(V4, REMOVE))
    assert ds.get(ResourceStore(ds).get("Node", "h2").key) is not None
    register_node(ds, "h1", NodeAddresses(ipaddress.ip_interface("172.31.0.12/24"), REMOVE))


def test_a_concurrent_change_is_retried_on_the_new_revision() -> None:
    ds = MemoryDatastore()
    register_node(ds, "h1", NodeAddresses(V4, REMOVE))
    real_get = ds.get
    raced = []

    def racing_get(key: str):  # type: ignore[no-untyped-def]
        kv = real_get(key)
        if not raced and key.endswith("/nodes/h1"):
            raced.append(True)  # an operator labels the node between our read and our write
            store = ResourceStore(ds)
            node = store.get("Node", "h1")
            store.update(node.replace_metadata(labels={"rack": "r1"}))
        return kv

    ds.get = racing_get  # type: ignore[method-assign]
    res = register_node(ds, "h1", NodeAddresses(ipaddress.ip_interface("172.31.0.21/24"), REMOVE))
    assert raced
    assert res.to_wire()["metadata"]["labels"] == {"rack": "r1"}
    assert res.to_wire()["spec"]["bgp"]["ipv4Address"] == "172.31.0.21/24"
