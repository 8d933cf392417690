"""VXLAN end to end on `tortie lab` datacenters (root; real agents, BIRD, CNI, nftables, tcpdump).

* vxlan (dual stack): the fabric drops every packet whose source is a workload address, yet
  workloads on two hosts reach each other in both families — encapsulated; the same pool switched
  to vxlanMode Never (BGP routes natively) is dropped by that fabric. The largest `ping -M do` that
  fits passes and one byte more fails with "message too long" (IPv4 and IPv6). Agents SIGTERMed and
  SIGKILLed under a 10 ms ping stream and a TCP sequence stream: no loss, and the VXLAN device is
  adopted (same ifindex), not re-created. An FDB entry, a neighbour and a route deleted by hand
  come back (2 s refresh; the agent paused while they are
  deleted, so that the break is seen first).
* none (dual stack): the same MTU proof without encapsulation, IPv4 and IPv6 (1500); then the
  pools switched Never -> Always -> CrossSubnet -> Never while streams flow: each mode's routes
  appear, traffic converges, nothing restarts (agent pids and restart counts unchanged).
* vxlan-cross-subnet without BGP: 4 hosts in 2 subnets; a capture in the router namespace sees only
  VXLAN (UDP 4789) between the subnets and never a workload address; a capture on the fabric port of
  a same-subnet host sees the workloads' own packets (routed natively by the agents' routes).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from e2e_scenarios import Streams, wait_for

from tortie.common.ipfamily import V4, V6, Family
from tortie.lab.datacenter import Datacenter

pytestmark = [pytest.mark.root, pytest.mark.slow]

# generous: a shared 2-core machine under load starts an agent or converges a route slowly; the
# proofs are about what happens, never how fast
SLOW = 120.0


def set_mode(dc: Datacenter, mode: str) -> None:
    """vxlanMode of every lab pool (resource version taken fresh, as `tortie apply` would)."""
    from tortie.datastore.resources import ResourceStore
    from tortie.model import parse_resource

    ds = dc.datastore()
    try:
        store = ResourceStore(ds)
        for name in ("lab-pool", "lab-pool-v6"):
            kv = ds.get(f"/calico/resources/v3/projectcalico.org/ippools/{name}")
            if kv is None:
                continue
            wire = json.loads(json.dumps(kv.value))
            wire["spec"]["vxlanMode"] = mode
            wire["metadata"]["resourceVersion"] = str(kv.mod_revision)
            store.update(parse_resource(wire))
    finally:
        ds.close()


def run(dc: Datacenter, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return dc.lab.exec(name, list(argv), check=False)


def ping_ok(dc: Datacenter, src: str, dst: str, fam: Family) -> bool:
    ip = dc.lab.workload(dst).ip(fam)
    return run(dc, src, "ping", fam.ip_flag, "-n", "-c", "1", "-W", "1", ip).returncode == 0


def fabric_drops(dc: Datacenter) -> int:
    out = run(dc, "fab", "nft", "-j", "list", "table", "bridge", "tortie-lab").stdout
    total = 0
    for item in json.loads(out)["nftables"]:
        for expr in (item.get("rule") or {}).get("expr", []):
            if "counter" in expr:
                total += int(expr["counter"]["packets"])
    return total


def route_of(dc: Datacenter, host: str, dst_workload: str, fam: Family) -> dict[str, Any] | None:
    """The route (longest match) `host` has for `dst_workload`'s address, with its protocol."""
    ip = ipaddress.ip_address(dc.lab.workload(dst_workload).ip(fam))
    best: dict[str, Any] | None = None
    for route in json.loads(run(dc, host, "ip", "-j", fam.ip_flag, "route", "show").stdout or "[]"):
        dst = route.get("dst", "")
        if dst == "default":
            continue
        net = ipaddress.ip_network(dst if "/" in dst else fam.host_cidr(dst))
        if ip in net and (best is None or net.prefixlen > ipaddress.ip_network(best["net"]).prefixlen):
            best = {**route, "net": str(net)}
    return best


def mtu_proof(dc: Datacenter, src: str, dst: str, fam: Family, mtu: int) -> None:
    """The workload's MTU is `mtu`; the largest payload that fits crosses, one byte more is refused
    locally with "message too long" (never lost in the fabric)."""
    link = json.loads(run(dc, src, "ip", "-j", "link", "show", "eth0").stdout)[0]
    assert link["mtu"] == mtu
    headers = 28 if fam is V4 else 48  # IP + ICMP echo headers
    ip = dc.lab.workload(dst).ip(fam)
    base = ["ping", fam.ip_flag, "-n", "-c", "1", "-W", "2", "-M", "do"]
    fits = run(dc, src, *base, "-s", str(mtu - headers), ip)
    assert fits.returncode == 0, fits.stdout + fits.stderr
    over = run(dc, src, *base, "-s", str(mtu - headers + 1), ip)
    assert over.returncode != 0 and "message too long" in over.stdout + over.stderr, over.stdout + over.stderr


