"""Policy before traffic, on a real kernel with a real agent: a container's first packets after ADD returns
are judged by its policy.

One lab host runs `tortie node run` (agent + CNI service). A sink workload counts UDP datagrams by
source. Each round, a sender is started inside a fresh container namespace BEFORE its ADD: it sends a
numbered datagram to the sink every 2 ms from the moment the interface appears, stamping each with
CLOCK_MONOTONIC, until 40 went out after ADD returned. The ADD of one container labels it
`role=locked` (a GlobalNetworkPolicy denies all its egress); another is unrestricted. Checked, over
many rounds: the sink never receives a single datagram from a locked container, and receives every
datagram an unrestricted container sent after its ADD returned (so the probe works, and the policy
was already in place — not merely fail-closed — when ADD returned: with policy_setup_timeout_seconds
0 this fails, the first datagrams after ADD being dropped while the agent catches up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tortie.cni.install import install
from tortie.datastore.resources import ResourceStore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.lab import Lab
from tortie.model import parse_resource
from tortie.testing.cni_node import CniNode
from tortie.testing.netns import unique_name

pytestmark = pytest.mark.root

ROUNDS = 12
PORT = 7000

# Sends until AFTER datagrams went out after the moment written into the `returned` file (ADD's return),
# however slowly a loaded machine schedules it.
AFTER = 40
SENDER = f"""
import json, socket, sys, time, os
sink, returned_file = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent, seq, returned = [], 0, None
while returned is None or sum(1 for _, at in sent if at > returned) < {AFTER}:
    try:
        s.sendto(seq.to_bytes(4, "big"), (sink, {PORT}))
        sent.append((seq, time.monotonic()))
    except OSError:
        pass
    seq += 1
    time.sleep(0.002)
    if returned is None and os.path.exists(returned_file):
        returned = float(open(returned_file).read())
print(json.dumps(sent))
"""

SINK = f"""
import json, socket, sys, os, select
stop = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: a starved sink must not drop datagrams
s.bind(("0.0.0.0", {PORT}))
open(stop + ".ready", "w").close()
got = {{}}
while not os.path.exists(stop):
    if select.select([s], [], [], 0.05)[0]:
        data, (src, _port) = s.recvfrom(64)
        got.setdefault(src, []).append(int.from_bytes(data[:4], "big"))
print(json.dumps(got))
"""


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bindir = tmp / "bin"
        install(self.bindir)
        self.db = tmp / "ds.db"
        ds = SqliteDatastore(self.db)
        store = ResourceStore(ds)
        for manifest in (
            {
                "kind": "IPPool",
                "metadata": {"name": "pbt"},
                "spec": {"cidr": "10.67.0.0/24", "blockSize": 26},
            },
            {"kind": "Node", "metadata": {"name": "h1"}, "spec": {}},
            {
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": "deny-locked-egress"},
                "spec": {"selector": "role == 'locked'", "types": ["Egress"], "egress": [{"action": "Deny"}]},
            },
        ):
            store.apply(parse_resource({"apiVersion": "projectcalico.org/v3", **manifest}))
        ds.close()
        self.lab = Lab.create(unique_name("cnipbt"), tmp / "lab", hosts=1)
        self.node = CniNode(self.lab, "h1", f"sqlite://{self.db}", tmp)
        self.namespaces: list[str] = []

    def netns(self, name: str) -> str:
        ns = f"{self.lab.name}-{name}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        self.namespaces.append(ns)
        return ns

    def cni(self, command: str, ns: str, labels: dict[str, str] | None = None) -> dict[str, Any] | None:
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": "pbt",
            "type": "tortie",
            "nodename": "h1",
            "datastore": f"sqlite://{self.db}",
            "ipam_lock_file": str(self.tmp / "ipam.lock"),
            "ipam": {"type": "tortie-ipam"},
            "labels": labels or {},
            "policy_setup_timeout_seconds": 30,
            **self.node.netconf(),
        }
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": ns,
            "CNI_NETNS": f"/run/netns/{ns}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bindir),
        }
        proc = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.lab.netns('h1')}", str(self.bindir / "tortie")],
            input=json.dumps(conf).encode(),
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        out = proc.stdout.decode().strip()
        return json.loads(out) if out else None

    def start(self, ns: str, script: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        w.node.start()
        yield w
    finally:
        w.node.stop()
        for ns in w.namespaces:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        w.lab.down()


def test_no_packet_leaves_before_its_policy_and_none_is_lost_after(world: World) -> None:
    sink_ns = world.netns("sink")
    sink_ip = world.cni("ADD", sink_ns)["ips"][0]["address"].split("/")[0]  # type: ignore[index]
    sink_stop = str(world.tmp / "sink.stop")
    sink = world.start(sink_ns, SINK, sink_stop)
    while not os.path.exists(sink_stop + ".ready"):
        assert sink.poll() is None
        time.sleep(0.05)
    rounds: list[tuple[str, str, float, list[tuple[int, float]]]] = []
    try:
        for i in range(ROUNDS):
            for kind in ("locked", "open"):
                ns = world.netns(f"{kind[0]}{i}")
                stop = str(world.tmp / f"{ns}.stop")
                sender = world.start(ns, SENDER, sink_ip, stop)
                time.sleep(0.05)  # the sender is up and trying before the interface exists
                result = world.cni("ADD", ns, {"role": "locked"} if kind == "locked" else {})
                returned = time.monotonic()
                ip = result["ips"][0]["address"].split("/")[0]  # type: ignore[index]
                Path(stop + ".tmp").write_text(repr(returned))
                os.replace(stop + ".tmp", stop)  # the sender must never read it half written
                sent = [(seq, at) for seq, at in json.loads(sender.communicate(timeout=120)[0])]
                rounds.append((kind, ip, returned, sent))
    finally:
        Path(sink_stop).touch()
        got = json.loads(sink.communicate(timeout=30)[0])
    for ns in world.namespaces:  # deleted only now: an address reused within the test would blur sources
        world.cni("DEL", ns)
    for kind, ip, returned, sent in rounds:
        received = set(got.get(ip, []))
        after = [seq for seq, at in sent if at > returned]
        assert len(after) >= AFTER, (kind, ip, len(sent))  # the probe kept sending after ADD returned
        if kind == "locked":
            assert received == set(), f"a locked container ({ip}) sent {len(received)} datagrams"
        else:
            missing = [seq for seq in after if seq not in received]
            assert missing == [], f"{ip}: {len(missing)} of {len(after)} datagrams sent after ADD were lost"
