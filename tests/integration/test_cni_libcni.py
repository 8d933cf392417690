"""libcni — the library container runtimes use to call CNI plugins — drives `tortie` in a lab host.

cnitool is built from Debian's libcni source by ../shared/tools/cnitool/build.sh (cached per test
session under pytest's temp dir). libcni runs ADD (and caches the result), CHECK (with that cached
result as prevResult), DEL, and a second DEL, against a network configuration list whose only plugin
is `tortie`; the plugin runs inside a lab host namespace with `nodename` set. The network is dual
stack (an IPv4 and an IPv6 pool, `ipam.assign_ipv6`): ADD returns an address of each family and the
container has both; CHECK finds a missing IPv6 address as it finds a missing IPv4 one. On two
dual-stack lab hosts, libcni's containers reach each other over both families.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tortie.cni.install import install
from tortie.common.ipfamily import V4, V6, family_of
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam.audit import check as audit_check
from tortie.ipam.snapshot import take_snapshot
from tortie.lab import Lab
from tortie.lab.fabric import fabric_subnets
from tortie.model.kinds import kind_info
from tortie.testing.cni_node import CniNode
from tortie.testing.netns import unique_name

pytestmark = pytest.mark.root

_SCRIPT = Path("shared", "tools", "cnitool", "build.sh")  # beside the checkout (main or a worktree of it)
BUILD_SCRIPT = next(
    (p / _SCRIPT for p in Path(__file__).resolve().parents if (p / _SCRIPT).exists()),
    Path(__file__).resolve().parents[3] / _SCRIPT,
)
LIBCNI_SOURCE = Path("/usr/share/gocode/src/github.com/containernetworking/cni/libcni")


@pytest.fixture(scope="session")
def cnitool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUILD_SCRIPT.exists():
        pytest.skip(f"cnitool build script not found at {BUILD_SCRIPT}")
    if shutil.which("go") is None or not LIBCNI_SOURCE.is_dir():
        pytest.skip("needs Debian golang-go and golang-github-appc-cni-dev (apt-get install them)")
    out = tmp_path_factory.mktemp("cnitool") / "cnitool"
    subprocess.run(["sh", str(BUILD_SCRIPT), str(out)], check=True, capture_output=True, timeout=300)
    return out


def run_cnitool(
    tool: Path, host_ns: str, verb: str, net: str, netns: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{host_ns}", str(tool), verb, net, f"/run/netns/{netns}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def seed(tmp_path: Path, hosts: list[str]) -> tuple[Path, Path]:
    """The plugins installed in <tmp>/bin and a sqlite datastore with an IPv4 and an IPv6 pool and the
    `hosts`' Nodes; returns (bindir, datastore file)."""
    bindir = tmp_path / "bin"
    install(bindir)
    db = tmp_path / "ds.db"
    ds = SqliteDatastore(db)
    for pool, cidr in (("lpool", "10.62.0.0/24"), ("lpool6", "fd62::/120")):
        ds.put(
            kind_info("IPPool").key(pool),
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": pool},
                "spec": {"cidr": cidr, "blockSize": 124 if ":" in cidr else 26},
            },
        )
    for host in hosts:
        ds.put(
            kind_info("Node").key(host),
            {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": host}, "spec": {}},
        )
    ds.close()
    return bindir, db


def write_conflist(confdir: Path, net: str, host: str, db: Path, node: CniNode) -> None:
    """Network `net` for `host`: the `tortie` plugin alone, dual stack (`ipam.assign_ipv6`)."""
    conflist: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": net,
        "plugins": [
            {
                "type": "tortie",
                "nodename": host,
                "datastore": f"sqlite://{db}",
                "ipam_lock_file": str(confdir.parent / f"{host}.lock"),
                "ipam": {"type": "tortie-ipam", "assign_ipv6": "true"},
                **node.netconf(),
            }
        ],
    }
    confdir.mkdir(parents=True, exist_ok=True)
    (confdir / "10-tortie.conflist").write_text(json.dumps(conflist))


def cnitool_env(confdir: Path, bindir: Path, pod: str | None = None) -> dict[str, str]:
    """cnitool's environment; with `pod`, the CNI_ARGS of a Kubernetes pod in namespace demo (its
    profile kns.demo is not created here), without, a plain container (the network's profile, which
    the plugin creates, admits the network's members)."""
    k8s = f";K8S_POD_NAMESPACE=demo;K8S_POD_NAME={pod}" if pod else ""
    return {
        "NETCONFPATH": str(confdir),
        "CNI_PATH": str(bindir),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_ARGS": f"IgnoreUnknown=1{k8s}",
    }


