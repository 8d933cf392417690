"""Workload BGP peering (BGPPeer localWorkloadSelector) with real BIRD, a workload running gobgpd, and an
FRR top-of-rack router, laid out as Calico's "BGP peering with workloads" guide does.

    vr1 (workload on h1, AS 65123, gobgpd) --eBGP to 169.254.0.179--> h1 (AS 64512)
    h1, h2 --eBGP--> ToR (FRR, AS 65000);  the node-to-node mesh is off

vr1 announces 10.123.0.1/32 (its loopback) and 10.200.0.0/24. h1 imports only the nested pool
(`accept-nested`), exports nothing to the workload (`no-export`) and passes the workload's routes to
the ToR (`export-to-tor`). The /32 must reach h2 through the ToR and answer pings from a workload on
h2; 10.200.0.0/24 must stay out. The ToR peering allows our own AS once in paths
(numAllowedLocalASNumbers), since both hosts share AS 64512.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tortie.cli.main import main as tortie_main
from tortie.datastore.memory import MemoryDatastore
from tortie.testing.bgp_fabric import (
    BgpTestBed,
    FrrRouter,
    GobgpRouter,
    Router,
    apply_manifests,
    gobgp_toml,
    lab_marks,
    node_manifest,
    pool_manifest,
    put_block,
    wait_until,
)

pytestmark = lab_marks(gobgp=True, frr=True)

TOR = "172.31.0.254"
PEERING_IP = "169.254.0.179"
VR_IP = "10.65.1.5"
NESTED = "10.123.0.1/32"

CONFIG = pool_manifest("10.65.0.0/16") + f"""
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{nodeToNodeMeshEnabled: false, localWorkloadPeeringIPV4: "{PEERING_IP}"}}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {{name: no-export}}
spec: {{exportV4: [{{action: Reject}}]}}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {{name: accept-nested}}
spec: {{importV4: [{{action: Accept, matchOperator: In, cidr: 10.123.0.0/16}}, {{action: Reject}}]}}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {{name: export-to-tor}}
spec: {{exportV4: [{{action: Accept, matchOperator: In, cidr: 10.123.0.0/16, source: RemotePeers}}]}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor}}
spec: {{peerIP: {TOR}, asNumber: 65000, numAllowedLocalASNumbers: 1, filters: [export-to-tor]}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: peer-to-workloads}}
spec: {{localWorkloadSelector: "color == 'red'", asNumber: 65123, filters: [no-export, accept-nested]}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: h1-k8s-vr1-eth0, namespace: nested, labels: {{color: red}}}}
spec: {{node: h1, orchestrator: k8s, pod: vr1, endpoint: eth0, interfaceName: cali1,
       ipNetworks: [{VR_IP}/32]}}
---
"""

FRR_CONF = "\n".join([
    "frr defaults datacenter", "hostname tor", "!", "router bgp 65000", f" bgp router-id {TOR}",
    " no bgp ebgp-requires-policy",
    *(f" neighbor 172.31.0.{i} remote-as 64512\n neighbor 172.31.0.{i} timers connect 1" for i in (1, 2)),
    "!", ""])

VR_TOML = gobgp_toml(65123, VR_IP, [(PEERING_IP, 64512)], extra={PEERING_IP: """\
  [neighbors.ebgp-multihop.config]
    enabled = true
    multihop-ttl = 2
"""})


@dataclass
class Lab:
    bed: BgpTestBed
    tor: FrrRouter
    vr: GobgpRouter
    client: str  # a plain workload on h2


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    ds = MemoryDatastore()
    with BgpTestBed(str(tmp_path), "wlp") as bed:
        fabric = bed.add_fabric("fab", "172.31.0.0/24")
        manifests = CONFIG
        for i, name in ((1, "h1"), (2, "h2")):
            bed.add_host(name, fabric, i)
            manifests += node_manifest(name, f"172.31.0.{i}/24")
            put_block(ds, f"10.65.{i}.0/26", name)
            bed.add_block_blackhole(name, f"10.65.{i}.0/26")
        apply_manifests(ds, manifests)
        tor = FrrRouter(bed, bed.add_router("tor", [(fabric, 254)]), FRR_CONF)
        try:
            vr_ns = bed.add_workload("h1", VR_IP)
            bed.exec(vr_ns, "ip", "addr", "add", NESTED, "dev", "lo")
            vr = GobgpRouter(bed, Router("vr1", vr_ns), VR_TOML)
            client = bed.add_workload("h2", "10.65.2.5")
            for name in ("h1", "h2"):
                bed.start_daemon(ds, name)
            yield Lab(bed, tor, vr, client)
        finally:
            for name in list(bed.hosts):
                bed.stop_daemon(name)
            tor.close()


def test_a_workload_router_peers_with_its_host_and_its_route_reaches_other_hosts(
        lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    bed, vr = lab.bed, lab.vr
    # The daemon put the peering address on h1's loopback.
    def on_loopback() -> bool:
        return f"{PEERING_IP}/32" in bed.exec(bed.hosts["h1"].ns, "ip", "-4", "addr", "show", "lo").stdout

    wait_until(on_loopback, 20, what="the peering address on h1's loopback")

    wait_until(lambda: vr.established() == {PEERING_IP}, 30, what="the workload's session with its host")
    vr.cli("global", "rib", "add", NESTED)
    vr.cli("global", "rib", "add", "10.200.0.0/24")
    wait_until(lambda: bed.bird_routes("h1").get(NESTED, "").startswith(f"via {VR_IP} dev cali1"), 20,
               what="the workload's /32 on h1, via the workload")
    # Through the ToR: it keeps h1 as the next hop (all three share the fabric subnet).
    wait_until(lambda: bed.bird_routes("h2").get(NESTED, "").startswith("via 172.31.0.1 dev eth0"), 30,
               what="the workload's /32 on h2, learned from the ToR")
    assert NESTED in lab.tor.vtysh("show bgp ipv4 unicast")
    assert "10.200.0.0/24" not in bed.bird_routes("h1") and "10.200.0.0/24" not in bed.bird_routes("h2")
    assert "10.200.0.0/24" not in lab.tor.vtysh("show bgp ipv4 unicast")
    assert vr.rib_prefixes() == {NESTED, "10.200.0.0/24"}  # no-export: h1 sent the workload nothing

    def ping() -> bool:
        target = NESTED.split("/")[0]
        return bed.exec(lab.client, "ping", "-c", "1", "-W", "1", target, check=False).returncode == 0

    wait_until(ping, 20, interval=0.2, what="ping from a workload on h2 to the nested /32")

    capsys.readouterr()
    assert tortie_main(["node", "status", "--hostname", "h1", "--run-dir", bed.hosts["h1"].run_dir,
                        "-o", "json"]) == 0
    peers = json.loads(capsys.readouterr().out)["peers"]
    assert any(p["peerAddress"] == VR_IP and p["peerType"] == "local workload" and p["established"]
               for p in peers), peers
