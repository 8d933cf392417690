"""Stored objects -> BGP records (`tortie.bgp.snapshot`), secret files, and the `node` CLI group."""

from __future__ import annotations

import argparse
import ipaddress
import json
import time
from pathlib import Path

import pytest

from tortie.bgp.records import SecretRef
from tortie.bgp.secrets import FileSecrets
from tortie.bgp.snapshot import BGP_PREFIXES, SnapshotCache
from tortie.cli.main import main as tortie_main
from tortie.cli.node_status_cmd import agent_state, node_subparsers
from tortie.model import load_resources

KEY = "/calico/resources/v3/projectcalico.org/"
BLOCK = "/calico/ipam/v2/assignment/ipv4/block/10.65.1.0-26"

WIRE = """
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h1, labels: {rack: r1}}
spec: {bgp: {ipv4Address: 172.31.0.1/24, asNumber: "1.10", routeReflectorClusterID: 244.0.0.1}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: "[fd00::1]:1179", asNumber: 65000, maxRestartTime: 2m, keepaliveTime: 15s,
       password: {secretKeyRef: {name: bgp, key: tor}}, nodeSelector: rack == 'r1'}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeMeshMaxRestartTime: 90s, ignoredInterfaces: ["eth9"],
       communities: [{name: c, value: "1:2"}], prefixAdvertisements: [{cidr: 10.65.0.0/16, communities: [c]}]}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.65.0.0/16, disableBGPExport: true}
"""


def _wire_objects() -> dict[str, dict[str, object]]:
    out = {}
    for res in load_resources(WIRE):
        out[res.key] = res.to_wire()
    return out


def test_cache_decodes_every_kind() -> None:
    cache = SnapshotCache()
    for key, value in _wire_objects().items():
        assert cache.on_update(key, value)
    assert cache.on_update(BLOCK, {"cidr": "10.65.1.0/26", "affinity": "host:h1", "allocations": [None] * 64,
                                   "unallocated": list(range(64)), "attributes": []})
    snap = cache.snapshot()
    node = snap.node("h1")
    assert node is not None
    assert (node.ipv4, node.as_number, node.rr_cluster_id, dict(node.labels)) == (
        ipaddress.IPv4Interface("172.31.0.1/24"), 65546, "244.0.0.1", {"rack": "r1"})
    peer = snap.peers[0]
    assert (peer.peer_ip, peer.peer_port, peer.max_restart_time, peer.keepalive_time, peer.password,
            peer.node_selector) == (ipaddress.ip_address("fd00::1"), 1179, 120, 15, SecretRef("bgp", "tor"),
                                    "rack == 'r1'")
    cfg = snap.config("default")
    assert cfg is not None and cfg.node_mesh_max_restart_time == 90 and cfg.ignored_interfaces == ("eth9",)
    assert snap.pools[0].disable_bgp_export and not snap.pools[0].exported
    assert [(str(b.cidr), b.host) for b in snap.blocks] == [("10.65.1.0/26", "h1")]


def test_cache_reports_only_real_changes_and_drops_invalid_objects() -> None:
    cache = SnapshotCache()
    objects = _wire_objects()
    node_key = KEY + "nodes/h1"
    assert cache.on_update(node_key, objects[node_key])
    assert not cache.on_update(node_key, objects[node_key])  # same content: no change
    block = {"cidr": "10.65.1.0/26", "affinity": "host:h1", "allocations": [None] * 64,
             "unallocated": list(range(64)), "attributes": []}
    assert cache.on_update(BLOCK, block)
    assert not cache.on_update(BLOCK, {**block, "sequenceNumber": 5})  # allocations only: same record
    assert cache.on_update(BLOCK, {**block, "affinity": "host:h2"})
    # An invalid update removes what the key held (invalid = absent) and does not raise.
    bad = dict(objects[node_key])
    bad["spec"] = {"bgp": {"ipv4Address": "not-an-ip"}}
    assert cache.on_update(node_key, bad)
    assert cache.snapshot().node("h1") is None
    assert cache.on_delete(BLOCK) and not cache.on_delete(BLOCK)
    assert cache.snapshot().blocks == ()


def test_prefixes_do_not_overlap() -> None:
    for a in BGP_PREFIXES:
        for b in BGP_PREFIXES:
            assert a == b or not b.startswith(a)


