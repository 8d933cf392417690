"""Golden BIRD configurations: datastore scenarios rendered for one node, compared byte for byte with
tests/golden/bgp/<scenario>.conf, and every golden file must pass `bird -p` (BIRD's own parser).

Regenerate after an intended change:
`TORTIE_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/bgp/test_bgp_golden.py`
and review the diff.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tortie.bgp.records import SecretRef
from tortie.bgp.render import render
from tortie.bgp.snapshot import snapshot_from_resources
from tortie.bgp.view import Timers, ViewOptions, compute_view
from tortie.model import load_resources
from tortie.model.ipam_block import BlockHead, host_affinity

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "golden" / "bgp"

NODES3 = """
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h1, labels: {rack: r1}}
spec: {bgp: {ipv4Address: 172.31.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h2, labels: {rack: r1}}
spec: {bgp: {ipv4Address: 172.31.0.2/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h3, labels: {rack: r2}}
spec: {bgp: {ipv4Address: 172.31.0.3/24}}
"""

POOL = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv4}
spec: {cidr: 10.65.0.0/16}
"""


def _dual_node(name: str, last: int) -> str:
    return (f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}}}\n"
            f'spec: {{bgp: {{ipv4Address: 172.31.0.{last}/24, ipv6Address: "fd00:31::{last}/64"}}}}\n---\n')


def _wep(node: str, pod: str, color: str, iface: str, ip: str) -> str:
    return ("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n"
            f"metadata: {{name: {node}-k8s-{pod}-eth0, namespace: nfv, labels: {{color: {color}}}}}\n"
            f"spec: {{node: {node}, orchestrator: k8s, pod: {pod}, endpoint: eth0, interfaceName: {iface}, "
            f"ipNetworks: [{ip}/32]}}\n---\n")


def _blocks(*pairs: tuple[str, str | None]) -> list[BlockHead]:
    return [BlockHead(ipaddress.ip_network(cidr), host_affinity(host) if host else None)
            for cidr, host in pairs]


def _secrets(ref: SecretRef) -> str | None:
    return {("bgp", "tor"): "s3cret-tor", ("bgp", "mesh"): "mesh-pass"}.get((ref.name, ref.key))


