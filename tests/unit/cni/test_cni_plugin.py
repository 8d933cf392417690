"""The `tortie` CNI plugin's verbs through the CNI calling convention, against fakes (no root).

Every call goes through `tortie.cni.runner.run` with an environment mapping and stdin bytes, exactly as
the executable does; the kernel is `FakePlumber`, the datastore an in-memory store. Covered: ADD / DEL /
CHECK / STATUS / GC / VERSION, every error path (bad stdin, missing env, unknown version, datastore
unreachable at open and midway, IPAM exhausted, netns missing, rollback after a failure at each step),
and that every object the plugin writes is valid for the model.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tortie.cni.runner import Outcome, run
from tortie.cni.workload import Deps, TortiePlugin
from tortie.common.errors import DatastoreUnavailable
from tortie.datastore.api import KV, JSONObject, TxnOp
from tortie.datastore.memory import MemoryDatastore
from tortie.ipam import Ipam
from tortie.ipam.audit import check as audit_check
from tortie.ipam.snapshot import take_snapshot
from tortie.model import parse_resource
from tortie.model.kinds import kind_info
from tortie.testing.fake_plumber import FakePlumber

NODE = "node1"


class SharedStore:
    """Hands the same in-memory store to every call (the plugin closes its datastore after each)."""

    def __init__(self, ds: MemoryDatastore) -> None:
        self.ds = ds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ds, name)

    def close(self) -> None:
        pass


class FailingWrites(SharedStore):
    """Raises DatastoreUnavailable on writes to keys containing `marker` (a datastore dying midway)."""

    def __init__(self, ds: MemoryDatastore, marker: str) -> None:
        super().__init__(ds)
        self.marker = marker

    def _check(self, key: str) -> None:
        if self.marker in key:
            raise DatastoreUnavailable("etcd went away")

    def create(self, key: str, value: JSONObject, lease: int | None = None) -> KV:
        self._check(key)
        return self.ds.create(key, value, lease)

    def update(
        self, key: str, value: JSONObject, expected_revision: int | None = None, lease: int | None = None
    ) -> KV:
        self._check(key)
        return self.ds.update(key, value, expected_revision, lease)

    def put(self, key: str, value: JSONObject, lease: int | None = None) -> KV:
        self._check(key)
        return self.ds.put(key, value, lease)

    def commit(self, ops: Sequence[TxnOp]) -> list[KV]:
        for op in ops:
            self._check(op.key)
        return self.ds.commit(ops)


def put_pool(ds: MemoryDatastore, name: str, cidr: str, block: int, **extra: Any) -> None:
    ds.put(
        kind_info("IPPool").key(name),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": block, **extra},
        },
    )


def put_node(ds: MemoryDatastore, name: str) -> None:
    ds.put(
        kind_info("Node").key(name),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {},
        },
    )


@pytest.fixture
def ds() -> MemoryDatastore:
    store = MemoryDatastore()
    put_pool(store, "pool4", "10.20.0.0/24", 26)
    put_pool(store, "pool6", "fd00:20::/120", 122)
    put_node(store, NODE)
    return store


@pytest.fixture
def plumber() -> FakePlumber:
    return FakePlumber(namespaces={"/run/netns/c1", "/run/netns/c2"})


@pytest.fixture
def netns_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the fake namespaces' paths exist for the plugin's os.path.exists check."""
    real_exists = __import__("os").path.exists
    monkeypatch.setattr(
        "tortie.cni.workload.os.path.exists", lambda p: p.startswith("/run/netns/c") or real_exists(p)
    )
    yield


def conf(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "net1",
        "type": "tortie",
        "nodename": NODE,
        "ipam": {"type": "tortie-ipam"},
        "ipam_lock_file": "",
        "mtu": 1450,
        "policy_setup_timeout_seconds": 0,  # no agent here; the wait has its own tests
    }
    base.update(over)
    return base


def env(
    command: str, cid: str = "ctr1", netns: str = "/run/netns/c1", ifname: str = "eth0", **extra: str
) -> dict[str, str]:
    e = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": "/nonexistent",
    }
    e.update(extra)
    return e


def call(plugin: TortiePlugin, environ: dict[str, str], netconf: dict[str, Any] | bytes) -> tuple[int, Any]:
    data = netconf if isinstance(netconf, bytes) else json.dumps(netconf).encode()
    out: Outcome = run(environ, data, plugin.handlers(), configure_logs=False)
    return out.exit_code, json.loads(out.stdout) if out.stdout else None


