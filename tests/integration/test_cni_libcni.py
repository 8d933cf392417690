"""libcni — the library container runtimes use to call CNI plugins — drives `tortie` in a lab host.

cnitool is built from Debian's libcni source by ../shared/tools/cnitool/build.sh (cached per test
session under pytest's temp dir). libcni runs ADD (and caches the result), CHECK (with that cached
result as prevResult), DEL, and a second DEL, against a network configuration list whose only plugin
is `tortie`; the plugin runs inside a lab host namespace with `nodename` set. The network is dual
stack (an IPv4 and an IPv6 pool, `ipam.assign_ipv6`): ADD returns an address of each family and the
container has both; CHECK finds a missing IPv6 address as it finds a missing IPv4 one.
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
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam.audit import check as audit_check
from tortie.ipam.snapshot import take_snapshot
from tortie.lab import Lab
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


@pytest.mark.parametrize("service", [True, False], ids=["service", "standalone"])
def test_libcni_add_check_del_del(cnitool: Path, tmp_path: Path, service: bool) -> None:
    """libcni drives ADD, CHECK, DEL, DEL on a host whose node runs (its agent programs the endpoint
    before ADD returns), once with the node's CNI service taking the calls and once with the service
    off, the launcher serving them in-process."""
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
    ds.put(
        kind_info("Node").key("h1"),
        {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "h1"}, "spec": {}},
    )
    ds.close()
    net = unique_name("libcni")  # libcni caches results under /var/lib/cni by network name: keep it unique
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    conflist: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": net,
        "plugins": [
            {
                "type": "tortie",
                "nodename": "h1",
                "datastore": f"sqlite://{db}",
                "ipam_lock_file": str(tmp_path / "lock"),
                "ipam": {"type": "tortie-ipam", "assign_ipv6": "true"},
            }
        ],
    }
    env = {
        "NETCONFPATH": str(confdir),
        "CNI_PATH": str(bindir),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=pod-a",
    }
    lab = Lab.create(unique_name("cnil"), tmp_path / "lab", hosts=1)
    container = f"{lab.name}-c"
    subprocess.run(["ip", "netns", "add", container], check=True)
    node = CniNode(lab, "h1", f"sqlite://{db}", tmp_path, service=service)
    try:
        node.start()
        conflist["plugins"][0].update(node.netconf())
        (confdir / "10-tortie.conflist").write_text(json.dumps(conflist))
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
