"""Faults of a host's node service, injected with `tortie lab kill|restart|partition|heal` on one
3-host lab (sqlite, one workload per host), under a 100 Hz ping and a 10 ms TCP sequence stream from
w1-1 (h1) to w2-1 (h2). Each test prints what it measured and leaves the lab ready for the next.

    agent SIGKILL (h2)          the node service restarts it: 0 pings and 0 TCP segments lost
    planned restart (h2)        node service, agent and BIRD (BIRD stops for a graceful restart): 0 lost
    BIRD SIGKILL (h2)           the BGP daemon restarts it; the peers' graceful restart keeps h2's
                                routes: the loss window is bounded by the restart time (20 s in labs)
    node service killed by hand `tortie lab status` says so (agent and BIRD gone with it, not what
                                node.json last said); `tortie lab restart` brings the host back
    partition / heal (h3)       h3's routes withdrawn from h1 and h2 on their hold timers and restored
                                on heal, h1 <-> h2 untouched throughout, status telling the truth
                                on both sides, no route left over afterwards
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fault_helpers import ModuleLab, host_status, lab_cli

from tortie.bgp.view import Timers
from tortie.lab.datacenter import Datacenter
from tortie.testing.streams import StreamResult, Streams

pytestmark = pytest.mark.root

RESTART_TIME = Timers.fast().graceful_restart_time or 0


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.1)


def measured(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """What a test measured, on the terminal even when output is captured."""
    with capsys.disabled():
        print(f"\n[faults] {line}")


@pytest.fixture(scope="module")
def dc(module_lab: ModuleLab) -> Iterator[Datacenter]:
    yield module_lab(hosts=3, workloads_per_host=1, ip_family="ipv4")


def under_streams(dc: Datacenter, fault: Callable[[], None], tcp: bool = True) -> StreamResult:
    """Run `fault` amid w1-1 -> w2-1 streams (1 s before, 2 s after it returned: over 200 pings even
    when the fault is over at once and ping keeps only ~60 of its 100 Hz) and stop them."""
    streams = Streams(dc, "w1-1", "w2-1", tcp=tcp)
    try:
        time.sleep(1.0)
        fault()
        time.sleep(2.0)
        return streams.stop()
    finally:
        streams.kill()


def test_agent_sigkill_loses_nothing(dc: Datacenter, capsys: pytest.CaptureFixture[str]) -> None:
    before = host_status(dc, "h2")["node"]["agent"]
    result: dict[str, object] = {}
    streams = under_streams(dc, lambda: result.update(lab_cli(dc, "kill", "h2", "agent")))
    measured(capsys, f"agent SIGKILL on h2: back in {result['seconds']} s; {streams.summary()}")
    assert result["pid"] == before["pid"] and result["newPid"] not in (None, before["pid"])
    assert streams.ping_sent > 200 and streams.lost == 0, streams.ping_output[-600:]
    assert streams.tcp_sent > 100 and streams.tcp_received == streams.tcp_sent, streams
    after = host_status(dc, "h2")["node"]["agent"]
    assert after["running"] and after["ready"] and after["pid"] == result["newPid"]
    assert after["restarts"] == (before["restarts"] or 0) + 1


def test_planned_restart_loses_nothing(dc: Datacenter, capsys: pytest.CaptureFixture[str]) -> None:
    before = host_status(dc, "h2")["node"]
    result: dict[str, object] = {}
    streams = under_streams(dc, lambda: result.update(lab_cli(dc, "restart", "h2")))
    measured(capsys, f"planned restart of h2's node service: ready again in {result['seconds']} s; "
                     f"{streams.summary()}")
    assert result["pid"] == before["pid"] and result["newPid"] not in (None, before["pid"])
    assert streams.ping_sent > 200 and streams.lost == 0, streams.ping_output[-600:]
    assert streams.tcp_sent > 100 and streams.tcp_received == streams.tcp_sent, streams
    after = host_status(dc, "h2")["node"]
    assert after["running"] and after["ready"] and after["pid"] == result["newPid"]
    assert after["agent"]["pid"] != before["agent"]["pid"]
    assert after["bgp"]["bird"]["pid"] != before["bgp"]["bird"]["pid"]


def test_bird_sigkill_loss_window_is_bounded(dc: Datacenter, capsys: pytest.CaptureFixture[str]) -> None:
    before = host_status(dc, "h2")["node"]["bgp"]["bird"]
    result: dict[str, object] = {}
    streams = under_streams(dc, lambda: result.update(lab_cli(dc, "kill", "h2", "bgp")), tcp=False)
    measured(capsys, f"BIRD SIGKILL on h2: back in {result['seconds']} s; {streams.summary()} "
                     f"(bound: the graceful restart time, {RESTART_TIME} s)")
    assert result["pid"] == before["pid"] and result["newPid"] not in (None, before["pid"])
    assert streams.ping_sent > 200, streams.ping_output[-600:]
    assert streams.window < RESTART_TIME, streams.summary()
    tail = range(streams.ping_sent - 50, streams.ping_sent)
    assert set(tail) <= set(streams.ping_seqs), f"no recovery: {streams.summary()}"
    after = host_status(dc, "h2")
    assert after["node"]["bgp"]["bird"]["pid"] == result["newPid"] and after["node"]["bgp"]["ready"]
    assert after["bgpSessions"] and all(s["established"] for s in after["bgpSessions"])


def test_status_tells_the_truth_after_a_kill_by_hand(dc: Datacenter,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal

    node = host_status(dc, "h2")["node"]
    os.kill(node["pid"], signal.SIGKILL)  # by hand, behind the lab's back: its node.json stays
    wait_for(lambda: not host_status(dc, "h2")["node"]["running"], "h2's node service reported stopped")
    now = host_status(dc, "h2")
    assert not now["node"]["ready"] and now["bgpSessions"] is None
    assert not now["node"]["agent"]["running"] and not now["node"]["bgp"]["bird"]["running"], now
    assert dc.nodes.status("h2")["pid"] == node["pid"]  # type: ignore[index]  # what it used to trust
    result = lab_cli(dc, "restart", "h2")
    measured(capsys, f"node service SIGKILLed by hand on h2, then `tortie lab restart h2`: ready in "
                     f"{result['seconds']} s")
    after = host_status(dc, "h2")
    assert after["node"]["running"] and after["node"]["ready"] and after["node"]["agent"]["ready"]
    assert dc.probe("w1-1", "w2-1", "icmp")


@pytest.mark.slow
def test_partition_and_heal(dc: Datacenter, capsys: pytest.CaptureFixture[str]) -> None:
    h3_block = {d for d, gw in dc.nodes.bird_routes("h1").items() if gw == dc.lab.host_ip("h3")}
    assert h3_block, dc.nodes.bird_routes("h1")
    routes_before = {h: dc.nodes.bird_routes(h) for h in ("h1", "h2")}
    h3_ip = dc.lab.host_ip("h3")
    streams = Streams(dc, "w1-1", "w2-1")
    try:
        time.sleep(0.5)
        started = time.monotonic()
        lab_cli(dc, "partition", "h3")
        wait_for(lambda: all(not h3_block & set(dc.nodes.bird_routes(h)) for h in ("h1", "h2")),
                 "h3's routes withdrawn from h1 and h2")
        withdrawn = time.monotonic() - started
        assert not dc.probe("w1-1", "w3-1", "icmp", timeout=1.0)
        h3 = host_status(dc, "h3")
        assert h3["fabric"] == "partitioned" and h3["node"]["running"] and h3["node"]["agent"]["running"]
        wait_for(lambda: not any(s["established"] for s in host_status(dc, "h3")["bgpSessions"] or [{}]),
                 "h3's own sessions down")
        h1 = host_status(dc, "h1")
        assert h1["fabric"] == "connected"
        assert {s["peer"]: s["established"] for s in h1["bgpSessions"]} == {
            dc.lab.host_ip("h2"): True, h3_ip: False}
        healed = lab_cli(dc, "heal", "h3")
        result = streams.stop()
    finally:
        streams.kill()
    measured(capsys, f"partition of h3: its routes withdrawn from h1 and h2 after {withdrawn:.1f} s "
                     f"(hold time {Timers.fast().hold_time} s); heal: ready again in {healed['seconds']} s; "
                     f"h1 -> h2 meanwhile: {result.summary()}")
    assert result.ping_sent > 500 and result.lost == 0, result.summary()
    assert result.tcp_sent > 500 and result.tcp_received == result.tcp_sent, result
    assert {h: dc.nodes.bird_routes(h) for h in ("h1", "h2")} == routes_before  # restored, no leftovers
    status = lab_cli(dc, "status")
    for host in status["hosts"]:
        assert host["fabric"] == "connected" and host["node"]["ready"], host
        assert host["bgpSessions"] and all(s["established"] for s in host["bgpSessions"]), host
    assert dc.probe("w1-1", "w3-1", "icmp") and dc.probe("w3-1", "w2-1", "icmp")
