"""BGPFilter and service advertisement with real BIRD against a gobgpd top-of-rack router (AS 65000).

Two tortie hosts (AS 64512, full mesh) peer with the ToR through a BGPPeer naming two BGPFilters:
`to-tor` rejects one of h1's blocks on export, `from-tor` rejects one of the ToR's prefixes on import.
The ToR must hold every other block and the service CIDRs (from both hosts, with the community the
prefixAdvertisement names) and never the rejected block; the hosts' kernels must hold the ToR's
accepted prefix and not the rejected one. Then the peer names a BGPFilter that does not exist: its
sessions go down (never run unfiltered) and `tortie node status` shows why, until the filter exists.
A CalicoNodeStatus for h1 is filled from the same BIRD.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tortie.cli.main import main as tortie_main
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.resources import ResourceStore
from tortie.node.status_report import NodeStatusReporter
from tortie.testing.bgp_fabric import (
    BgpTestBed,
    GobgpRouter,
    apply_manifests,
    gobgp_toml,
    lab_marks,
    node_manifest,
    pool_manifest,
    put_block,
    wait_until,
)

pytestmark = lab_marks(gobgp=True)

HOSTS = {"h1": 1, "h2": 2}
TOR = "172.31.0.254"
REJECTED_BLOCK = "10.65.3.0/26"
SERVICES = {"10.96.0.0/12", "198.51.100.64/26"}
SERVICE_COMMUNITY = (64512 << 16) | 96  # 64512:96 as gobgp prints a standard community

CONFIG = pool_manifest("10.65.0.0/16") + f"""
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: default}}
spec:
  serviceClusterIPs: [{{cidr: 10.96.0.0/12}}]
  serviceExternalIPs: [{{cidr: 198.51.100.64/26}}]
  communities: [{{name: svc, value: "64512:96"}}]
  prefixAdvertisements: [{{cidr: 10.96.0.0/12, communities: [svc]}}]
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {{name: to-tor}}
spec:
  exportV4: [{{action: Reject, matchOperator: Equal, cidr: {REJECTED_BLOCK}}}]
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {{name: from-tor}}
spec:
  importV4: [{{action: Reject, matchOperator: In, cidr: 203.0.113.0/24}}]
---
"""


def tor_peer(filters: list[str]) -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor}}
spec: {{peerIP: {TOR}, asNumber: 65000, filters: [{", ".join(filters)}]}}
"""


GOBGP_TOML = gobgp_toml(65000, TOR, [(f"172.31.0.{i}", 64512) for i in HOSTS.values()])


@pytest.fixture
def rack(tmp_path: Path) -> Iterator[tuple[BgpTestBed, GobgpRouter, MemoryDatastore]]:
    ds = MemoryDatastore()
    with BgpTestBed(str(tmp_path), "flt") as bed:
        fabric = bed.add_fabric("fab", "172.31.0.0/24")
        manifests = CONFIG
        blocks = {"h1": ["10.65.1.0/26", REJECTED_BLOCK], "h2": ["10.65.2.0/26"]}
        for name, i in HOSTS.items():
            bed.add_host(name, fabric, i)
            manifests += node_manifest(name, f"172.31.0.{i}/24")
            for block in blocks[name]:
                put_block(ds, block, name)
                bed.add_block_blackhole(name, block)
        apply_manifests(ds, manifests + tor_peer(["to-tor", "from-tor"]))
        tor = GobgpRouter(bed, bed.add_router("tor", [(fabric, 254)]), GOBGP_TOML)
        for name in HOSTS:
            bed.start_daemon(ds, name)
        yield bed, tor, ds


