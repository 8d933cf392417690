"""The `tortie-ipam` plugin's verbs through the CNI calling convention, on an in-memory datastore."""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

import pytest

from tortie.cni.ipam_verbs import IpamDeps, TortieIpamPlugin
from tortie.cni.runner import run
from tortie.common.errors import DatastoreUnavailable
from tortie.datastore.memory import MemoryDatastore
from tortie.ipam import Ipam
from tortie.model.ipam_records import parse_timestamp
from tortie.model.kinds import kind_info


class Shared:
    def __init__(self, ds: MemoryDatastore) -> None:
        self.ds = ds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ds, name)

    def close(self) -> None:
        pass


@pytest.fixture
def ds() -> MemoryDatastore:
    store = MemoryDatastore()
    for name, cidr, block in (("p4", "10.40.0.0/30", 30), ("p6", "fd00:40::/122", 122)):
        store.put(
            kind_info("IPPool").key(name),
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": name},
                "spec": {"cidr": cidr, "blockSize": block},
            },
        )
    return store


def conf(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "net",
        "type": "ptp",
        "nodename": "h1",
        "ipam": {"type": "tortie-ipam"},
        "ipam_lock_file": "",
    }
    base.update(over)
    return base


def call(ds: Any, command: str, netconf: dict[str, Any], cid: str = "c1") -> tuple[int, Any]:
    environ = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "eth0",
    }
    plugin = TortieIpamPlugin(IpamDeps(open_datastore=lambda url: ds))
    out = run(environ, json.dumps(netconf).encode(), plugin.handlers(), configure_logs=False)
    return out.exit_code, json.loads(out.stdout) if out.stdout else None


def test_add_returns_single_addresses_without_interfaces(ds: MemoryDatastore) -> None:
    code, result = call(Shared(ds), "ADD", conf(ipam={"type": "tortie-ipam", "assign_ipv6": True}))
    assert code == 0, result
    assert "interfaces" not in result
    addrs = [ipaddress.ip_interface(ip["address"]) for ip in result["ips"]]
    assert sorted(a.version for a in addrs) == [4, 6]
    assert all(a.network.prefixlen == a.ip.max_prefixlen for a in addrs)
    assert all("interface" not in ip for ip in result["ips"])
    held = sorted(str(ip) for ip in Ipam(ds).ips_by_handle("net.c1"))
    assert held == sorted(str(a.ip) for a in addrs)
    attrs = dict(Ipam(ds).get_assignment_attrs(addrs[0].ip) or {})
    assert abs(parse_timestamp(attrs.pop("timestamp"), "timestamp") - time.time()) < 60
    assert attrs == {"node": "h1", "namespace": "default", "pod": "c1"}


def test_check_del_and_exhaustion(ds: MemoryDatastore) -> None:
    store = Shared(ds)
    results = [call(store, "ADD", conf(), cid=f"c{i}")[1] for i in range(4)]
    assert len({r["ips"][0]["address"] for r in results}) == 4
    code, err = call(store, "ADD", conf(), cid="c9")
    assert (code, err["code"]) == (1, 100)
    assert call(store, "CHECK", conf(prevResult=results[0]), cid="c0") == (0, None)
    assert call(store, "DEL", conf(), cid="c0") == (0, None)
    assert call(store, "DEL", conf(), cid="c0") == (0, None)
    code, err = call(store, "CHECK", conf(prevResult=results[0]), cid="c0")
    assert (code, err["code"]) == (1, 102)
    assert call(store, "ADD", conf(), cid="c9")[0] == 0  # the released address is usable again


def test_status_and_gc(ds: MemoryDatastore) -> None:
    store = Shared(ds)
    v11 = {"cniVersion": "1.1.0"}
    assert call(store, "STATUS", conf(**v11)) == (0, None)
    assert call(store, "STATUS", conf(**v11, ipam={"ipv4_pools": ["other"]}))[1]["code"] == 50
    for cid in ("a", "b"):
        call(store, "ADD", conf(), cid=cid)
    call(store, "ADD", conf(nodename="h2"), cid="elsewhere")
    gc = conf(**v11, **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]})
    assert call(store, "GC", gc) == (0, None)
    ipam = Ipam(ds)
    assert ipam.ips_by_handle("net.b") == []
    assert len(ipam.ips_by_handle("net.a")) == 1 and len(ipam.ips_by_handle("net.elsewhere")) == 1

    def unreachable(url: str | None) -> Any:
        raise DatastoreUnavailable("down")

    assert call_with(unreachable, "STATUS", conf(**v11))[1]["code"] == 50
    assert call_with(unreachable, "ADD", conf())[1]["code"] == 11


def call_with(opener: Any, command: str, netconf: dict[str, Any]) -> tuple[int, Any]:
    environ = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
    out = run(
        environ,
        json.dumps(netconf).encode(),
        TortieIpamPlugin(IpamDeps(opener)).handlers(),
        configure_logs=False,
    )
    return out.exit_code, json.loads(out.stdout)
