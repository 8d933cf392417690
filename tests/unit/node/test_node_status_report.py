"""CalicoNodeStatus filling: BIRD's answers parsed, the status built as Calico shapes it, and the
reporter writing it for its own node only, at the requested period, never over a newer spec."""

from __future__ import annotations

import dataclasses
import datetime

from tortie.bgp.control import Reply
from tortie.bgp.status import PeerStatus
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.resources import ResourceStore
from tortie.model import load_resources
from tortie.model.specs_node_status import CalicoNodeStatusSpec
from tortie.node.status_report import (
    BirdFacts,
    NodeStatusReporter,
    build_status,
    families_of,
    parse_show_route,
    parse_show_status,
)

SHOW_STATUS = [
    Reply(1000, "BIRD 2.0.12"), Reply(1011, "Router ID is 172.31.0.1"), Reply(1011, "Hostname is h1"),
    Reply(1011, "Current server time is 2026-12-07 02:49:45.946"),
    Reply(1011, "Last reboot on 2026-12-07 02:49:44.754"),
    Reply(1011, "Last reconfiguration on 2026-12-07 02:50:01.002"), Reply(13, "Daemon is up and running"),
]
SHOW_ROUTE = [
    Reply(1007, "Table master4:"),
    Reply(1007, "10.65.2.0/26         unicast [Mesh_172_31_0_2 02:50:03.120] * (100) [i]"),
    Reply(1007, "\tvia 172.31.0.2 on eth0"),
    Reply(1007, "                     unicast [Global_172_31_0_254 02:50:04.001] (100) [AS65000i]"),
    Reply(1007, "\tvia 172.31.0.254 on eth0"),
    Reply(1007, "10.65.1.0/26         blackhole [tortie_blocks_v4 02:49:44.754] * (200)"),
    Reply(1007, "10.65.1.5/32         unicast [kernel_v4 02:49:50.000] * (200)"),
    Reply(1007, "\tdev cali1"),
    Reply(1007, "172.31.0.0/24        unicast [direct1 02:49:44.754] * (240)"),
    Reply(1007, "\tdev eth0"),
    Reply(1007, ""),
    Reply(1007, "Table master6:"),
    Reply(1007, "fd10::/122           unreachable [tortie_blocks_v6 02:49:44.754] * (200)"),
    Reply(0, ""),
]
PEERS = [
    PeerStatus("Mesh_172_31_0_2", "172.31.0.2", "node-to-node mesh", "up", "02:50:03.120", "Established",
               True),
    PeerStatus("Global_172_31_0_254", "172.31.0.254", "global", "start", "02:49:45",
               "Active  Socket: refused", False),
    PeerStatus("Node_fd00__fe", "fd00::fe", "node specific", "start", "02:49:45", "Connect", False),
    PeerStatus("Local_Workload_10_65_1_5", "10.65.1.5", "local workload", "up", "02:51:00", "Established",
               True),
]
NOW = datetime.datetime(2026, 12, 7, 3, 0, 0, tzinfo=datetime.UTC)


def test_bird_answers_are_parsed() -> None:
    assert parse_show_status(SHOW_STATUS) == ("BIRD 2.0.12", {
        "routerID": "172.31.0.1", "lastBootTime": "2026-12-07 02:49:44.754",
        "lastReconfigurationTime": "2026-12-07 02:50:01.002"})
    routes = parse_show_route(SHOW_ROUTE)
    assert [(r["family"], r["type"], r["destination"], r["gateway"], r["interface"], r["learnedFrom"])
            for r in routes] == [
        (4, "FIB", "10.65.2.0/26", "172.31.0.2", "eth0",
         {"sourceType": "NodeMesh", "peerIP": "172.31.0.2"}),
        (4, "RIB", "10.65.2.0/26", "172.31.0.254", "eth0",
         {"sourceType": "BGPPeer", "peerIP": "172.31.0.254"}),
        (4, "FIB", "10.65.1.0/26", "N/A", "blackhole", {"sourceType": "Static"}),
        (4, "FIB", "10.65.1.5/32", "N/A", "cali1", {"sourceType": "Kernel"}),
        (4, "FIB", "172.31.0.0/24", "N/A", "eth0", {"sourceType": "Direct"}),
        (6, "FIB", "fd10::/122", "N/A", "unreachable", {"sourceType": "Static"}),
    ]