SCENARIOS: dict[str, tuple[str, str, list[BlockHead]]] = {
    # name: (hostname, manifests, blocks)
    "mesh_basic": ("h1", NODES3 + "---" + POOL, _blocks(
        ("10.65.0.0/26", "h1"), ("10.65.0.64/26", "h1"), ("10.65.1.0/26", "h2"), ("10.65.2.0/26", None))),
    "mesh_highest_ip": ("h3", NODES3 + "---" + POOL, _blocks(("10.65.2.0/26", "h3"))),
    "mesh_password_restart": ("h2", NODES3 + "---" + POOL + """
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  nodeMeshPassword: {secretKeyRef: {name: bgp, key: mesh}}
  nodeMeshMaxRestartTime: 90s
""", _blocks(("10.65.1.0/26", "h2"))),
    "route_reflector": ("rr1", """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false, asNumber: 65010}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr1, labels: {route-reflector: "true"}}
spec: {bgp: {ipv4Address: 172.31.0.11/24, routeReflectorClusterID: 244.0.0.1}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr2, labels: {route-reflector: "true"}}
spec: {bgp: {ipv4Address: 172.31.0.12/24, routeReflectorClusterID: 244.0.0.1}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: c1}
spec: {bgp: {ipv4Address: 172.31.0.21/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: c2}
spec: {bgp: {ipv4Address: 172.31.0.22/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-rrs}
spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}
---""" + POOL, _blocks(("10.65.3.0/26", "rr1"))),
    "route_reflector_client": ("c1", """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr1, labels: {route-reflector: "true"}}
spec: {bgp: {ipv4Address: 172.31.0.11/24, routeReflectorClusterID: 244.0.0.1}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr2, labels: {route-reflector: "true"}}
spec: {bgp: {ipv4Address: 172.31.0.12/24, routeReflectorClusterID: 244.0.0.1}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: c1}
spec: {bgp: {ipv4Address: 172.31.0.21/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-rrs}
spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}
---""" + POOL, _blocks(("10.65.4.0/26", "c1"))),
    "external_peers": ("h1", NODES3 + "---" + POOL + """
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 172.31.0.254, asNumber: 65000, password: {secretKeyRef: {name: bgp, key: tor}},
       maxRestartTime: 30s, keepaliveTime: 10s}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: rack1-router}
spec: {nodeSelector: rack == 'r1', peerIP: "192.0.2.1:1179", asNumber: "1.10", sourceAddress: None,
       keepOriginalNextHop: true}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: h1-only}
spec: {node: h1, peerIP: 172.31.0.253, asNumber: 64512, localASNumber: 64999}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: other-rack}
spec: {nodeSelector: rack == 'r2', peerIP: 172.31.0.252, asNumber: 65002}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: missing-secret}
spec: {peerIP: 172.31.0.251, asNumber: 65003, password: {secretKeyRef: {name: bgp, key: nope}}}
""", _blocks(("10.65.0.0/26", "h1"))),
    "communities_and_settings": ("h2", NODES3 + "---" + POOL + """
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  logSeverityScreen: Debug
  listenPort: 1790
  ignoredInterfaces: [eth9, "vx*"]
  communities:
  - {name: dc-east, value: "65001:100"}
  - {name: big, value: "65001:7:9"}
  prefixAdvertisements:
  - {cidr: 10.65.0.0/16, communities: [dc-east, "65001:200"]}
  - {cidr: 10.65.1.0/24, communities: [big]}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.h2}
spec: {logSeverityScreen: Warning}
""", _blocks(("10.65.1.0/26", "h2"))),
    "pools_export_control": ("h1", NODES3 + "---" + POOL + """
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: private}
spec: {cidr: 10.70.0.0/16, disableBGPExport: true}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: old}
spec: {cidr: 10.80.0.0/16, disabled: true}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: hosts}
spec: {cidr: 10.90.0.0/24, blockSize: 32}
""", _blocks(("10.65.0.0/26", "h1"), ("10.70.0.0/26", "h1"), ("10.80.0.0/26", "h1"), ("10.90.0.7/32", "h1"))),
    "dual_stack": ("h1", """
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h1}
spec: {bgp: {ipv4Address: 172.31.0.1/24, ipv6Address: "fd00:31::1/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h2}
spec: {bgp: {ipv4Address: 172.31.0.2/24, ipv6Address: "fd00:31::2/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h3}
spec: {bgp: {ipv4Address: 172.31.0.3/24}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v6}
spec: {cidr: "fd10::/48"}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor6}
spec: {peerIP: "[fd00:31::fe]:1179", asNumber: 65000}
---""" + POOL, _blocks(("10.65.0.0/26", "h1"), ("fd10::/122", "h1"), ("fd10::40/122", "h2"))),
    "ipv6_only": ("h6", """
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h6}
spec: {bgp: {ipv6Address: "fd00:31::6/64", asNumber: 65006}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h7}
spec: {bgp: {ipv6Address: "fd00:31::7/64"}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v6}
spec: {cidr: "fd10::/48"}
""", _blocks(("fd10::80/122", "h6"))),
    "bgp_filters": ("h1", NODES3 + "---" + POOL + """
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: from-tor}
spec:
  importV4:
  - {action: Reject, matchOperator: Equal, cidr: 198.51.100.0/24}
  - {action: Accept, matchOperator: In, cidr: 198.51.0.0/16, prefixLength: {min: 20, max: 24}}
  - {action: Reject, matchOperator: NotIn, cidr: 0.0.0.0/0, prefixLength: {max: 8}}
  - {action: Accept, matchOperator: NotEqual, cidr: 203.0.113.0/24, communities: {values: ["65000:100"]},
     asPathPrefix: [65000]}
  exportV4:
  - {action: Accept, matchOperator: In, cidr: 10.123.0.0/16, source: RemotePeers}
  - {action: Reject, interface: "*.calico"}
  - action: Accept
    peerType: eBGP
    matchOperator: In
    cidr: 10.65.0.0/16
    operations:
    - addCommunity: {value: "65001:300:400"}
    - prependASPath: {prefix: [64512, 64512]}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: a-very-long-filter-name-that-does-not-fit-in-a-bird-symbol-of-64-characters}
spec:
  importV4:
  - {action: Reject, peerType: iBGP, asPathPrefix: [65000, 65001]}
  - {action: Reject}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: unused}
spec: {importV4: [{action: Reject}]}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec:
  peerIP: 172.31.0.254
  asNumber: 65000
  filters: [from-tor, a-very-long-filter-name-that-does-not-fit-in-a-bird-symbol-of-64-characters]
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: same-as-router}
spec:
  peerIP: 172.31.0.253
  asNumber: 64512
  filters: [a-very-long-filter-name-that-does-not-fit-in-a-bird-symbol-of-64-characters]
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: missing-filter}
spec: {peerIP: 172.31.0.252, asNumber: 65002, filters: [from-tor, no-such-filter]}
""", _blocks(("10.65.0.0/26", "h1"))),
    "bgp_filters_ipv6": ("h1", _dual_node("h1", 1) + """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v6}
spec: {cidr: "fd10::/48"}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: v6-edge}
spec:
  importV6:
  - {action: Accept, matchOperator: Equal, cidr: "5000::0/64"}
  - {action: Accept, matchOperator: In, cidr: "2001:db8::/32", prefixLength: {min: 48, max: 64}}
  - {action: Reject}
  exportV6:
  - {action: Reject, source: RemotePeers}
  - {action: Reject, interface: "*.calico"}
  exportV4:
  - {action: Reject, matchOperator: In, cidr: 10.0.0.0/8}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor6}
spec: {peerIP: "fd00:31::fe", asNumber: 65000, filters: [v6-edge]}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor4}
spec: {peerIP: 172.31.0.254, asNumber: 65000, filters: [v6-edge]}
---""" + POOL, _blocks(("10.65.0.0/26", "h1"), ("fd10::/122", "h1"))),
    "peer_options": ("h1", NODES3 + "---" + POOL + """
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {bindMode: NodeIP}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: gtsm-tor}
spec: {peerIP: 172.31.0.254, asNumber: 65000, ttlSecurity: 1, numAllowedLocalASNumbers: 2,
       keepaliveTime: 20s, maxRestartTime: 2m}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: far-router}
spec: {peerIP: 192.0.2.9, asNumber: 65009, reachableBy: 172.31.0.254, ttlSecurity: 3,
       sourceAddress: None}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: rack-peers}
spec: {nodeSelector: rack == 'r1', peerSelector: rack == 'r2', reversePeering: Manual}
""", _blocks(("10.65.0.0/26", "h1"))),
    "services": ("h1", _dual_node("h1", 1) + _dual_node("h2", 2) + """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  serviceClusterIPs: [{cidr: 10.96.0.0/12}, {cidr: "fd00:96::/112"}]
  serviceExternalIPs: [{cidr: 203.0.113.0/24}]
  serviceLoadBalancerIPs: [{cidr: 198.51.100.64/26}]
  communities: [{name: svc, value: "64512:96"}]
  prefixAdvertisements: [{cidr: 10.96.0.0/12, communities: [svc]}]
---""" + POOL, _blocks(("10.65.0.0/26", "h1"))),
    "workload_peering": ("h1", NODES3 + "---" + POOL + """
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false, localWorkloadPeeringIPV4: 169.254.0.179}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: no-export}
spec: {exportV4: [{action: Reject}], exportV6: [{action: Reject}]}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: accept-nested-ip-pools}
spec: {importV4: [{action: Accept, matchOperator: In, cidr: 10.123.0.0/16}, {action: Reject}]}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-to-workloads}
spec: {localWorkloadSelector: color == 'red', asNumber: 65123, filters: [no-export, accept-nested-ip-pools]}
---
""" + _wep("h1", "vr1", "red", "cali1", "10.65.0.5") + _wep("h1", "web", "blue", "cali2", "10.65.0.6")
        + _wep("h2", "vr2", "red", "cali1", "10.65.1.5"), _blocks(("10.65.0.0/26", "h1"))),
}


