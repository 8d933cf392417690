"""Route reflectors: 2 reflectors (one cluster ID) + 4 clients, node-to-node mesh off.

Every host learns every other host's block through the reflectors; clients peer only with the
reflectors; stopping one reflector loses no route, and new routes still propagate through the other.
The scenario runs on an IPv4 fabric and on an IPv6-only one (nodes with only `ipv6Address`, IPv6
sessions between them, an IPv6 pool's /122 blocks and a borrowed /128).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tortie.cli.main import main as tortie_main
from tortie.common.ipfamily import V4, V6, Family
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
"""


@dataclass(frozen=True)
class Plan:
    """One family's addresses: the fabric, the pool, host i's block and fabric address."""

    fam: Family
    fabric: str
    pool: str
    block_prefix: int

    def block(self, i: int) -> str:
        net = ipaddress.ip_network(self.pool)
        step = 256 if self.fam is V4 else 1 << 64  # 10.65.<i>.0/26, fd65:0:<i>::/122
        return str(ipaddress.ip_network(f"{net.network_address + i * step}/{self.block_prefix}"))

    def address(self, i: int) -> str:
        return str(ipaddress.ip_network(self.fabric).network_address + i)

    def in_block(self, i: int, offset: int) -> str:
        return str(ipaddress.ip_network(self.block(i)).network_address + offset)


PLANS = {V4: Plan(V4, "172.31.0.0/24", "10.65.0.0/16", 26), V6: Plan(V6, "fd00:31::/64", "fd65::/48", 122)}


@dataclass
class Cluster:
    bed: BgpTestBed
    ds: MemoryDatastore
    plan: Plan

    def block_of(self, host: str) -> str:
        return self.plan.block(ALL[host])

    def address_of(self, host: str) -> str:
        return self.plan.address(ALL[host])


@pytest.fixture(params=[V4, V6], ids=["ipv4", "ipv6"])
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    plan = PLANS[request.param]
    ds = MemoryDatastore()
    with BgpTestBed(str(tmp_path), "rr") as bed:
        fabric = bed.add_fabric("fab", plan.fabric)
        manifests = ""
        for name, i in ALL.items():
            address = str(bed.add_host(name, fabric, i).address)
            if name in REFLECTORS:
                manifests += node_manifest(name, address, labels={"route-reflector": "true"},
                                           rr_cluster_id="244.0.0.1")
            else:
                manifests += node_manifest(name, address)
            put_block(ds, plan.block(i), name)
            bed.add_block_blackhole(name, plan.block(i))
        apply_manifests(ds, manifests + CONFIG + f"spec: {{cidr: '{plan.pool}'}}\n")
        for name in ALL:
            bed.start_daemon(ds, name)
        yield Cluster(bed, ds, plan)


def _learned(c: Cluster, host: str) -> set[str]:
    pool = ipaddress.ip_network(c.plan.pool)
    routes = (ipaddress.ip_network(dst) for dst in c.bed.bird_routes(host) if dst != "default")
    return {str(net) for net in routes if net.version == pool.version and net.subnet_of(pool)}  # type: ignore[arg-type]


def _peers(bed: BgpTestBed, host: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert tortie_main(["node", "status", "--hostname", host, "--run-dir", bed.hosts[host].run_dir,
                        "-o", "json"]) == 0
    peers = json.loads(capsys.readouterr().out)["peers"]
    assert isinstance(peers, list)
    return peers


def test_reflectors_distribute_every_block_and_survive_losing_one(
        cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    c = cluster
    bed, ds, plan = c.bed, c.ds, c.plan

    def everyone_has_everything() -> bool:
        return all(_learned(c, h) == {c.block_of(o) for o in ALL if o != h} for h in ALL)

    wait_until(everyone_has_everything, 30, what="every host learning every other block")
    rr1, rr2 = c.address_of("rr1"), c.address_of("rr2")
    for client in CLIENTS:
        peers = _peers(bed, client, capsys)
        assert sorted((p["peerAddress"], p["peerType"], p["established"]) for p in peers) == sorted([
            (rr1, "route reflector", True), (rr2, "route reflector", True)])
    rr1_peers = {p["peerAddress"]: p["peerType"] for p in _peers(bed, "rr1", capsys)}
    assert rr1_peers == {rr2: "node specific", **{c.address_of(n): "route reflector client" for n in CLIENTS}}
    # Routes reflected between clients keep the originating client as next hop.
    assert f"via {c.address_of('c4')} dev eth0" in bed.bird_routes("c1")[c.block_of("c4")]

    bed.stop_daemon("rr1")  # BIRD on rr1 gets SIGTERM: its sessions close
    wait_until(lambda: all(not any(p["peerAddress"] == rr1 and p["established"]
                                   for p in _peers(bed, n, capsys)) for n in CLIENTS), 15,
               what="clients noticing rr1 is gone")
    for client in CLIENTS:  # nothing but rr1's own block may go
        assert {c.block_of(o) for o in ALL if o not in (client, "rr1")} <= _learned(c, client), client

    # Still converging through rr2 alone: a new block on c1 and a borrowed host route on c4.
    new_block = plan.block(99)
    put_block(ds, new_block, "c1")
    bed.add_block_blackhole("c1", new_block)
    borrowed = plan.in_block(ALL["c1"], 5)
    bed.add_workload_route("c4", borrowed)
    wait_until(lambda: all(new_block in _learned(c, n) for n in ("c2", "c3", "c4")), 15,
               what="new block via the remaining reflector")
    wait_until(lambda: all(plan.fam.host_cidr(borrowed) in _learned(c, n) for n in ("c1", "c2", "c3")), 15,
               what="borrowed host route via the remaining reflector")
