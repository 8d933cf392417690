"""QoS (WorkloadEndpoint qosControls) on a lab datacenter: real agents (`tortie node run`), BIRD, CNI.

Two hosts. Workload `shaped` on h1 gets qosControls ingressBandwidth 8 Mbit/s and egressBandwidth
4 Mbit/s (bursts 200 kbit) written into its WorkloadEndpoint; `client` on h2 runs iperf3 against it.
The agent of h1 programs the limits (a tbf on the host side of the veth; the veth's ingress
redirected to an ifb device with its own tbf); iperf3 measures each direction within ±10% of the
configured rate (`tortie.testing.iperf.held_to`). With the field removed, the limits leave the host
and the same transfers run well above them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from subprocess import CompletedProcess

import pytest
from e2e_scenarios import set_endpoint_field, wait_for

from tortie.dataplane.managers.qos import IFB_PREFIX
from tortie.lab.datacenter import Datacenter
from tortie.testing import iperf

pytestmark = [pytest.mark.root, pytest.mark.slow]

MBIT = 10**6
PORT = 5201
QOS = {"ingressBandwidth": 8 * MBIT, "ingressBurst": 200_000,
       "egressBandwidth": 4 * MBIT, "egressBurst": 200_000}


def test_a_workload_s_bandwidth_is_held_to_its_qos_controls(make_lab: Callable[..., Datacenter]) -> None:
    dc = make_lab(hosts=2)
    shaped = dc.workloads.add("shaped", "h1")
    dc.workloads.add("client", "h2")
    dc.lab.start_process("shaped", ["iperf3", "-s", "-p", str(PORT)])
    dc.wait_ready(timeout=90)
    dst = next(ip for ip in shaped.ips if ":" not in ip)
    iface = dc.lab.state.workloads["shaped"].host_ifname

    def qdiscs() -> str:
        return dc.lab.exec("h1", ["tc", "qdisc", "show"], check=False).stdout

    def client(argv: Sequence[str], timeout: float) -> CompletedProcess[str]:
        return dc.lab.exec("client", argv, check=False, timeout=timeout)

    def measure(reverse: bool) -> float:
        return iperf.rate(client, dst, port=PORT, reverse=reverse)

    set_endpoint_field(dc, "shaped", "qosControls", QOS)
    wait_for(lambda: f"tbf 1: dev {iface} root" in qdiscs() and f"dev {IFB_PREFIX}" in qdiscs(),
             f"h1's agent shapes {iface}", timeout=60)
    iperf.held_to(lambda: measure(False), QOS["ingressBandwidth"])  # client -> shaped: its ingress
    iperf.held_to(lambda: measure(True), QOS["egressBandwidth"])  # shaped -> client: its egress

    set_endpoint_field(dc, "shaped", "qosControls", None)
    wait_for(lambda: "tbf" not in qdiscs() and f"dev {iface} parent ffff:" not in qdiscs(),
             "the limits leave h1", timeout=60)
    assert IFB_PREFIX not in dc.lab.exec("h1", ["ip", "link", "show"]).stdout
    assert measure(False) > 2 * QOS["ingressBandwidth"]
    assert measure(True) > 2 * QOS["egressBandwidth"]
