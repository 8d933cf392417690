"""QoS on the real kernel: a workload's qosControls, programmed by the QosManager over the real tc and
nftables drivers, really limit its traffic.

Three namespaces the test creates: `host` (where the manager programs, as an agent would in the host
namespace), `wl` (the workload, behind the veth `tqw0` whose host side the manager owns) and `peer`
(another machine, behind the veth `tqp0`). The host forwards between them.

* bandwidth: iperf3 from `peer` to `wl` (the workload's ingress: tbf on `tqw0`) and back with -R
  (its egress: redirected to an ifb device and shaped there) measures the configured rates within
  ±10%; with the limits removed the same transfers run well above them (so tc was what held them);
* packet rate: a ping flood to the workload gets through at the configured rate plus the burst;
* connections: with ingressMaxConnections 2, two TCP connections to the workload stay open and the
  third is refused with a reset; after one closes, a new one is accepted.

Rates are measured by iperf3's receiver (`tortie.testing.iperf`). On a loaded 2-core machine a transfer
can fall short of the limit for want of CPU; a measurement below the band is retried (up to 3 times),
one above it never.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tortie.dataplane.drivers.nftables import NftablesDriver
from tortie.dataplane.drivers.shaping import NetlinkShapingDriver
from tortie.dataplane.managers.qos import IFB_PREFIX, QosManager
from tortie.dataplane.messages import (
    QosLimits,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.testing import iperf
from tortie.testing.netns import ip, throwaway_netns

pytestmark = [pytest.mark.root, pytest.mark.slow]

WL_IP, PEER_IP = "10.71.1.2", "10.71.2.2"
EP = WorkloadEndpointId("qos", "wl")
MBIT = 10**6
SECONDS = 4


@dataclass
class Bed:
    host: str
    wl: str
    peer: str
    mgr: QosManager

    def set_qos(self, qos: QosLimits | None) -> None:
        self.mgr.on_update(WorkloadEndpointUpdate(id=EP, interface_name="tqw0", ipv4_nets=(f"{WL_IP}/32",),
                                                  qos=qos))
        self.mgr.apply()
        assert not self.mgr.needs_apply


def run(netns: str, *argv: str, timeout: float = 60.0,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=check)


@pytest.fixture
def bed() -> Iterator[Bed]:
    with throwaway_netns("tqh") as host, throwaway_netns("tqw") as wl, throwaway_netns("tqp") as peer:
        links = (("tqw0", wl, "10.71.1.1", WL_IP), ("tqp0", peer, "10.71.2.1", PEER_IP))
        for dev, other, host_ip, other_ip in links:
            ip("-n", host, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", other)
            ip("-n", host, "addr", "add", f"{host_ip}/24", "dev", dev)
            ip("-n", host, "link", "set", dev, "up")
            ip("-n", other, "addr", "add", f"{other_ip}/24", "dev", "eth0")
            ip("-n", other, "link", "set", "eth0", "up")
            ip("-n", other, "route", "add", "default", "via", host_ip)
        run(host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        shaping, nft = NetlinkShapingDriver(host), NftablesDriver(host)
        try:
            yield Bed(host, wl, peer, QosManager(shaping, nft, owns=lambda name: name.startswith("tqw")))
        finally:
            shaping.close()
            nft.close()


def measure(bed: Bed, *, reverse: bool) -> float:
    return iperf.rate(lambda argv, timeout: run(bed.peer, *argv, timeout=timeout, check=False), WL_IP,
                      port=5201, seconds=SECONDS, reverse=reverse)


def test_bandwidth_is_held_to_the_configured_rate_in_each_direction(bed: Bed) -> None:
    ingress, egress = 8 * MBIT, 4 * MBIT
    bed.set_qos(QosLimits(ingress_bandwidth=ingress, ingress_burst=200_000,
                          egress_bandwidth=egress, egress_burst=200_000))
    qdiscs = run(bed.host, "tc", "qdisc", "show").stdout
    assert "qdisc tbf 1: dev tqw0 root" in qdiscs and f"dev {IFB_PREFIX}" in qdiscs
    server = subprocess.Popen(["ip", "netns", "exec", bed.wl, "iperf3", "-s", "-p", "5201"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        iperf.held_to(lambda: measure(bed, reverse=False), ingress)  # peer -> wl: the workload's ingress
        iperf.held_to(lambda: measure(bed, reverse=True), egress)  # wl -> peer: its egress, via the ifb
        bed.set_qos(None)
        assert "tbf" not in run(bed.host, "tc", "qdisc", "show").stdout
        assert IFB_PREFIX not in ip("-n", bed.host, "link", "show").stdout
        unlimited = measure(bed, reverse=False), measure(bed, reverse=True)
    finally:
        server.kill()
        server.wait(timeout=10)
    print(f"without limits: {unlimited[0] / MBIT:.0f} / {unlimited[1] / MBIT:.0f} Mbit/s")
    assert unlimited[0] > 2 * ingress and unlimited[1] > 2 * egress


FLOOD = "ping -n -q -i 0.005 -c 200 -W 1 {dst}"


def received(bed: Bed) -> int:
    out = run(bed.peer, *FLOOD.format(dst=WL_IP).split(), check=False, timeout=60).stdout
    line = next(x for x in out.splitlines() if "packets transmitted" in x)
    return int(line.split(",")[1].split()[0])


def test_packet_rate_limits_a_flood(bed: Bed) -> None:
    assert received(bed) >= 190  # unlimited first: the path works
    bed.set_qos(QosLimits(ingress_packet_rate=20, ingress_packet_burst=5))
    got = received(bed)
    # 200 requests over >= 1 s at 20/s plus a burst of 5: a few dozen pass, far from all
    assert 5 <= got <= 80, got
    bed.set_qos(None)
    assert received(bed) >= 190


SERVER = """
import socket, threading
def serve(c):
    while c.recv(100):
        pass
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7300)); s.listen(16)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""
CLIENT = """
import socket, sys, time
results, socks = [], []
def attempt():
    c = socket.socket(); c.settimeout(5)
    try:
        c.connect((sys.argv[1], 7300)); socks.append(c); return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return type(exc).__name__
for _ in range(3):
    results.append(attempt())
socks[0].close(); time.sleep(1.0)
results.append(attempt())
print(" ".join(results))
"""


def test_max_connections_refuses_the_one_over_the_limit(bed: Bed) -> None:
    bed.set_qos(QosLimits(ingress_max_connections=2))
    server = subprocess.Popen(["ip", "netns", "exec", bed.wl, sys.executable, "-c", SERVER],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # wait until it listens
            if ":7300" in run(bed.wl, "ss", "-ltn").stdout:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        out = run(bed.peer, sys.executable, "-c", CLIENT, WL_IP, timeout=60).stdout.split()
        assert out == ["open", "open", "refused", "open"], out
    finally:
        server.kill()
        server.wait(timeout=10)
    bed.mgr.on_update(WorkloadEndpointRemove(EP))
    bed.mgr.apply()
    assert run(bed.host, "nft", "list", "tables").stdout.count("tortie-qos") == 0
