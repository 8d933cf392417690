"""BGPPeer ttlSecurity (GTSM, RFC 5082) with real BIRD against gobgpd (AS 65000).

The ToR requires GTSM from h1 (IP_MINTTL 255: it accepts only packets sent with TTL 255) and not
from h2 (a plain eBGP neighbour, which sends TTL 1). With ttlSecurity 1 the h1 session comes up —
so BIRD sends TTL 255 — and h2's BIRD never gets its session Established, since it refuses the
ToR's TTL-1 packets. Without ttlSecurity it is the other way round.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.bgp.control import BirdControl
from tortie.bgp.daemon import RunPaths
from tortie.bgp.status import query_peers
from tortie.datastore.memory import MemoryDatastore
from tortie.testing.bgp_fabric import (
    BgpTestBed,
    GobgpRouter,
    apply_manifests,
    gobgp_toml,
    lab_marks,
    node_manifest,
    wait_until,
)

pytestmark = lab_marks(gobgp=True)

TOR = "172.31.0.254"
# Short hold times: the negative case leaves gobgpd believing in a session BIRD never completed (its
# TTL-1 keepalives are refused), and gobgpd turns new connections away until that session times out.
GOBGP_TOML = gobgp_toml(65000, TOR, [("172.31.0.1", 64512), ("172.31.0.2", 64512)],
                        timers="hold-time = 6\nkeepalive-interval = 2", extra={"172.31.0.1": """\
  [neighbors.ttl-security.config]
    enabled = true
    ttl-min = 255
"""})
BASE = """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
"""


def peers(ttl: int | None) -> str:
    option = f", ttlSecurity: {ttl}" if ttl is not None else ""
    return "".join(f"""---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor-{host}}}
spec: {{node: {host}, peerIP: {TOR}, asNumber: 65000{option}}}
""" for host in ("h1", "h2"))


@pytest.fixture
def rack(tmp_path: Path) -> Iterator[tuple[BgpTestBed, GobgpRouter, MemoryDatastore]]:
    ds = MemoryDatastore()
    with BgpTestBed(str(tmp_path), "ttl") as bed:
        fabric = bed.add_fabric("fab", "172.31.0.0/24")
        manifests = BASE
        for i, name in enumerate(("h1", "h2"), start=1):
            bed.add_host(name, fabric, i)
            manifests += "---\n" + node_manifest(name, f"172.31.0.{i}/24")
        apply_manifests(ds, manifests + peers(1))
        tor = GobgpRouter(bed, bed.add_router("tor", [(fabric, 254)]), GOBGP_TOML)
        for name in ("h1", "h2"):
            bed.start_daemon(ds, name)
        bed.wait_ready(timeout=40)
        yield bed, tor, ds


def bird_established(bed: BgpTestBed, host: str) -> bool:
    """Whether the host's BIRD has its session with the ToR Established."""
    with BirdControl(RunPaths(bed.hosts[host].run_dir).socket) as ctl:
        return any(p.address == TOR and p.established for p in query_peers(ctl))


def test_gtsm_sessions_need_ttl_255_on_both_sides(
        rack: tuple[BgpTestBed, GobgpRouter, MemoryDatastore]) -> None:
    """The side that enforces GTSM is the one to ask: a TTL-1 OPEN that arrives before the receiver
    sets its minimum TTL can still make the other side believe the session is up."""
    bed, tor, ds = rack
    wait_until(lambda: "172.31.0.1" in tor.established() and bird_established(bed, "h1"), 30,
               what="the GTSM session up on both sides (BIRD sends TTL 255)")
    time.sleep(3)  # gobgpd retries every second: BIRD keeps refusing its TTL-1 packets
    assert not bird_established(bed, "h2")
    apply_manifests(ds, BASE + peers(None))
    wait_until(lambda: "172.31.0.2" in tor.established() and bird_established(bed, "h2"), 40,
               what="the plain session up once h2 drops ttlSecurity")
    wait_until(lambda: "172.31.0.1" not in tor.established(), 20,
               what="the ToR refusing h1's TTL-1 packets once h1 drops ttlSecurity")
    time.sleep(3)
    assert "172.31.0.1" not in tor.established()
