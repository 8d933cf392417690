"""podman (CNI backend, runc) attaches dual-stack containers through `tortie` on two lab hosts; they
reach each other over IPv4 and over IPv6.

The lab fabric is dual stack and the datastore holds one IPv4 and one IPv6 pool; the network asks
for an address of each family (`ipam.assign_ipv6`), so podman reports both (IPAddress,
GlobalIPv6Address) and the container's IPv6 default route goes via the link-local gateway that the
agent answers with proxy NDP. Each lab host is a separate "machine": its own podman
root/runroot/tmp dir and containers.conf whose network directory holds network `tnet` with that
host's `nodename`, and its own `tortie node run` (agent, and the CNI service or not: the test runs
both ways); one sqlite datastore is shared (the cluster). Containers run from a busybox-static
rootfs. BGP is not part of this test, so static routes for each container's /32 and /128 are added
between the two hosts. `podman rm` must release both addresses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tortie.cni.install import install
from tortie.common.ipfamily import V4, V6, Family
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam import Ipam
from tortie.ipam.audit import check as audit_check
from tortie.ipam.snapshot import take_snapshot
from tortie.lab import Lab
from tortie.lab.fabric import fabric_subnets
from tortie.model.kinds import kind_info
from tortie.testing.cni_node import CniNode
from tortie.testing.netns import unique_name

pytestmark = [pytest.mark.root, pytest.mark.slow]

NETWORK = "tnet"


@dataclass
class PodmanHost:
    name: str
    netns: str
    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    def podman(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            "nsenter",
            f"--net=/run/netns/{self.netns}",
            "podman",
            "--root",
            str(self.root),
            "--runroot",
            str(self.base / "runroot"),
            "--storage-driver",
            "overlay",
            *args,
        ]
        env = {**os.environ, "CONTAINERS_CONF": str(self.base / "containers.conf")}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def cleanup(self) -> None:
        self.podman("rm", "-f", "-t", "0", "-a", check=False)
        overlay = self.root / "overlay"
        if overlay.exists():
            mounts = [
                line.split()[1]
                for line in Path("/proc/self/mounts").read_text().splitlines()
                if line.split()[1].startswith(str(self.base))
            ]
            for mount in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def make_rootfs(path: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("needs busybox-static (apt-get install busybox-static)")
    for sub in ("bin", "proc", "sys", "dev", "etc", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, path / "bin" / "busybox")
    subprocess.run(["chroot", str(path), "/bin/busybox", "--install", "-s", "/bin"], check=True)


def write_host_config(
    host: PodmanHost, bindir: Path, db: Path, lock_dir: Path, node: dict[str, Any]
) -> None:
    netdir = host.base / "net.d"
    netdir.mkdir(parents=True)
    (host.base / "tmp").mkdir()
    conflist = {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "tortie",
                "nodename": host.name,
                "datastore": f"sqlite://{db}",
                "ipam_lock_file": str(lock_dir / f"{host.name}.lock"),
                "ipam": {"type": "tortie-ipam", "assign_ipv4": "true", "assign_ipv6": "true"},
                **node,
            }
        ],
    }
    (netdir / f"{NETWORK}.conflist").write_text(json.dumps(conflist))
    (host.base / "containers.conf").write_text(
        "[network]\n"
        'network_backend = "cni"\n'
        f'cni_plugin_dirs = ["{bindir}", "/usr/lib/cni"]\n'
        f'network_config_dir = "{netdir}"\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{host.base / "events.log"}"\n'
        f'tmp_dir = "{host.base / "tmp"}"\n'
        "[containers]\n"
        'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
    )


@pytest.fixture(params=[True, False], ids=["service", "standalone"])
def hosts(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Lab, list[PodmanHost], Path]]:
    for tool in ("podman", "runc", "conmon"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (apt-get install podman runc)")
    bindir = tmp_path / "bin"
    install(bindir)
    db = tmp_path / "ds.db"
    ds = SqliteDatastore(db)
    for pool, cidr, block in (("ppool", "10.63.0.0/24", 28), ("ppool6", "fd63::/120", 124)):
        ds.put(
            kind_info("IPPool").key(pool),
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": pool},
                "spec": {"cidr": cidr, "blockSize": block},
            },
        )
    for name in ("h1", "h2"):
        ds.put(
            kind_info("Node").key(name),
            {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name}, "spec": {}},
        )
    ds.close()
    make_rootfs(tmp_path / "rootfs")
    lab = Lab.create(unique_name("cnip"), tmp_path / "lab", hosts=2, subnets=fabric_subnets((V4, V6)))
    # podman refuses a runroot longer than 50 characters: keep its state under a short /tmp path.
    short = Path(tempfile.mkdtemp(prefix="tortie-pm-"))
    podman_hosts = [PodmanHost(h, lab.netns(h), short / h) for h in ("h1", "h2")]
    nodes = [CniNode(lab, h, f"sqlite://{db}", tmp_path, service=request.param) for h in ("h1", "h2")]
    try:
        for host, node in zip(podman_hosts, nodes, strict=True):
            node.start()
            write_host_config(host, bindir, db, tmp_path, node.netconf())
        yield lab, podman_hosts, db
    finally:
        for host in podman_hosts:
            host.cleanup()
        for node in nodes:
            node.stop()
        shutil.rmtree(short, ignore_errors=True)
        lab.down()


def exec_ping(host: PodmanHost, container: str, ip: str) -> bool:
    for _ in range(5):
        if host.podman("exec", container, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def test_podman_dual_stack_containers_on_two_hosts_reach_each_other_over_both_families(
    hosts: tuple[Lab, list[PodmanHost], Path], tmp_path: Path
) -> None:
    lab, (h1, h2), db = hosts
    rootfs = str(tmp_path / "rootfs")
    fields = {V4: "IPAddress", V6: "GlobalIPv6Address"}
    ips: dict[str, dict[Family, str]] = {}
    for host, name in ((h1, "w1"), (h2, "w2")):
        # --rootfs takes no value and must come last among the options (later ones are dropped).
        host.podman("run", "-d", "--name", name, "--network", NETWORK, "--rootfs", rootfs, "sleep", "600")
        ips[name] = {}
        for fam, field in fields.items():
            out = host.podman("inspect", "-f", f"{{{{.NetworkSettings.Networks.{NETWORK}.{field}}}}}", name)
            ips[name][fam] = out.stdout.strip()
        assert ips[name][V4].startswith("10.63.0."), ips[name]
        assert ips[name][V6].startswith("fd63::"), ips[name]
    assert ips["w1"] != ips["w2"]
    for here, there, name in (("h1", "h2", "w2"), ("h2", "h1", "w1")):
        for fam in (V4, V6):
            lab.add_static_route(here, fam.host_cidr(ips[name][fam]), lab.host_ip(there, fam))
    for fam in (V4, V6):
        assert exec_ping(h1, "w1", ips["w2"][fam]), f"w1 -> w2 over IPv{fam.version}"
        assert exec_ping(h2, "w2", ips["w1"][fam]), f"w2 -> w1 over IPv{fam.version}"

    ds = SqliteDatastore(db)
    try:
        weps = ds.list(kind_info("WorkloadEndpoint").list_prefix())[0]
        assert sorted((kv.value["spec"]["node"], sorted(kv.value["spec"]["ipNetworks"])) for kv in weps) == [
            ("h1", sorted([f"{ips['w1'][V4]}/32", f"{ips['w1'][V6]}/128"])),
            ("h2", sorted([f"{ips['w2'][V4]}/32", f"{ips['w2'][V6]}/128"])),
        ]
        w1_id = h1.podman("inspect", "-f", "{{.Id}}", "w1").stdout.strip()
        held = sorted(str(ip) for ip in Ipam(ds).ips_by_handle(f"{NETWORK}.{w1_id}"))
        assert held == sorted(ips["w1"].values())

        h1.podman("rm", "-f", "-t", "0", "w1")
        assert Ipam(ds).ips_by_handle(f"{NETWORK}.{w1_id}") == []
        remaining = ds.list(kind_info("WorkloadEndpoint").list_prefix())[0]
        assert [kv.value["spec"]["node"] for kv in remaining] == ["h2"]
        links = subprocess.run(["ip", "-n", h1.netns, "-o", "link"], capture_output=True, text=True).stdout
        assert "tort" not in links

        h2.podman("rm", "-f", "-t", "0", "w2")
        assert ds.list(kind_info("WorkloadEndpoint").list_prefix())[0] == []
        assert audit_check(take_snapshot(ds)) == []
    finally:
        ds.close()
