"""The whole agent in-process: memory datastore -> syncer -> calc -> dataplane loop -> fake kernel,
with health and metrics over HTTP on free loopback ports."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tortie.agent.main import run_agent
from tortie.agent.pipeline import AgentPipeline, Drivers
from tortie.agent.status import status_key
from tortie.dataplane.drivers.routes import TORTIE_ROUTE_PROTOCOL, Route
from tortie.datastore.memory import MemoryDatastore
from tortie.ipam import keys as ipam_keys
from tortie.model.kinds import kind_info
from tortie.testing.kernel_fake import FakeKernel

HOST = "node-1"


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def put_wep(ds: MemoryDatastore, name: str, ip: str, node: str = HOST, iface: str | None = None) -> None:
    spec = {"orchestrator": "cni", "workload": name, "endpoint": "eth0", "node": node,
            "ipNetworks": [ip], "interfaceName": iface or f"tort{name}"}
    ds.put(kind_info("WorkloadEndpoint").key(name, "default"),
           {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec})


def put_block(ds: MemoryDatastore, cidr: str) -> None:
    import ipaddress

    net = ipaddress.ip_network(cidr)
    ds.put(ipam_keys.block_key(net), {"cidr": cidr, "affinity": f"host:{HOST}", "allocations": [],
                                      "unallocated": [], "attributes": []})
    ds.put(ipam_keys.affinity_key(HOST, net), {"state": "confirmed"})


def ours(kernel: FakeKernel) -> dict[str, Route]:
    return {h.route.dst: h.route for h in kernel.routes() if h.protocol == TORTIE_ROUTE_PROTOCOL}


@dataclass
class RunningAgent:
    ds: MemoryDatastore
    kernel: FakeKernel
    stop: threading.Event
    thread: threading.Thread
    result: list[int]
    started: list[tuple[AgentPipeline, int | None, int | None]]

    @property
    def health_port(self) -> int:
        return self.started[-1][1] or 0

    @property
    def metrics_port(self) -> int:
        return self.started[-1][2] or 0


@pytest.fixture
def agent() -> Iterator[RunningAgent]:
    ds = MemoryDatastore()
    kernel = FakeKernel()
    stop = threading.Event()
    result: list[int] = []
    started: list[tuple[AgentPipeline, int | None, int | None]] = []
    env = {"TORTIE_HEALTH_ENABLED": "true", "TORTIE_HEALTH_HOST": "127.0.0.1", "TORTIE_HEALTH_PORT": "0",
           "TORTIE_PROMETHEUS_METRICS_ENABLED": "yes", "TORTIE_PROMETHEUS_METRICS_HOST": "127.0.0.1",
           "TORTIE_PROMETHEUS_METRICS_PORT": "0", "TORTIE_REPORTING_INTERVAL": "1",
           "TORTIE_ENDPOINT_REPORTING_ENABLED": "true", "TORTIE_ENDPOINT_REPORTING_DELAY": "0",
           "TORTIE_CONFIG_FILE": "/nonexistent/tortie-agent.cfg"}

    def on_started(p: AgentPipeline, health: Any, metrics_port: int | None) -> None:
        started.append((p, health.port if health is not None else None, metrics_port))

    def run() -> None:
        result.append(run_agent({"hostname": HOST}, env, stop=stop, open_store=lambda _url: ds,
                                drivers_factory=lambda _cfg: Drivers(kernel, kernel, kernel),
                                on_started=on_started))

    env.pop("TORTIE_CONFIG_FILE")  # the default path, which does not exist here: not an error
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    running = RunningAgent(ds, kernel, stop, thread, result, started)
    wait_until(lambda: bool(started) or bool(result), "agent start")
    try:
        yield running
    finally:
        stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive()


def _agent_thread(
    ds: MemoryDatastore, kernel: FakeKernel
) -> tuple[threading.Event, threading.Thread, list[int]]:
    """`run_agent` on a thread with the fake kernel and no environment; (stop, thread, exit codes)."""
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_agent(
        {"hostname": HOST}, {}, stop=stop, open_store=lambda _u: ds,
        drivers_factory=lambda _c: Drivers(kernel, kernel, kernel))), daemon=True)
    thread.start()
    return stop, thread, result


def _http(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_endpoints_and_blocks_reach_the_kernel_and_health_follows(agent: RunningAgent) -> None:
    ds, kernel = agent.ds, agent.kernel
    kernel.add_link("tortaaa")
    put_wep(ds, "aaa", "10.65.0.1/32")
    put_wep(ds, "remote", "10.65.9.1/32", node="node-2")
    put_block(ds, "10.65.0.0/26")
    wait_until(lambda: {"10.65.0.1/32", "10.65.0.0/26"} <= set(ours(kernel)), "routes programmed")
    assert "10.65.9.1/32" not in ours(kernel)
    assert kernel.sysctl("net/ipv4/conf/tortaaa/proxy_arp") == "1"
    assert kernel.sysctl("net/ipv4/ip_forward") == "1"
    wait_until(lambda: _http(agent.health_port, "/readiness")[0] == 200, "readiness")
    assert _http(agent.health_port, "/liveness")[0] == 200

    # endpoint before interface: the route appears once the interface does
    put_wep(ds, "bbb", "10.65.0.2/32")
    time.sleep(0.2)
    assert "10.65.0.2/32" not in ours(kernel)
    kernel.add_link("tortbbb")
    wait_until(lambda: "10.65.0.2/32" in ours(kernel), "route after interface appeared")

    # moved away -> route removed; the other routes untouched
    put_wep(ds, "aaa", "10.65.0.1/32", node="node-2")
    wait_until(lambda: "10.65.0.1/32" not in ours(kernel), "route removed")
    assert {"10.65.0.2/32", "10.65.0.0/26"} <= set(ours(kernel))

    status, text = _http(agent.metrics_port, "/metrics")
    assert status == 200
    body = text.decode()
    assert 'tortie_agent_routes{kind="block"} 1.0' in body
    assert "tortie_agent_local_endpoints 1.0" in body
    assert "tortie_agent_in_sync 1.0" in body
    assert "tortie_agent_datastore_to_kernel_seconds_count" in body
    assert "tortie_agent_datastore_to_kernel_seconds_count 0.0" not in body

    # status write-back: the agent's liveness and the endpoint's state
    wait_until(lambda: ds.get(status_key(HOST)) is not None, "agent status report")
    ep_key = "/calico/felix/v2/no-region/host/node-1/workload/cni/bbb/endpoint/eth0"
    wait_until(lambda: (kv := ds.get(ep_key)) is not None and kv.value == {"status": "up"}, "endpoint up")
    kernel.set_admin("tortbbb", False)
    wait_until(lambda: (kv := ds.get(ep_key)) is not None and kv.value == {"status": "down"}, "endpoint down")


def test_nothing_is_touched_before_in_sync_and_stop_leaves_the_kernel(agent: RunningAgent) -> None:
    kernel = agent.kernel
    wait_until(lambda: _http(agent.health_port, "/readiness")[0] == 200, "readiness")
    kernel.add_link("tortccc")
    put_wep(agent.ds, "ccc", "10.65.0.3/32")
    wait_until(lambda: "10.65.0.3/32" in ours(kernel), "route")
    agent.stop.set()
    agent.thread.join(timeout=20)
    assert agent.result == [0]
    assert "10.65.0.3/32" in ours(kernel)  # left in place on stop


def test_drift_is_repaired_on_the_refresh_interval() -> None:
    ds = MemoryDatastore()
    kernel = FakeKernel()
    kernel.add_link("tortddd")
    put_wep(ds, "ddd", "10.65.0.4/32")
    ds.put(kind_info("FelixConfiguration").key("default"),
           {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": "default"},
            "spec": {"routeRefreshInterval": "300ms", "interfaceRefreshInterval": "300ms"}})
    stop, thread, result = _agent_thread(ds, kernel)
    try:
        wait_until(lambda: "10.65.0.4/32" in ours(kernel), "route")
        kernel.drop_route("10.65.0.4/32")
        kernel.set_sysctl("net/ipv4/ip_forward", "0")
        wait_until(lambda: "10.65.0.4/32" in ours(kernel), "route restored")
        wait_until(lambda: kernel.sysctl("net/ipv4/ip_forward") == "1", "sysctl restored")
    finally:
        stop.set()
        thread.join(timeout=20)
    assert result == [0]


def test_a_felix_configuration_change_rebuilds_the_pipeline(agent: RunningAgent) -> None:
    wait_until(lambda: _http(agent.health_port, "/readiness")[0] == 200, "readiness")
    agent.kernel.add_link("caliabc")
    put_wep(agent.ds, "abc", "10.65.0.5/32", iface="caliabc")
    time.sleep(0.2)
    assert "10.65.0.5/32" not in ours(agent.kernel)  # not one of our prefixes
    agent.ds.put(kind_info("FelixConfiguration").key(f"node.{HOST}"),
                 {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                  "metadata": {"name": f"node.{HOST}"}, "spec": {"interfacePrefix": "tort,cali"}})
    wait_until(lambda: "10.65.0.5/32" in ours(agent.kernel), "route via the new prefix")
    # the new pipeline may program the route before its start() returns to report it
    wait_until(lambda: len(agent.started) == 2, "the second pipeline reported started")
    assert len(agent.started) == 2
    assert json.loads(_http(agent.health_port, "/liveness")[1])["ok"] is True


def test_a_named_missing_config_file_is_an_error(tmp_path: Any) -> None:
    rc = run_agent({"hostname": HOST, "config_file": str(tmp_path / "missing.cfg")}, {},
                   stop=threading.Event(), open_store=lambda _u: MemoryDatastore(),
                   drivers_factory=lambda _c: Drivers(FakeKernel(), FakeKernel(), FakeKernel()))
    assert rc == 1


def test_an_invalid_felix_configuration_at_start_does_not_cause_restarts() -> None:
    ds = MemoryDatastore()
    ds.put(kind_info("FelixConfiguration").key("default"),
           {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": "not-default"}, "spec": {"interfacePrefix": "cali"}})
    kernel = FakeKernel()
    kernel.add_link("tortfff")
    put_wep(ds, "fff", "10.65.0.6/32")
    stop = threading.Event()
    started: list[AgentPipeline] = []
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_agent(
        {"hostname": HOST}, {}, stop=stop, open_store=lambda _u: ds,
        drivers_factory=lambda _c: Drivers(kernel, kernel, kernel),
        on_started=lambda p, _h, _m: started.append(p))), daemon=True)
    thread.start()
    try:
        wait_until(lambda: "10.65.0.6/32" in ours(kernel), "route with the default prefix")
        time.sleep(0.3)
        assert len(started) == 1
    finally:
        stop.set()
        thread.join(timeout=20)
    assert result == [0]


def test_a_kernel_without_ipv6_serves_ipv4_and_says_why_once(caplog: pytest.LogCaptureFixture) -> None:
    """ipv6_support is on (the default) but /proc/sys/net/ipv6 does not exist: a dual-stack endpoint
    gets its IPv4 route only, nothing IPv6 is attempted, and one warning explains it."""
    ds = MemoryDatastore()
    kernel = FakeKernel(ipv6=False)
    kernel.add_link("tortdual")
    put_wep(ds, "dual", "10.65.0.7/32", iface="tortdual")
    wep_key = kind_info("WorkloadEndpoint").key("dual", "default")
    wep = ds.get(wep_key)
    assert wep is not None
    dual = ["10.65.0.7/32", "fd00::7/128"]
    ds.put(wep_key, {**wep.value, "spec": {**wep.value["spec"], "ipNetworks": dual}})
    caplog.set_level("WARNING", logger="tortie.agent.pipeline")
    stop, thread, result = _agent_thread(ds, kernel)
    try:
        wait_until(lambda: "10.65.0.7/32" in ours(kernel), "the IPv4 route")
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert result == [0] and set(ours(kernel)) == {"10.65.0.7/32"}
    assert not any("ipv6" in m for m in kernel.mutations)
    said = [r.getMessage() for r in caplog.records if "IPv6 is off" in r.getMessage()]
    assert len(said) == 1 and "the kernel has no IPv6" in said[0] and "serving IPv4 only" in said[0]


class _BreakingStore:
    """A MemoryDatastore whose watches and listings raise a non-datastore error once `broken` is set
    (a bug in a decoder, say): the syncer's pump dies, its re-list fails, the syncer thread ends."""

    def __init__(self, inner: MemoryDatastore) -> None:
        self.inner = inner
        self.broken = threading.Event()

    def list(self, prefix: str) -> Any:
        if self.broken.is_set():
            raise RuntimeError("decoder bug")
        return self.inner.list(prefix)

    def watch(self, prefix: str, after_revision: int) -> Any:
        inner = self.inner.watch(prefix, after_revision)
        broken = self.broken

        class _Watch:
            def get(self, timeout: float | None = None) -> Any:
                return inner.get(timeout)

            def close(self) -> None:
                inner.close()

            def __iter__(self) -> Iterator[Any]:
                while not broken.wait(0.02):
                    event = inner.get(0.0)
                    if event is not None:
                        yield event
                raise RuntimeError("decoder bug")

        return _Watch()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_dead_syncer_thread_makes_health_unready_and_the_agent_exit() -> None:
    """A part of the pipeline that dies is never silent: health turns unready at once (naming the
    part) and the agent exits non-zero, so that its supervisor restarts it."""
    ds = MemoryDatastore()
    kernel = FakeKernel()
    kernel.add_link("tortggg")
    put_wep(ds, "ggg", "10.65.0.8/32")
    store = _BreakingStore(ds)
    stop = threading.Event()
    started: list[AgentPipeline] = []
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_agent(
        {"hostname": HOST}, {}, stop=stop, open_store=lambda _u: store,  # type: ignore[arg-type,return-value]
        drivers_factory=lambda _c: Drivers(kernel, kernel, kernel),
        on_started=lambda p, _h, _m: started.append(p))), daemon=True)
    thread.start()
    try:
        wait_until(lambda: "10.65.0.8/32" in ours(kernel), "route")
        health = started[0]._health
        assert health.summary().ready
        store.broken.set()
        thread.join(timeout=20)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert result == [2]  # EXIT_DATASTORE: the supervisor restarts the agent
    summary = health.summary()
    assert not summary.live and not summary.ready
    assert summary.components["syncer"]["live"] is False
    assert "decoder bug" in summary.components["syncer"]["detail"]
    assert "10.65.0.8/32" in ours(kernel)  # the kernel is left as it is