def agent_pids(dc: Datacenter) -> dict[str, tuple[int, int]]:
    out = {}
    for host in dc.hosts:
        agent = (dc.nodes.status(host) or {})["components"]["agent"]
        out[host] = (agent["pid"], agent["restarts"])
    return out


def test_vxlan_on_a_fabric_that_drops_workload_traffic(make_lab: Any) -> None:
    dc: Datacenter = make_lab(hosts=2, workloads_per_host=1, encapsulation="vxlan")
    for fam in (V4, V6):
        assert ping_ok(dc, "w1-1", "w2-1", fam) and ping_ok(dc, "w2-1", "w1-1", fam)
        route = route_of(dc, "h1", "w2-1", fam)
        assert route is not None and route["dev"] == ("vxlan.calico" if fam is V4 else "vxlan-v6.calico")
    assert fabric_drops(dc) == 0
    fdb = run(dc, "h1", "bridge", "fdb", "show", "dev", "vxlan.calico").stdout
    assert f"dst {dc.lab.host_ip('h2', V4)} self permanent" in fdb
    # the smallest workload MTU covers both families: uplink 1500 - 70 (IPv6 VXLAN)
    mtu_proof(dc, "w1-1", "w2-1", V4, 1430)
    mtu_proof(dc, "w1-1", "w2-1", V6, 1430)
    status = subprocess.run([sys.executable, "-m", "tortie.cli.main", "node", "status", "--run-dir",
                             dc.nodes.run_dir("h1")], capture_output=True, text=True)
    assert "MTU for workloads: 1430" in status.stdout, status.stdout
    assert "IPv6 VXLAN overhead" in status.stdout, status.stdout

    # restart: both agents go under a ping stream and a TCP stream; nothing is lost, nothing re-created
    index = json.loads(run(dc, "h1", "ip", "-j", "link", "show", "vxlan.calico").stdout)[0]["ifindex"]
    old = agent_pids(dc)
    streams = Streams(dc, "w1-1", "w2-1")
    try:
        time.sleep(1.0)
        os.kill(old["h1"][0], signal.SIGTERM)
        os.kill(old["h2"][0], signal.SIGKILL)
        wait_for(lambda: all(agent_pids(dc)[h][0] != old[h][0] and (dc.nodes.status(h) or {}).get("ready")
                             for h in dc.hosts), "both agents restarted and ready", timeout=SLOW)
        time.sleep(1.0)
        result = streams.stop()
    finally:
        streams.kill()
    lost = result.ping_sent - result.ping_received
    assert result.ping_sent > 100 and lost == 0, result.ping_output[-600:]
    assert result.tcp_sent > 100 and result.tcp_received == result.tcp_sent, result
    assert json.loads(run(dc, "h1", "ip", "-j", "link", "show", "vxlan.calico").stdout)[0]["ifindex"] == index

    # drift: what is deleted by hand comes back within the refresh interval
    ds = dc.datastore()
    try:
        ds.put("/calico/resources/v3/projectcalico.org/felixconfigurations/default",
               {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                "metadata": {"name": "default"}, "spec": {"routeRefreshInterval": "2s"}})
    finally:
        ds.close()
    time.sleep(2.0)  # the agents rebuild their pipelines (adopting everything) with the new interval
    route = route_of(dc, "h1", "w2-1", V4)
    assert route is not None
    shown = run(dc, "h1", "ip", "-j", "route", "show", "dev", "vxlan.calico", "proto", "77").stdout
    block = next(r["dst"] for r in json.loads(shown))
    fdb_line = next(line for line in fdb.splitlines() if "dst" in line)
    mac = fdb_line.split()[0]
    agent = agent_pids(dc)["h1"][0]
    os.kill(agent, signal.SIGSTOP)  # it cannot repair before the deletion is seen to break traffic
    try:
        run(dc, "h1", "bridge", "fdb", "del", mac, "dev", "vxlan.calico", "dst", dc.lab.host_ip("h2", V4))
        run(dc, "h1", "ip", "neigh", "del", route["gateway"], "dev", "vxlan.calico")
        run(dc, "h1", "ip", "route", "del", block, "proto", "77")
        assert not ping_ok(dc, "w1-1", "w2-1", V4)
    finally:
        os.kill(agent, signal.SIGCONT)
    wait_for(lambda: mac in run(dc, "h1", "bridge", "fdb", "show", "dev", "vxlan.calico").stdout,
             "the FDB entry repaired", timeout=SLOW)
    wait_for(lambda: ping_ok(dc, "w1-1", "w2-1", V4), "traffic repaired", timeout=SLOW)
    assert agent_pids(dc)["h1"][0] == agent  # repaired by the running agent, not by a restart

    # the same fabric without encapsulation: BGP routes natively, and the fabric drops it
    set_mode(dc, "Never")
    wait_for(lambda: (route_of(dc, "h1", "w2-1", V4) or {}).get("dev") == "eth0", "native route (BGP)",
             timeout=SLOW)
    before = fabric_drops(dc)
    assert not ping_ok(dc, "w1-1", "w2-1", V4) and not ping_ok(dc, "w1-1", "w2-1", V6)
    assert fabric_drops(dc) > before


