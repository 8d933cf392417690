"""A host whose kernel has no IPv6: the real agent keeps serving IPv4 and says once, clearly, why IPv6
is off.

A kernel booted with `ipv6.disable=1` (or built without IPv6) has no /proc/sys/net/ipv6, which is what
the agent asks at start (`tortie.kernel.sysctl.ipv6_absence`). This machine's kernel has IPv6, so the
agent runs in a private mount namespace of a lab host where an empty tmpfs covers /proc/sys/net/ipv6;
everything else is real: the `tortie agent run` process, the host's kernel, nftables, sqlite. A
dual-stack endpoint must get its IPv4 route and proxy ARP, nothing IPv6 is written (no IPv6 route
of ours, proxy NDP untouched), the host reaches the workload over IPv4, and the log explains once.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tortie.datastore.url import open_datastore
from tortie.ipam import keys as ipam_keys
from tortie.lab import Lab, host_interface_name
from tortie.model.kinds import kind_info
from tortie.testing.netns import unique_name

pytestmark = [pytest.mark.root, pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")]

TORTIE = str(Path(sys.executable).parent / "tortie")
BLOCK = "10.72.1.0/26"
BLOCK6 = "fd00:72:1::/122"


def wait_for(predicate: Callable[[], bool], what: str, logs: Callable[[], str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


def test_the_agent_on_a_kernel_without_ipv6_serves_ipv4_and_says_why_once(tmp_path: Path) -> None:
    lab = Lab.create(unique_name("no6"), tmp_path / "lab", hosts=1)
    url = f"sqlite://{tmp_path / 'datastore.db'}"
    ds = open_datastore(url)
    try:
        for cidr in (BLOCK, BLOCK6):
            net = ipaddress.ip_network(cidr)
            ds.put(ipam_keys.block_key(net), {"cidr": cidr, "affinity": "host:h1", "allocations": [],
                                              "unallocated": [], "attributes": []})
            ds.put(ipam_keys.affinity_key("h1", net), {"state": "confirmed"})
        w1 = lab.add_workload("w1", "h1", "10.72.1.1")
        spec = {"orchestrator": "cni", "workload": "w1", "endpoint": "eth0", "node": "h1",
                "ipNetworks": ["10.72.1.1/32", "fd00:72:1::1/128"],
                "interfaceName": host_interface_name(lab.state.interface_prefix, lab.name, "w1"),
                "profiles": ["projectcalico-default-allow"]}
        ds.put(kind_info("WorkloadEndpoint").key("w1", "default"),
               {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": "w1", "namespace": "default"}, "spec": spec})
        log = tmp_path / "agent.log"
        hide = "mount -t tmpfs no-ipv6 /proc/sys/net/ipv6 && exec \"$@\""
        env = {**os.environ, "TORTIE_REPORTING_INTERVAL": "0", "TORTIE_LOG_SEVERITY_SCREEN": "Info"}
        pid = lab.start_process("h1", ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide,
                                       "sh", TORTIE, "agent", "run", "--hostname", "h1", "--datastore", url],
                                log=str(log), env=env)

        def logs() -> str:
            return log.read_text() if log.exists() else "(no log)"

        def ours(flag: str) -> set[str]:
            out = lab.exec("h1", ["ip", flag, "-o", "route", "show", "proto", "77"]).stdout
            return {line.split()[1] if line.startswith(("blackhole", "unreachable")) else line.split()[0]
                    for line in out.splitlines()}

        wait_for(lambda: {"10.72.1.1", BLOCK} <= ours("-4"), "the IPv4 route and block", logs)
        wait_for(lambda: "kernel programmed" in logs(), "the agent in sync", logs)
        time.sleep(1.0)  # anything IPv6 it would write comes with the same apply
        assert lab.process_running(pid), logs()
        assert ours("-6") == set(), logs()
        iface = w1.host_ifname
        assert lab.exec("h1", ["cat", f"/proc/sys/net/ipv4/conf/{iface}/proxy_arp"]).stdout.strip() == "1"
        assert lab.exec("h1", ["cat", f"/proc/sys/net/ipv6/conf/{iface}/proxy_ndp"]).stdout.strip() == "0"
        assert lab.ping("h1", "10.72.1.1"), logs()
        said = [line for line in logs().splitlines() if "IPv6 is off" in line]
        assert len(said) == 1, logs()
        assert "the kernel has no IPv6" in said[0] and "serving IPv4 only" in said[0]
    finally:
        lab.down()
        ds.close()
