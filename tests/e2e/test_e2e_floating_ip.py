"""Floating IPs (WorkloadEndpoint ipNATs) on a lab datacenter: real agents, BIRD, nftables, a gobgpd ToR.

Two hosts, dual stack. Workload `fip` on h1 gets the external addresses 10.250.0.10 and
fd00:250::10 (an IP pool with `assignmentMode: Manual` covers them, so BGP exports their /32 and
/128 and IPAM never hands them out). Checked in each family:

* the external address is advertised from h1: h2's kernel has a BGP route for it, the ToR's RIB
  holds it;
* a workload on h2 and the host h2 reach `fip` through it (TCP to a server in `fip` that answers
  with the peer address: the connection completes, so the replies carry the external address; and a
  UDP exchange read with recvfrom shows the reply's source is the external address);
* `fip`'s own traffic to an address outside every pool (h2's fabric address) leaves with the
  external address; to another workload (inside a pool) with its own;
* the field removed: the external address stops answering, its route leaves h2 and the ToR, and the
  NAT table leaves h1.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import pytest
from e2e_scenarios import set_endpoint_field

from tortie.common.ipfamily import V4, V6, family_of
from tortie.datastore.resources import ResourceStore
from tortie.lab.datacenter import Datacenter
from tortie.lab.routers import rib_prefixes
from tortie.model import parse_resource

pytestmark = [pytest.mark.root, pytest.mark.slow]

PYTHON = sys.executable
EXTERNAL = {V4: "10.250.0.10", V6: "fd00:250::10"}
POOLS = {V4: ("floating", "10.250.0.0/24"), V6: ("floating-v6", "fd00:250::/120")}
SERVER_PORT, UDP_PORT = 7100, 7101
UDP_REPLY_SOURCE = """
import socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1.0)
for _ in range(10):
    sock.sendto(b"hello", (dst, port))
    try:
        data, addr = sock.recvfrom(1500)
    except TimeoutError:
        continue
    print(addr[0])
    break
"""


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def seen_by_server(dc: Datacenter, src: str, dst: str, port: int) -> str | None:
    """The peer address the probe server at dst:port saw for a TCP connection from `src`."""
    argv = [PYTHON, "-m", "tortie.testing.probes", "probe", json.dumps([["tcp", dst, port]])]
    proc = dc.lab.exec(src, argv, timeout=30)
    answer: list[str | None] = json.loads(proc.stdout)
    return answer[0]


def reply_source(dc: Datacenter, src: str, dst: str) -> str:
    proc = dc.lab.exec(src, [PYTHON, "-c", UDP_REPLY_SOURCE, dst, str(UDP_PORT)], timeout=30)
    return proc.stdout.strip()


def nat_table(dc: Datacenter, host: str) -> str:
    return dc.lab.exec(host, ["nft", "list", "table", "inet", "tortie-nat"], check=False).stdout


def test_floating_ip_reaches_the_workload_and_its_replies_and_traffic_carry_it(
    make_lab: Callable[..., Datacenter],
) -> None:
    dc = make_lab(hosts=2, tor="gobgp", ip_family="dual")
    fip = dc.workloads.add("fip", "h1", labels={"app": "fip"})
    dc.workloads.add("peer", "h2")
    ds = dc.datastore()
    try:
        store = ResourceStore(ds)
        objects = [{"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
                    "spec": {"cidr": cidr, "assignmentMode": "Manual", "natOutgoing": False}}
                   for name, cidr in POOLS.values()]
        # the lab's profile admits only lab workloads; the hosts are clients here too
        objects.append({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                        "metadata": {"name": "fip-in"},
                        "spec": {"selector": "app == 'fip'", "ingress": [{"action": "Allow"}]}})
        store.apply_all([parse_resource(o) for o in objects], mode="apply")
    finally:
        ds.close()
    for ns, argv in (("fip", ["--tcp", str(SERVER_PORT), "--udp", str(UDP_PORT)]),
                     ("peer", ["--tcp", str(SERVER_PORT)]), ("h2", ["--tcp", str(SERVER_PORT)])):
        dc.lab.start_process(ns, [PYTHON, "-m", "tortie.testing.probes", "serve", *argv])
    dc.wait_ready(timeout=90)
    internal = {family_of(ip): ip for ip in fip.ips}
    nats = [{"internalIP": internal[f], "externalIP": EXTERNAL[f]} for f in (V4, V6)]
    set_endpoint_field(dc, "fip", "ipNATs", nats)
    tor = dc.lab.state.appliances["tor"]
    peer_ips = {family_of(ip): ip for ip in dc.lab.workload("peer").ips}

    for fam in (V4, V6):
        ext, cidr = EXTERNAL[fam], fam.host_cidr(EXTERNAL[fam])
        wait_for(lambda c=cidr, f=fam: c in dc.nodes.bird_routes("h2", f), f"h2 learns {cidr} over BGP")
        wait_for(lambda c=cidr: c in rib_prefixes(dc.lab, tor), f"the ToR learns {cidr}")
        # inbound: from a workload and from a host on h2; the server answers with the peer it saw
        wait_for(lambda e=ext, f=fam: seen_by_server(dc, "peer", e, SERVER_PORT) == peer_ips[f],
                 f"peer reaches fip at {ext}")
        assert seen_by_server(dc, "h2", ext, SERVER_PORT) == dc.lab.host_ip("h2", fam)
        assert reply_source(dc, "peer", ext) == ext, "the reply must carry the external address"
        # the workload's own traffic: outside every pool with the external address, to a workload
        # (inside a pool) with its own
        assert seen_by_server(dc, "fip", dc.lab.host_ip("h2", fam), SERVER_PORT) == ext
        assert seen_by_server(dc, "fip", peer_ips[fam], SERVER_PORT) == internal[fam]
    assert "dnat ip to" in nat_table(dc, "h1") and "dnat ip6 to" in nat_table(dc, "h1")

    set_endpoint_field(dc, "fip", "ipNATs", None)
    for fam in (V4, V6):
        cidr = fam.host_cidr(EXTERNAL[fam])
        wait_for(lambda c=cidr, f=fam: c not in dc.nodes.bird_routes("h2", f), f"h2 withdraws {cidr}")
        wait_for(lambda c=cidr: c not in rib_prefixes(dc.lab, tor), f"the ToR withdraws {cidr}")
        assert seen_by_server(dc, "peer", EXTERNAL[fam], SERVER_PORT) is None
    wait_for(lambda: nat_table(dc, "h1") == "", "the NAT table leaves h1")