def test_file_secrets(tmp_path: Path) -> None:
    (tmp_path / "bgp").mkdir()
    (tmp_path / "bgp" / "tor").write_text("s3cret\n")
    (tmp_path / "bgp" / "empty").write_text("")
    secrets = FileSecrets(str(tmp_path))
    assert secrets(SecretRef("bgp", "tor")) == "s3cret"
    assert secrets(SecretRef("bgp", "empty")) is None
    assert secrets(SecretRef("bgp", "missing")) is None
    assert secrets(SecretRef("..", "tor")) is None
    assert secrets(SecretRef("bgp/../bgp", "tor")) is None


def test_node_group_is_shared_between_modules() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    first = node_subparsers(sub)
    first.add_parser("status")
    second = node_subparsers(sub)
    assert second is first
    second.add_parser("run").set_defaults(marker="run")
    assert parser.parse_args(["node", "run"]).marker == "run"


def test_node_status_without_bird(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tortie_main(["node", "status", "--hostname", "hx", "--run-dir", str(tmp_path)]) == 1
    assert "BIRD is not running on hx" in capsys.readouterr().err
    assert tortie_main(["node", "status", "--hostname", "hx", "--run-dir", str(tmp_path), "-o", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["bird"]["running"] is False and data["peers"] == []


def test_bgp_run_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        tortie_main(["bgp", "run", "--help"])
    out = capsys.readouterr().out
    for option in ("--hostname", "--run-dir", "--secrets-dir", "--agent-route-protocol", "--bird-netns"):
        assert option in out


def _node_json(run_dir: Path, **fields: object) -> None:
    doc = {"hostname": "hx", "pid": 1, "updated": time.time(), "stopping": False, "node": {},
           "components": {"agent": {"running": True, "pid": 2, "ready": True, "lastExitCode": None}}}
    doc.update(fields)
    (run_dir / "node.json").write_text(json.dumps(doc))


def test_agent_state_follows_the_node_service(tmp_path: Path) -> None:
    assert agent_state(str(tmp_path))["managed"] is False  # BGP on its own: no node.json
    _node_json(tmp_path)
    assert agent_state(str(tmp_path)) == {"managed": True, "running": True, "ready": True, "reason": ""}
    _node_json(tmp_path, components={"agent": {"running": False, "pid": None, "lastExitCode": 3}})
    state = agent_state(str(tmp_path))
    assert state["running"] is False and "last exit code 3" in state["reason"]
    _node_json(tmp_path, updated=time.time() - 60)  # the node service itself is gone
    state = agent_state(str(tmp_path))
    assert state["running"] is False and "not running" in state["reason"]
    _node_json(tmp_path, stopping=True)
    assert agent_state(str(tmp_path))["running"] is False
    _node_json(tmp_path, components={"bgp": {"running": True}})
    assert agent_state(str(tmp_path))["managed"] is False


def test_node_status_names_the_agent_when_bird_is_down(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _node_json(tmp_path, components={"agent": {"running": False, "pid": None, "lastExitCode": 1}})
    assert tortie_main(["node", "status", "--hostname", "hx", "--run-dir", str(tmp_path)]) == 1
    assert "tortie agent is NOT running: the agent has exited" in capsys.readouterr().err
    assert tortie_main(["node", "status", "--hostname", "hx", "--run-dir", str(tmp_path), "-o", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["agent"]["running"] is False


RENDER = """
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h1}
spec: {bgp: {ipv4Address: 172.31.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: edge}
spec: {importV4: [{action: Reject, matchOperator: In, cidr: 10.0.0.0/8}]}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 172.31.0.254, asNumber: 65000, filters: [edge]}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: broken}
spec: {peerIP: 172.31.0.253, asNumber: 65000, filters: [missing]}
"""


def test_bgp_render_prints_what_run_would_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(RENDER)
    url = f"sqlite:///{tmp_path / 'ds.db'}"  # the SQLAlchemy spelling works too
    assert tortie_main(["--datastore", url, "apply", "-f", str(manifest)]) == 0
    capsys.readouterr()
    assert tortie_main(["--datastore", url, "bgp", "render", "--hostname", "h1"]) == 0
    out, err = capsys.readouterr()
    assert "function 'bgp_edge_importFilterV4'()" in out and "protocol bgp Global_172_31_0_254" in out
    assert "Global_172_31_0_253" not in out
    assert "warning: BGPPeer broken: BGPFilter 'missing' does not exist" in err
    assert tortie_main(["--datastore", url, "bgp", "render", "--hostname", "nobody"]) == 1
    assert "no Node 'nobody'" in capsys.readouterr().err