def test_mtu_without_encapsulation_and_mode_switches_under_traffic(make_lab: Any) -> None:
    dc: Datacenter = make_lab(hosts=2, workloads_per_host=1)
    mtu_proof(dc, "w1-1", "w2-1", V4, 1500)
    mtu_proof(dc, "w1-1", "w2-1", V6, 1500)
    before = agent_pids(dc)
    streams = Streams(dc, "w1-1", "w2-1")
    try:
        for mode, dev in (("Always", "vxlan.calico"), ("CrossSubnet", "eth0"), ("Never", "eth0")):
            set_mode(dc, mode)
            proto = "bird" if mode == "Never" else "77"

            def converged(want: str = dev, proto: str = proto) -> bool:
                route = route_of(dc, "h1", "w2-1", V4) or {}
                return route.get("dev") == want and str(route.get("protocol")) == proto

            wait_for(converged, f"h1 routes w2-1 through {dev} ({mode})", timeout=SLOW)
            wait_for(lambda: ping_ok(dc, "w1-1", "w2-1", V4), f"traffic in mode {mode}", timeout=SLOW)
            time.sleep(1.0)  # the streams run in this mode for a while
        result = streams.stop()
    finally:
        streams.kill()
    assert result.tcp_sent > 100 and result.tcp_received == result.tcp_sent, result
    assert result.ping_received > 0.9 * result.ping_sent, result.ping_output[-600:]
    assert agent_pids(dc) == before  # nothing restarted
    assert run(dc, "h1", "ip", "link", "show", "vxlan.calico").returncode != 0  # Never: the device went


def test_cross_subnet_without_bgp_encapsulates_only_between_subnets(make_lab: Any) -> None:
    dc: Datacenter = make_lab(hosts=4, workloads_per_host=1, encapsulation="vxlan-cross-subnet", bgp="none",
                              ip_family="ipv4")
    lab = dc.lab
    assert [lab.state.hosts[h].segment for h in ("h1", "h2", "h3", "h4")] == [0, 1, 0, 1]
    near, far = route_of(dc, "h1", "w3-1", V4), route_of(dc, "h1", "w2-1", V4)
    assert near is not None and near["dev"] == "eth0" and near["gateway"] == lab.host_ip("h3", V4)
    assert far is not None and far["dev"] == "vxlan.calico"
    router = lab.netns("rtr")
    fab = lab.netns("fab")
    captures = [
        subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-n", "-l", "-i", iface, "-c", "200", "ip"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for ns, iface in ((router, "any"), (fab, "p-h3"))
    ]
    try:
        time.sleep(1.0)  # tcpdump attaches
        for dst in ("w2-1", "w4-1", "w3-1"):
            pinged = run(dc, "w1-1", "ping", "-n", "-c", "3", "-i", "0.2", lab.workload(dst).ip(V4))
            assert pinged.returncode == 0, pinged.stdout
        time.sleep(0.5)
    finally:
        for proc in captures:
            proc.send_signal(signal.SIGINT)
        outputs = [proc.communicate(timeout=10)[0] for proc in captures]
    pool = ipaddress.ip_network("10.244.0.0/16")
    routed, bridged = outputs
    assert "VXLAN" in routed or ".4789" in routed, routed
    lines = [line for line in routed.splitlines() if " IP " in line]
    assert lines and all(".4789: VXLAN" in line for line in lines), routed
    for line in lines:  # the outer headers are host addresses: no workload address crosses the router
        outer = line.split(" IP ", 1)[1]
        src, dst = outer.split(" > ")[0], outer.split(" > ")[1].split(":")[0]
        for end in (src, dst):
            assert ipaddress.ip_address(end.rsplit(".", 1)[0]) not in pool, line
    w1, w3 = lab.workload("w1-1").ip(V4), lab.workload("w3-1").ip(V4)
    assert f"{w1} > {w3}: ICMP echo request" in bridged, bridged  # same subnet: natively routed
