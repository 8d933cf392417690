"""Two datacenters, each its own tortie cluster (own datastore, pool and AS), joined by a carrier router
(FRR, AS 65000) with one leg on each fabric, over eBGP. A workload in DC1 pings a workload in DC2.

    DC1 fabric 172.31.1.0/24, AS 65001: h1 (.1), h2 (.2), pool 10.65.0.0/16
    DC2 fabric 172.31.2.0/24, AS 65002: h3 (.1), h4 (.2), pool 10.66.0.0/16
    carrier: 172.31.1.254 and 172.31.2.254, zebra + bgpd, forwards between the fabrics
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.datastore.memory import MemoryDatastore
from tortie.testing.bgp_fabric import (
    BgpTestBed,
    FrrRouter,
    apply_manifests,
    frr_available,
    node_manifest,
    put_block,
    wait_until,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2)"),
    pytest.mark.skipif(not frr_available(), reason="needs FRR (apt-get install frr)"),
]

# dc -> (AS, fabric subnet prefix, pool, {host: index})
DCS = {
    "dc1": (65001, "172.31.1", "10.65", {"h1": 1, "h2": 2}),
    "dc2": (65002, "172.31.2", "10.66", {"h3": 1, "h4": 2}),
}


def _carrier_conf() -> str:
    lines = ["frr defaults datacenter", "hostname carrier", "!", "router bgp 65000",
             " bgp router-id 172.31.1.254", " no bgp ebgp-requires-policy"]
    for asn, subnet, _pool, hosts in DCS.values():
        for i in hosts.values():
            lines += [f" neighbor {subnet}.{i} remote-as {asn}", f" neighbor {subnet}.{i} timers connect 1"]
    return "\n".join([*lines, "!", ""])


@pytest.fixture
def datacenters(tmp_path: Path) -> Iterator[tuple[BgpTestBed, FrrRouter]]:
    with BgpTestBed(str(tmp_path), "dc") as bed:
        fabrics = {dc: bed.add_fabric(f"f{dc}", f"{subnet}.0/24") for dc, (_a, subnet, _p, _h) in DCS.items()}
        carrier = bed.add_router("carrier", [(fabrics["dc1"], 254), (fabrics["dc2"], 254)])
        frr = FrrRouter(bed, carrier, _carrier_conf())
        try:
            for dc, (asn, subnet, pool, hosts) in DCS.items():
                ds = MemoryDatastore()  # each datacenter is its own cluster
                manifests = f"""
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{asNumber: {asn}}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: carrier}}
spec: {{peerIP: {subnet}.254, asNumber: 65000}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: pool}}
spec: {{cidr: {pool}.0.0/16}}
---
"""
                for name, i in hosts.items():
                    bed.add_host(name, fabrics[dc], i)
                    manifests += node_manifest(name, f"{subnet}.{i}/24")
                    block = f"{pool}.{i}.0/26"
                    put_block(ds, block, name)
                    bed.add_block_blackhole(name, block)
                apply_manifests(ds, manifests)
                for name in hosts:
                    bed.start_daemon(ds, name)
            yield bed, frr
        finally:
            for name in list(bed.hosts):
                bed.stop_daemon(name)
            frr.close()


def test_workload_in_dc1_reaches_workload_in_dc2(datacenters: tuple[BgpTestBed, FrrRouter]) -> None:
    bed, frr = datacenters
    w1 = bed.add_workload("h1", "10.65.1.10")
    w3 = bed.add_workload("h3", "10.66.1.10")

    wait_until(lambda: bed.bird_routes("h1").get("10.66.1.0/26", "").startswith("via 172.31.1.254 "), 30,
               what="DC2's block on h1 via the carrier")
    wait_until(lambda: bed.bird_routes("h3").get("10.65.1.0/26", "").startswith("via 172.31.2.254 "), 30,
               what="DC1's block on h3 via the carrier")
    # Inside a datacenter the mesh still carries the direct route, not the detour via the carrier.
    wait_until(lambda: bed.bird_routes("h2").get("10.65.1.0/26", "").startswith("via 172.31.1.1 ")
               and bed.bird_routes("h4").get("10.66.1.0/26", "").startswith("via 172.31.2.1 "), 15,
               what="intra-datacenter routes over the mesh")
    summary = frr.vtysh("show bgp ipv4 unicast")
    for block in ("10.65.1.0/26", "10.65.2.0/26", "10.66.1.0/26", "10.66.2.0/26"):
        assert block in summary

    def ping() -> bool:
        return bed.exec(w1, "ping", "-c", "1", "-W", "1", "10.66.1.10", check=False).returncode == 0

    wait_until(ping, 15, interval=0.2, what="ping from DC1 workload to DC2 workload")
    out = bed.exec(w3, "ping", "-c", "2", "-W", "1", "10.65.1.10", check=False)
    assert out.returncode == 0, out.stdout + out.stderr
