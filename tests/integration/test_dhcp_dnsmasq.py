"""`tortie dhcp run` with the real dnsmasq (Debian dnsmasq-base) in a throwaway host namespace,
serving "VMs" (namespaces behind tap-named veths) that ask with busybox udhcpc: address, gateway,
DNS, classless static routes and MTU come from the datastore (the MTU capped by the agent's MTU
file, and changed by a reload when the file changes); a new VM is served after a reload; an unknown
MAC gets nothing; the gateway answers from the host; SIGTERM stops dnsmasq."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.datastore.url import open_datastore
from tortie.dhcp.records import DhcpSubnet, HostRoute, subnet_key
from tortie.model.kinds import kind_info
from tortie.testing.netns import ip, unique_name

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("dnsmasq") is None,
                       reason="needs dnsmasq (apt-get install dnsmasq-base)"),
    pytest.mark.skipif(shutil.which("busybox") is None,
                       reason="needs busybox (apt-get install busybox-static)"),
]

SCRIPT = """#!/bin/sh
# udhcpc event script: record what the server sent, configure the address on bound/renew.
env | grep -E '^(ip|mask|router|dns|staticroutes|mtu|hostname|lease)=' | sort > "$OUT.$1"
case "$1" in
  bound|renew) ip addr add "$ip/$mask" dev "$interface" ;;
