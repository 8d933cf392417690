"""A top-of-rack router (gobgpd, AS 65000) peering over eBGP with three tortie hosts (AS 64512).

The ToR must receive exactly the blocks of exported pools — not a pool with disableBGPExport, not an
agent route outside every pool, not a non-agent route inside a pool, not a workload host route
covered by its block's aggregate — and a route the ToR announces must reach every host's kernel.
The scenario runs on an IPv4 fabric and on an IPv6-only one, where the BGPPeer's `peerIP` is the
ToR's IPv6 address, the nodes have only `ipv6Address`, and the sessions carry IPv6 unicast.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tortie.bgp.control import BirdControl
from tortie.bgp.daemon import RunPaths
from tortie.bgp.session import protocol_name
from tortie.bgp.status import parse_route_prefixes, query_peers
from tortie.common.ipfamily import V4, V6, Family
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


@dataclass(frozen=True)
class Plan:
    """One family's addresses. Host i: fabric address fabric+i, block `block(i)` of the exported pool."""

    fam: Family
    fabric: str
    pool: str  # exported
    private: str  # disableBGPExport
    outside: str  # an agent route's address outside every pool
    announced: str  # what the ToR originates
    block_prefix: int

    def address(self, i: int) -> str:
        return str(ipaddress.ip_network(self.fabric).network_address + i)

    @property
    def tor(self) -> str:
        return self.address(254)

    def block(self, i: int, pool: str = "") -> str:
        net = ipaddress.ip_network(pool or self.pool)
        step = 256 if self.fam is V4 else 1 << 64  # 10.65.<i>.0/26, fd65:0:0:<i>::/122
        return str(ipaddress.ip_network(f"{net.network_address + i * step}/{self.block_prefix}"))

    def in_block(self, i: int, offset: int, pool: str = "") -> str:
        return str(ipaddress.ip_network(self.block(i, pool)).network_address + offset)


PLANS = {
    V4: Plan(V4, "172.31.0.0/24", "10.65.0.0/16", "10.70.0.0/16", "10.99.0.5", "198.51.100.0/24", 26),
    V6: Plan(V6, "fd00:31::/64", "fd65::/48", "fd70::/48", "fd99::5", "2001:db8:100::/48", 122),
}


def config(plan: Plan) -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor}}
spec: {{peerIP: '{plan.tor}', asNumber: 65000}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: pool}}
spec: {{cidr: '{plan.pool}'}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: private}}
spec: {{cidr: '{plan.private}', disableBGPExport: true}}
"""


@pytest.fixture(params=[V4, V6], ids=["ipv4", "ipv6"])
def rack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[BgpTestBed, GobgpRouter, Plan]]:
    plan = PLANS[request.param]
    ds = MemoryDatastore()
    with BgpTestBed(str(tmp_path), "tor") as bed:
        fabric = bed.add_fabric("fab", plan.fabric)
        manifests = ""
        for name, i in HOSTS.items():
            manifests += node_manifest(name, str(bed.add_host(name, fabric, i).address))
            put_block(ds, plan.block(i), name)
            bed.add_block_blackhole(name, plan.block(i))
        # Things that must not leave h1:
        put_block(ds, plan.block(1, plan.private), "h1")  # a block of a pool with disableBGPExport
        bed.add_block_blackhole("h1", plan.block(1, plan.private))
        bed.add_workload_route("h1", plan.outside)  # an agent route outside every pool
        bed.add_workload_route("h1", plan.in_block(1, 5))  # a workload inside h1's own block
        static = plan.fam.host_cidr(plan.in_block(200, 1))  # inside the pool, not the agent's
        run(["ip", "-n", bed.hosts["h1"].ns, "route", "add", static, "dev", "eth0", "proto", "static"])
        apply_manifests(ds, manifests + config(plan))
        toml = gobgp_toml(65000, "172.31.0.254", [(plan.address(i), 64512) for i in HOSTS.values()])
        tor = GobgpRouter(bed, bed.add_router("tor", [(fabric, 254)]), toml)
        for name in HOSTS:
            bed.start_daemon(ds, name)
        yield bed, tor, plan


def test_tor_receives_exactly_the_pool_blocks_and_its_route_reaches_hosts(
        rack: tuple[BgpTestBed, GobgpRouter, Plan]) -> None:
    bed, tor, plan = rack
    fam, tor_ip = plan.fam, plan.tor
    expected = {plan.block(i) for i in HOSTS.values()}

    def established(host: str) -> bool:
        with BirdControl(RunPaths(bed.hosts[host].run_dir).socket) as ctl:
            peers = query_peers(ctl)
        return any(str(p.address) == tor_ip and p.established and p.peer_type == "global" for p in peers)

    bed.wait_ready()
    wait_until(lambda: all(established(h) for h in HOSTS), 20, what="eBGP sessions to the ToR")
    wait_until(lambda: tor.rib_prefixes(fam) == expected, 20, what=f"ToR RIB == {sorted(expected)}")
    # What each host sends the ToR, from BIRD itself: its own block, and other hosts' blocks it
    # learned over the mesh — never anything else.
    for name, i in HOSTS.items():
        with BirdControl(RunPaths(bed.hosts[name].run_dir).socket) as ctl:
            answer = ctl.command(f"show route export {protocol_name('Global', ipaddress.ip_address(tor_ip))}")
        exported = set(parse_route_prefixes(answer))
        assert plan.block(i) in exported and exported <= expected, (name, exported)
    neighbors = json.loads(tor.cli("neighbor", "-j"))
    assert {n["state"]["neighbor_address"] for n in neighbors} == {plan.address(i) for i in HOSTS.values()}

    tor.cli("global", "rib", "-a", fam.key, "add", plan.announced, "nexthop", tor_ip)
    wait_until(lambda: all(bed.bird_routes(h).get(plan.announced, "").startswith(f"via {tor_ip} dev eth0")
                           for h in HOSTS), 15, what="the ToR's route in every host's kernel")
    assert tor.rib_prefixes(fam) == expected | {plan.announced}
