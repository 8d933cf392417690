"""The OpenStack lab scenario: Neutron (in-process ML2 plugin + the tortie driver) creates ports
bound to two lab hosts; each host runs the real `tortie agent run` and `tortie dhcp run`
(dnsmasq); each "VM" is a namespace behind a tap-named veth (`tap` + port id[:11], the VM's MAC
from Neutron) and gets its address by DHCP (busybox udhcpc); VMs reach each other across hosts.

Inter-host routes are static (BGP is covered by its own tests). The VMs first get their leases
with the agents' policy enforcement off; then the agents restart with policy on (leases are kept)
and security-group rules decide TCP and ICMP probes as Neutron's semantics say; a new VM then gets
its lease while policy is enforced (the agent admits DHCP from workloads to the host).

IPv6 (the fabric is dual-stack): VMs on a `dhcpv6-stateful` subnet get their Neutron address from
dnsmasq by DHCPv6 (ISC dhclient -6, with a script that only configures the address) and their
default route from dnsmasq's router advertisements; VMs on a `slaac` subnet configure themselves
from the advertisements alone (the kernel's SLAAC forms prefix + EUI-64 of the MAC, the address
Neutron gave the port). Either way the VMs reach each other across hosts over IPv6, with policy on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from neutron_harness import NeutronHarness
from tortie.agent.status import status_key
from tortie.common.ipfamily import V4, V6
from tortie.datastore.api import Datastore
from tortie.datastore.url import open_datastore
from tortie.lab import Lab
from tortie.lab.fabric import fabric_subnets
from tortie.testing.netns import ip, unique_name

from networking_tortie import naming

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("dnsmasq") is None,
                       reason="needs dnsmasq (apt-get install dnsmasq-base)"),
    pytest.mark.skipif(shutil.which("busybox") is None,
                       reason="needs busybox (apt-get install busybox-static)"),
]
needs_dhclient = pytest.mark.skipif(shutil.which("dhclient") is None,
                                    reason="needs ISC dhclient for DHCPv6 (apt-get install isc-dhcp-client)")

TORTIE = [sys.executable, "-m", "tortie.cli.main"]
UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc event script: configure what the DHCP server sent.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    echo "$ip" > "$OUT"
    ;;
esac
"""
DHCLIENT6_SCRIPT = """#!/bin/sh
# dhclient -6 script: configure the address only (never the resolver of the machine's root file
# system); dhclient runs it with a clean environment, so the output file is written in here.
case "$reason" in
  BOUND6|RENEW6|REBIND6)
    ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad
    echo "$new_ip6_address" > "{out}"
    ;;
esac
"""


