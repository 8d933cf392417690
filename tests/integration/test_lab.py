"""The namespace lab library on the real kernel: build, plumb, reach, run processes, tear down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.lab import Lab, LabError, host_interface_name
from tortie.testing.netns import ip, unique_name

pytestmark = pytest.mark.root


def lab_namespaces(name: str) -> list[str]:
    listed = ip("netns", "list").stdout.splitlines()
    return [line.split()[0] for line in listed if line.startswith(f"{name}-")]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    built = Lab.create(unique_name("lab"), tmp_path / "lab", hosts=2)
    try:
        yield built
    finally:
        built.down()


def test_hosts_and_fabric(lab: Lab) -> None:
    assert sorted(lab_namespaces(lab.name)) == sorted([f"{lab.name}-fab", f"{lab.name}-h1", f"{lab.name}-h2"])
    assert lab.host_ip("h1") == "172.31.0.11"
    assert lab.exec("h1", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    assert "169.254.1.1 dev lo" in lab.exec("h1", ["ip", "route"]).stdout
    assert lab.ping("h1", lab.host_ip("h2"))


def test_workloads_reach_each_other_across_hosts(lab: Lab) -> None:
    w1 = lab.add_workload("w1", "h1", "10.65.0.2", plumb_host_side=True)
    lab.add_workload("w2", "h2", ["10.65.1.2"], plumb_host_side=True)
    assert w1.host_ifname == host_interface_name("tort", lab.name, "w1")
    assert len(w1.host_ifname) == 15 and w1.host_ifname.startswith("tort")
    assert f"10.65.0.2 dev {w1.host_ifname} scope link" in lab.exec("h1", ["ip", "route"]).stdout
    assert lab.ping("w1", "10.65.0.2")
    assert lab.ping("h1", "10.65.0.2")
    assert not lab.ping("w1", "10.65.1.2", attempts=1)  # no inter-host routes yet
    lab.add_static_route("h1", "10.65.1.0/24", lab.host_ip("h2"))
    lab.add_static_route("h2", "10.65.0.0/24", lab.host_ip("h1"))
    assert lab.ping("w1", "10.65.1.2")
    lab.remove_workload("w2")
    assert f"{lab.name}-w2" not in lab_namespaces(lab.name)


def test_unplumbed_workload_has_no_host_side_state(lab: Lab) -> None:
    w1 = lab.add_workload("w1", "h1", "10.65.0.2")
    assert "10.65.0.2" not in lab.exec("h1", ["ip", "route"]).stdout
    proxy_arp = lab.exec("h1", ["cat", f"/proc/sys/net/ipv4/conf/{w1.host_ifname}/proxy_arp"]).stdout
    assert proxy_arp.strip() == "0"
    assert not lab.ping("h1", "10.65.0.2", attempts=1)


def test_processes_are_tracked_and_stopped(lab: Lab) -> None:
    pid = lab.start_process("h1", ["sh", "-c", "echo started; exec sleep 60"])
    assert lab.process_running(pid)
    netns = lab.exec("h1", ["readlink", "/proc/self/ns/net"]).stdout.strip()
    assert Path(f"/proc/{pid}/ns/net").readlink().as_posix() == netns
    lab.stop_process(pid)
    assert not lab.process_running(pid)
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped


def test_down_from_another_process_view_and_repeat(tmp_path: Path) -> None:
    name = unique_name("lab")
    workdir = tmp_path / "lab"
    lab = Lab.create(name, workdir, hosts=1)
    lab.add_workload("w1", "h1", "10.65.0.2")
    pid = lab.start_process("w1", ["sleep", "60"])
    assert (workdir / "lab.json").exists()
    Lab.load(workdir).down()  # a second view, as another process would have
    assert lab_namespaces(name) == []
    assert not workdir.exists()
    lab.down()  # repeat: nothing left, no error
    lab.down()
    assert not lab.process_running(pid)


def test_bad_input_is_rejected(lab: Lab) -> None:
    with pytest.raises(ValueError):
        lab.add_workload("h1", "h1", "10.65.0.2")  # clashes with a host name
    with pytest.raises(ValueError):
        lab.add_workload("w1", "h9", "10.65.0.2")
    with pytest.raises(ValueError):
        Lab("Bad_Name", lab.workdir.parent / "other")
    with pytest.raises(LabError):
        Lab.load(lab.workdir.parent / "nothing-here")
