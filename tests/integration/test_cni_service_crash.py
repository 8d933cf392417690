"""The node service is killed (SIGKILL) in the middle of 50 parallel CNI ADDs, then restarted as systemd
would: every ADD either succeeded completely or failed leaving nothing behind, and `tortie ipam check`
is clean.

One lab host runs `tortie node run` (agent + CNI service) on a sqlite datastore. 50 launchers run ADD
at once while the agent is paused (SIGSTOP), so that calls pile up inside the service; once ten
endpoints are written the node is SIGKILLed (its agent follows, PDEATHSIG) and started again.
Launchers whose call died with the service, and those that found no service, serve the call
in-process (an ADD there replaces what the dead call left) and wait for the new agent. Checked per
container: success means its address is held by its handle only, its endpoint names its interface
and address, the host interface exists with its container end in the container's namespace holding
that address; failure means no endpoint, no handle, no host interface. Then every container is
deleted and nothing at all remains.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tortie.cni.install import install
from tortie.cni.naming import host_veth_name, wep_name
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam import Ipam
from tortie.lab import Lab
from tortie.model.kinds import kind_info
from tortie.testing.cni_node import CniNode
from tortie.testing.netns import unique_name

pytestmark = [pytest.mark.root, pytest.mark.slow]


def wait_for_endpoints(db: Path, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    prefix = kind_info("WorkloadEndpoint").list_prefix()
    while time.monotonic() < deadline:
        ds = SqliteDatastore(db)
        try:
            if len(ds.list(prefix)[0]) >= count:
                return
        finally:
            ds.close()
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} endpoints after {timeout} s")


CONTAINERS = 50


def test_killing_the_service_mid_way_leaves_every_add_whole_or_gone(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    install(bindir)
    db = tmp_path / "ds.db"
    ds = SqliteDatastore(db)
    for kind, name, spec in (
        ("IPPool", "kpool", {"cidr": "10.68.0.0/24", "blockSize": 26}),
        ("Node", "h1", {}),
    ):
        ds.put(
            kind_info(kind).key(name),
            {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name}, "spec": spec},
        )
    ds.close()
    lab = Lab.create(unique_name("cnik"), tmp_path / "lab", hosts=1)
    host_ns = lab.netns("h1")
    containers = [f"{lab.name}-c{i}" for i in range(CONTAINERS)]
    subprocess.run(
        ["ip", "-batch", "-"], input="".join(f"netns add {c}\n" for c in containers), text=True, check=True
    )
    node = CniNode(lab, "h1", f"sqlite://{db}", tmp_path)

    def cni(command: str, container: str) -> tuple[int, Any, str]:
        conf = {
            "cniVersion": "1.0.0",
            "name": "knet",
            "type": "tortie",
            "nodename": "h1",
            "datastore": f"sqlite://{db}",
            "ipam_lock_file": str(tmp_path / "ipam.lock"),
            "ipam": {"type": "tortie-ipam"},
            "policy_setup_timeout_seconds": 90,  # the restarted agent must come up on a loaded machine
            **node.netconf(),
        }
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": f"/run/netns/{container}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(bindir),
        }
        proc = subprocess.run(
            ["nsenter", f"--net=/run/netns/{host_ns}", str(bindir / "tortie")],
            input=json.dumps(conf).encode(),
            env=env,
            capture_output=True,
            timeout=300,
        )
        out = proc.stdout.decode().strip()
        return proc.returncode, json.loads(out) if out else None, proc.stderr.decode()

    def add(container: str) -> tuple[int, Any, str]:
        return cni("ADD", container)

    try:
        node.start()
        agent = int(node.status()["components"]["agent"]["pid"])  # type: ignore[index]
        os.kill(agent, signal.SIGSTOP)  # so that ADDs pile up inside the service, waiting for it
        with ThreadPoolExecutor(CONTAINERS) as pool:
            futures = [pool.submit(add, c) for c in containers]
            wait_for_endpoints(db, 10)  # ten calls are inside the service: endpoint written, agent awaited
            node.kill()
            os.kill(agent, signal.SIGCONT)  # it takes its SIGTERM (PDEATHSIG) and exits
            time.sleep(0.5)  # launchers meanwhile find no service and serve themselves
            node.start()
            adds = [f.result() for f in futures]
        died = [
            c
            for c, (_, _, err) in zip(containers, adds, strict=True)
            if "went away" in err or "without answ" in err
        ]
        ds = SqliteDatastore(db)
        try:
            ipam = Ipam(ds)
            links = json.loads(
                subprocess.run(
                    ["ip", "-j", "-n", host_ns, "link"], capture_output=True, text=True, check=True
                ).stdout
            )
            host_links = {link["ifname"] for link in links}
            for container, (code, out, _err) in zip(containers, adds, strict=True):
                ifname = host_veth_name("tort", "default", wep_name("h1", "cni", container, "eth0"))
                wep = ds.get(
                    kind_info("WorkloadEndpoint").key(wep_name("h1", "cni", container, "eth0"), "default")
                )
                held = [str(ip) for ip in ipam.ips_by_handle(f"knet.{container}")]
                if code == 0:
                    ip = out["ips"][0]["address"]
                    assert held == [ip.split("/")[0]], (container, held, ip)
                    assert wep is not None and wep.value["spec"]["ipNetworks"] == [ip]
                    assert wep.value["spec"]["interfaceName"] == ifname and ifname in host_links
                    shown = subprocess.run(
                        ["ip", "-n", container, "-o", "addr", "show", "dev", "eth0"],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    assert ip in shown, container
                else:
                    assert (wep, held, ifname in host_links) == (None, [], False), (container, out)
        finally:
            ds.close()
        assert died, "no call was inside the service when it was killed: nothing was proven"
        check = subprocess.run(
            [sys.executable, "-m", "tortie.cli.main", "--datastore", f"sqlite://{db}", "ipam", "check"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with ThreadPoolExecutor(10) as pool:
            dels = list(pool.map(lambda c: cni("DEL", c), containers))
        assert [(c, d) for c, d in zip(containers, dels, strict=True) if d[0] != 0] == []
        ds = SqliteDatastore(db)
        try:
            assert ds.list(kind_info("WorkloadEndpoint").list_prefix())[0] == []
            assert ds.list("/calico/ipam/v2/handle/")[0] == []
        finally:
            ds.close()
        links = subprocess.run(["ip", "-n", host_ns, "-o", "link"], capture_output=True, text=True).stdout
        assert "tort" not in links
    finally:
        node.stop()
        subprocess.run(
            ["ip", "-batch", "-"],
            input="".join(f"netns del {c}\n" for c in containers),
            text=True,
            check=False,
            capture_output=True,
        )
        lab.down()
