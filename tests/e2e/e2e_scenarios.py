"""End-to-end scenarios on a lab datacenter, shared by the sqlite and etcd test files.

Each scenario takes a `make_lab` factory (tests/e2e/conftest.py) and a datastore kind; `Scenarios`
runs each as a test method, and a test file subclasses it with its `datastore` and `ip_family`
(labs are dual-stack unless a subclass says `ipv6` or `ipv4`). With `datastore="etcd"` the lab runs
a 3-member etcd cluster on its fabric and every scenario SIGKILLs one member in the middle;
everything must keep working on the remaining two. Checks that concern addresses run in every
family of the lab; streams and single probes use each workload's first address.

    cross_host_reachability   BGP-learned routes on every host, per family; full matrices (tcp, icmp,
                              udp) per family; the ToR's RIB (gobgpd on sqlite, FRR on etcd) holding
                              every block of every family; a workload added after the member loss is
                              routed and reachable
    policy_across_hosts       examples/ default deny + allow by label enforced between hosts, in every
                              family; removing the allow (after the member loss) denies again
    agent_restart             ping and TCP streams across hosts while both agents are stopped (one
                              SIGTERM, one SIGKILL) and restarted by their node service: no loss
    bird_kill                 BIRD SIGKILLed under a ping stream: restarted, sessions and routes back,
                              traffic flows again, new routes propagate
    host_down                 a host's node service stopped and its link cut: its routes vanish from
                              the other hosts and the ToR; back up, they return
"""

from __future__ import annotations

import functools
import ipaddress
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tortie.common.ipfamily import family_of
from tortie.datastore.resources import ResourceStore
from tortie.lab.datacenter import Datacenter
from tortie.lab.etcd_members import kill_member
from tortie.lab.routers import rib_prefixes
from tortie.model import parse_resource
from tortie.testing.streams import Streams

REPO = Path(__file__).resolve().parents[2]
MakeLab = Callable[..., Datacenter]


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def set_endpoint_field(dc: Datacenter, workload: str, name: str, value: Any) -> None:
    """Set (or with a falsy `value`, remove) spec.<name> of a CNI workload's WorkloadEndpoint."""
    record = dc.lab.state.workloads[workload]
    ds = dc.datastore()
    try:
        store = ResourceStore(ds)
        wire = store.get("WorkloadEndpoint", record.endpoint, record.namespace or "default").to_wire()
        if value:
            wire["spec"][name] = value
        else:
            wire["spec"].pop(name, None)
        store.update(parse_resource(wire, source="test"))
    finally:
        ds.close()


def eventually_allowed(
    dc: Datacenter, src: str, dst: str, protocol: str = "tcp", timeout: float = 45.0
) -> None:
    """A new workload's policy is programmed by its agent asynchronously (fail closed until then): probe
    until allowed. The bound covers an etcd watch that stays silent until the client's 30 s idle
    reconnect after a member was killed (see cross_host_reachability); it usually takes about a second."""
    wait_for(
        lambda: dc.probe(src, dst, protocol, timeout=1.0), f"{src} -> {dst} ({protocol}) allowed", timeout
    )


def kill_member_if_etcd(dc: Datacenter, datastore: str, member: str = "e1") -> None:
    if datastore == "etcd":
        pid = kill_member(dc.lab, member)
        assert not dc.lab.process_running(pid)


def block_of(dc: Datacenter, observer: str, workload: str, index: int = 0) -> str | None:
    """The BGP route `observer` uses for `workload`'s address #`index` (its host's block), if any."""
    ip = ipaddress.ip_address(dc.lab.workload(workload).ips[index])
    nets = [ipaddress.ip_network(d) for d in dc.nodes.bird_routes(observer, family_of(ip))]
    best = max((n for n in nets if ip in n), key=lambda n: n.prefixlen, default=None)
    return str(best) if best is not None else None


# -- scenarios ------------------------------------------------------------------------------------