def render_scenario(name: str, timers: Timers | None = None) -> str:
    hostname, manifests, blocks = SCENARIOS[name]
    snap = snapshot_from_resources(load_resources(manifests, source=name), blocks, hostname)
    result = compute_view(snap, hostname, ViewOptions(secrets=_secrets, timers=timers or Timers()))
    assert result.view is not None, result.problems
    return render(result.view)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_render_matches_golden(name: str) -> None:
    text = render_scenario(name)
    path = GOLDEN_DIR / f"{name}.conf"
    if os.environ.get("TORTIE_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with TORTIE_REGEN_GOLDEN=1"
    assert text == path.read_text(), f"{name}: rendering changed; regenerate and review the diff"


def test_every_golden_file_has_a_scenario() -> None:
    assert {p.stem for p in GOLDEN_DIR.glob("*.conf")} == set(SCENARIOS)


@pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2)")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_passes_bird_parser(name: str) -> None:
    proc = subprocess.run(["bird", "-p", "-c", str(GOLDEN_DIR / f"{name}.conf")], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2)")
def test_fast_timers_render_parses(tmp_path: Path) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(render_scenario("route_reflector", Timers.fast()))
    text = conf.read_text()
    assert "connect delay time 0;" in text
    assert "graceful restart wait 10;" in text and "  hold time 9;\n  keepalive time 3;" in text
    assert "  graceful restart;\n  graceful restart time 20;" in text
    proc = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
