"""Supervision logic of `tortie.bgp.daemon.BgpDaemon` against a fake BIRD (no root, no kernel).

The fake is a small script that speaks BIRD's control-socket protocol, logs every command and start to
a journal file, rejects `configure check` of a file containing REJECT, and exits on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.bgp.daemon import BgpDaemon, DaemonConfig, read_health
from tortie.bgp.records import SecretRef
from tortie.bgp.view import ViewOptions
from tortie.datastore.memory import MemoryDatastore
from tortie.testing.bgp_fabric import apply_manifests, node_manifest, put_block, wait_until

FAKE_BIRD = r'''
import os, signal, socket, sys, json
args = sys.argv[1:]
conf = args[args.index("-c") + 1]
sock_path = args[args.index("-s") + 1]
journal = os.environ["FAKE_BIRD_JOURNAL"]
def note(what):
    with open(journal, "a") as fh:
        fh.write(json.dumps(what) + "\n")
note({"event": "start", "pid": os.getpid(), "config": open(conf).read(), "argv": args})
with open(args[args.index("-P") + 1], "w") as fh:
    fh.write(f"{os.getpid()}\n")
signal.signal(signal.SIGTERM, lambda *_: (note({"event": "sigterm"}), sys.exit(0)))
if os.path.exists(sock_path):
    os.unlink(sock_path)
srv = socket.socket(socket.AF_UNIX)
srv.bind(sock_path)
srv.listen(8)
while True:
    conn, _ = srv.accept()
    f = conn.makefile("rwb")
    f.write(b"0001 BIRD 2.0.12 ready.\n"); f.flush()
    for raw in f:
        cmd = raw.decode().strip()
        note({"event": "command", "command": cmd})
        if cmd.startswith("configure check"):
            path = cmd.split('"')[1]
            if "REJECT" in open(path).read():
                f.write(b"8002 " + path.encode() + b", line 1: syntax error\n")
            else:
                f.write(b"0020 Configuration OK\n")
        elif cmd == "configure":
            note({"event": "configured", "config": open(conf).read()})
            f.write(b"0002-Reading configuration\n0003 Reconfigured\n")
        elif cmd == "graceful restart":
            note({"event": "graceful-restart", "pid": os.getpid()})
            f.write(b"0025 Graceful restart started\n"); f.flush()
            os._exit(0)
        else:
            f.write(b"0000 \n")
        f.flush()
    conn.close()
'''


class Fake:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.binary = tmp / "fake-bird"
        self.binary.write_text(f"#!{sys.executable}\n{FAKE_BIRD}")
        self.binary.chmod(0o755)
        self.journal = tmp / "journal.jsonl"
        monkeypatch.setenv("FAKE_BIRD_JOURNAL", str(self.journal))

    def events(self, kind: str) -> list[dict[str, str]]:
        if not self.journal.exists():
            return []
        rows = [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]
        return [r for r in rows if r["event"] == kind]


BASE = node_manifest("h1", "172.31.0.1/24") + node_manifest("h2", "172.31.0.2/24") + """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.65.0.0/16}
"""


@pytest.fixture
def running(tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[BgpDaemon, Fake, MemoryDatastore]]:
    fake = Fake(tmp_path, monkeypatch)
    ds = MemoryDatastore()
    apply_manifests(ds, BASE)
    put_block(ds, "10.65.1.0/26", "h1")

    def secrets(ref: SecretRef) -> str | None:
        return {"good": "pw", "bad": "REJECT"}.get(ref.key)

    daemon = BgpDaemon(ds, DaemonConfig(
        hostname="h1", run_dir=str(tmp_path / "run"), view_options=ViewOptions(secrets=secrets),
        bird_binary=str(fake.binary), restart_backoff_initial=0.1, restart_backoff_max=0.5))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        yield daemon, fake, ds
    finally:
        daemon.stop()
        thread.join(10)
        assert not thread.is_alive()


def _health(daemon: BgpDaemon) -> dict[str, object]:
    return read_health(daemon.config.run_dir) or {}


def _peer(name: str, ip: str, key: str | None = None) -> str:
    password = f", password: {{secretKeyRef: {{name: s, key: {key}}}}}" if key else ""
    return (f"apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: {name}}}\n"
            f"spec: {{peerIP: {ip}, asNumber: 65000{password}}}\n")


def test_configure_only_on_change_and_rejects_keep_running_config(
        running: tuple[BgpDaemon, Fake, MemoryDatastore]) -> None:
    daemon, fake, ds = running
    wait_until(lambda: _health(daemon).get("ready") is True, 10, what="ready")
    assert len(fake.events("start")) == 1
    assert "10.65.1.0/26 blackhole" in fake.events("start")[0]["config"]
    generation = _health(daemon)["configGeneration"]

    # A block update that keeps its affinity (new allocations) changes nothing BGP says.
    block_key = "/calico/ipam/v2/assignment/ipv4/block/10.65.1.0-26"
    kv = ds.get(block_key)
    assert kv is not None
    ds.put(block_key, {**kv.value, "sequenceNumber": 7})
    apply_manifests(ds, _peer("tor", "172.31.0.254", "good"))
    wait_until(lambda: len(fake.events("configured")) == 1, 10, what="one configure")
    assert 'password "pw";' in fake.events("configured")[0]["config"]
    # the configuration holds BGP passwords and the control socket takes commands: root only
    assert stat.S_IMODE(os.stat(daemon.paths.config).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.paths.socket).st_mode) & 0o077 == 0
    wait_until(lambda: _health(daemon).get("configGeneration") == generation + 1, 5, what="generation")
    good = Path(daemon.paths.config).read_text()

    # A rendering BIRD rejects: reported, and BIRD keeps (and on disk stays) the accepted one.
    apply_manifests(ds, _peer("tor2", "172.31.0.253", "bad"))
    wait_until(lambda: "rejected" in str(_health(daemon).get("lastError")), 10, what="reject reported")
    assert Path(daemon.paths.config).read_text() == good
    assert len(fake.events("configured")) == 1
    # Fixing it clears the error.
    ds.delete("/calico/resources/v3/projectcalico.org/bgppeers/tor2")
    apply_manifests(ds, _peer("tor3", "172.31.0.252"))
    wait_until(lambda: len(fake.events("configured")) == 2 and _health(daemon).get("lastError") is None, 10,
               what="second configure")
    assert "Global_172_31_0_252" in Path(daemon.paths.config).read_text()


def test_bird_is_restarted_with_backoff_and_stopped_on_stop(
        running: tuple[BgpDaemon, Fake, MemoryDatastore]) -> None:
    daemon, fake, _ds = running
    wait_until(lambda: _health(daemon).get("ready") is True, 10, what="ready")
    for n in (1, 2):
        pid = int(fake.events("start")[-1]["pid"])
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda n=n: len(fake.events("start")) == n + 1, 10, what=f"restart {n}")
    wait_until(lambda: _health(daemon).get("ready") is True, 10, what="ready again")
    bird = _health(daemon)["bird"]
    assert isinstance(bird, dict) and bird["restarts"] == 2 and bird["lastExitCode"] == -signal.SIGKILL
    # every BIRD runs in graceful restart recovery, with its pid file beside its socket
    assert all("-R" in e["argv"] and "-P" in e["argv"] for e in fake.events("start"))
    daemon.stop()
    wait_until(lambda: _health(daemon).get("live") is False, 10, what="daemon stopped")
    # a planned stop keeps the peers' routes: a graceful restart shutdown, never SIGTERM (Cease)
    assert len(fake.events("graceful-restart")) == 1 and fake.events("sigterm") == []


def test_withdrawing_stop_and_a_leftover_bird_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`graceful_stop=False` stops BIRD with SIGTERM (Cease: peers withdraw). A BIRD still answering
    on the socket when a daemon starts (left by an earlier run) is shut down gracefully first."""
    fake = Fake(tmp_path, monkeypatch)
    ds = MemoryDatastore()
    apply_manifests(ds, BASE)
    config = DaemonConfig(hostname="h1", run_dir=str(tmp_path / "run"), bird_binary=str(fake.binary),
                          graceful_stop=False)
    first = BgpDaemon(ds, config)
    thread = threading.Thread(target=first.run, daemon=True)
    thread.start()
    wait_until(lambda: _health(first).get("ready") is True, 10, what="first ready")
    leftover = subprocess.Popen([str(fake.binary), "-c", first.paths.config, "-s", first.paths.socket,
                                 "-P", first.paths.pidfile])  # started by hand: a second BIRD
    wait_until(lambda: len(fake.events("start")) == 2, 10, what="leftover up")
    first.stop()
    thread.join(10)
    assert len(fake.events("sigterm")) == 1  # the daemon's own BIRD, withdrawing
    second = BgpDaemon(ds, config)
    thread = threading.Thread(target=second.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: _health(second).get("ready") is True, 10, what="second ready")
        assert leftover.wait(5) == 0
        assert [e["pid"] for e in fake.events("graceful-restart")] == [leftover.pid]
        assert len(fake.events("start")) == 3
    finally:
        second.stop()
        thread.join(10)


def test_waits_for_its_node_before_starting_bird(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, monkeypatch)
    ds = MemoryDatastore()
    daemon = BgpDaemon(ds, DaemonConfig(hostname="h9", run_dir=str(tmp_path / "run"),
                                        bird_binary=str(fake.binary)))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: "no Node 'h9'" in str(_health(daemon).get("problems")), 10,
                   what="problem reported")
        assert fake.events("start") == [] and _health(daemon)["ready"] is False
        apply_manifests(ds, node_manifest("h9", "172.31.0.9/24"))
        wait_until(lambda: _health(daemon).get("ready") is True, 10, what="ready once the Node exists")
        assert len(fake.events("start")) == 1
    finally:
        daemon.stop()
        thread.join(10)