def cross_host_reachability(make_lab: MakeLab, datastore: str) -> None:
    tor = "gobgp" if datastore == "sqlite" else "frr"
    dc = make_lab(hosts=3, workloads_per_host=2, datastore=datastore, tor=tor)
    lab = dc.lab
    families = lab.state.families
    blocks: dict[tuple[str, str], set[str]] = {}
    for host in dc.hosts:
        for observer in dc.hosts:
            if observer == host:
                continue
            for wl in (w for w in lab.state.workloads.values() if w.host == host):
                assert len(wl.ips) == len(families), (wl.name, wl.ips)  # one address per family
                for index, fam in enumerate(families):
                    block = block_of(dc, observer, wl.name, index)
                    assert block is not None, f"{observer} has no {fam} BGP route to {wl.name}"
                    routes = dc.nodes.bird_routes(observer, fam)
                    assert routes[block] == lab.host_ip(host, fam), (observer, wl.name, routes)
                    blocks.setdefault((host, fam.name), set()).add(block)
    assert all(len(b) == 1 for b in blocks.values()), blocks  # one aggregate per host, not /32s
    for fam in families:
        local = lab.exec("h1", ["ip", fam.ip_flag, "route", "show", "proto", "77"]).stdout
        for wl in (w for w in lab.state.workloads.values() if w.host == "h1"):
            assert f"{wl.ip(fam)} dev {wl.host_ifname}" in local, local
    every_block = set().union(*blocks.values())
    wait_for(
        lambda: rib_prefixes(lab, lab.state.appliances["tor"]) >= every_block, "the ToR learning every block"
    )

    for fam in families:
        for protocol in ("tcp", "icmp"):
            matrix = dc.matrix(protocol, family=fam)
            denied = [(s, d) for s, row in matrix.items() for d, ok in row.items() if not ok]
            assert not denied, (fam, protocol, denied)
        assert dc.probe("w1-1", "w3-2", "udp", 5353, family=fam)
        unused = str(ipaddress.ip_network(next(p for p in dc.record.pools if family_of(p) == fam))[-2])
        assert not dc.probe("w1-1", unused, "tcp", timeout=0.5)  # in the pool, but nobody's

    kill_member_if_etcd(dc, datastore)
    dc.workloads.add("late", "h3", labels={"app": "late"})
    dc.wait_ready(timeout=30)
    # After a member is SIGKILLed, one of an agent's etcd watch streams can stay silent until the etcd
    # client's idle reconnect (30 s) under load, delaying the new endpoint's policy on its host; the
    # default bound of eventually_allowed covers that (a datastore issue, reported).
    eventually_allowed(dc, "w1-1", "late")
    eventually_allowed(dc, "late", "w2-2", "icmp")
    ds = dc.datastore()
    try:
        from tortie.datastore.resources import ResourceStore

        names = {r.metadata.name for r in ResourceStore(ds).list("WorkloadEndpoint")}
    finally:
        ds.close()
    assert "h3-cni-late-eth0" in names and len(names) == 7


def policy_across_hosts(make_lab: MakeLab, datastore: str) -> None:
    from tortie.datastore.resources import ResourceStore
    from tortie.model import load_resources

    dc = make_lab(hosts=3, datastore=datastore)
    dc.workloads.add("web-1", "h1", labels={"app": "web"}, namespace="shop")
    dc.workloads.add("frontend-2", "h2", labels={"role": "frontend"}, namespace="shop")
    dc.workloads.add("db-3", "h3", labels={"app": "db"}, namespace="shop")
    dc.workloads.add("outsider-3", "h3", labels={"role": "frontend"}, namespace="default")
    dc.wait_ready(timeout=30)
    names = ["web-1", "frontend-2", "db-3", "outsider-3"]
    wait_for(
        lambda: all(all(row.values()) for row in dc.matrix(workloads=names, timeout=1.0).values()),
        "every pair allowed before any policy (new endpoints are programmed asynchronously)",
    )

    ds = dc.datastore()
    try:
        store = ResourceStore(ds)
        text = (
            (REPO / "examples" / "tiers.yaml").read_text()
            + "\n---\n"
            + (REPO / "examples" / "policies.yaml").read_text()
        )
        store.apply_all(load_resources(text, source="examples"))
        expected = {(s, d, fam.name) for s, d in [("frontend-2", "web-1")] for fam in dc.lab.state.families}

        def allowed_pairs() -> set[tuple[str, str, str]]:
            out = set()
            for fam in dc.lab.state.families:
                matrix = dc.matrix(workloads=names, timeout=1.0, family=fam)
                out |= {(s, d, fam.name) for s, row in matrix.items() for d, ok in row.items() if ok}
            return out

        wait_for(lambda: allowed_pairs() == expected, f"only {expected} allowed on tcp/80", timeout=30)
        for fam in dc.lab.state.families:
            assert dc.probe("frontend-2", "web-1", "icmp", family=fam)
            assert not dc.probe("outsider-3", "web-1", "icmp", timeout=1.0, family=fam)  # other namespace
            assert not dc.probe("frontend-2", "web-1", "tcp", port=22, timeout=1.0, family=fam)

        kill_member_if_etcd(dc, datastore)
        store.delete("NetworkPolicy", "allow-frontend-egress-to-web", "shop")
        wait_for(
            lambda: allowed_pairs() == set(), "nothing allowed once the egress allow is gone", timeout=45
        )
    finally:
        ds.close()


def _agent_pid(dc: Datacenter, host: str) -> int:
    status = dc.nodes.status(host)
    assert status is not None
    pid = status["components"]["agent"]["pid"]
    assert isinstance(pid, int)
    return pid


