"""The node service's supervision (`tortie.node.supervisor`) and main loop (`tortie.node.service`).

Supervisor: fake components on a manual clock (restart, backoff doubling and reset, start failures,
stop order). NodeService: a real child process standing in for the agent (a stub interpreter that
ignores its arguments), a memory datastore: registration, node.json, restart of a killed agent,
SIGTERM-equivalent stop.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tortie.common.errors import UserError
from tortie.common.ipfamily import V4, V6
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.resources import ResourceStore
from tortie.node.service import NodeConfig, NodeService, read_node_status, resolve_address
from tortie.node.supervisor import ChildProcess, InProcess, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeComponent:
    def __init__(self, name: str, log: list[str], fail_starts: int = 0) -> None:
        self.name = name
        self.log = log
        self.exit: int | None = None
        self.started = False
        self.fail_starts = fail_starts

    def start(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            raise OSError("no such binary")
        self.log.append(f"start {self.name}")
        self.started = True
        self.exit = None

    def poll(self) -> int | None:
        return self.exit

    def stop(self, grace: float) -> int | None:
        self.log.append(f"stop {self.name}")
        self.started = False
        return self.exit

    @property
    def pid(self) -> int | None:
        return 4242 if self.started else None


def test_restarts_with_doubling_backoff_and_resets_after_a_stable_run() -> None:
    clock, log = Clock(), []
    agent = FakeComponent("agent", log)
    sup = Supervisor([agent], initial=0.5, maximum=2.0, stable=30.0, clock=clock)
    sup.step()
    assert log == ["start agent"]
    for delay in (0.5, 1.0, 2.0, 2.0):  # crash right after each start: 0.5 s doubling, capped at 2 s
        agent.exit = 3
        sup.step()
        assert sup.status()["agent"]["running"] is False
        assert sup.status()["agent"]["lastExitCode"] == 3
        clock.now += delay - 0.125
        sup.step()
        assert sup.status()["agent"]["running"] is False, delay
        clock.now += 0.125
        sup.step()
        assert sup.status()["agent"]["running"] is True, delay
    assert sup.status()["agent"]["restarts"] == 4
    clock.now += 31.0  # a long, healthy run
    agent.exit = 1
    sup.step()
    clock.now += 0.5
    sup.step()
    assert sup.status()["agent"]["running"] is True and sup.status()["agent"]["restarts"] == 5


def test_a_component_that_cannot_start_is_retried_and_others_run() -> None:
    clock, log = Clock(), []
    bad = FakeComponent("bgp", log, fail_starts=2)
    good = FakeComponent("agent", log)
    sup = Supervisor([good, bad], initial=1.0, clock=clock)
    sup.step()
    assert log == ["start agent"] and sup.status()["bgp"]["running"] is False
    clock.now += 1.0
    sup.step()
    assert sup.status()["bgp"]["running"] is False
    clock.now += 2.0
    sup.step()
    assert sup.status()["bgp"]["running"] is True
    assert sup.status()["bgp"]["restarts"] == 0  # never ran before: not a restart
    sup.stop_all()
    assert log[-2:] == ["stop bgp", "stop agent"]  # reverse start order


def test_in_process_component_runs_a_fresh_object_each_time_and_counts_crashes() -> None:
    made: list[object] = []

    class Job:
        def __init__(self, crash: bool) -> None:
            self.crash = crash
            self.stopped = threading.Event()

        def run(self) -> int:
            if self.crash:
                raise RuntimeError("boom")
            self.stopped.wait(5)
            return 0

        def stop(self) -> None:
            self.stopped.set()

    def make() -> Job:
        job = Job(crash=not made)
        made.append(job)
        return job

    comp = InProcess("bgp", make)
    comp.start()
    deadline = time.monotonic() + 5
    while comp.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert comp.poll() == 70  # the exception became EX_SOFTWARE
    comp.start()
    assert comp.poll() is None and comp.pid == os.getpid()
    assert comp.stop(1.0) == 0
    assert len(made) == 2


def test_components_say_when_they_end_and_when_the_next_restart_is_due() -> None:
    # The node service sleeps until one of these: nothing polls an idle node.
    ended = threading.Event()
    child = ChildProcess("agent", [sys.executable, "-c", "import time; time.sleep(60)"], on_exit=ended.set)
    child.start()
    try:
        assert child.poll() is None and not ended.is_set()
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        assert ended.wait(10), "no word of the child's exit"
        assert child.poll() == -signal.SIGKILL
    finally:
        child.stop(1.0)
    done = threading.Event()

    class Quick:
        def run(self) -> int:
            return 0

        def stop(self) -> None:
            pass

    job = InProcess("bgp", Quick, on_exit=done.set)
    job.start()
    assert done.wait(10) and job.poll() == 0
    clock = Clock()
    fake = FakeComponent("agent", [])
    sup = Supervisor([fake], initial=0.5, clock=clock)
    assert sup.next_due() == 0.0  # never started: due now
    sup.step()
    assert sup.next_due() is None  # running: nothing scheduled
    fake.exit = 1
    sup.step()
    clock.now += 0.2
    assert sup.next_due() == pytest.approx(0.3)


def test_resolve_address_forms() -> None:
    assert resolve_address("10.0.0.5/24", "first-found", V4) == ipaddress.ip_interface("10.0.0.5/24")
    assert resolve_address("none", "first-found", V6) == "remove"
    assert resolve_address("keep", "first-found", V4) == "keep"


    for bad, version in (("10.0.0.5", V4), ("fd00::1/64", V4), ("x", V6)):
        with pytest.raises(UserError):
            resolve_address(bad, "first-found", version)


def _stub_agent(tmp_path: Path) -> str:
    """An 'interpreter' that ignores `-m tortie.cli.main agent run ...` and just stays up."""
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_service_registers_supervises_the_agent_and_reports(tmp_path: Path) -> None:
    ds = MemoryDatastore()
    cfg = NodeConfig(
        hostname="n1",
        run_dir=str(tmp_path / "run"),
        ip="10.9.0.7/24",
        as_number=65010,
        run_bgp=False,
        agent_health_port=0,
        python=_stub_agent(tmp_path),
        restart_initial=0.05,
        nodename_file=str(tmp_path / "lib" / "nodename"),
    )
    service = NodeService(cfg, ds)
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(service.run(stop)))
    thread.start()
    try:
        _wait(
            lambda: (
                (read_node_status(cfg.run_dir) or {}).get("components", {}).get("agent", {}).get("running")
                is True
            ),
            "agent running",
        )
        status = read_node_status(cfg.run_dir)
        assert status is not None
        assert status["node"] == {"ipv4Address": "10.9.0.7/24", "ipv6Address": None, "asNumber": 65010}
        assert status["ready"] is True  # readiness unknown (health port 0) does not block
        bgp = ResourceStore(ds).get("Node", "n1").to_wire()["spec"]["bgp"]
        assert bgp == {"ipv4Address": "10.9.0.7/24", "asNumber": 65010}
        assert (tmp_path / "lib" / "nodename").read_text() == "n1"  # for the CNI plugin's nodename_file
        first = status["components"]["agent"]["pid"]
        os.kill(first, signal.SIGKILL)  # the agent crashes
        _wait(
            lambda: (read_node_status(cfg.run_dir) or {})["components"]["agent"]["restarts"] == 1,
            "agent restarted",
        )
        second = (read_node_status(cfg.run_dir) or {})["components"]["agent"]["pid"]
        assert second != first and second is not None
    finally:
        stop.set()
        thread.join(15)
    assert result == [0]
    final = read_node_status(cfg.run_dir)
    assert final is not None and final["stopping"] is True and final["ready"] is False
    assert final["components"]["agent"]["running"] is False
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)


def test_service_exits_1_when_no_address_can_be_found(tmp_path: Path) -> None:
    cfg = NodeConfig(
        hostname="n1",
        run_dir=str(tmp_path / "run"),
        ip="autodetect",
        ip_method="cidr=198.18.255.0/24",
        run_bgp=False,
        run_agent=False,
    )
    assert NodeService(cfg, MemoryDatastore()).run(threading.Event()) == 1


def test_ipv6_asked_of_a_kernel_without_it_registers_ipv4_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`--ip6 autodetect` on a host whose kernel has no IPv6: the node registers its IPv4 address
    (and removes a stale IPv6 one) instead of failing, and says why once."""
    from tortie.node import service as service_module

    monkeypatch.setattr(service_module, "ipv6_absence", lambda: "the kernel has no IPv6 (test)")
    cfg = NodeConfig(hostname="n1", run_dir=str(tmp_path / "run"), ip="10.0.0.5/24", ip6="autodetect")
    caplog.set_level("WARNING", logger="tortie.node.service")
    want = NodeService(cfg, MemoryDatastore()).addresses()
    assert want.ipv4 == ipaddress.ip_interface("10.0.0.5/24") and want.ipv6 == "remove"
    said = [r.getMessage() for r in caplog.records if "IPv6 is off" in r.getMessage()]
    assert len(said) == 1 and "the kernel has no IPv6 (test)" in said[0] and "IPv4 only" in said[0]
    monkeypatch.setattr(service_module, "ipv6_absence", lambda: None)
    with pytest.raises(UserError):  # with IPv6 in the kernel, nothing found is still an error
        NodeService(replace(cfg, ip6_method="cidr=2001:db8:ffff::/48"), MemoryDatastore()).addresses()