def test_the_datastore_url_is_logged_redacted(caplog: pytest.LogCaptureFixture) -> None:
    from tortie.common.errors import DatastoreUnavailable

    def refuse(_url: str | None) -> MemoryDatastore:
        raise DatastoreUnavailable("no member answers")

    caplog.set_level("INFO")
    url = "etcd://tortie:s3cret-pw@127.0.0.1:2379"
    rc = run_agent({"hostname": HOST, "datastore": url}, {}, stop=threading.Event(), open_store=refuse,
                   drivers_factory=lambda _c: Drivers(FakeKernel(), FakeKernel(), FakeKernel()))
    assert rc == 2
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "cannot open the datastore" in text and "127.0.0.1:2379" in text
    assert "s3cret-pw" not in text


def _put(ds: MemoryDatastore, kind: str, name: str, spec: dict[str, Any]) -> None:
    ds.put(kind_info(kind).key(name), {"apiVersion": "projectcalico.org/v3", "kind": kind,
                                      "metadata": {"name": name}, "spec": spec})


def test_vxlan_through_the_agent_and_an_invalid_vni_keeps_the_running_one(tmp_path: Any) -> None:
    """The whole agent on the fake kernel with a VXLAN pool: the device, the remote block's onlink
    route and the MTU file; then a VNI written past validation (out of range) changes nothing and
    restarts nothing, and a valid new VNI rebuilds the pipeline, which re-creates the device."""
    ds = MemoryDatastore()
    kernel = FakeKernel()
    kernel.add_link("eth0", addresses=("172.31.0.11/24",))
    _put(ds, "FelixConfiguration", "default", {"vxlanVNI": 5000})
    _put(ds, "IPPool", "p", {"cidr": "10.244.0.0/16", "vxlanMode": "Always"})
    _put(ds, "Node", HOST, {"bgp": {"ipv4Address": "172.31.0.11/24"}, "ipv4VXLANTunnelAddr": "10.244.0.1",
                            "vxlanTunnelMACAddr": "66:00:00:00:00:01"})
    _put(ds, "Node", "node-2", {"bgp": {"ipv4Address": "172.31.0.12/24"}, "ipv4VXLANTunnelAddr": "10.244.1.1",
                                "vxlanTunnelMACAddr": "66:00:00:00:00:02"})
    ds.put(ipam_keys.block_key(ipaddress.ip_network("10.244.1.0/26")),
           {"cidr": "10.244.1.0/26", "affinity": "host:node-2", "allocations": [], "unallocated": [],
            "attributes": []})
    mtu_file = tmp_path / "mtu"
    stop = threading.Event()
    started: list[AgentPipeline] = []
    thread = threading.Thread(target=lambda: run_agent(
        {"hostname": HOST, "mtu_file": str(mtu_file)}, {}, stop=stop, open_store=lambda _u: ds,
        drivers_factory=lambda _c: Drivers(kernel, kernel, kernel, vxlan=kernel),
        on_started=lambda p, _h, _m: started.append(p)), daemon=True)
    thread.start()

    def vni() -> int | None:
        state = kernel.device("vxlan.calico")
        return state.spec.vni if state is not None else None

    try:
        wait_until(lambda: vni() == 5000 and "10.244.1.0/26" in ours(kernel), "device and route")
        assert ours(kernel)["10.244.1.0/26"] == Route("10.244.1.0/26", ifname="vxlan.calico",
                                                      gateway="10.244.1.1", onlink=True)
        assert kernel.fdb("vxlan.calico") == {("66:00:00:00:00:02", "172.31.0.12")}
        wait_until(lambda: mtu_file.exists() and mtu_file.read_text() == "1450\n", "the MTU file")
        _put(ds, "FelixConfiguration", "default", {"vxlanVNI": 99999999})  # past validation
        time.sleep(0.5)
        assert len(started) == 1 and vni() == 5000
        _put(ds, "FelixConfiguration", "default", {"vxlanVNI": 6000})
        wait_until(lambda: vni() == 6000, "the device re-created with the new VNI")
        assert len(started) == 2
        wait_until(lambda: "10.244.1.0/26" in ours(kernel), "the route back through the new device")
    finally:
        stop.set()
        thread.join(timeout=20)