def wait_for(predicate: Callable[[], bool], what: str, logs: Callable[[], str],
             timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


@dataclass
class Vm:
    name: str
    netns: str
    port: dict[str, Any]
    host: str
    address: str = ""


@dataclass
class Cloud:
    neutron: NeutronHarness
    lab: Lab
    ds: Datastore
    workdir: Path
    url: str
    vms: dict[str, Vm] = field(default_factory=dict)
    listeners: list[subprocess.Popen[bytes]] = field(default_factory=list)
    agents: dict[str, int] = field(default_factory=dict)

    def start_agents(self, *, policy: bool) -> None:
        """(Re)start the agent of each host; with `policy` it enforces policy with nftables."""
        for host, pid in list(self.agents.items()):
            self.lab.stop_process(pid)
            del self.agents[host]
        env = {**os.environ, "TORTIE_REPORTING_INTERVAL": "1", "TORTIE_ROUTE_REFRESH_INTERVAL": "2",
               "TORTIE_INTERFACE_REFRESH_INTERVAL": "2", "TORTIE_ENDPOINT_REPORTING_DELAY": "0.1",
               "TORTIE_POLICY_ENABLED": "true" if policy else "false"}
        for host in ("h1", "h2"):
            self.agents[host] = self.lab.start_process(
                host, [*TORTIE, "agent", "run", "--hostname", host, "--datastore", self.url], env=env)
        if policy:
            for host in ("h1", "h2"):
                wait_for(lambda h=host: "tortie" in self.lab.exec(h, ["nft", "list", "tables"]).stdout,  # type: ignore[misc]
                         f"policy table on {host}", self.logs)

    def logs(self) -> str:
        out = []
        for record in self.lab.state.processes:
            if record.log and Path(record.log).exists():
                tail = Path(record.log).read_text()[-3000:]
                out.append(f"\n--- {record.netns} {record.argv[3:6]} ---\n{tail}")
        for state in self.workdir.glob("dhcp-*/dnsmasq.log"):
            out.append(f"\n--- {state} ---\n" + state.read_text()[-2000:])
        return "".join(out)

    def add_vm(self, name: str, host: str, network: dict[str, Any], **port_fields: Any) -> Vm:
        port = self.neutron.port(network, host=host, device_id=f"{name}-uuid", **port_fields)
        assert port["binding:vif_type"] == "tap", port
        netns = f"{self.lab.name}-{name}"
        vm = Vm(name, netns, port, host)
        self.vms[name] = vm
        tap = naming.tap_name(port["id"])
        ip("netns", "add", netns)
        host_ns = self.lab.netns(host)
        ip("-n", host_ns, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("-n", netns, "link", "set", "eth0", "address", port["mac_address"])
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", self.lab.netns(host), "link", "set", tap, "up")
        return vm

    def dhcp(self, vm: Vm, attempts: int = 5) -> str:
        script = self.workdir / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        out = self.workdir / f"{vm.name}.lease"
        for _ in range(attempts):
            subprocess.run(["ip", "netns", "exec", vm.netns, "env", f"OUT={out}", "busybox", "udhcpc",
                            "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1", "-s", str(script)],
                           capture_output=True, timeout=30, check=False)
            if out.exists():
                vm.address = out.read_text().strip()
                return vm.address
        raise AssertionError(f"{vm.name} got no DHCP lease\n{self.logs()}")

    def dhcp6(self, vm: Vm, attempts: int = 3) -> str:
        """DHCPv6 (stateful) with ISC dhclient in the VM; the address it was given."""
        out = self.workdir / f"{vm.name}.lease6"
        script = self.workdir / f"{vm.name}.dhclient6.sh"
        script.write_text(DHCLIENT6_SCRIPT.replace("{out}", str(out)))
        script.chmod(0o755)
        said = ""
        wait_for(lambda: bool(self._addresses(vm, "link")), f"{vm.name}'s link-local address", self.logs)
        files = [str(self.workdir / f"{vm.name}.dhclient6{suffix}") for suffix in ("", ".pid")]
        for _ in range(attempts):
            argv = ["ip", "netns", "exec", vm.netns, "timeout", "20", "dhclient", "-6",
                    "-1", "-v", "-lf", files[0], "-pf", files[1], "-sf", str(script), "eth0"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            said = done.stderr[-1500:]
            if out.exists():
                vm.address = out.read_text().strip()
                return vm.address
        raise AssertionError(f"{vm.name} got no DHCPv6 lease; dhclient said:\n{said}\n{self.logs()}")

    def slaac(self, vm: Vm) -> str:
        """Wait for the VM's kernel to configure a global IPv6 address from a router advertisement."""
        def configured() -> bool:
            found = self._addresses(vm, "global")
            vm.address = found[0] if found else ""
            return bool(found)

        wait_for(configured, f"{vm.name} configuring an address from router advertisements", self.logs)
        return vm.address

    def _addresses(self, vm: Vm, scope: str) -> list[str]:
        """The VM's usable (not tentative) IPv6 addresses of `scope` on eth0."""
        argv = ["ip", "-j", "-6", "addr", "show", "dev", "eth0", "scope", scope]
        data = json.loads(self.run(vm, argv).stdout or "[]")
        return [a["local"] for link in data for a in link.get("addr_info", [])
                if "local" in a and not a.get("tentative")]

    def default_router(self, vm: Vm) -> str:
        routes = json.loads(self.run(vm, ["ip", "-j", "-6", "route", "show", "default"]).stdout or "[]")
        return str(routes[0].get("gateway", "")) if routes else ""

    def run(self, vm: Vm, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", vm.netns, *argv], capture_output=True, text=True,
                              timeout=30, check=False)

    def ping(self, src: Vm, dst: str, attempts: int = 5) -> bool:
        argv = ["ping", "-c", "1", "-W", "1", dst]
        return any(self.run(src, argv).returncode == 0 for _ in range(attempts))

    def tcp(self, src: Vm, dst: str, port: int) -> bool:
        probe = f"import socket; socket.create_connection(({dst!r}, {port}), 1.5).close()"
        return self.run(src, [sys.executable, "-c", probe]).returncode == 0

    def listen(self, vm: Vm, port: int) -> None:
        argv = ["ip", "netns", "exec", vm.netns, sys.executable, "-m", "http.server", str(port),
                "--bind", "0.0.0.0"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.listeners.append(proc)


@pytest.fixture(scope="module")
def cloud(neutron: NeutronHarness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    workdir = tmp_path_factory.mktemp("cloud")
    url = f"sqlite://{workdir / 'tortie.db'}"
    driver = neutron.driver
    driver.stop_background()
    neutron.reset_db()
    driver.conf = dataclasses.replace(driver.conf, datastore=url)
    driver._ds = None
    ds = open_datastore(url)
    driver.resync()  # cluster settings first: the agents must treat `tap*` interfaces as workloads
    lab = Lab.create(unique_name("os"), workdir / "lab", hosts=["h1", "h2"], subnets=fabric_subnets((V4, V6)))
    cloud = Cloud(neutron, lab, ds, workdir, url)
    try:
        cloud.start_agents(policy=False)
        for host in ("h1", "h2"):
            lab.start_process(host, [*TORTIE, "--datastore", url, "--log-level", "info", "dhcp", "run",
                                     "--hostname", host, "--state-dir", str(workdir / f"dhcp-{host}")])
        for host in ("h1", "h2"):
            wait_for(lambda h=host: ds.get(status_key(h)) is not None, f"agent on {host} alive", cloud.logs)  # type: ignore[misc]
        yield cloud
    finally:
        for proc in cloud.listeners:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)
        for vm in cloud.vms.values():
            ip("netns", "del", vm.netns, check=False)
        lab.down()
        driver._ds = None
        ds.close()


def _routes(cloud: Cloud, host: str) -> str:
    return cloud.lab.exec(host, ["ip", "route", "show", "proto", "77"]).stdout


def test_vms_get_neutron_addresses_by_dhcp_and_reach_each_other_across_hosts(cloud: Cloud) -> None:
    n = cloud.neutron
    net = n.network("tenant-net")
    sub = n.subnet(net, "10.65.0.0/24")
    vm1 = cloud.add_vm("vm1", "h1", net)
    vm2 = cloud.add_vm("vm2", "h2", net)
    for vm in (vm1, vm2):
        assert cloud.dhcp(vm) == vm.port["fixed_ips"][0]["ip_address"]
        routes = cloud.run(vm, ["ip", "-j", "route", "show", "default"]).stdout
        assert json.loads(routes)[0]["gateway"] == sub["gateway_ip"]
    # The agent routes each VM's /32 to its tap on its own host.
    for vm in (vm1, vm2):
        tap = naming.tap_name(vm.port["id"])
        wait_for(lambda v=vm, t=tap: f"{v.address} dev {t}" in _routes(cloud, v.host),  # type: ignore[misc]
                 f"route to {vm.name}", cloud.logs)
    # Inter-host routes (what BGP would learn).
    cloud.lab.add_static_route("h1", f"{vm2.address}/32", cloud.lab.host_ip("h2"))
    cloud.lab.add_static_route("h2", f"{vm1.address}/32", cloud.lab.host_ip("h1"))
    assert cloud.ping(vm1, vm2.address), cloud.logs()
    assert cloud.ping(vm2, vm1.address), cloud.logs()
    assert cloud.ping(vm1, sub["gateway_ip"]), "the gateway answers from the host"
    # The agents report the endpoints up; the driver turns that into Neutron port status.
    def all_active() -> bool:
        cloud.neutron.driver.flow_back_once()
        return all(n.get_port(vm.port["id"])["status"] == "ACTIVE" for vm in (vm1, vm2))

    wait_for(all_active, "ports ACTIVE", cloud.logs)


def _vms(cloud: Cloud) -> tuple[Vm, Vm]:
    vm1, vm2 = cloud.vms.get("vm1"), cloud.vms.get("vm2")
    if vm1 is None or vm2 is None or not vm1.address or not vm2.address:
        pytest.skip("needs the VMs of the reachability test")
    return vm1, vm2


def test_security_groups_decide_probes(cloud: Cloud) -> None:
    vm1, vm2 = _vms(cloud)
    cloud.start_agents(policy=True)
    n = cloud.neutron
    # Both VMs in the project's default group: members may reach each other.
    wait_for(lambda: cloud.ping(vm1, vm2.address, attempts=1), "default group members reach each other",
             cloud.logs)
    assert cloud.ping(vm2, vm1.address)
    web = n.security_group("web")  # all egress allowed, no ingress
    n.rule(web["id"], protocol="tcp", port_range_min=8080, port_range_max=8080)
    n.update_port(vm1.port["id"], security_groups=[web["id"]])
    cloud.listen(vm1, 8080)
    cloud.listen(vm1, 8081)
    wait_for(lambda: cloud.tcp(vm2, vm1.address, 8080), "tcp 8080 allowed by the web group", cloud.logs)
    assert not cloud.tcp(vm2, vm1.address, 8081), "tcp 8081 is not allowed by any rule"
    assert not cloud.ping(vm2, vm1.address, attempts=2), "no ICMP rule in the web group"
    # vm2 stays in the default group: ingress only from its members, and vm1 left the group.
    assert not cloud.ping(vm1, vm2.address, attempts=2)
    icmp = n.rule(web["id"], protocol="icmp")
    wait_for(lambda: cloud.ping(vm2, vm1.address, attempts=1), "ICMP allowed once the rule exists",
             cloud.logs)
    n.plugin.delete_security_group_rule(n.ctx(), icmp["id"])
    wait_for(lambda: not cloud.ping(vm2, vm1.address, attempts=1), "ICMP denied once the rule is gone",
             cloud.logs)
    assert cloud.tcp(vm2, vm1.address, 8080)


def test_dhcp_while_policy_is_enforced(cloud: Cloud) -> None:
    _vms(cloud)
    if "tortie" not in cloud.lab.exec("h1", ["nft", "list", "tables"]).stdout:
        cloud.start_agents(policy=True)
    net = cloud.neutron.plugin.get_networks(cloud.neutron.ctx(), filters={"name": ["tenant-net"]})[0]
    vm3 = cloud.add_vm("vm3", "h1", net)
    assert cloud.dhcp(vm3, attempts=1) == vm3.port["fixed_ips"][0]["ip_address"]


def _fixed_ip(vm: Vm) -> str:
    return str(vm.port["fixed_ips"][0]["ip_address"])


def _route_between(cloud: Cloud, a: Vm, b: Vm) -> None:
    """What BGP would learn: each VM's /128 on the other host, via its own host's IPv6 address."""
    cloud.lab.add_static_route(a.host, f"{b.address}/128", cloud.lab.host_ip(b.host, V6))
    cloud.lab.add_static_route(b.host, f"{a.address}/128", cloud.lab.host_ip(a.host, V6))


@needs_dhclient
def test_ipv6_vms_get_their_address_by_dhcpv6_and_routes_by_router_advertisement(cloud: Cloud) -> None:
    n = cloud.neutron
    net = n.network("v6-stateful")
    n.subnet(net, "fd00:65::/64", ipv6_address_mode="dhcpv6-stateful", ipv6_ra_mode="dhcpv6-stateful")
    vm1, vm2 = cloud.add_vm("vm6a", "h1", net), cloud.add_vm("vm6b", "h2", net)
    for vm in (vm1, vm2):
        assert cloud.dhcp6(vm) == _fixed_ip(vm)
        wait_for(lambda v=vm: cloud.default_router(v).startswith("fe80:"),  # type: ignore[misc]
                 f"{vm.name}'s default route from a router advertisement", cloud.logs)
        routes = cloud.run(vm, ["ip", "-6", "route"]).stdout
        assert "fd00:65::/64" not in routes, routes  # advertised off-link: the host routes the subnet too
    _route_between(cloud, vm1, vm2)
    wait_for(lambda: cloud.ping(vm1, vm2.address, attempts=1), "vm6a -> vm6b over IPv6", cloud.logs)
    assert cloud.ping(vm2, vm1.address)


def test_ipv6_vms_configure_themselves_by_slaac(cloud: Cloud) -> None:
    n = cloud.neutron
    net = n.network("v6-slaac")
    n.subnet(net, "fd00:66::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    vm1, vm2 = cloud.add_vm("vmsa", "h1", net), cloud.add_vm("vmsb", "h2", net)
    for vm in (vm1, vm2):
        # Neutron gave the port prefix + EUI-64 of its MAC; the kernel forms the same from the RA
        assert cloud.slaac(vm) == _fixed_ip(vm), cloud.run(vm, ["ip", "-6", "addr"]).stdout
        assert cloud.default_router(vm).startswith("fe80:")
    _route_between(cloud, vm1, vm2)
    wait_for(lambda: cloud.ping(vm1, vm2.address, attempts=1), "vmsa -> vmsb over IPv6", cloud.logs)
    assert cloud.ping(vm2, vm1.address)