def test_restart_stops_a_live_component_and_counts_it_like_a_crash() -> None:
    clock, log = Clock(), []
    agent = FakeComponent("agent", log)
    sup = Supervisor([agent], initial=0.5, clock=clock)
    sup.step()
    sup.restart("agent", "not live")
    assert log == ["start agent", "stop agent"] and sup.status()["agent"]["running"] is False
    sup.step()
    assert sup.status()["agent"]["running"] is False  # the backoff applies
    clock.now += 0.5
    sup.step()
    assert log[-1] == "start agent" and sup.status()["agent"]["restarts"] == 1


def _unlive_agent(tmp_path: Path) -> str:
    """An 'interpreter' standing in for an agent whose calc thread hangs: it serves /readiness with
    503 and a component that is not live, on the port the node service gave it."""
    import sys

    script = tmp_path / "unlive-agent"
    script.write_text(f"""#!{sys.executable}
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        calc = {{"live": False, "detail": "hung"}}
        body = json.dumps({{"ok": False, "components": {{"calc": calc}}}}).encode()
        self.send_response(503); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(os.environ["TORTIE_HEALTH_PORT"])), H).serve_forever()
""")
    script.chmod(0o755)
    return str(script)


def test_an_agent_that_is_not_live_is_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from tortie.node import service as service_module

    monkeypatch.setattr(service_module, "AGENT_LIVENESS_GRACE", 1.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = NodeConfig(hostname="n1", run_dir=str(tmp_path / "run"), ip="10.9.0.7/24", run_bgp=False,
                     agent_health_port=port, python=_unlive_agent(tmp_path), restart_initial=0.05)
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(NodeService(cfg, MemoryDatastore()).run(stop)))
    thread.start()
    try:
        _wait(lambda: ((read_node_status(cfg.run_dir) or {}).get("components", {}).get("agent", {})
                       .get("restarts") or 0) >= 1, "the unlive agent restarted", timeout=20)
        status = read_node_status(cfg.run_dir) or {}
        assert status["ready"] is False
    finally:
        stop.set()
        thread.join(15)
    assert result == [0]
