"""A top-of-rack router (gobgpd, AS 65000) peering over eBGP with three tortie hosts (AS 64512).

The ToR must receive exactly the blocks of exported pools — not a pool with disableBGPExport, not an
agent route outside every pool, not a non-agent route inside a pool, not a workload /32 covered by
its block's aggregate — and a route the ToR announces must reach every host's kernel.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.bgp.control import BirdControl
from tortie.bgp.daemon import RunPaths
from tortie.bgp.status import parse_route_prefixes, query_peers
from tortie.datastore.memory import MemoryDatastore
from tortie.testing.bgp_fabric import (
    BgpTestBed,
    GobgpRouter,
    apply_manifests,
    gobgp_available,
    gobgp_toml,
    node_manifest,
    put_block,
    run,
    wait_until,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2)"),
    pytest.mark.skipif(not gobgp_available(), reason="needs gobgpd (apt-get install gobgpd)"),
]

HOSTS = {"h1": 1, "h2": 2, "h3": 3}
TOR = "172.31.0.254"

CONFIG = f"""
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor}}
spec: {{peerIP: {TOR}, asNumber: 65000}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: pool}}
spec: {{cidr: 10.65.0.0/16}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: private}}
spec: {{cidr: 10.70.0.0/16, disableBGPExport: true}}
"""

GOBGP_TOML = gobgp_toml(65000, TOR, [(f"172.31.0.{i}", 64512) for i in HOSTS.values()])


@pytest.fixture
def rack(tmp_path: Path) -> Iterator[tuple[BgpTestBed, GobgpRouter]]:
    ds = MemoryDatastore()
    with BgpTestBed(str(tmp_path), "tor") as bed:
        fabric = bed.add_fabric("fab", "172.31.0.0/24")
        manifests = ""
        for name, i in HOSTS.items():
            bed.add_host(name, fabric, i)
            manifests += node_manifest(name, f"172.31.0.{i}/24")
            put_block(ds, f"10.65.{i}.0/26", name)
            bed.add_block_blackhole(name, f"10.65.{i}.0/26")
        # Things that must not leave h1:
        put_block(ds, "10.70.1.0/26", "h1")  # a block of a pool with disableBGPExport
        bed.add_block_blackhole("h1", "10.70.1.0/26")
        bed.add_workload_route("h1", "10.99.0.5")  # an agent route outside every pool
        bed.add_workload_route("h1", "10.65.1.5")  # a workload inside h1's own block
        run(["ip", "-n", bed.hosts["h1"].ns, "route", "add", "10.65.200.1/32", "dev", "eth0",
             "proto", "static"])
        apply_manifests(ds, manifests + CONFIG)
        tor = GobgpRouter(bed, bed.add_router("tor", [(fabric, 254)]), GOBGP_TOML)
        for name in HOSTS:
            bed.start_daemon(ds, name)
        yield bed, tor


def test_tor_receives_exactly_the_pool_blocks_and_its_route_reaches_hosts(
        rack: tuple[BgpTestBed, GobgpRouter]) -> None:
    bed, tor = rack
    expected = {f"10.65.{i}.0/26" for i in HOSTS.values()}

    def established(host: str) -> bool:
        with BirdControl(RunPaths(bed.hosts[host].run_dir).socket) as ctl:
            peers = query_peers(ctl)
        return any(p.address == TOR and p.established and p.peer_type == "global" for p in peers)

    bed.wait_ready()
    wait_until(lambda: all(established(h) for h in HOSTS), 20, what="eBGP sessions to the ToR")
    wait_until(lambda: tor.rib_prefixes() == expected, 20, what=f"ToR RIB == {sorted(expected)}")
    # What each host sends the ToR, from BIRD itself: its own block, and other hosts' blocks it
    # learned over the mesh — never anything else.
    for name, i in HOSTS.items():
        with BirdControl(RunPaths(bed.hosts[name].run_dir).socket) as ctl:
            answer = ctl.command(f"show route export Global_{TOR.replace('.', '_')}")
        exported = set(parse_route_prefixes(answer))
        assert f"10.65.{i}.0/26" in exported and exported <= expected, (name, exported)
    neighbors = json.loads(tor.cli("neighbor", "-j"))
    assert {n["state"]["neighbor_address"] for n in neighbors} == {f"172.31.0.{i}" for i in HOSTS.values()}

    tor.cli("global", "rib", "add", "198.51.100.0/24", "nexthop", TOR)
    wait_until(lambda: all(bed.bird_routes(h).get("198.51.100.0/24", "").startswith(f"via {TOR} dev eth0")
                           for h in HOSTS), 15, what="the ToR's route in every host's kernel")
    assert tor.rib_prefixes() == expected | {"198.51.100.0/24"}
