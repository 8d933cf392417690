"""The installed `tortie` plugin driven like a runtime (env + stdin, subprocess) on a real kernel, on its
own (no node service, no agent: the proofs with them are test_cni_libcni, _podman, _scale, _service).

A lab host namespace plays the node (the plugin runs inside it with `nodename` set); container
namespaces are created per test. Checked against kernel state read back with iproute2 (not with the
plugin's own netlink code): addresses, routes, MAC, sysctls, route protocol, traffic between workloads
over IPv4 and IPv6, CHECK catching real breakage, DEL idempotence, GC, and rollback when the kernel
refuses a step midway (addresses released, veth removed, no endpoint).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tortie.cni.install import install
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam import Ipam
from tortie.ipam.audit import check as audit_check
from tortie.ipam.snapshot import take_snapshot
from tortie.lab import Lab
from tortie.model.kinds import kind_info
from tortie.testing.netns import unique_name

pytestmark = pytest.mark.root


class Env:
    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.bindir = tmp / "bin"
        install(self.bindir)
        self.db = tmp / "ds.db"
        self.containers: list[str] = []

    def ds(self) -> SqliteDatastore:
        return SqliteDatastore(self.db)

    def conf(self, **over: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": "kn",
            "type": "tortie",
            "nodename": "h1",
            "mtu": 1400,
            "datastore": f"sqlite://{self.db}",
            "ipam_lock_file": str(self.tmp / "ipam.lock"),
            "ipam": {"type": "tortie-ipam", "ipv4_pools": ["kpool4"]},
            "service_socket": "",  # the plugin on its own: these tests are about its kernel plumbing
            "policy_setup_timeout_seconds": 0,  # no agent runs here
        }
        base.update(over)
        return base

    def container(self) -> str:
        name = f"{self.lab.name}-c{len(self.containers)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        self.containers.append(name)
        return name

    def cni(
        self,
        command: str,
        netns: str,
        netconf: dict[str, Any],
        cid: str | None = None,
        host: str = "h1",
        ifname: str = "eth0",
    ) -> tuple[int, Any]:
        environ = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid or netns,
            "CNI_NETNS": f"/run/netns/{netns}",
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(self.bindir),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        proc = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.lab.netns(host)}", str(self.bindir / "tortie")],
            input=json.dumps(netconf).encode(),
            env=environ,
            capture_output=True,
            timeout=60,
        )
        out = proc.stdout.decode().strip()
        return proc.returncode, json.loads(out) if out else None

    def ip_json(self, netns: str, *args: str) -> Any:
        out = subprocess.run(
            ["ip", "-j", "-n", netns, *args], check=True, capture_output=True, text=True
        ).stdout
        return json.loads(out or "[]")

    def host_links(self, host: str = "h1") -> list[str]:
        return [
            link["ifname"]
            for link in self.ip_json(self.lab.netns(host), "link", "show")
            if link["ifname"].startswith("tort")
        ]

    def weps(self) -> list[Any]:
        ds = self.ds()
        try:
            return ds.list(kind_info("WorkloadEndpoint").list_prefix())[0]
        finally:
            ds.close()

    def audit(self) -> list[Any]:
        ds = self.ds()
        try:
            return audit_check(take_snapshot(ds))
        finally:
            ds.close()

    def handle_ips(self, handle: str) -> list[str]:
        ds = self.ds()
        try:
            return [str(i) for i in Ipam(ds).ips_by_handle(handle)]
        finally:
            ds.close()


def put(ds: SqliteDatastore, kind: str, name: str, spec: dict[str, Any]) -> None:
    ds.put(
        kind_info(kind).key(name),
        {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name}, "spec": spec},
    )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    lab = Lab.create(unique_name("cnik"), tmp_path / "lab", hosts=1)
    e = Env(lab, tmp_path)
    ds = e.ds()
    put(ds, "IPPool", "kpool4", {"cidr": "10.61.0.0/24", "blockSize": 28})
    put(ds, "IPPool", "kpool6", {"cidr": "fd00:61::/120", "blockSize": 124})
    put(ds, "IPPool", "one", {"cidr": "10.66.0.7/32", "blockSize": 32})
    put(ds, "Node", "h1", {})
    ds.close()
    try:
        yield e
    finally:
        for name in e.containers:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        lab.down()


def ping(netns: str, ip: str, attempts: int = 5) -> bool:
    """Ping with retries: the first packet after plumbing may be lost while neighbours resolve."""
    for _ in range(attempts):
        argv = ["ip", "netns", "exec", netns, "ping", "-n", "-q", "-c", "1", "-W", "1", ip]
        if subprocess.run(argv, capture_output=True, timeout=10).returncode == 0:
            return True
    return False


def sysctl(lab: Lab, host: str, path: str) -> str:
    return lab.exec(host, ["cat", f"/proc/sys/net/{path}"]).stdout.strip()


def test_add_check_del_dual_stack_with_traffic(env: Env) -> None:
    conf = env.conf(
        ipam={"type": "tortie-ipam", "assign_ipv6": True, "ipv4_pools": ["kpool4"], "ipv6_pools": ["kpool6"]}
    )
    c1, c2 = env.container(), env.container()
    code, r1 = env.cni("ADD", c1, conf)
    assert code == 0, r1
    code, r2 = env.cni("ADD", c2, conf)
    assert code == 0, r2
    host_if = r1["interfaces"][0]["name"]
    v4 = next(ipaddress.ip_interface(i["address"]) for i in r1["ips"] if ":" not in i["address"])
    v6 = next(ipaddress.ip_interface(i["address"]) for i in r1["ips"] if ":" in i["address"])

    (eth0,) = env.ip_json(c1, "addr", "show", "dev", "eth0")
    assert eth0["mtu"] == 1400 and eth0["address"] == r1["interfaces"][1]["mac"]
    local = {(a["local"], a["prefixlen"]) for a in eth0["addr_info"]}
    assert (str(v4.ip), 32) in local and (str(v6.ip), 128) in local
    routes4 = env.ip_json(c1, "route", "show")
    assert {"dst": "169.254.1.1", "dev": "eth0", "scope": "link"}.items() <= next(
        r for r in routes4 if r["dst"] == "169.254.1.1"
    ).items()
    assert any(r["dst"] == "default" and r.get("gateway") == "169.254.1.1" for r in routes4)
    routes6 = env.ip_json(c1, "-6", "route", "show")
    assert any(r["dst"] == "default" and r.get("gateway") == "fe80::ecee:eeff:feee:eeee" for r in routes6)

    host_ns = env.lab.netns("h1")
    (hlink,) = env.ip_json(host_ns, "link", "show", "dev", host_if)
    assert hlink["address"] == "ee:ee:ee:ee:ee:ee" and "UP" in hlink["flags"]
    host_routes = env.ip_json(host_ns, "route", "show", "proto", "77")
    assert any(r["dst"] == str(v4.ip) and r["dev"] == host_if and r["scope"] == "link" for r in host_routes)
    assert any(
        r["dst"] == str(v6.ip) and r["dev"] == host_if
        for r in env.ip_json(host_ns, "-6", "route", "show", "proto", "77")
    )
    assert sysctl(env.lab, "h1", f"ipv4/conf/{host_if}/proxy_arp") == "1"
    assert sysctl(env.lab, "h1", f"ipv4/neigh/{host_if}/proxy_delay") == "0"
    assert sysctl(env.lab, "h1", f"ipv6/conf/{host_if}/proxy_ndp") == "1"

    other_v4 = next(i["address"].split("/")[0] for i in r2["ips"] if ":" not in i["address"])
    other_v6 = next(i["address"].split("/")[0] for i in r2["ips"] if ":" in i["address"])
    assert ping(c1, other_v4)
    assert ping(c1, other_v6)

    with_prev = {**conf, "prevResult": r1}
    assert env.cni("CHECK", c1, with_prev) == (0, None)
    subprocess.run(["ip", "-n", c1, "route", "del", "default"], check=True)
    code, err = env.cni("CHECK", c1, with_prev)
    assert (code, err["code"]) == (1, 102) and "default route via 169.254.1.1" in err["details"]

    for _ in range(2):
        assert env.cni("DEL", c1, with_prev) == (0, None)
    assert env.cni("DEL", c2, {**conf, "prevResult": r2}) == (0, None)
    assert env.host_links() == [] and env.weps() == [] and env.audit() == []
    assert env.ip_json(c1, "link", "show", "dev", "lo") and not any(
        link["ifname"] == "eth0" for link in env.ip_json(c1, "link", "show")
    )


def test_host_route_conflict_rolls_everything_back(env: Env) -> None:
    host_ns = env.lab.netns("h1")
    subprocess.run(["ip", "-n", host_ns, "route", "add", "10.66.0.7/32", "dev", "lo"], check=True)
    c1 = env.container()
    code, err = env.cni("ADD", c1, env.conf(ipam={"type": "tortie-ipam", "ipv4_pools": ["one"]}))
    assert (code, err["code"]) == (1, 101), err
    assert "10.66.0.7" in err["details"]
    assert env.host_links() == [] and env.weps() == []
    assert env.handle_ips(f"kn.{c1}") == []
    assert not any(link["ifname"] == "eth0" for link in env.ip_json(c1, "link", "show"))


def test_interface_name_taken_in_the_container_rolls_back(env: Env) -> None:
    c1 = env.container()
    subprocess.run(
        ["ip", "-n", c1, "link", "add", "eth0", "type", "veth", "peer", "name", "other"], check=True
    )
    code, err = env.cni("ADD", c1, env.conf())
    assert (code, err["code"]) == (1, 101) and "already exists" in err["details"]
    names = sorted(link["ifname"] for link in env.ip_json(c1, "link", "show"))
    assert names == ["eth0", "lo", "other"]  # the container's own interface is untouched
    assert env.host_links() == [] and env.weps() == [] and env.handle_ips(f"kn.{c1}") == []


def test_pool_exhausted_and_datastore_unreachable_leave_no_veth(env: Env) -> None:
    c1, c2 = env.container(), env.container()
    one = env.conf(ipam={"type": "tortie-ipam", "ipv4_pools": ["one"]})
    assert env.cni("ADD", c1, one)[0] == 0
    code, err = env.cni("ADD", c2, one)
    assert (code, err["code"]) == (1, 100), err
    assert len(env.host_links()) == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, err = env.cni("ADD", c2, env.conf(datastore=f"etcd://127.0.0.1:{port}?timeout=1"))
    assert (code, err["code"]) == (1, 11), err
    assert len(env.host_links()) == 1


def test_del_after_the_container_namespace_is_gone(env: Env) -> None:
    c1 = env.container()
    code, result = env.cni("ADD", c1, env.conf())
    assert code == 0, result
    subprocess.run(["ip", "netns", "del", c1], check=True)
    assert env.cni("DEL", c1, {**env.conf(), "prevResult": result}) == (0, None)
    assert env.host_links() == [] and env.weps() == [] and env.audit() == []


def test_gc_removes_stale_attachments(env: Env) -> None:
    keep, stale = env.container(), env.container()
    assert env.cni("ADD", keep, env.conf())[0] == 0
    assert env.cni("ADD", stale, env.conf())[0] == 0
    gc = env.conf(
        cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": keep, "ifname": "eth0"}]}
    )
    assert env.cni("GC", keep, gc) == (0, None)
    assert len(env.host_links()) == 1
    assert [kv.value["spec"]["workload"] for kv in env.weps()] == [keep]
    assert env.handle_ips(f"kn.{stale}") == [] and len(env.handle_ips(f"kn.{keep}")) == 1
    assert env.cni("STATUS", keep, env.conf(cniVersion="1.1.0")) == (0, None)
    with contextlib.suppress(Exception):
        env.cni("DEL", keep, env.conf())


def test_container_id_reused_for_another_namespace(env: Env) -> None:
    """The kernel decides whose attachment a host interface is (its peer's namespace id): a second ADD
    of one container ID into another live namespace fails with code 4 and touches nothing, the
    runtime's DEL for that namespace leaves the first attachment working, and once the first
    namespace is gone the ID can be attached again."""
    first, second = env.container(), env.container()
    code, result = env.cni("ADD", first, env.conf(), cid="reused")
    assert code == 0, result
    ip = result["ips"][0]["address"].split("/")[0]
    code, err = env.cni("ADD", second, env.conf(), cid="reused")
    assert (code, err["code"]) == (1, 4), err
    assert not any(link["ifname"] == "eth0" for link in env.ip_json(second, "link", "show"))
    assert env.cni("DEL", second, env.conf(), cid="reused") == (0, None)
    assert len(env.host_links()) == 1 and len(env.weps()) == 1 and env.handle_ips("kn.reused") == [ip]
    (eth0,) = env.ip_json(first, "addr", "show", "dev", "eth0")
    assert any(a["local"] == ip for a in eth0["addr_info"])
    subprocess.run(["ip", "netns", "del", first], check=True)
    code, again = env.cni("ADD", second, env.conf(), cid="reused")
    assert code == 0, again
    assert len(env.host_links()) == 1 and len(env.weps()) == 1
    assert env.handle_ips("kn.reused") == [again["ips"][0]["address"].split("/")[0]]
    assert env.audit() == []
