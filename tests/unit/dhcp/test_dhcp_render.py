"""tortie.dhcp without the kernel: subnet records, the pure dnsmasq rendering, and the service's
decisions (start / reload / restart / stop) driven by a memory datastore with fake seams."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tortie.datastore.memory import MemoryDatastore
from tortie.dhcp.dnsmasq_config import (
    DnsmasqConfig,
    DnsmasqPaths,
    LocalEndpoint,
    command,
    endpoint_from_wire,
    render,
)
from tortie.dhcp.records import DhcpSubnet, HostRoute, InvalidDhcpRecord, subnet_key
from tortie.dhcp.service import DhcpOptions, DhcpService
from tortie.model.kinds import kind_info
from tortie.testing.dhcp_fakes import FakeAliasInterface, FakeDnsmasq

S4 = DhcpSubnet(id="s4", cidr="10.65.0.0/24", network_id="n1", gateway_ip="10.65.0.1",
                dns_servers=("10.0.0.53",), host_routes=(HostRoute("192.168.0.0/16", "10.65.0.254"),),
                mtu=1450)
S6 = DhcpSubnet(id="s6", cidr="fd00:65::/64", gateway_ip="fd00:65::1")
SLAAC = DhcpSubnet(id="sl", cidr="fd00:66::/64", gateway_ip="fd00:66::1", ipv6_address_mode="slaac")


def test_record_roundtrip_and_validation() -> None:
    for subnet in (S4, S6, SLAAC):
        assert DhcpSubnet.from_json(subnet.to_json()) == subnet
    assert subnet_key("abc") == "/calico/dhcp/v2/no-region/subnet/abc"
    assert subnet_key("abc", "r1") == "/calico/dhcp/v2/region-r1/subnet/abc"
    bad: list[dict[str, Any]] = [
        {"cidr": "10.0.0.0/24"},
        {"id": "x", "cidr": "nonsense"},
        {"id": "x", "cidr": "10.0.0.0/24", "gatewayIp": "fd00::1"},
        {"id": "x", "cidr": "10.0.0.0/24", "dnsServers": "10.0.0.1"},
        {"id": "x", "cidr": "10.0.0.0/24", "hostRoutes": [{"destination": "::/0", "nexthop": "10.0.0.1"}]},
        {"id": "x", "cidr": "10.0.0.0/24", "mtu": 10},
        {"id": "x", "cidr": "10.0.0.0/24", "ipv6AddressMode": "slaac"},  # IPv6 only
        {"id": "x", "cidr": "fd00::/64", "ipv6AddressMode": "eui64"},
    ]
    for obj in bad:
        with pytest.raises(InvalidDhcpRecord):
            DhcpSubnet.from_json(obj, key="/k")


EP1 = LocalEndpoint("openstack/vm1", "tap1111", "fa:16:3e:00:00:01", ("10.65.0.5", "fd00:65::5"), "vm-one")
EP2 = LocalEndpoint("openstack/vm2", "tap2222", "fa:16:3e:00:00:02", ("10.65.0.6", "172.16.0.9"))


def test_render() -> None:
    config = render([EP2, EP1], [S6, S4, DhcpSubnet(id="off", cidr="10.99.0.0/24", gateway_ip="10.99.0.1",
                                                    enable_dhcp=False),
                                 DhcpSubnet(id="nogw", cidr="10.98.0.0/24")], lease_seconds=600)
    assert config.gateway_addresses == ("10.65.0.1/24", "fd00:65::1/64")
    assert config.ranges == ("set:s-s4,10.65.0.0,static,255.255.255.0,600",
                             "set:s-s6,fd00:65::,static,off-link,64,600")
    assert config.router_advertisements
    assert config.hosts == (
        "fa:16:3e:00:00:01,10.65.0.5,vm-one,600\n"
        "fa:16:3e:00:00:01,[fd00:65::5],vm-one,600\n"
        "fa:16:3e:00:00:02,10.65.0.6,600\n"  # 172.16.0.9 is in no served subnet
    )
    assert config.opts == (
        "tag:s-s4,option:router,10.65.0.1\n"
        "tag:s-s4,option:dns-server,10.0.0.53\n"
        "tag:s-s4,option:classless-static-route,192.168.0.0/16,10.65.0.254,0.0.0.0/0,10.65.0.1\n"
        "tag:s-s4,option:mtu,1450\n"
    )
    assert render([], []).serves_anything is False


@pytest.mark.parametrize(
    ("mode", "range_mode"),
    [
        (None, "static"),
        ("dhcpv6-stateful", "static"),
        ("dhcpv6-stateless", "ra-stateless"),
        ("slaac", "ra-only"),
    ],
)
def test_ipv6_address_modes_choose_how_dnsmasq_serves(mode: str | None, range_mode: str) -> None:
    """Neutron's ipv6_address_mode -> dnsmasq's range mode; router advertisements always, off-link."""
    subnet = DhcpSubnet(id="x", cidr="fd00:67::/64", gateway_ip="fd00:67::1", ipv6_address_mode=mode)
    config = render([EP1], [subnet])
    assert config.ranges == (f"set:s-x,fd00:67::,{range_mode},off-link,64,86400",)
    argv = command(config, DnsmasqPaths("/p", "/l", "/h", "/o"), alias="tdhcp0", interface_prefixes=("tap",))
    assert "--enable-ra" in argv and "--interface=tap*" in argv


def test_command_line() -> None:
    paths = DnsmasqPaths("/s/pid", "/s/leases", "/s/hosts", "/s/opts", None)
    argv = command(render([EP1], [S4]), paths, alias="tdhcp0", interface_prefixes=("tap", "vm"))
    assert argv[0] == "dnsmasq"
    assert "--port=0" in argv and "--dhcp-ignore=tag:!known" in argv
    assert "--bridge-interface=tdhcp0,tap*,vm*" in argv
    assert "--dhcp-range=set:s-s4,10.65.0.0,static,255.255.255.0,86400" in argv
    assert "--enable-ra" not in argv  # no IPv6 subnet: no router advertisements


def _wep(name: str, node: str, mac: str | None, ips: list[str], fqdn: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"node": node, "interfaceName": "tap" + name, "ipNetworks": ips,
                            "orchestrator": "openstack", "workload": name, "endpoint": name}
    if mac:
        spec["mac"] = mac
    meta: dict[str, Any] = {"name": name, "namespace": "openstack"}
    if fqdn:
        meta["annotations"] = {"openstack.projectcalico.org/fqdn": fqdn}
    return {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint", "metadata": meta, "spec": spec}


def test_endpoint_from_wire() -> None:
    ep = endpoint_from_wire(_wep("a", "h1", "FA:16:3E:00:00:0A", ["10.65.0.7/32"], "a-1.example.org"), "h1")
    assert ep == LocalEndpoint("openstack/a", "tapa", "fa:16:3e:00:00:0a", ("10.65.0.7",), "a-1")
    assert endpoint_from_wire(_wep("a", "h2", "fa:16:3e:00:00:0a", ["10.65.0.7/32"]), "h1") is None
    assert endpoint_from_wire(_wep("a", "h1", None, ["10.65.0.7/32"]), "h1") is None


def _pump_until(service: DhcpService, predicate: Callable[[DnsmasqConfig], bool]) -> None:
    """Handle watch events until the desired config satisfies `predicate` (events arrive through
    the syncer's watch threads, so one poll may not see all of them)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        service.syncer.poll(timeout=0.05)
        if predicate(service.desired()):
            return
    raise AssertionError(f"datastore changes not seen; desired={service.desired()}")


def test_service_decisions(tmp_path: Path) -> None:
    ds = MemoryDatastore()
    alias = FakeAliasInterface()
    runner = FakeDnsmasq()
    service = DhcpService(ds, DhcpOptions(hostname="h1", state_dir=tmp_path), alias=alias, runner=runner)
    wep_key = kind_info("WorkloadEndpoint").key
    assert service.sync_once() == "unchanged"  # nothing to serve: dnsmasq not started
    ds.put(subnet_key("s4"), S4.to_json())
    ds.put(wep_key("vm1", "openstack"), _wep("vm1", "h1", "fa:16:3e:00:00:01", ["10.65.0.5/32"]))
    ds.put(wep_key("vm9", "openstack"), _wep("vm9", "h9", "fa:16:3e:00:00:09", ["10.65.0.9/32"]))
    ds.put(wep_key("vm0", "openstack"), _wep("vm0", "h1", "fa:16:3e:00:00:00", ["10.65.0.4/32"]))
    _pump_until(service, lambda c: "10.65.0.4" in c.hosts)
    assert service.apply() == "started"
    assert alias.addresses == {"10.65.0.1/24"}
    assert runner.config is not None
    assert "10.65.0.5" in runner.config.hosts and "10.65.0.9" not in runner.config.hosts
    ds.put(wep_key("vm2", "openstack"), _wep("vm2", "h1", "fa:16:3e:00:00:02", ["10.65.0.6/32"]))
    _pump_until(service, lambda c: "10.65.0.6" in c.hosts)
    assert service.apply() == "reloaded"  # a new VM: only the hosts file changed
    assert service.apply() == "unchanged"
    ds.put(subnet_key("s5"), DhcpSubnet(id="s5", cidr="10.66.0.0/24", gateway_ip="10.66.0.1").to_json())
    _pump_until(service, lambda c: len(c.ranges) == 2)
    assert service.apply() == "restarted"  # a new range needs a restart
    assert alias.addresses == {"10.65.0.1/24", "10.66.0.1/24"}
    ds.put(subnet_key("bad"), {"id": "bad", "cidr": "garbage"})  # skipped with a warning
    ds.delete(wep_key("vm0", "openstack"))
    _pump_until(service, lambda c: "10.65.0.4" not in c.hosts)
    assert service.apply() == "reloaded"
    ds.delete(subnet_key("s4"))
    ds.delete(subnet_key("s5"))
    _pump_until(service, lambda c: not c.serves_anything)
    assert service.apply() == "stopped"
    assert alias.addresses == set()
    service.stop()


@pytest.mark.parametrize(
    ("network_mtu", "workload_mtu", "advertised"),
    [
        (None, None, None),  # neither known: no option, the VM keeps its NIC's MTU
        (1450, None, 1450),  # no MTU file: the network's MTU
        (None, 1400, 1400),  # the network has none: the agent's
        (1300, 1400, 1300),  # the network's is below the agent's
        (9000, 1450, 1450),  # the network's is above what the host's fabric carries
    ],
)
def test_advertised_mtu_is_the_smaller_of_network_and_workload(
        network_mtu: int | None, workload_mtu: int | None, advertised: int | None) -> None:
    subnet = DhcpSubnet(id="m", cidr="10.70.0.0/24", gateway_ip="10.70.0.1", mtu=network_mtu)
    opts = render([], [subnet], workload_mtu=workload_mtu).opts
    mtu_line = f"tag:s-m,option:mtu,{advertised}\n" if advertised else ""
    expected = "tag:s-m,option:router,10.70.0.1\n" + mtu_line
    assert opts == expected


def test_mtu_file_read_like_the_cni_plugin(tmp_path: Path) -> None:
    """The service reads the agent's MTU file with the CNI plugin's reader: missing or garbage
    means no workload MTU; a change on disk is noticed and re-renders the options."""
    from tortie.cni.netconf import parse_netconf, resolve_mtu

    mtu_file = tmp_path / "mtu"
    service = DhcpService(MemoryDatastore(), DhcpOptions(hostname="h1", state_dir=tmp_path / "s",
                                                         mtu_file=str(mtu_file)),
                          alias=FakeAliasInterface(), runner=FakeDnsmasq())
    conf = parse_netconf({"cniVersion": "1.0.0", "name": "n", "type": "tortie", "mtu_file": str(mtu_file)})
    assert service.workload_mtu is None and resolve_mtu(conf) == 1500
    for text, expected in (("1400\n", 1400), ("garbage", None), ("1380", 1380), ("10\n", None)):
        mtu_file.write_text(text)
        os.utime(mtu_file, ns=(time.time_ns(), time.time_ns() + len(text)))  # new mtime within a tick
        service.check_mtu_file()
        assert service.workload_mtu == expected, text
        assert resolve_mtu(conf) == (expected or 1500)
    mtu_file.unlink()
    assert not service.check_mtu_file() and service.workload_mtu is None


def test_service_reloads_dnsmasq_when_the_mtu_file_changes(tmp_path: Path) -> None:
    ds = MemoryDatastore()
    mtu_file = tmp_path / "mtu"
    mtu_file.write_text("1450\n")
    runner = FakeDnsmasq()
    service = DhcpService(ds, DhcpOptions(hostname="h1", state_dir=tmp_path / "s", mtu_file=str(mtu_file)),
                          alias=FakeAliasInterface(), runner=runner)
    assert service.sync_once() == "unchanged"
    ds.put(subnet_key("s4"), S4.to_json())  # network MTU 1450
    ds.put(kind_info("WorkloadEndpoint").key("vm1", "openstack"),
           _wep("vm1", "h1", "fa:16:3e:00:00:01", ["10.65.0.5/32"]))
    _pump_until(service, lambda c: "10.65.0.5" in c.hosts)
    assert service.apply() == "started"
    assert runner.config is not None and "option:mtu,1450\n" in runner.config.opts
    mtu_file.write_text("1400\n")
    os.utime(mtu_file, ns=(time.time_ns(), time.time_ns() + 1))
    assert service.check_mtu_file()
    assert service.apply() == "reloaded"  # only the options file changed
    assert "option:mtu,1400\n" in runner.config.opts
    assert not service.check_mtu_file() and service.apply() == "unchanged"
    service.stop()


def test_router_advertisements_carry_the_smallest_ipv6_mtu() -> None:
    """DHCPv6 has no MTU option: IPv6 VMs get the smallest effective MTU of the served IPv6 subnets
    in the router advertisements, on the alias and on every tap prefix; none below 1280."""
    paths = DnsmasqPaths("/p", "/l", "/h", "/o")
    a = DhcpSubnet(id="a", cidr="fd00:1::/64", gateway_ip="fd00:1::1", mtu=1450)
    b = DhcpSubnet(id="b", cidr="fd00:2::/64", gateway_ip="fd00:2::1", mtu=9000)
    v4 = DhcpSubnet(id="c", cidr="10.1.0.0/24", gateway_ip="10.1.0.1", mtu=1300)  # IPv4 only: not in RAs
    assert render([], [a, b, v4]).ra_mtu == 1450
    config = render([], [a, b, v4], workload_mtu=1400)
    assert config.ra_mtu == 1400
    argv = command(config, paths, alias="tdhcp0", interface_prefixes=("tap", "vm"))
    assert [x for x in argv if x.startswith("--ra-param")] == [
        "--ra-param=tdhcp0,mtu:1400,0", "--ra-param=tap*,mtu:1400,0", "--ra-param=vm*,mtu:1400,0"]
    assert render([], [DhcpSubnet(id="n", cidr="fd00:3::/64", gateway_ip="fd00:3::1")]).ra_mtu is None
    low = render([], [a], workload_mtu=1230)  # below IPv6's minimum: dnsmasq would refuse it
    assert low.ra_mtu is None
    assert not [x for x in command(low, paths, alias="tdhcp0", interface_prefixes=("tap",))
                if x.startswith("--ra-param")]
