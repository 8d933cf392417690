"""Route reflectors: 2 reflectors (one cluster ID) + 4 clients, node-to-node mesh off.

Every host learns every other host's block through the reflectors; clients peer only with the
reflectors; stopping one reflector loses no route, and new routes still propagate through the other.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.cli.main import main as tortie_main
from tortie.datastore.memory import MemoryDatastore
from tortie.testing.bgp_fabric import BgpTestBed, apply_manifests, node_manifest, put_block, wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2)"),
]

REFLECTORS = {"rr1": 11, "rr2": 12}
CLIENTS = {"c1": 21, "c2": 22, "c3": 23, "c4": 24}
ALL = {**REFLECTORS, **CLIENTS}

CONFIG = """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false, asNumber: 65010}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-reflectors}
spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.65.0.0/16}
"""


def block_of(host: str) -> str:
    return f"10.65.{ALL[host]}.0/26"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[BgpTestBed, MemoryDatastore]]:
    ds = MemoryDatastore()
    with BgpTestBed(str(tmp_path), "rr") as bed:
        fabric = bed.add_fabric("fab", "172.31.0.0/24")
        manifests = ""
        for name, i in ALL.items():
            bed.add_host(name, fabric, i)
            if name in REFLECTORS:
                manifests += node_manifest(name, f"172.31.0.{i}/24", labels={"route-reflector": "true"},
                                           rr_cluster_id="244.0.0.1")
            else:
                manifests += node_manifest(name, f"172.31.0.{i}/24")
            put_block(ds, block_of(name), name)
            bed.add_block_blackhole(name, block_of(name))
        apply_manifests(ds, manifests + CONFIG)
        for name in ALL:
            bed.start_daemon(ds, name)
        yield bed, ds


def _learned(bed: BgpTestBed, host: str) -> set[str]:
    return {dst for dst in bed.bird_routes(host) if dst.startswith("10.65.")}


def _peers(bed: BgpTestBed, host: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert tortie_main(["node", "status", "--hostname", host, "--run-dir", bed.hosts[host].run_dir,
                        "-o", "json"]) == 0
    peers = json.loads(capsys.readouterr().out)["peers"]
    assert isinstance(peers, list)
    return peers


def test_reflectors_distribute_every_block_and_survive_losing_one(
        cluster: tuple[BgpTestBed, MemoryDatastore], capsys: pytest.CaptureFixture[str]) -> None:
    bed, ds = cluster

    def everyone_has_everything() -> bool:
        return all(_learned(bed, h) == {block_of(o) for o in ALL if o != h} for h in ALL)

    wait_until(everyone_has_everything, 30, what="every host learning every other block")
    for client in CLIENTS:
        peers = _peers(bed, client, capsys)
        assert sorted((p["peerAddress"], p["peerType"], p["established"]) for p in peers) == [
            ("172.31.0.11", "route reflector", True), ("172.31.0.12", "route reflector", True)]
    rr1_peers = {p["peerAddress"]: p["peerType"] for p in _peers(bed, "rr1", capsys)}
    assert rr1_peers == {"172.31.0.12": "node specific", **{f"172.31.0.{i}": "route reflector client"
                                                             for i in CLIENTS.values()}}
    # Routes reflected between clients keep the originating client as next hop.
    assert "via 172.31.0.24 dev eth0" in bed.bird_routes("c1")[block_of("c4")]

    bed.stop_daemon("rr1")  # BIRD on rr1 gets SIGTERM: its sessions close
    wait_until(lambda: all(not any(p["peerAddress"] == "172.31.0.11" and p["established"]
                                   for p in _peers(bed, c, capsys)) for c in CLIENTS), 15,
               what="clients noticing rr1 is gone")
    for client in CLIENTS:  # nothing but rr1's own block may go
        assert {block_of(o) for o in ALL if o not in (client, "rr1")} <= _learned(bed, client), client

    # Still converging through rr2 alone: a new block on c1 and a borrowed /32 on c4.
    put_block(ds, "10.65.99.0/26", "c1")
    bed.add_block_blackhole("c1", "10.65.99.0/26")
    bed.add_workload_route("c4", "10.65.21.5")
    wait_until(lambda: all("10.65.99.0/26" in _learned(bed, c) for c in ("c2", "c3", "c4")), 15,
               what="new block via the remaining reflector")
    wait_until(lambda: all("10.65.21.5/32" in _learned(bed, c) for c in ("c1", "c2", "c3")), 15,
               what="borrowed /32 via the remaining reflector")
