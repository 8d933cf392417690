"""200 ADDs in parallel over 4 lab hosts, then 200 DELs in parallel: nothing duplicated, nothing left over.

The plugin executables run as separate processes (as runtimes run them), up to 50 at a time, on four
lab host namespaces sharing one sqlite datastore and one IPv4 pool (per-host IPAM lock files, as on
separate machines); each host runs `tortie node run` (its agent programs every endpoint before its ADD
returns), with its CNI service taking the calls, or with the service off and the launchers serving
them in-process. Checked: every ADD succeeds, no address is handed out twice and each container
really holds its address; after the DELs no host veth, WorkloadEndpoint, handle or allocation remains
and `tortie ipam check` is clean.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tortie.cni.install import install
from tortie.datastore.sqlite import SqliteDatastore
from tortie.lab import Lab
from tortie.model.kinds import kind_info
from tortie.testing.cni_node import CniNode
from tortie.testing.netns import unique_name

pytestmark = [pytest.mark.root, pytest.mark.slow]

HOSTS = ("h1", "h2", "h3", "h4")
CONTAINERS = 200
PARALLEL = 50


@pytest.mark.parametrize("service", [True, False], ids=["service", "standalone"])
def test_200_parallel_adds_then_dels(tmp_path: Path, service: bool) -> None:
    bindir = tmp_path / "bin"
    install(bindir)
    db = tmp_path / "ds.db"
    ds = SqliteDatastore(db)
    ds.put(
        kind_info("IPPool").key("spool"),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "spool"},
            "spec": {"cidr": "10.64.0.0/22", "blockSize": 26},
        },
    )
    for host in HOSTS:
        ds.put(
            kind_info("Node").key(host),
            {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": host}, "spec": {}},
        )
    ds.close()
    lab = Lab.create(unique_name("cnis"), tmp_path / "lab", hosts=list(HOSTS))
    containers = [f"{lab.name}-c{i}" for i in range(CONTAINERS)]
    subprocess.run(
        ["ip", "-batch", "-"], input="".join(f"netns add {c}\n" for c in containers), text=True, check=True
    )
    nodes = {h: CniNode(lab, h, f"sqlite://{db}", tmp_path, service=service) for h in HOSTS}

    def cni(command: str, index: int) -> tuple[int, Any]:
        host = HOSTS[index % len(HOSTS)]
        conf = {
            "cniVersion": "1.0.0",
            "name": "snet",
            "type": "tortie",
            "nodename": host,
            "datastore": f"sqlite://{db}",
            "ipam_lock_file": str(tmp_path / f"{host}.lock"),
            "ipam": {"type": "tortie-ipam"},
            "policy_setup_timeout_seconds": 60,  # 50 ADDs at once on a shared 2-core machine
            **nodes[host].netconf(),
        }
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": f"ctr{index}",
            "CNI_NETNS": f"/run/netns/{containers[index]}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(bindir),
        }
        proc = subprocess.run(
            ["nsenter", f"--net=/run/netns/{lab.netns(host)}", str(bindir / "tortie")],
            input=json.dumps(conf).encode(),
            env=env,
            capture_output=True,
            timeout=300,
        )
        out = proc.stdout.decode().strip()
        return proc.returncode, json.loads(out) if out else proc.stderr.decode()

    try:
        for node in nodes.values():
            node.start()
        with ThreadPoolExecutor(PARALLEL) as pool:
            adds = list(pool.map(lambda i: cni("ADD", i), range(CONTAINERS)))
        failed = [(i, out) for i, (code, out) in enumerate(adds) if code != 0]
        assert not failed, failed[:3]
        addresses = [ipaddress.ip_interface(out["ips"][0]["address"]) for _, out in adds]
        assert len(set(addresses)) == CONTAINERS
        for i in (0, 77, 199):  # spot-check the kernel
            shown = subprocess.run(
                ["ip", "-n", containers[i], "-o", "addr", "show", "dev", "eth0"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert str(addresses[i]) in shown

        with ThreadPoolExecutor(PARALLEL) as pool:
            dels = list(pool.map(lambda i: cni("DEL", i), range(CONTAINERS)))
        assert [(i, out) for i, (code, out) in enumerate(dels) if code != 0] == []

        for host in HOSTS:
            links = subprocess.run(
                ["ip", "-n", lab.netns(host), "-o", "link"], capture_output=True, text=True, check=True
            ).stdout
            assert "tort" not in links, host
        ds = SqliteDatastore(db)
        try:
            assert ds.list(kind_info("WorkloadEndpoint").list_prefix())[0] == []
            assert ds.list("/calico/ipam/v2/handle/")[0] == []
        finally:
            ds.close()
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "tortie.cli.main",
                "--datastore",
                f"sqlite://{db}",
                "ipam",
                "check",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        for node in nodes.values():
            node.stop()
        subprocess.run(
            ["ip", "-batch", "-"],
            input="".join(f"netns del {c}\n" for c in containers),
            text=True,
            check=False,
            capture_output=True,
        )
        lab.down()
