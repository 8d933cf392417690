"""Full iBGP mesh with real BIRD in network namespaces, driven by tortie's BGP daemon.

Three hosts on one fabric, each with one block (blackholed the way the agent does): every host learns
the others' blocks; a borrowed /32 reaches the others and is withdrawn when it goes; datastore
changes (a new block) are rendered and applied with `configure`; a killed BIRD is restarted;
`tortie node status` reports the sessions; `tortie bgp run` stops BIRD on SIGTERM. A dual-stack pair
learns IPv6 blocks over IPv6 sessions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.bgp.daemon import read_health
from tortie.cli.main import main as tortie_main
from tortie.datastore.memory import MemoryDatastore
from tortie.testing.bgp_fabric import BgpTestBed, apply_manifests, node_manifest, put_block, run, wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2)"),
]

POOL = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool}\nspec: {cidr: 10.65.0.0/16}\n"
HOSTS = {"h1": 1, "h2": 2, "h3": 3}


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[BgpTestBed, MemoryDatastore]]:
    ds = MemoryDatastore()
    with BgpTestBed(str(tmp_path), "mesh") as bed:
        fabric = bed.add_fabric("fab", "172.31.0.0/24")
        manifests = ""
        for name, i in HOSTS.items():
            bed.add_host(name, fabric, i)
            manifests += node_manifest(name, f"172.31.0.{i}/24")
            put_block(ds, f"10.65.{i}.0/26", name)
            bed.add_block_blackhole(name, f"10.65.{i}.0/26")
        apply_manifests(ds, manifests + POOL)
        for name in HOSTS:
            bed.start_daemon(ds, name)
        yield bed, ds


def _learned(bed: BgpTestBed, host: str) -> dict[str, str]:
    return {dst: rest for dst, rest in bed.bird_routes(host).items() if dst.startswith("10.65.")}


def _node_status(bed: BgpTestBed, host: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    rc = tortie_main(["node", "status", "--hostname", host, "--run-dir", bed.hosts[host].run_dir,
                      "-o", "json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def test_mesh_learns_blocks_and_borrowed_addresses(mesh: tuple[BgpTestBed, MemoryDatastore],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bed, ds = mesh

    def converged() -> bool:
        return all(
            set(_learned(bed, h)) == {f"10.65.{j}.0/26" for o, j in HOSTS.items() if o != h} for h in HOSTS)

    wait_until(converged, 20, what="every host learning the other hosts' blocks")
    for h in HOSTS:
        for dst, rest in _learned(bed, h).items():
            owner = int(dst.split(".")[2])
            assert f"via 172.31.0.{owner} dev eth0" in rest, (h, dst, rest)
        # The agent's own blackhole is untouched (still its protocol, not replaced by BIRD).
        own = f"10.65.{HOSTS[h]}.0/26"
        assert own in bed.routes(bed.hosts[h].ns, "77")

    # h2 hosts an address borrowed from h1's block: everyone else learns the /32 via h2.
    bed.add_workload_route("h2", "10.65.1.7")
    wait_until(lambda: all(_learned(bed, h).get("10.65.1.7/32", "").startswith("via 172.31.0.2 ")
                           for h in ("h1", "h3")), 10, what="borrowed /32 on h1 and h3")
    assert "10.65.1.7/32" not in _learned(bed, "h2")  # h2 keeps the agent's route
    # A workload inside the host's own block is covered by the aggregate: no /32 leaves h3.
    bed.add_workload_route("h3", "10.65.3.9")

    status = _node_status(bed, "h1", capsys)
    peers = status["peers"]
    assert isinstance(peers, list)
    assert sorted((p["peerAddress"], p["peerType"], p["info"]) for p in peers) == [
        ("172.31.0.2", "node-to-node mesh", "Established"),
        ("172.31.0.3", "node-to-node mesh", "Established")]
    assert status["advertised"] == ["10.65.1.0/26"]
    assert set(_node_status(bed, "h2", capsys)["advertised"]) == {"10.65.2.0/26", "10.65.1.7/32"}
    assert _node_status(bed, "h3", capsys)["advertised"] == ["10.65.3.0/26"]

    bed.del_workload_route("h2", "10.65.1.7")
    wait_until(lambda: all("10.65.1.7/32" not in _learned(bed, h) for h in ("h1", "h3")), 10,
               what="withdrawal of the borrowed /32")
    assert "10.65.3.9/32" not in _learned(bed, "h1")

    # A datastore change: a second block for h3 is advertised after a reconfigure, then withdrawn.
    put_block(ds, "10.65.33.0/26", "h3")
    wait_until(lambda: all("10.65.33.0/26" in _learned(bed, h) for h in ("h1", "h2")), 10, what="new block")
    health = read_health(bed.hosts["h3"].run_dir)
    assert health is not None and health["configGeneration"] >= 2 and health["ready"]
    ds.delete("/calico/ipam/v2/assignment/ipv4/block/10.65.33.0-26")
    wait_until(lambda: all("10.65.33.0/26" not in _learned(bed, h) for h in ("h1", "h2")), 10,
               what="block withdrawal")


def test_killed_bird_is_restarted(mesh: tuple[BgpTestBed, MemoryDatastore],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    bed, _ds = mesh
    wait_until(lambda: "10.65.2.0/26" in _learned(bed, "h1"), 20, what="h1 learning h2's block")
    before = read_health(bed.hosts["h2"].run_dir)
    assert before is not None
    os.kill(int(before["bird"]["pid"]), signal.SIGKILL)

    def restarted() -> bool:
        h = read_health(bed.hosts["h2"].run_dir)
        return h is not None and h["bird"]["restarts"] >= 1 and h["bird"]["running"] and h["ready"]

    wait_until(restarted, 15, what="BIRD restarted by the daemon")
    after = read_health(bed.hosts["h2"].run_dir)
    assert after is not None and after["bird"]["pid"] != before["bird"]["pid"]
    assert after["bird"]["lastExitCode"] == -signal.SIGKILL

    def re_established() -> bool:
        peers = _node_status(bed, "h1", capsys)["peers"]
        assert isinstance(peers, list)
        return any(p["peerAddress"] == "172.31.0.2" and p["established"] for p in peers)

    wait_until(re_established, 15, what="h1 re-establishing its session with h2")
    # A change made after the restart still propagates through the new BIRD.
    bed.add_workload_route("h2", "10.65.3.44")
    wait_until(lambda: "10.65.3.44/32" in _learned(bed, "h1"), 10, what="route from the restarted BIRD")


def test_bgp_run_command_stops_bird_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "ds.db"
    from tortie.datastore.url import open_datastore

    ds = open_datastore(f"sqlite://{db}")
    try:
        apply_manifests(ds, node_manifest("solo", "172.31.5.1/24") + POOL)
        put_block(ds, "10.65.5.0/26", "solo")
    finally:
        ds.close()
    with BgpTestBed(str(tmp_path), "cli") as bed:
        fabric = bed.add_fabric("fab", "172.31.5.0/24")
        host = bed.add_host("solo", fabric, 1)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tortie.cli.main", "--datastore", f"sqlite://{db}", "bgp", "run",
             "--hostname", "solo", "--run-dir", host.run_dir, "--bird-netns", host.ns, "--fast-timers"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_until(
                lambda: (read_health(host.run_dir) or {}).get("ready") is True, 20, what="daemon ready")
            health = read_health(host.run_dir)
            assert health is not None
            bird_pid = int(health["bird"]["pid"])
            out = subprocess.run(
                [sys.executable, "-m", "tortie.cli.main", "node", "status", "--hostname", "solo",
                 "--run-dir", host.run_dir, "-o", "json"], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["advertised"] == ["10.65.5.0/26"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert not os.path.exists(f"/proc/{bird_pid}") or _is_zombie_or_other(bird_pid)
        final = read_health(host.run_dir)
        assert final is not None and final["live"] is False and final["bird"]["running"] is False
        # With BIRD gone the status command says so and fails.
        out = subprocess.run([sys.executable, "-m", "tortie.cli.main", "node", "status", "--hostname", "solo",
                              "--run-dir", host.run_dir], capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "BIRD is not running" in out.stderr


def _is_zombie_or_other(pid: int) -> bool:
    """True if `pid` is no longer a running BIRD (reaped and reused, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().split()
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
    except OSError:
        return True
    return fields[2] == "Z" or b"bird" not in cmd


def test_dual_stack_mesh_learns_ipv6_blocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = MemoryDatastore()
    with BgpTestBed(str(tmp_path), "six") as bed:
        fabric = bed.add_fabric("fab", "172.31.0.0/24")
        manifests = ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\n"
                     "spec: {cidr: 'fd10::/64'}\n")
        for i in (1, 2):
            host = bed.add_host(f"h{i}", fabric, i)
            run(["ip", "-n", host.ns, "addr", "add", f"fd00:31::{i}/64", "dev", "eth0", "nodad"])
            manifests = (f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: h{i}}}\n"
                         f"spec: {{bgp: {{ipv4Address: 172.31.0.{i}/24, ipv6Address: 'fd00:31::{i}/64'}}}}\n"
                         "---\n") + manifests
            put_block(ds, f"fd10::{i}00/122", f"h{i}")
            run(["ip", "-n", host.ns, "-6", "route", "replace", "blackhole", f"fd10::{i}00/122",
                 "proto", "77"])
        apply_manifests(ds, manifests)
        for i in (1, 2):
            bed.start_daemon(ds, f"h{i}")

        def v6_learned() -> str:
            return run(["ip", "-n", bed.hosts["h1"].ns, "-6", "route", "show", "proto", "bird"]).stdout

        wait_until(lambda: "fd10::200/122 via fd00:31::2 dev eth0" in v6_learned(), 20,
                   what="IPv6 block on h1")
        peers = _node_status(bed, "h1", capsys)["peers"]
        assert isinstance(peers, list)
        assert sorted((p["peerAddress"], p["established"]) for p in peers) == [
            ("172.31.0.2", True), ("fd00:31::2", True)]