def agent_restart(make_lab: MakeLab, datastore: str) -> None:
    dc = make_lab(hosts=2, workloads_per_host=1, datastore=datastore)
    old = {h: _agent_pid(dc, h) for h in dc.hosts}
    streams = Streams(dc, "w1-1", "w2-1")
    try:
        time.sleep(1.0)
        kill_member_if_etcd(dc, datastore)
        os.kill(old["h1"], signal.SIGTERM)  # a clean stop
        os.kill(old["h2"], signal.SIGKILL)  # a crash

        def restarted(host: str) -> bool:
            status = dc.nodes.status(host) or {}
            agent = status.get("components", {}).get("agent", {})
            return agent.get("pid") not in (None, old[host]) and agent.get("ready") is True

        wait_for(lambda: all(restarted(h) for h in dc.hosts), "both agents restarted and ready")
        time.sleep(1.0)
        result = streams.stop()
    finally:
        streams.kill()
    assert result.ping_sent > 100 and result.ping_received == result.ping_sent, result.ping_output[-600:]
    assert result.tcp_sent > 100 and result.tcp_received == result.tcp_sent, result
    for host in dc.hosts:
        status = dc.nodes.status(host) or {}
        assert status["components"]["agent"]["restarts"] == 1 and status["ready"] is True


def bird_kill(make_lab: MakeLab, datastore: str) -> None:
    dc = make_lab(hosts=3, workloads_per_host=1, datastore=datastore, tor="gobgp")
    status = dc.nodes.status("h2") or {}
    bird = status["components"]["bgp"]["bird"]
    assert bird["running"] and isinstance(bird["pid"], int)
    streams = Streams(dc, "w1-1", "w2-1", tcp=False)
    try:
        time.sleep(0.5)
        kill_member_if_etcd(dc, datastore, "e2")
        os.kill(bird["pid"], signal.SIGKILL)

        def bird_back() -> bool:
            now = (dc.nodes.status("h2") or {}).get("components", {}).get("bgp", {}).get("bird") or {}
            return bool(now.get("running")) and now.get("pid") != bird["pid"] and now.get("restarts", 0) >= 1

        wait_for(bird_back, "BIRD restarted on h2")
        dc.wait_ready(timeout=30)
        time.sleep(1.0)
        result = streams.stop()
    finally:
        streams.kill()
    seqs = result.ping_seqs
    assert seqs and result.ping_sent > 100, result.ping_output[-600:]
    tail = range(result.ping_sent - 50, result.ping_sent)
    assert set(tail) <= set(seqs), f"no recovery: lost {sorted(set(tail) - set(seqs))}"
    dc.workloads.add("after", "h2")
    dc.wait_ready(timeout=30)
    eventually_allowed(dc, "w1-1", "after")
    eventually_allowed(dc, "w3-1", "after", "icmp")


def host_down(make_lab: MakeLab, datastore: str) -> None:
    dc = make_lab(hosts=3, workloads_per_host=1, datastore=datastore, tor="gobgp")
    lab = dc.lab
    tor = lab.state.appliances["tor"]
    block = block_of(dc, "h1", "w3-1")
    assert block is not None and block == block_of(dc, "h2", "w3-1")
    wait_for(lambda: block in rib_prefixes(lab, tor), "the ToR learning h3's block")
    kill_member_if_etcd(dc, datastore, "e3")

    dc.nodes.take_down("h3")
    # The hosts' BIRDs withdraw on their hold timer (9 s in labs); the ToR, a graceful restart helper,
    # keeps the routes of a session that timed out for the restart time h3 announced (20 s in labs).
    wait_for(
        lambda: block_of(dc, "h1", "w3-1") is None and block_of(dc, "h2", "w3-1") is None,
        "h3's routes withdrawn from h1 and h2",
    )
    wait_for(lambda: block not in rib_prefixes(lab, tor), "h3's block withdrawn from the ToR", timeout=60)
    assert not dc.probe("w1-1", "w3-1", timeout=1.0)
    assert dc.probe("w1-1", "w2-1") and dc.probe("w2-1", "w1-1", "icmp")
    h3 = {a.split("/")[0] for a in lab.state.hosts["h3"].addresses}
    assert (dc.nodes.bgp_peers("h1") or []) and all(
        p["established"] is (p["peerAddress"] not in h3) for p in dc.nodes.bgp_peers("h1") or []
    )

    dc.nodes.bring_up("h3")
    dc.wait_ready(timeout=40)
    assert block_of(dc, "h1", "w3-1") == block
    eventually_allowed(dc, "w1-1", "w3-1")


class Scenarios:
    """The scenarios above as test methods (see the module docstring)."""

    datastore = ""
    ip_family = "dual"

    def _labs(self, make_lab: MakeLab) -> MakeLab:
        return functools.partial(make_lab, ip_family=self.ip_family)

    def test_cross_host_reachability_over_bgp(self, make_lab: MakeLab) -> None:
        cross_host_reachability(self._labs(make_lab), self.datastore)

    def test_policy_across_hosts(self, make_lab: MakeLab) -> None:
        policy_across_hosts(self._labs(make_lab), self.datastore)

    def test_agent_restart_loses_nothing(self, make_lab: MakeLab) -> None:
        agent_restart(self._labs(make_lab), self.datastore)

    def test_bird_kill_recovers(self, make_lab: MakeLab) -> None:
        bird_kill(self._labs(make_lab), self.datastore)

    def test_host_down_withdraws_its_routes(self, make_lab: MakeLab) -> None:
        host_down(self._labs(make_lab), self.datastore)