def node_status(bed: BgpTestBed, host: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    tortie_main(["node", "status", "--hostname", host, "--run-dir", bed.hosts[host].run_dir, "-o", "json"])
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_filters_services_and_a_missing_filter(rack: tuple[BgpTestBed, GobgpRouter, MemoryDatastore],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bed, tor, ds = rack
    expected = {"10.65.1.0/26", "10.65.2.0/26", *SERVICES}
    bed.wait_ready(timeout=40)
    wait_until(lambda: tor.rib_prefixes() == expected, 30, what=f"ToR RIB == {sorted(expected)}")
    # The filtered block is on its way (h2 learned it over the mesh) but never reaches the ToR.
    wait_until(lambda: REJECTED_BLOCK in bed.bird_routes("h2"), 15, what="the filtered block on h2")
    assert REJECTED_BLOCK not in tor.rib_prefixes()
    # Service CIDRs come from every node, and carry the prefixAdvertisement's community.
    def service_paths() -> list[dict[str, Any]]:
        paths: list[dict[str, Any]] = json.loads(tor.cli("global", "rib", "-j")).get("10.96.0.0/12", [])
        return paths

    hosts = {f"172.31.0.{i}" for i in HOSTS.values()}
    wait_until(lambda: {p["neighbor-ip"] for p in service_paths()} == hosts, 15,
               what="the cluster IP CIDR from both hosts")
    rib = json.loads(tor.cli("global", "rib", "-j"))
    paths = rib["10.96.0.0/12"]
    communities = [a.get("communities", []) for p in paths for a in p["attrs"] if a.get("type") == 8]
    assert communities and all(SERVICE_COMMUNITY in c for c in communities), communities
    assert not any(a.get("type") == 8 for p in rib["198.51.100.64/26"] for a in p["attrs"])
    # Import: the ToR's accepted prefix reaches the kernels, the rejected one does not.
    tor.cli("global", "rib", "add", "192.0.2.0/24", "nexthop", TOR)
    tor.cli("global", "rib", "add", "203.0.113.0/24", "nexthop", TOR)
    wait_until(lambda: all(bed.bird_routes(h).get("192.0.2.0/24", "").startswith(f"via {TOR} ")
                           for h in HOSTS), 15, what="the ToR's accepted prefix in every kernel")
    assert not any("203.0.113.0/24" in bed.bird_routes(h) for h in HOSTS)

    # Fail closed: a peer naming a missing filter is not brought up, and node status says why.
    apply_manifests(ds, tor_peer(["to-tor", "from-tor", "not-there"]))
    wait_until(lambda: tor.established() == set(), 30, what="ToR sessions torn down")
    status = node_status(bed, "h1", capsys)
    assert not any(p["peerAddress"] == TOR for p in status["peers"])
    assert any("BGPFilter 'not-there' does not exist" in p for p in status["problems"]), status["problems"]
    apply_manifests(ds, "apiVersion: projectcalico.org/v3\nkind: BGPFilter\nmetadata: {name: not-there}\n"
                        "spec: {exportV4: [{action: Reject, matchOperator: In, cidr: 10.96.0.0/12}]}\n")
    wait_until(lambda: tor.established() == {f"172.31.0.{i}" for i in HOSTS.values()}, 30,
               what="ToR sessions back once the filter exists")
    originated = {"192.0.2.0/24", "203.0.113.0/24"}  # the ToR's own, added above
    wait_until(lambda: tor.rib_prefixes() == (expected - {"10.96.0.0/12"}) | originated, 30,
               what="the third filter applied too")
    assert node_status(bed, "h1", capsys)["problems"] == []


def test_calico_node_status_is_filled_from_bird(
        rack: tuple[BgpTestBed, GobgpRouter, MemoryDatastore]) -> None:
    bed, tor, ds = rack
    apply_manifests(ds, "apiVersion: projectcalico.org/v3\nkind: CalicoNodeStatus\n"
                        "metadata: {name: h1-status}\n"
                        "spec: {node: h1, classes: [Agent, BGP, Routes], updatePeriodSeconds: 1}\n")
    bed.wait_ready(timeout=40)
    wait_until(lambda: tor.established() == {"172.31.0.1", "172.31.0.2"}, 30, what="ToR sessions")
    reporter = NodeStatusReporter(ds, "h1", bed.hosts["h1"].run_dir, [4])
    reporter.start()
    store = ResourceStore(ds)

    def status() -> dict[str, Any]:
        found = store.get("CalicoNodeStatus", "h1-status").status
        return dict(found) if found else {}

    def complete() -> bool:
        bgp = status().get("bgp", {})
        return bgp.get("numberEstablishedV4") == 2 and any(
            r["destination"] == "10.65.2.0/26" for r in status().get("routes", {}).get("routesV4", []))

    try:
        wait_until(complete, 20, what="a status with both sessions and h2's block")
    finally:
        reporter.stop()
    final = status()
    assert final["agent"]["birdV4"]["state"] == "Ready"
    assert final["agent"]["birdV4"]["routerID"] == "172.31.0.1"
    assert {(p["peerIP"], p["type"], p["state"]) for p in final["bgp"]["peersV4"]} == {
        ("172.31.0.2", "NodeMesh", "Established"), (TOR, "GlobalPeer", "Established")}
    routes = {r["destination"]: r for r in final["routes"]["routesV4"] if r["type"] == "FIB"}
    assert routes["10.65.2.0/26"]["learnedFrom"] == {"sourceType": "NodeMesh", "peerIP": "172.31.0.2"}
    assert routes["10.65.2.0/26"]["gateway"] == "172.31.0.2" and routes["10.65.2.0/26"]["interface"] == "eth0"
    assert routes["10.96.0.0/12"]["interface"] == "blackhole"
    assert routes["10.96.0.0/12"]["learnedFrom"] == {"sourceType": "Static"}
