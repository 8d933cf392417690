"""The `tortie lab` command line as scripts use it: every verb, its output formats and exit codes, on a
3-host lab with an FRR top-of-rack router and one route reflector; `down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tortie.lab.spec import lab_dir
from tortie.testing.netns import unique_name

pytestmark = [pytest.mark.root, pytest.mark.slow]
TORTIE = str(Path(sys.executable).parent / "tortie")


def tortie(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TORTIE, *args], capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})}
    )


def netns_with_prefix(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def test_every_verb_with_its_outputs_and_exit_codes() -> None:
    name = unique_name("cli")
    lab = ["--name", name]
    try:
        bad = tortie("lab", "up", *lab, "--hosts", "0")
        assert bad.returncode == 1 and "--hosts 0" in bad.stderr
        assert not lab_dir(name).exists() and not netns_with_prefix(f"{name}-")

        up = tortie(
            "lab",
            "up",
            *lab,
            "--hosts",
            "3",
            "--workloads-per-host",
            "1",
            "--tor",
            "frr",
            "--route-reflectors",
            "1",
        )
        assert up.returncode == 0, up.stdout + up.stderr
        for stage in (
            "fabric",
            "ToR tor (frr",
            "nodes ready: 3/3",
            "BGP sessions established",
            "routes converged",
            "is ready",
        ):
            assert stage in up.stdout, up.stdout
        again = tortie("lab", "up", *lab)
        assert again.returncode == 1 and "already exists" in again.stderr

        status = tortie("lab", "status", *lab, "-o", "json")
        assert status.returncode == 0, status.stderr
        data: dict[str, Any] = json.loads(status.stdout)
        hosts = {h["name"]: h for h in data["hosts"]}
        assert all(h["node"]["ready"] and h["node"]["agent"]["ready"] for h in hosts.values())
        # dual stack by default: one session per family and peer, IPv4 and IPv6 everywhere
        types = {h: sorted(s["type"] for s in hosts[h]["bgpSessions"]) for h in hosts}
        assert types["h1"] == ["global"] * 2 + ["route reflector client"] * 4
        assert types["h2"] == types["h3"] == ["global"] * 2 + ["route reflector"] * 2
        assert all(s["established"] for h in hosts.values() for s in h["bgpSessions"])
        assert hosts["h1"]["addresses"] == ["172.31.0.11/24", "fd00:172:31::b/64"]
        assert data["pools"] == ["10.244.0.0/16", "fd00:10:244::/56"]
        assert [w["name"] for w in data["workloads"]] == ["w1-1", "w2-1", "w3-1"]
        assert all("." in w["ips"][0] and ":" in w["ips"][1] for w in data["workloads"])
        assert data["routers"][0]["kind"] == "frr" and data["routers"][0]["running"]
        assert len(data["routers"][0]["ribPrefixes"]) == 6  # 3 blocks per family
        node = tortie("node", "status", "--hostname", "h1", "--run-dir", str(lab_dir(name) / "run" / "h1"))
        assert node.returncode == 0, node.stderr
        assert "IPv4 BGP status" in node.stdout and "IPv6 BGP status" in node.stdout
        assert "fd00:172:31::1" in node.stdout and "fd00:10:244:" in node.stdout  # ToR peer, IPv6 block
        table = tortie("lab", "status", *lab)
        assert table.returncode == 0 and "route reflector client" in table.stdout and "w3-1" in table.stdout

        add = tortie(
            "lab",
            "workload",
            "add",
            "web",
            "--host",
            "h2",
            "--labels",
            "app=web,tier=front",
            "--namespace",
            "shop",
            "--ports",
            "http:tcp:80",
            "-o",
            "json",
            *lab,
        )
        assert add.returncode == 0, add.stderr
        web = json.loads(add.stdout)
        assert web["host"] == "h2" and web["namespace"] == "shop" and len(web["ips"]) == 2
        plain = tortie("lab", "workload", "add", "db", "--host", "h3", *lab)
        printed = plain.stdout.split()  # just the addresses, IPv4 then IPv6
        assert plain.returncode == 0 and len(printed) == 2 and "." in printed[0] and ":" in printed[1]
        dup = tortie("lab", "workload", "add", "db", "--host", "h1", *lab)
        assert dup.returncode == 1 and "already exists" in dup.stderr

        env_out = tortie("lab", "env", *lab)
        assert env_out.returncode == 0
        exports = dict(line.removeprefix("export ").split("=", 1) for line in env_out.stdout.splitlines())
        assert exports["TORTIE_LAB"] == name and exports["TORTIE_DATASTORE"].startswith("sqlite:///")
        wep = tortie("get", "workloadendpoints", "-n", "shop", "-o", "json", env=exports)
        assert wep.returncode == 0, wep.stderr
        weps = json.loads(wep.stdout)
        items = weps.get("items", [weps])
        assert items[0]["metadata"]["labels"]["app"] == "web"
        assert items[0]["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]
        # a Kubernetes pod: Calico's name, orchestrator k8s, its namespace's profile and Namespace object
        assert items[0]["metadata"]["name"] == "h2-k8s-web-eth0"
        assert (items[0]["spec"]["orchestrator"], items[0]["spec"]["pod"]) == ("k8s", "web")
        assert items[0]["spec"]["profiles"] == ["kns.shop"]
        assert tortie("get", "ns", "shop", env=exports).returncode == 0

        allowed = tortie("lab", "probe", "w1-1", "web", *lab)
        assert (allowed.returncode, allowed.stdout.strip()) == (0, "allowed")
        assert tortie("lab", "probe", "w1-1", "web", "--protocol", "icmp", *lab).returncode == 0
        assert (
            tortie("lab", "probe", "w1-1", "w3-1", "--protocol", "udp", "--port", "53", *lab).returncode == 0
        )
        for v6 in (["web", "--ip-family", "6"], [web["ips"][1]]):  # by name and family, or by address
            over6 = tortie("lab", "probe", "w1-1", *v6, "--protocol", "icmp", *lab)
            assert (over6.returncode, over6.stdout.strip()) == (0, "allowed"), over6.stderr
        wrong = tortie("lab", "probe", "w1-1", web["ips"][0], "--ip-family", "6", *lab)
        assert wrong.returncode == 2 and "not an IPv6 address" in wrong.stderr
        denied = tortie("lab", "probe", "w1-1", "172.31.0.250", "--timeout", "0.5", *lab)
        assert (denied.returncode, denied.stdout.strip()) == (1, "denied")
        unknown = tortie("lab", "probe", "w1-1", "nope", *lab)
        assert unknown.returncode == 2 and "nope" in unknown.stderr

        assert tortie("lab", "exec", "web", *lab, "--", "sh", "-c", "exit 5").returncode == 5
        addr = tortie("lab", "exec", "h1", *lab, "--", "ip", "-br", "addr", "show", "eth0")
        assert addr.returncode == 0 and "172.31.0.11/24" in addr.stdout and "fd00:172:31::b/64" in addr.stdout

        matrix = tortie("lab", "matrix", "-o", "json", *lab)
        assert matrix.returncode == 0
        result = json.loads(matrix.stdout)
        assert sorted(result["workloads"]) == ["db", "w1-1", "w2-1", "w3-1", "web"]
        # web is a Kubernetes pod (--namespace): open to all (profile kns.shop), but the plain workloads'
        # network profile admits only the network's members
        assert all(ok == (src != "web") for src, row in result["allowed"].items() for ok in row.values())
        assert "16/20 pairs allowed" in tortie("lab", "matrix", *lab).stdout
        matrix6 = json.loads(tortie("lab", "matrix", "-o", "json", "--ip-family", "6", *lab).stdout)
        assert matrix6["ipFamily"] == 6
        assert all(ok == (src != "web") for src, row in matrix6["allowed"].items() for ok in row.values())
        lists = ("--protocol", "tcp,udp", "--port", "80,81")
        both = json.loads(tortie("lab", "matrix", "-o", "json", *lists, *lab).stdout)
        assert [(m["protocol"], m["port"]) for m in both["matrices"]] == [
            ("tcp", 80), ("tcp", 81), ("udp", 80), ("udp", 81)
        ]
        assert all(m["allowed"] == result["allowed"] for m in both["matrices"])

        assert tortie("lab", "workload", "del", "web", *lab).returncode == 0
        assert f"{name}-web" not in netns_with_prefix(f"{name}-")
        gone = tortie("get", "workloadendpoints", "-n", "shop", "-o", "json", env=exports)
        assert "web" not in gone.stdout
        assert tortie("lab", "workload", "del", "web", *lab).returncode == 1
    finally:
        down = tortie("lab", "down", *lab)
    assert down.returncode == 0 and "removed" in down.stdout
    assert not netns_with_prefix(f"{name}-") and not lab_dir(name).exists()
    again = tortie("lab", "down", *lab)
    assert again.returncode == 0 and "nothing to remove" in again.stdout
    assert tortie("lab", "status", *lab).returncode == 1