def test_status_has_the_requested_classes_in_calicos_shape() -> None:
    facts = BirdFacts(True, "BIRD 2.0.12", parse_show_status(SHOW_STATUS)[1], PEERS,
                      parse_show_route(SHOW_ROUTE))
    status = build_status(["Agent", "BGP", "Routes"], facts, [4], NOW)
    assert status["lastUpdated"] == "2026-12-07T03:00:00Z"
    assert status["agent"] == {"birdV4": {
        "state": "Ready", "version": "BIRD 2.0.12", "routerID": "172.31.0.1",
        "lastBootTime": "2026-12-07 02:49:44.754", "lastReconfigurationTime": "2026-12-07 02:50:01.002"}}
    bgp = status["bgp"]
    assert (bgp["numberEstablishedV4"], bgp["numberNotEstablishedV4"]) == (2, 1)
    assert (bgp["numberEstablishedV6"], bgp["numberNotEstablishedV6"]) == (0, 1)
    assert bgp["peersV4"] == [
        {"peerIP": "172.31.0.2", "type": "NodeMesh", "state": "Established", "since": "02:50:03.120"},
        {"peerIP": "172.31.0.254", "type": "GlobalPeer", "state": "Active", "since": "02:49:45"},
        {"peerIP": "10.65.1.5", "type": "LocalWorkload", "state": "Established", "since": "02:51:00"},
    ]
    assert bgp["peersV6"] == [
        {"peerIP": "fd00::fe", "type": "NodePeer", "state": "Connect", "since": "02:49:45"}]
    assert len(status["routes"]["routesV4"]) == 5
    assert status["routes"]["routesV6"][0]["interface"] == "unreachable"
    assert "family" not in status["routes"]["routesV4"][0]
    only_bgp = build_status(["BGP"], facts, [4, 6], NOW)
    assert set(only_bgp) == {"lastUpdated", "bgp"}
    down = build_status(["Agent"], BirdFacts(), [4, 6], NOW)
    assert down["agent"] == {"birdV4": {"state": "NotReady"}, "birdV6": {"state": "NotReady"}}
    assert families_of({"ipv4Address": "172.31.0.1/24", "ipv6Address": None}) == [4]


REQUESTS = """
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: mine}
spec: {node: h1, classes: [Agent, BGP], updatePeriodSeconds: 5}
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: once}
spec: {node: h1, classes: [Routes], updatePeriodSeconds: 0}
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: theirs}
spec: {node: h2, classes: [Agent]}
"""


def test_reporter_fills_its_nodes_requests_at_their_period() -> None:
    ds = MemoryDatastore()
    store = ResourceStore(ds)
    for res in load_resources(REQUESTS, source="<test>"):
        store.apply(res)
    queried: list[str] = []

    def query(socket: str) -> BirdFacts:
        queried.append(socket)
        return BirdFacts(True, "BIRD 2.0.12", {"routerID": "172.31.0.1"}, PEERS[:1], [])

    reporter = NodeStatusReporter(ds, "h1", "/run/x", [4], query=query)

    def settle() -> None:  # let the watch deliver what was just written
        for _ in range(10):
            reporter.sync(0.05)

    try:
        reporter.sync()
        assert reporter.step(1000.0) == 2 and queried == ["/run/x/bird.ctl"]
        mine = store.get("CalicoNodeStatus", "mine")
        assert mine.status is not None and mine.status["bgp"]["numberEstablishedV4"] == 1
        assert mine.status["agent"]["birdV4"]["state"] == "Ready" and "routes" not in mine.status
        assert mine.metadata.generation == 1  # a status write is not a spec change
        assert store.get("CalicoNodeStatus", "once").status is not None
        assert store.get("CalicoNodeStatus", "theirs").status is None
        settle()
        assert reporter.step(1003.0) == 0  # not due yet
        assert reporter.step(1005.0) == 1  # "mine" again; "once" never
        # A spec edited after the reporter read it is not overwritten by an old spec.
        edited = dataclasses.replace(store.get("CalicoNodeStatus", "mine"), status=None)
        store.apply(edited.replace_metadata(resource_version=None))
        stale = store.get("CalicoNodeStatus", "mine")
        assert isinstance(stale.spec, CalicoNodeStatusSpec)
        spec = dataclasses.replace(stale.spec, update_period_seconds=60)
        store.apply(dataclasses.replace(stale, spec=spec).replace_metadata(resource_version=None))
        assert reporter.step(1010.0) == 0  # the reporter's copy is stale: the conditional write fails
        settle()
        assert reporter.step(1011.0) == 0  # the new period (60 s) applies
        assert reporter.step(1066.0) == 1
        final = store.get("CalicoNodeStatus", "mine")
        assert isinstance(final.spec, CalicoNodeStatusSpec)
        assert final.spec.update_period_seconds == 60 and final.status is not None
        store.delete("CalicoNodeStatus", "once")
        settle()
        assert reporter.step(2000.0) == 1
    finally:
        reporter.stop()