esac
"""


class Host:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.netns = unique_name("dh")
        self.vms: list[str] = []
        ip("netns", "add", self.netns)
        ip("-n", self.netns, "link", "set", "lo", "up")
        self.script = tmp / "udhcpc.sh"
        self.script.write_text(SCRIPT)
        self.script.chmod(0o755)

    def add_vm(self, tap: str, mac: str) -> str:
        vm = unique_name("dv")
        self.vms.append(vm)
        ip("netns", "add", vm)
        ip("-n", self.netns, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", vm)
        ip("-n", vm, "link", "set", "eth0", "address", mac)
        ip("-n", vm, "link", "set", "lo", "up")
        ip("-n", vm, "link", "set", "eth0", "up")
        ip("-n", self.netns, "link", "set", tap, "up")
        return vm

    def dhcp(self, vm: str) -> dict[str, str] | None:
        """Run udhcpc once in `vm`; what the server sent, or None when no lease was obtained."""
        out = self.tmp / f"{vm}.env"
        proc = subprocess.run(
            ["ip", "netns", "exec", vm, "env", f"OUT={out}", "busybox", "udhcpc", "-i", "eth0", "-n", "-q",
             "-f", "-t", "4", "-T", "1", "-O", "staticroutes", "-O", "mtu", "-s", str(self.script)],
            capture_output=True, text=True, timeout=30, check=False)
        bound = Path(f"{out}.bound")
        if proc.returncode != 0 or not bound.exists():
            return None
        return dict(line.split("=", 1) for line in bound.read_text().splitlines())

    def cleanup(self) -> None:
        for ns in [*self.vms, self.netns]:
            ip("netns", "del", ns, check=False)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path)
    try:
        yield h
    finally:
        h.cleanup()


def _wep(name: str, mac: str, address: str, tap: str) -> dict[str, object]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "openstack",
                         "annotations": {"openstack.projectcalico.org/fqdn": f"{name}.example.org"}},
            "spec": {"orchestrator": "openstack", "node": "h1", "workload": name, "endpoint": name,
                     "interfaceName": tap, "mac": mac, "ipNetworks": [f"{address}/32"]}}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_dhcp_service_serves_vms_from_the_datastore(host: Host, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'ds.db'}"
    ds = open_datastore(url)
    subnet = DhcpSubnet(id="sub-a", cidr="10.65.0.0/24", gateway_ip="10.65.0.1", dns_servers=("10.0.0.53",),
                        host_routes=(HostRoute("192.168.0.0/16", "10.65.0.254"),), mtu=1400)
    ds.put(subnet_key(subnet.id), subnet.to_json())
    wep_key = kind_info("WorkloadEndpoint").key
    ds.put(wep_key("vm1", "openstack"), _wep("vm1", "fa:16:3e:00:00:01", "10.65.0.5", "tapvm1"))
    state = tmp_path / "state"
    mtu_file = tmp_path / "mtu"  # the agent's workload MTU, below the network's 1400
    mtu_file.write_text("1380\n")
    service = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, sys.executable, "-m", "tortie.cli.main", "--datastore", url,
         "--log-level", "info", "dhcp", "run", "--hostname", "h1", "--state-dir", str(state),
         "--mtu-file", str(mtu_file)],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "service.log", "wb"), start_new_session=True)  # noqa: SIM115
    dnsmasq_pid: int | None = None
    try:
        vm1 = host.add_vm("tapvm1", "fa:16:3e:00:00:01")
        sent = host.dhcp(vm1)
        assert sent is not None, (tmp_path / "service.log").read_text()
        assert sent["ip"] == "10.65.0.5" and sent["mask"] == "24"
        assert sent["router"] == "10.65.0.1"
        assert sent["dns"].strip() == "10.0.0.53"
        assert sent["staticroutes"].split() == ["192.168.0.0/16", "10.65.0.254", "0.0.0.0/0", "10.65.0.1"]
        assert sent["mtu"] == "1380" and sent["hostname"] == "vm1"
        dnsmasq_pid = int((state / "dnsmasq.pid").read_text())
        # The gateway is the host itself (an address of the alias, no subnet route on the host).
        ip("-n", host.netns, "route", "add", "10.65.0.5/32", "dev", "tapvm1")
        ping = subprocess.run(["ip", "netns", "exec", vm1, "ping", "-c", "1", "-W", "2", "10.65.0.1"],
                              capture_output=True, text=True, timeout=30, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        routes = ip("-n", host.netns, "route", "show", "10.65.0.0/24").stdout
        assert routes.strip() == "", "the alias must not add a subnet route"
        # A VM nobody told the datastore about gets no lease.
        stranger = host.add_vm("tapx", "fa:16:3e:00:00:99")
        assert host.dhcp(stranger) is None
        # A new VM appears in the datastore: served after dnsmasq re-reads its hosts file. The agent's
        # MTU grew meanwhile above the network's: the network's 1400 is advertised.
        mtu_file.write_text("1450\n")
        ds.put(wep_key("vm2", "openstack"), _wep("vm2", "fa:16:3e:00:00:02", "10.65.0.6", "tapvm2"))
        vm2 = host.add_vm("tapvm2", "fa:16:3e:00:00:02")
        deadline = time.monotonic() + 20
        sent2 = host.dhcp(vm2)
        while sent2 is None and time.monotonic() < deadline:
            sent2 = host.dhcp(vm2)
        assert sent2 is not None and sent2["ip"] == "10.65.0.6" and sent2["mtu"] == "1400"
        assert int((state / "dnsmasq.pid").read_text()) == dnsmasq_pid, \
            "a new VM needs a reload, not a restart"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(service.pid, signal.SIGTERM)
        try:
            rc = service.wait(15)
        except subprocess.TimeoutExpired:
            service.kill()
            rc = service.wait(5)
        ds.close()
    assert rc == 0
    assert dnsmasq_pid is not None
    deadline = time.monotonic() + 5
    while _pid_alive(dnsmasq_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(dnsmasq_pid), "dnsmasq must stop with the service"


def _wait_for_ipv6_mtu(vm: str, expected: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    mtu = ""
    while time.monotonic() < deadline:
        mtu = subprocess.run(["ip", "netns", "exec", vm, "sysctl", "-n", "net.ipv6.conf.eth0.mtu"],
                             capture_output=True, text=True, check=True).stdout.strip()
        if mtu == expected:
            return
        time.sleep(0.5)  # the VM's router solicitation or dnsmasq's next advertisement
    raise AssertionError(f"IPv6 MTU {mtu}, expected {expected}\n" + (tmp_path / "service.log").read_text())


def test_router_advertisements_carry_the_effective_mtu(host: Host, tmp_path: Path) -> None:
    """An IPv6 VM learns its MTU from dnsmasq's router advertisements (DHCPv6 has no MTU option):
    the agent's workload MTU (1380) below the network's (1450) is what its kernel takes."""
    url = f"sqlite://{tmp_path / 'ds.db'}"
    ds = open_datastore(url)
    subnet = DhcpSubnet(id="sub-6", cidr="fd00:65::/64", gateway_ip="fd00:65::1", mtu=1450,
                        ipv6_address_mode="slaac")
    ds.put(subnet_key(subnet.id), subnet.to_json())
    wep = _wep("vm6", "fa:16:3e:00:00:06", "fd00:65::f816:3eff:fe00:6", "tapvm6")
    ds.put(kind_info("WorkloadEndpoint").key("vm6", "openstack"), wep)
    mtu_file = tmp_path / "mtu"
    mtu_file.write_text("1380\n")
    service = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, sys.executable, "-m", "tortie.cli.main", "--datastore", url,
         "--log-level", "info", "dhcp", "run", "--hostname", "h1", "--state-dir", str(tmp_path / "state"),
         "--mtu-file", str(mtu_file)],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "service.log", "wb"), start_new_session=True)  # noqa: SIM115
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "state" / "dnsmasq.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        vm = host.add_vm("tapvm6", "fa:16:3e:00:00:06")  # dnsmasq answers its router solicitation
        _wait_for_ipv6_mtu(vm, "1380", tmp_path)
        # The agent's MTU drops: dnsmasq restarts with the new advertisement parameters and
        # advertises (unsolicited) on the existing tap.
        mtu_file.write_text("1300\n")
        _wait_for_ipv6_mtu(vm, "1300", tmp_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(service.pid, signal.SIGTERM)
        try:
            service.wait(15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(5)
        ds.close()