@pytest.mark.parametrize("service", [True, False], ids=["service", "standalone"])
def test_libcni_add_check_del_del(cnitool: Path, tmp_path: Path, service: bool) -> None:
    """libcni drives ADD, CHECK, DEL, DEL on a host whose node runs (its agent programs the endpoint
    before ADD returns), once with the node's CNI service taking the calls and once with the service
    off, the launcher serving them in-process."""
    bindir, db = seed(tmp_path, ["h1"])
    net = unique_name("libcni")  # libcni caches results under /var/lib/cni by network name: keep it unique
    confdir = tmp_path / "net.d"
    env = cnitool_env(confdir, bindir, "pod-a")
    lab = Lab.create(unique_name("cnil"), tmp_path / "lab", hosts=1)
    container = f"{lab.name}-c"
    subprocess.run(["ip", "netns", "add", container], check=True)
    node = CniNode(lab, "h1", f"sqlite://{db}", tmp_path, service=service)
    try:
        node.start()
        write_conflist(confdir, net, "h1", db, node)
        host_ns = lab.netns("h1")
        add = run_cnitool(cnitool, host_ns, "add", net, container, env)
        assert add.returncode == 0, add.stderr
        result = json.loads(add.stdout)
        address, address6 = (ip["address"] for ip in result["ips"])
        assert address.startswith("10.62.0.") and address.endswith("/32")
        assert address6.startswith("fd62::") and address6.endswith("/128")
        addrs = subprocess.run(
            ["ip", "-n", container, "-o", "addr", "show", "dev", "eth0"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert address in addrs and address6 in addrs

        ds = SqliteDatastore(db)
        (kv,) = ds.list(kind_info("WorkloadEndpoint").list_prefix("demo"))[0]
        ds.close()
        assert kv.value["spec"]["pod"] == "pod-a" and kv.value["spec"]["ipNetworks"] == [address, address6]
        assert len(os.listdir(node.status_dir)) == 1  # the agent had programmed it when ADD returned
        assert ("ADD done" in node.log_tail(200)) is service  # the service logs the calls it served

        check = run_cnitool(cnitool, host_ns, "check", net, container, env)
        assert check.returncode == 0, check.stderr
        subprocess.run(["ip", "-n", container, "addr", "del", address6, "dev", "eth0"], check=True)
        broken6 = run_cnitool(cnitool, host_ns, "check", net, container, env)
        assert broken6.returncode != 0 and "lacks address" in broken6.stderr, broken6.stderr
        subprocess.run(["ip", "-n", container, "addr", "add", address6, "dev", "eth0", "nodad"], check=True)
        again = run_cnitool(cnitool, host_ns, "check", net, container, env)
        assert again.returncode == 0, again.stderr
        subprocess.run(["ip", "-n", container, "addr", "flush", "dev", "eth0"], check=True)
        broken = run_cnitool(cnitool, host_ns, "check", net, container, env)
        assert broken.returncode != 0 and "lacks address" in broken.stderr

        for _ in range(2):
            delete = run_cnitool(cnitool, host_ns, "del", net, container, env)
            assert delete.returncode == 0, delete.stderr
        links = subprocess.run(
            ["ip", "-n", host_ns, "-o", "link", "show"], check=True, capture_output=True, text=True
        ).stdout
        assert "tort" not in links
        ds = SqliteDatastore(db)
        assert ds.list(kind_info("WorkloadEndpoint").list_prefix())[0] == []
        assert audit_check(take_snapshot(ds)) == []
        ds.close()
    finally:
        node.stop()
        subprocess.run(["ip", "netns", "del", container], check=False, capture_output=True)
        lab.down()
        for cached in Path("/var/lib/cni/results").glob(f"{net}-*"):
            cached.unlink()


def test_libcni_dual_stack_containers_reach_each_other_across_hosts(cnitool: Path, tmp_path: Path) -> None:
    """Two dual-stack lab hosts, each with its node; libcni ADDs a container on each, and with static
    routes between the hosts (no BGP here) each container reaches the other over IPv4 and over IPv6
    (its IPv6 default route via the link-local gateway, answered by the host's proxy NDP)."""
    bindir, db = seed(tmp_path, ["h1", "h2"])
    net = unique_name("libcni")
    lab = Lab.create(unique_name("cnix"), tmp_path / "lab", hosts=2, subnets=fabric_subnets((V4, V6)))
    nodes = {h: CniNode(lab, h, f"sqlite://{db}", tmp_path) for h in ("h1", "h2")}
    containers = {h: f"{lab.name}-c{h}" for h in nodes}
    envs = {h: cnitool_env(tmp_path / f"net.d-{h}", bindir) for h in nodes}
    try:
        ips: dict[str, list[str]] = {}
        for host, node in nodes.items():
            subprocess.run(["ip", "netns", "add", containers[host]], check=True)
            node.start()
            write_conflist(tmp_path / f"net.d-{host}", net, host, db, node)
            add = run_cnitool(cnitool, lab.netns(host), "add", net, containers[host], envs[host])
            assert add.returncode == 0, add.stderr
            ips[host] = [ip["address"].split("/")[0] for ip in json.loads(add.stdout)["ips"]]
            assert [family_of(ip) for ip in ips[host]] == [V4, V6], ips
        for here, there in (("h1", "h2"), ("h2", "h1")):
            for ip in ips[there]:
                fam = family_of(ip)
                lab.add_static_route(here, fam.host_cidr(ip), lab.host_ip(there, fam))
        for here, there in (("h1", "h2"), ("h2", "h1")):
            for ip in ips[there]:
                assert any(
                    subprocess.run(
                        ["ip", "netns", "exec", containers[here], "ping", "-c", "1", "-W", "1", ip],
                        capture_output=True,
                    ).returncode == 0
                    for _ in range(5)
                ), f"{here}'s container -> {ip}"
        for host in nodes:
            delete = run_cnitool(cnitool, lab.netns(host), "del", net, containers[host], envs[host])
            assert delete.returncode == 0, delete.stderr
        ds = SqliteDatastore(db)
        assert ds.list(kind_info("WorkloadEndpoint").list_prefix())[0] == []
        assert audit_check(take_snapshot(ds)) == []
        ds.close()
    finally:
        for host, node in nodes.items():
            node.stop()
            subprocess.run(["ip", "netns", "del", containers[host]], check=False, capture_output=True)
        lab.down()
        for cached in Path("/var/lib/cni/results").glob(f"{net}-*"):
            cached.unlink()
