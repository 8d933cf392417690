"""The real agent (`tortie agent run` processes) programming lab hosts from a shared datastore.

Two lab hosts h1 and h2, a sqlite datastore file in a temp dir, one agent process per host inside
its namespace. WorkloadEndpoints and IPAM blocks written to the datastore must become routes and
sysctls in each host's kernel (nothing for the other host's endpoints); with static inter-host
routes the workloads reach each other. Also: interface before and after the endpoint, a flapping
interface, drift repair with a 1 s refresh, restart without loss (10 ms ping stream and a TCP flow
across hosts while h1's agent is stopped and started again) and, with a real etcd, a datastore
outage that leaves the kernel untouched and recovers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tortie.datastore.api import Datastore
from tortie.datastore.url import open_datastore
from tortie.ipam import keys as ipam_keys
from tortie.lab import Lab, host_interface_name
from tortie.model.kinds import kind_info
from tortie.testing.etcd_cluster import EtcdCluster
from tortie.testing.netns import unique_name
from tortie.testing.streams import TCP_SEQUENCE_CLIENT, TCP_SEQUENCE_SERVER

pytestmark = [pytest.mark.root, pytest.mark.slow]

TORTIE = str(Path(sys.executable).parent / "tortie")
HEALTH_PORT = 9099  # inside the test's own host namespaces, where nothing else listens
BLOCKS = {"h1": "10.70.1.0/26", "h2": "10.70.2.0/26", "h3": "10.70.3.0/26"}


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0, logs: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}{logs}")


@dataclass
class Bed:
    lab: Lab
    ds: Datastore
    url: str
    agents: dict[str, int]

    def start_agent(self, host: str, url: str | None = None) -> int:
        env = {**os.environ, "TORTIE_ROUTE_REFRESH_INTERVAL": "1", "TORTIE_INTERFACE_REFRESH_INTERVAL": "1",
               "TORTIE_HEALTH_ENABLED": "true", "TORTIE_HEALTH_PORT": str(HEALTH_PORT),
               "TORTIE_REPORTING_INTERVAL": "0", "TORTIE_LOG_SEVERITY_SCREEN": "Debug"}
        pid = self.lab.start_process(host, [TORTIE, "agent", "run", "--hostname", host,
                                            "--datastore", url or self.url], env=env)
        self.agents[host] = pid
        return pid

    def logs(self) -> str:
        out = []
        for record in self.lab.state.processes:
            if record.log and Path(record.log).exists():
                out.append(f"\n--- {record.argv[-3:]} ---\n" + Path(record.log).read_text()[-4000:])
        return "".join(out)

    def routes(self, host: str) -> dict[str, dict[str, Any]]:
        """Our routes (protocol 77) in the host's kernel, by canonical destination."""
        text = self.lab.exec(host, ["ip", "-j", "route", "show", "proto", "77"]).stdout
        out = {}
        for route in json.loads(text or "[]"):
            dst = route["dst"]
            out[str(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32"))] = route
        return out

    def sysctl(self, host: str, key: str) -> str:
        return self.lab.exec(host, ["cat", f"/proc/sys/{key}"]).stdout.strip()

    def ready(self, host: str) -> bool:
        probe = ("import urllib.request,sys\n"
                 f"try: sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{HEALTH_PORT}/readiness', "
                 "timeout=2).status == 200 else 1)\nexcept Exception: sys.exit(1)")
        return self.lab.exec(host, [sys.executable, "-c", probe], check=False).returncode == 0


def put_wep(ds: Datastore, lab: Lab, name: str, host: str, ip: str) -> None:
    # The built-in allow-all profile: these tests are about routing, and policy is on by default.
    spec = {"orchestrator": "cni", "workload": name, "endpoint": "eth0", "node": host, "ipNetworks": [ip],
            "interfaceName": host_interface_name(lab.state.interface_prefix, lab.name, name),
            "profiles": ["projectcalico-default-allow"]}
    ds.put(kind_info("WorkloadEndpoint").key(name, "default"),
           {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec})


def put_block(ds: Datastore, host: str) -> None:
    net = ipaddress.ip_network(BLOCKS[host])
    ds.put(ipam_keys.block_key(net), {"cidr": str(net), "affinity": f"host:{host}", "allocations": [],
                                      "unallocated": [], "attributes": []})
    ds.put(ipam_keys.affinity_key(host, net), {"state": "confirmed"})


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    workdir = tmp_path_factory.mktemp("agent-lab")
    lab = Lab.create(unique_name("ag"), workdir / "lab", hosts=2)
    url = f"sqlite://{workdir / 'datastore.db'}"
    ds = open_datastore(url)
    try:
        bed = Bed(lab, ds, url, {})
        lab.add_static_route("h1", BLOCKS["h2"], lab.host_ip("h2"))
        lab.add_static_route("h2", BLOCKS["h1"], lab.host_ip("h1"))
        for host in ("h1", "h2"):
            put_block(ds, host)
            bed.start_agent(host)
        for host in ("h1", "h2"):
            wait_for(lambda h=host: bed.ready(h), f"agent on {host} ready", logs=bed.logs())  # type: ignore[misc]
        yield bed
    finally:
        lab.down()
        ds.close()


def test_endpoints_become_routes_and_workloads_reach_each_other(bed: Bed) -> None:
    lab, ds = bed.lab, bed.ds
    # h1: interface before endpoint
    w1 = lab.add_workload("w1", "h1", "10.70.1.1")
    put_wep(ds, lab, "w1", "h1", "10.70.1.1/32")
    # h2: endpoint before interface
    put_wep(ds, lab, "w2", "h2", "10.70.2.1/32")
    time.sleep(0.3)
    assert "10.70.2.1/32" not in bed.routes("h2")
    w2 = lab.add_workload("w2", "h2", "10.70.2.1")

    wait_for(lambda: "10.70.1.1/32" in bed.routes("h1"), "w1 route on h1", logs=bed.logs())
    wait_for(lambda: "10.70.2.1/32" in bed.routes("h2"), "w2 route on h2", logs=bed.logs())
    r1 = bed.routes("h1")
    assert r1["10.70.1.1/32"]["dev"] == w1.host_ifname and r1["10.70.1.1/32"]["scope"] == "link"
    assert r1[BLOCKS["h1"]]["type"] == "blackhole"
    assert "10.70.2.1/32" not in r1 and BLOCKS["h2"] not in r1  # nothing for the other host
    for host, iface in (("h1", w1.host_ifname), ("h2", w2.host_ifname)):
        assert bed.sysctl(host, f"net/ipv4/conf/{iface}/proxy_arp") == "1"
        assert bed.sysctl(host, f"net/ipv4/neigh/{iface}/proxy_delay") == "0"
        assert bed.sysctl(host, "net/ipv4/ip_forward") == "1"

    assert lab.ping("w1", "10.70.2.1"), bed.logs()
    assert lab.ping("w2", "10.70.1.1"), bed.logs()
    # an unallocated address of h2's block is dropped by h2's blackhole, not looped
    assert not lab.ping("w1", "10.70.2.9", attempts=1)


def test_flapping_interface_and_drift_are_repaired(bed: Bed) -> None:
    lab = bed.lab
    wait_for(lambda: "10.70.1.1/32" in bed.routes("h1"), "w1 route", logs=bed.logs())
    iface = lab.workload("w1").host_ifname
    lab.exec("h1", ["ip", "link", "set", iface, "down"])
    wait_for(lambda: "10.70.1.1/32" not in bed.routes("h1"), "route gone with the interface")
    lab.exec("h1", ["ip", "link", "set", iface, "up"])
    wait_for(lambda: "10.70.1.1/32" in bed.routes("h1"), "route back after the flap", logs=bed.logs())

    lab.exec("h1", ["ip", "route", "del", "10.70.1.1/32", "dev", iface, "proto", "77"])
    lab.exec("h1", ["ip", "route", "del", "blackhole", BLOCKS["h1"], "proto", "77"])
    lab.exec("h1", ["sh", "-c", f"echo 0 > /proc/sys/net/ipv4/conf/{iface}/proxy_arp"])
    lab.exec("h1", ["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"])
    wait_for(lambda: {"10.70.1.1/32", BLOCKS["h1"]} <= set(bed.routes("h1")), "routes restored",
             logs=bed.logs())
    wait_for(lambda: bed.sysctl("h1", f"net/ipv4/conf/{iface}/proxy_arp") == "1", "proxy_arp restored")
    wait_for(lambda: bed.sysctl("h1", "net/ipv4/ip_forward") == "1", "ip_forward restored")
    assert lab.ping("w1", "10.70.2.1"), bed.logs()


def test_restart_without_loss(bed: Bed) -> None:
    lab = bed.lab
    wait_for(lambda: "10.70.2.1/32" in bed.routes("h2") and "10.70.1.1/32" in bed.routes("h1"), "routes")
    assert lab.ping("w1", "10.70.2.1"), bed.logs()
    server = subprocess.Popen(["ip", "netns", "exec", lab.netns("w2"), sys.executable, "-c",
                               TCP_SEQUENCE_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        client = subprocess.Popen(["ip", "netns", "exec", lab.netns("w1"), sys.executable, "-c",
                                   TCP_SEQUENCE_CLIENT, "10.70.2.1", "6"], stdout=subprocess.PIPE, text=True)
        ping = subprocess.Popen(["ip", "netns", "exec", lab.netns("w1"), "ping", "-n", "-q", "-i", "0.01",
                                 "-c", "500", "10.70.2.1"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            assert lab.stop_process(bed.agents["h1"]) == 0  # SIGTERM: clean stop, kernel left alone
            time.sleep(0.5)
            assert "10.70.1.1/32" in bed.routes("h1")
            bed.start_agent("h1")
            wait_for(lambda: bed.ready("h1"), "restarted agent ready", logs=bed.logs())
            ping_out, _ = ping.communicate(timeout=30)
            client_out, _ = client.communicate(timeout=30)
            server_out, _ = server.communicate(timeout=30)
        finally:
            for proc in (ping, client):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "500 packets transmitted, 500 received" in ping_out, ping_out + bed.logs()
    assert client.returncode == 0 and server.returncode == 0, (client_out, server_out)
    sent = int(client_out.split()[-1])
    assert sent > 100 and f"received {sent}" in server_out, (client_out, server_out)
    assert "10.70.1.1/32" in bed.routes("h1") and BLOCKS["h1"] in bed.routes("h1")


# A TCP relay: listens on 127.0.0.1:<port> inside a host namespace (the socket is created after
# setns into it) and forwards each connection to 127.0.0.1:<dest> in the root namespace, where the
# test's etcd listens. Killing etcd then looks to the agent exactly like a datastore outage.
_RELAY = r"""
import ctypes, os, socket, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
netns, port, dest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
own = os.open("/proc/self/ns/net", os.O_RDONLY)
if libc.setns(os.open(f"/run/netns/{netns}", os.O_RDONLY), 0x40000000) != 0:
    sys.exit("setns failed")
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
if libc.setns(own, 0x40000000) != 0:
    sys.exit("setns back failed")
print("ready", flush=True)
def pump(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    conn, _ = srv.accept()
    try:
        up = socket.create_connection(("127.0.0.1", dest), timeout=2)
        up.settimeout(None)
    except OSError:
        conn.close()
        continue
    threading.Thread(target=pump, args=(conn, up), daemon=True).start()
    threading.Thread(target=pump, args=(up, conn), daemon=True).start()
"""


@pytest.mark.etcd
def test_datastore_outage_keeps_the_kernel_and_recovers(bed: Bed, tmp_path: Path) -> None:
    lab = bed.lab
    with EtcdCluster(members=1, data_dir=tmp_path / "etcd") as etcd:
        port = int(etcd.client_endpoints[0].rsplit(":", 1)[1])
        lab.add_host("h3")
        relay = subprocess.Popen([sys.executable, "-c", _RELAY, lab.netns("h3"), str(port), str(port)],
                                 stdout=subprocess.PIPE, text=True)
        ds = open_datastore(etcd.url)
        try:
            assert relay.stdout is not None and relay.stdout.readline().strip() == "ready"
            put_block(ds, "h3")
            put_wep(ds, lab, "w3", "h3", "10.70.3.1/32")
            lab.add_workload("w3", "h3", "10.70.3.1")
            bed.start_agent("h3", f"etcd://127.0.0.1:{port}")
            wait_for(lambda: {"10.70.3.1/32", BLOCKS["h3"]} <= set(bed.routes("h3")), "h3 routes",
                     logs=bed.logs())
            before = bed.routes("h3")

            etcd.kill(0)
            wait_for(lambda: not bed.ready("h3"), "readiness lost during the outage", logs=bed.logs())
            time.sleep(1.5)  # several syncer retries
            assert bed.routes("h3") == before
            assert lab.process_running(bed.agents["h3"])

            etcd.restart(0)
            wait_for(lambda: bed.ready("h3"), "ready again after the outage", timeout=30, logs=bed.logs())
            put_wep(ds, lab, "w4", "h3", "10.70.3.2/32")
            lab.add_workload("w4", "h3", "10.70.3.2")
            wait_for(lambda: "10.70.3.2/32" in bed.routes("h3"), "a change after recovery", logs=bed.logs())
            assert "10.70.3.1/32" in bed.routes("h3")
        finally:
            if "h3" in bed.agents:
                lab.stop_process(bed.agents.pop("h3"))
            relay.kill()
            relay.wait()
            ds.close()