def make_plugin(store: Any, plumber: FakePlumber) -> TortiePlugin:
    return TortiePlugin(Deps(open_datastore=lambda url: store, plumber_factory=lambda: plumber, env={}))


def weps(ds: MemoryDatastore) -> list[KV]:
    return ds.list(kind_info("WorkloadEndpoint").list_prefix())[0]


def handle_ips(ds: MemoryDatastore, handle: str) -> list[str]:
    return [str(ip) for ip in Ipam(ds).ips_by_handle(handle)]


def assert_clean(ds: MemoryDatastore, plumber: FakePlumber) -> None:
    assert weps(ds) == []
    assert plumber.veths == {}
    assert audit_check(take_snapshot(ds)) == []
    assert ds.list("/calico/ipam/v2/handle/")[0] == []


# ---------------------------------------------------------------------------------------------- ADD/DEL


@pytest.mark.usefixtures("netns_files")
def test_add_wires_the_workload_and_writes_a_valid_endpoint(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    code, result = call(
        plugin,
        env("ADD", CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0"),
        conf(
            labels={"app": "web"},
            runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        ),
    )
    assert code == 0, result
    assert result["cniVersion"] == "1.0.0"
    host_if, cont_if = result["interfaces"]
    assert host_if["mac"] == "ee:ee:ee:ee:ee:ee" and "sandbox" not in host_if
    assert host_if["name"].startswith("tort") and len(host_if["name"]) == 15
    assert cont_if == {"name": "eth0", "mac": cont_if["mac"], "sandbox": "/run/netns/c1"}
    (ip,) = result["ips"]
    assert "version" not in ip and ip["interface"] == 1
    addr = ipaddress.ip_interface(ip["address"])
    assert addr.network.prefixlen == 32 and addr.ip in ipaddress.ip_network("10.20.0.0/24")
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
    veth = plumber.veths[host_if["name"]]
    assert veth.spec.mtu == 1450 and veth.spec.addresses == (addr,) and veth.spec.route_protocol == 77
    assert handle_ips(ds, "net1.ctr1") == [str(addr.ip)]
    (kv,) = weps(ds)
    assert kv.key.endswith("/workloadendpoints/shop/node1-k8s-web--0-eth0")
    res = parse_resource(kv.value)  # the model accepts what the plugin wrote
    spec = kv.value["spec"]
    assert spec["orchestrator"] == "k8s" and spec["pod"] == "web-0" and spec["node"] == NODE
    assert spec["ipNetworks"] == [str(addr)] and spec["interfaceName"] == host_if["name"]
    assert spec["mac"] == cont_if["mac"] and spec["containerID"] == "ctr1"
    assert spec["ports"] == [{"name": "tcp-80", "protocol": "TCP", "port": 80, "hostPort": 8080}]
    assert res.metadata.labels["app"] == "web"
    assert res.metadata.labels["projectcalico.org/namespace"] == "shop"
    # a pod gets its namespace's profile (the Namespace object defines it), not the network's
    assert spec["profiles"] == ["kns.shop"]
    assert ds.get(kind_info("Profile").key("net1")) is None
    assert audit_check(take_snapshot(ds)) == []


@pytest.mark.usefixtures("netns_files")
def test_dual_stack_add_then_del_twice_leaves_nothing(ds: MemoryDatastore, plumber: FakePlumber) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    netconf = conf(ipam={"type": "tortie-ipam", "assign_ipv6": True})
    code, result = call(plugin, env("ADD"), netconf)
    assert code == 0, result
    versions = sorted(ipaddress.ip_interface(i["address"]).version for i in result["ips"])
    assert versions == [4, 6]
    assert {"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"} in result["routes"]
    parse_resource(weps(ds)[0].value)
    with_prev = {**netconf, "prevResult": result}
    assert call(plugin, env("DEL"), with_prev) == (0, None)
    assert_clean(ds, plumber)
    assert call(plugin, env("DEL"), with_prev) == (0, None)  # idempotent
    assert call(plugin, env("DEL", netns=""), netconf) == (0, None)  # no netns, no prevResult


@pytest.mark.usefixtures("netns_files")
def test_pools_are_named_per_family(ds: MemoryDatastore, plumber: FakePlumber) -> None:
    """ipv4_pools / ipv6_pools restrict their own family (Calico's strings "true"/"false" for the
    assign flags); an IPv6 pool named in ipv4_pools is refused with the reason, nothing assigned."""
    put_pool(ds, "pool6b", "fd00:21::/120", 122)
    plugin = make_plugin(SharedStore(ds), plumber)
    only6 = {"type": "tortie-ipam", "assign_ipv4": "false", "assign_ipv6": "true", "ipv6_pools": ["pool6b"]}
    code, result = call(plugin, env("ADD"), conf(ipam=only6))
    assert code == 0, result
    assert [ipaddress.ip_interface(i["address"]).ip in ipaddress.ip_network("fd00:21::/120")
            for i in result["ips"]] == [True]
    wrong = {"type": "tortie-ipam", "assign_ipv6": True, "ipv4_pools": ["pool6"]}
    code, err = call(plugin, env("ADD", cid="ctr2"), conf(ipam=wrong))
    assert (code, err["code"]) == (1, 100) and "requested IPv4 pool 'pool6' is an IPv6 pool" in err["details"]
    assert len(weps(ds)) == 1


@pytest.mark.usefixtures("netns_files")
@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_result_is_rendered_in_the_requested_version(
    ds: MemoryDatastore, plumber: FakePlumber, version: str
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    code, result = call(plugin, env("ADD"), conf(cniVersion=version))
    assert code == 0, result
    assert result["cniVersion"] == version
    has_version_field = all("version" in ip for ip in result["ips"])
    assert has_version_field == version.startswith("0.")
    assert ("mtu" in result["interfaces"][1]) == (version == "1.1.0")


@pytest.mark.usefixtures("netns_files")
def test_two_containers_get_different_addresses_and_interfaces(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    _, r1 = call(plugin, env("ADD", cid="a1"), conf())
    _, r2 = call(plugin, env("ADD", cid="a2", netns="/run/netns/c2"), conf())
    assert r1["ips"][0]["address"] != r2["ips"][0]["address"]
    assert r1["interfaces"][0]["name"] != r2["interfaces"][0]["name"]
    assert len(weps(ds)) == 2


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("environ", "stdin", "code"),
    [
        ({}, b"{}", 4),
        ({"CNI_COMMAND": "FROB"}, b"{}", 4),
        ({"CNI_COMMAND": "ADD", "CNI_NETNS": "/run/netns/c1", "CNI_IFNAME": "eth0"}, None, 4),
        ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"}, None, 4),
        ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": "a/b"}, None, 4),
        ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "-bad", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}, None, 4),
        (
            {
                "CNI_COMMAND": "ADD",
                "CNI_CONTAINERID": "c",
                "CNI_NETNS": "/x",
                "CNI_IFNAME": "eth0",
                "CNI_ARGS": "novalue",
            },
            None,
            4,
        ),
        (None, b"not json", 6),
        (None, b"[1, 2]", 6),
        (None, b"", 6),
        (None, json.dumps(conf(cniVersion="0.2.0")).encode(), 1),
        (None, json.dumps(conf(cniVersion="9.9.9")).encode(), 1),
        (None, json.dumps({k: v for k, v in conf().items() if k != "cniVersion"}).encode(), 1),
        (None, json.dumps(conf(name="")).encode(), 7),
        (None, json.dumps(conf(mtu="big")).encode(), 7),
        (None, json.dumps(conf(mtu=10)).encode(), 7),
        (None, json.dumps(conf(interface_prefix="much-too-long-prefix")).encode(), 7),
        (None, json.dumps(conf(ipam={"type": "tortie-ipam", "assign_ipv4": False})).encode(), 7),
        (None, json.dumps(conf(ipam={"ipv4_pools": "pool4"})).encode(), 7),
        (None, json.dumps(conf(labels={"bad key!": "x"})).encode(), 7),
        (None, json.dumps(conf(log_level="loud")).encode(), 7),
        (None, json.dumps(conf(namespace="Bad_Namespace")).encode(), 7),
        (None, json.dumps(conf(runtimeConfig={"portMappings": [{"containerPort": 0}]})).encode(), 7),
        (env("ADD", cid="c" * 300), None, 7),  # the endpoint name would exceed 253 characters
    ],
)
@pytest.mark.usefixtures("netns_files")
def test_bad_calls_fail_with_the_right_code_and_change_nothing(
    ds: MemoryDatastore, plumber: FakePlumber, environ: dict[str, str] | None, stdin: bytes | None, code: int
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    rev = ds.current_revision()
    got, err = call(
        plugin,
        env("ADD") if environ is None else environ,
        stdin if stdin is not None else json.dumps(conf()).encode(),
    )
    assert got == 1
    assert err["code"] == code, err
    assert err["msg"] and set(err) <= {"cniVersion", "code", "msg", "details"}
    assert ds.current_revision() == rev and plumber.veths == {} and plumber.calls == []


def test_missing_netns_is_unknown_container_without_side_effects(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    rev = ds.current_revision()
    code, err = call(plugin, env("ADD", netns="/run/netns/does-not-exist"), conf())
    assert (code, err["code"]) == (1, 3)
    assert ds.current_revision() == rev and plumber.calls == []


@pytest.mark.usefixtures("netns_files")
def test_datastore_unreachable_is_try_again(ds: MemoryDatastore, plumber: FakePlumber) -> None:
    def unreachable(url: str | None) -> Any:
        raise DatastoreUnavailable("cannot reach etcd at 127.0.0.1:1")

    plugin = TortiePlugin(Deps(open_datastore=unreachable, plumber_factory=lambda: plumber, env={}))
    for command in ("ADD", "DEL"):
        code, err = call(plugin, env(command), conf())
        assert (code, err["code"]) == (1, 11), err
    assert plumber.veths == {}


@pytest.mark.usefixtures("netns_files")
def test_pool_exhausted_reports_no_address_and_rolls_back(plumber: FakePlumber) -> None:
    ds = MemoryDatastore()
    put_pool(ds, "tiny", "10.30.0.0/31", 31)
    put_node(ds, NODE)
    plugin = make_plugin(SharedStore(ds), plumber)
    assert call(plugin, env("ADD", cid="a1"), conf())[0] == 0
    assert call(plugin, env("ADD", cid="a2", netns="/run/netns/c2"), conf())[0] == 0
    plumber.namespaces.add("/run/netns/c3")
    code, err = call(plugin, env("ADD", cid="a3", netns="/run/netns/c3"), conf())
    assert (code, err["code"]) == (1, 100), err
    assert handle_ips(ds, "net1.a3") == [] and len(plumber.veths) == 2 and len(weps(ds)) == 2


@pytest.mark.usefixtures("netns_files")
@pytest.mark.parametrize("step", ["veth", "sysctl", "container", "host-route"])
def test_kernel_failure_midway_releases_the_addresses(
    ds: MemoryDatastore, plumber: FakePlumber, step: str
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    plumber.fail_on = step
    code, err = call(plugin, env("ADD"), conf(ipam={"type": "tortie-ipam", "assign_ipv6": True}))
    assert (code, err["code"]) == (1, 101), err
    assert step in err["details"]
    assert_clean(ds, plumber)


@pytest.mark.usefixtures("netns_files")
def test_endpoint_write_failure_removes_the_veth_and_releases(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    plugin = make_plugin(FailingWrites(ds, "/workloadendpoints/"), plumber)
    code, err = call(plugin, env("ADD"), conf())
    assert (code, err["code"]) == (1, 11), err
    assert "remove tort" in " ".join(plumber.calls)
    assert_clean(ds, plumber)


@pytest.mark.usefixtures("netns_files")
def test_interface_name_taken_in_the_container_rolls_back(ds: MemoryDatastore, plumber: FakePlumber) -> None:
    plumber.foreign_ifnames.add(("/run/netns/c1", "eth0"))
    plugin = make_plugin(SharedStore(ds), plumber)
    code, err = call(plugin, env("ADD"), conf())
    assert (code, err["code"]) == (1, 101)
    assert "already exists" in err["details"]
    assert_clean(ds, plumber)


@pytest.mark.usefixtures("netns_files")
def test_readd_of_same_pod_with_new_sandbox_keeps_the_new_endpoint(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    """A DEL of the old sandbox must not delete the endpoint the new sandbox wrote."""
    plugin = make_plugin(SharedStore(ds), plumber)
    args = "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"
    assert call(plugin, env("ADD", cid="old", CNI_ARGS=args), conf())[0] == 0
    assert call(plugin, env("ADD", cid="new", netns="/run/netns/c2", CNI_ARGS=args), conf())[0] == 0
    assert call(plugin, env("DEL", cid="old", CNI_ARGS=args), conf())[0] == 0
    (kv,) = weps(ds)
    assert kv.value["spec"]["containerID"] == "new"
    assert handle_ips(ds, "net1.old") == [] and len(handle_ips(ds, "net1.new")) == 1
    (veth,) = plumber.veths.values()  # the late DEL did not take the new sandbox's interface either
    assert veth.spec.netns == "/run/netns/c2"


@pytest.mark.parametrize(
    "stdin",
    [
        b" " * (1 << 20) + b"{}",  # over the 1 MiB input limit
        b"[" * 200_000 + b"]" * 200_000,  # nested far deeper than any configuration
        b'{"cniVersion": "1.0.0", "name": "n", "x": ' + b"[" * 150 + b"]" * 150 + b"}",  # deeper than 100
    ],
)
@pytest.mark.usefixtures("netns_files")
def test_oversized_or_too_deep_stdin_is_a_decoding_failure(
    ds: MemoryDatastore, plumber: FakePlumber, stdin: bytes
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    rev = ds.current_revision()
    code, err = call(plugin, env("ADD"), stdin)
    assert (code, err["code"]) == (1, 6), err
    assert "stdin" in err["details"]
    assert ds.current_revision() == rev and plumber.calls == []


@pytest.mark.usefixtures("netns_files")
def test_container_id_reused_for_another_live_namespace_is_refused(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    """The same container ID in a second namespace while the first is alive: ADD fails with code 4 and
    changes nothing; the runtime's cleanup DEL for the second namespace leaves the first alone."""
    plugin = make_plugin(SharedStore(ds), plumber)
    code, first = call(plugin, env("ADD"), conf())
    assert code == 0, first
    rev, veths = ds.current_revision(), dict(plumber.veths)
    code, err = call(plugin, env("ADD", netns="/run/netns/c2"), conf())
    assert (code, err["code"]) == (1, 4), err
    assert "ctr1" in err["details"] and "/run/netns/c2" in err["details"]
    assert ds.current_revision() == rev and plumber.veths == veths
    assert call(plugin, env("DEL", netns="/run/netns/c2"), conf()) == (0, None)
    assert ds.current_revision() == rev and plumber.veths == veths
    assert handle_ips(ds, "net1.ctr1") == [first["ips"][0]["address"].split("/")[0]]
    assert call(plugin, env("DEL"), {**conf(), "prevResult": first}) == (0, None)
    assert_clean(ds, plumber)


@pytest.mark.usefixtures("netns_files")
def test_container_id_reused_after_its_namespace_died_replaces_the_stale_attachment(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    assert call(plugin, env("ADD"), conf())[0] == 0
    plumber.namespaces.discard("/run/netns/c1")  # deleted without a DEL: the kernel took the veth
    code, result = call(plugin, env("ADD", netns="/run/netns/c2"), conf())
    assert code == 0, result
    (addr,) = [ip["address"].split("/")[0] for ip in result["ips"]]
    assert handle_ips(ds, "net1.ctr1") == [addr]
    ((name, veth),) = plumber.veths.items()
    assert veth.spec.netns == "/run/netns/c2"
    (kv,) = weps(ds)
    assert kv.value["spec"]["interfaceName"] == name and kv.value["spec"]["ipNetworks"] == [f"{addr}/32"]
    assert audit_check(take_snapshot(ds)) == []


@pytest.mark.usefixtures("netns_files")
def test_repeated_add_replaces_the_attachment_and_leaks_nothing(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    """An ADD repeated for the same container and namespace (its answer was lost), and an ADD after one
    that died half way (addresses held, no endpoint): the handle ends with exactly the new addresses."""
    plugin = make_plugin(SharedStore(ds), plumber)
    assert call(plugin, env("ADD"), conf())[0] == 0
    code, again = call(plugin, env("ADD"), conf())
    assert code == 0, again
    assert handle_ips(ds, "net1.ctr1") == [again["ips"][0]["address"].split("/")[0]]
    assert len(plumber.veths) == 1 and len(weps(ds)) == 1
    Ipam(ds).auto_assign(1, 0, handle="net1.ctr2", host=NODE)  # an ADD of ctr2 that died after IPAM
    code, result = call(plugin, env("ADD", cid="ctr2", netns="/run/netns/c2"), conf())
    assert code == 0, result
    assert handle_ips(ds, "net1.ctr2") == [result["ips"][0]["address"].split("/")[0]]
    assert audit_check(take_snapshot(ds)) == []


# ---------------------------------------------------------------------------------------------- CHECK


@pytest.mark.usefixtures("netns_files")
def test_check_passes_after_add_and_reports_each_broken_part(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    _, result = call(plugin, env("ADD"), conf())
    netconf = conf(prevResult=result)
    assert call(plugin, env("CHECK"), netconf) == (0, None)

    host_if = result["interfaces"][0]["name"]
    plumber.veths[host_if].up = False
    code, err = call(plugin, env("CHECK"), netconf)
    assert (code, err["code"]) == (1, 102) and "is down" in err["details"]
    plumber.veths[host_if].up = True

    key = weps(ds)[0].key
    stored = ds.get(key)
    assert stored is not None
    ds.put(key, {**stored.value, "spec": {**stored.value["spec"], "ipNetworks": ["10.99.0.1/32"]}})
    code, err = call(plugin, env("CHECK"), netconf)
    assert err["code"] == 102 and "ipNetworks" in err["details"]
    ds.put(key, stored.value)

    Ipam(ds).release_by_handle("net1.ctr1")
    code, err = call(plugin, env("CHECK"), netconf)
    assert err["code"] == 102 and "IPAM" in err["details"]

    ds.delete(key)
    code, err = call(plugin, env("CHECK"), netconf)
    assert err["code"] == 102 and "does not exist" in err["details"]


@pytest.mark.usefixtures("netns_files")
def test_check_needs_prev_result_and_version_040(ds: MemoryDatastore, plumber: FakePlumber) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    assert call(plugin, env("CHECK"), conf())[1]["code"] == 7
    assert call(plugin, env("CHECK"), conf(cniVersion="0.3.1", prevResult={}))[1]["code"] == 1


# ------------------------------------------------------------------------------ STATUS, GC, VERSION


def test_status(ds: MemoryDatastore, plumber: FakePlumber) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    status_env = {"CNI_COMMAND": "STATUS"}
    assert call(plugin, status_env, conf(cniVersion="1.1.0")) == (0, None)
    dual = conf(cniVersion="1.1.0", ipam={"assign_ipv6": True, "ipv6_pools": ["nope"]})
    assert call(plugin, status_env, dual)[1]["code"] == 50
    assert call(plugin, status_env, conf(cniVersion="1.0.0"))[1]["code"] == 1

    empty = make_plugin(SharedStore(MemoryDatastore()), plumber)
    code, err = call(empty, status_env, conf(cniVersion="1.1.0"))
    assert (code, err["code"]) == (1, 50) and "IPPool" in err["details"]

    def unreachable(url: str | None) -> Any:
        raise DatastoreUnavailable("no etcd")

    down = TortiePlugin(Deps(open_datastore=unreachable, plumber_factory=lambda: plumber, env={}))
    assert call(down, status_env, conf(cniVersion="1.1.0"))[1]["code"] == 50


@pytest.mark.usefixtures("netns_files")
def test_gc_removes_only_stale_attachments_of_this_node_and_network(
    ds: MemoryDatastore, plumber: FakePlumber
) -> None:
    plugin = make_plugin(SharedStore(ds), plumber)
    plumber.namespaces |= {"/run/netns/c3", "/run/netns/c4"}
    call(plugin, env("ADD", cid="keep"), conf())
    call(plugin, env("ADD", cid="stale", netns="/run/netns/c2"), conf())
    call(plugin, env("ADD", cid="other-node", netns="/run/netns/c3"), conf(nodename="node2"))
    call(plugin, env("ADD", cid="other-net", netns="/run/netns/c4"), conf(name="net2"))
    Ipam(ds).auto_assign(1, 0, handle="net1.leaked", host=NODE)  # IPAM only: ADD died before the endpoint
    gc_conf = conf(
        cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    )
    assert call(plugin, {"CNI_COMMAND": "GC"}, gc_conf) == (0, None)
    names = sorted(kv.value["spec"]["workload"] for kv in weps(ds))
    assert names == ["keep", "other-net", "other-node"]
    assert handle_ips(ds, "net1.stale") == [] and handle_ips(ds, "net1.leaked") == []
    assert len(handle_ips(ds, "net1.keep")) == 1 and len(handle_ips(ds, "net1.other-node")) == 1
    assert len(plumber.veths) == 3
    assert call(plugin, {"CNI_COMMAND": "GC"}, conf(cniVersion="1.1.0"))[1]["code"] == 7


def test_version_echoes_a_supported_version_and_lists_all() -> None:
    plugin = TortiePlugin(Deps())
    for stdin, want in (
        (b'{"cniVersion":"0.4.0"}', "0.4.0"),
        (b"", "1.1.0"),
        (b'{"cniVersion":"0.1.0"}', "1.1.0"),
    ):
        code, out = call(plugin, {"CNI_COMMAND": "VERSION"}, stdin)
        assert code == 0
        assert out == {"cniVersion": want, "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


# ---------------------------------------------------------------------------------------------- policy wait


class FakeAgent:
    """Writes the endpoint status file of every endpoint the plugin writes, `delay` seconds after it
    appears in the datastore, as the agent does once it programmed it (`tortie.dataplane.endpoint_status`);
    or never (delay None)."""

    def __init__(self, ds: MemoryDatastore, directory: Path, delay: float | None) -> None:
        from tortie.dataplane.endpoint_status import EndpointStatusFiles

        self.ds = ds
        self.files = EndpointStatusFiles(str(directory.parent))
        self.delay = delay
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        from tortie.dataplane.endpoint_status import record

        seen: dict[str, float] = {}
        while self.delay is not None and not self.stop.wait(0.02):
            for kv in weps(self.ds):
                first = seen.setdefault(f"{kv.key}@{kv.mod_revision}", time.monotonic())
                if time.monotonic() - first < self.delay:
                    continue
                spec, meta = kv.value["spec"], kv.value["metadata"]
                nets = spec["ipNetworks"]
                v4, v6 = [n for n in nets if ":" not in n], [n for n in nets if ":" in n]
                self.files.on_status(
                    meta["namespace"], meta["name"], record(spec["interfaceName"], spec.get("mac"), v4, v6)
                )
                self.files.flush()


@pytest.mark.usefixtures("netns_files")
def test_add_returns_once_the_agent_programmed_the_endpoint(
    ds: MemoryDatastore, plumber: FakePlumber, tmp_path: Path
) -> None:
    status_dir = tmp_path / "endpoint-status"
    agent = FakeAgent(ds, status_dir, delay=0.3)
    plugin = make_plugin(SharedStore(ds), plumber)
    started = time.monotonic()
    code, result = call(
        plugin, env("ADD"), conf(policy_setup_timeout_seconds=5, endpoint_status_dir=str(status_dir))
    )
    agent.stop.set()
    assert code == 0, result
    assert 0.3 <= time.monotonic() - started < 4
    (written,) = os.listdir(status_dir)
    assert json.loads((status_dir / written).read_text())["mac"] == result["interfaces"][1]["mac"]


@pytest.mark.usefixtures("netns_files")
def test_add_fails_with_try_again_and_undoes_everything_when_the_agent_is_silent(
    ds: MemoryDatastore, plumber: FakePlumber, tmp_path: Path
) -> None:
    """No agent (or a stale file of an earlier container of that name): after the bounded wait ADD
    fails with code 11 and nothing is left, so the runtime's retry starts clean."""
    status_dir = tmp_path / "endpoint-status"
    status_dir.mkdir()
    FakeAgent(ds, status_dir, delay=None)
    stale = {"ifaceName": "tortxxxx", "mac": "02:00:00:00:99:99", "ipv4Nets": [], "ipv6Nets": []}
    (status_dir / "default node1-cni-ctr1-eth0").write_text(json.dumps(stale))
    plugin = make_plugin(SharedStore(ds), plumber)
    started = time.monotonic()
    code, err = call(
        plugin, env("ADD"), conf(policy_setup_timeout_seconds=0.5, endpoint_status_dir=str(status_dir))
    )
    assert (code, err["code"]) == (1, 11), err
    assert 0.5 <= time.monotonic() - started < 4
    assert "earlier incarnation" in err["details"] and str(status_dir) in err["details"]
    assert_clean(ds, plumber)
