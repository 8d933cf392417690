"""Benchmark: the agent's start-up and per-endpoint latency at scale (issue 4's targets).

Scenario: one host network namespace with 250 workload interfaces (veth pairs named tort<11 hex>),
a sqlite datastore holding 250 WorkloadEndpoints of this host, 20,000 of other hosts and this host's
IPAM blocks; `tortie agent run` as a real process inside the namespace. Measured:

* start -> in sync and programmed: from launching the process until all 250 /32 routes and the
  block blackholes are in the namespace's kernel (includes interpreter start-up);
* one endpoint add -> kernel: the datastore write returns -> the route appears (`ip monitor route`),
  over 100 adds (interface created beforehand), p50 and p99;
* the agent's resident memory (VmRSS) after the adds, and the CPU time it used up to then;
* the load average before and after (the figures depend on what else the machine is doing).

Each target is printed beside the measured figure. Needs root. Run:

    .venv/bin/python bench/agent_routes.py [--local 250] [--remote 20000] [--adds 100] [--no-policy]
                                           [--ip-family ipv4|dual] [--rounds N]

`--no-policy` runs the agent with `policy_enabled=false` (routing only: remote endpoints are then
recognised from their raw `spec.node` and never parsed); by default policy is on, as in production.

`--ip-family dual` gives every endpoint an IPv4 /32 and an IPv6 /128 and the host IPAM blocks of
both families (/26 and /122), so the agent programs twice the routes; an add counts when both of
its routes are in the kernel. It first runs the IPv4-only scenario as the same-run baseline and
prints each dual-stack figure beside it, with its ratio and the target (at most 1.3x IPv4).
`--rounds N` alternates the two N times and compares the medians (a shared machine's load moves
between runs; alternating exposes both to it alike).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tortie.common.ipfamily import V4, V6, Family, family_of
from tortie.datastore.api import TxnOp
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam import keys as ipam_keys
from tortie.model.kinds import kind_info
from tortie.testing.netns import ip, throwaway_netns

HOST = "bench-host"
POOLS = {V4: ipaddress.ip_network("10.96.0.0/12"), V6: ipaddress.ip_network("fd00:96::/104")}
TARGETS = {"in_sync": 3.0, "add_p99_ms": 20.0, "rss_mb": 150.0}
DUAL_TARGET = 1.3  # dual stack within 1.3x of IPv4 only
FAMILIES = {"ipv4": (V4,), "dual": (V4, V6)}


def wep(name: str, node: str, addrs: list[str], iface: str) -> tuple[str, dict[str, Any]]:
    nets = [family_of(a).host_cidr(a) for a in addrs]
    value = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
             "metadata": {"name": name, "namespace": "bench", "labels": {"app": "bench"}},
             "spec": {"orchestrator": "cni", "workload": name, "endpoint": "eth0", "node": node,
                      "ipNetworks": nets, "interfaceName": iface}}
    return kind_info("WorkloadEndpoint").key(name, "bench"), value


def local_addrs(i: int, families: tuple[Family, ...]) -> list[str]:
    """Inside the host's blocks (10.96.0.0/26, fd00:96::/122, ...): one address per family."""
    return [str(POOLS[f].network_address + i + 1) for f in families]


def remote_addrs(i: int, families: tuple[Family, ...]) -> list[str]:
    return [str(POOLS[f].network_address + 65536 + i) for f in families]


def iface(i: int) -> str:
    return f"tort{i:011x}"


def populate(ds: SqliteDatastore, local: int, remote: int, families: tuple[Family, ...]) -> None:
    ops: list[TxnOp] = []

    def flush() -> None:
        if ops:
            ds.commit(ops)
            ops.clear()

    for i in range(local):
        key, value = wep(f"local-{i}", HOST, local_addrs(i, families), iface(i))
        ops.append(TxnOp("put", key, value))
        if len(ops) >= 500:
            flush()
    for i in range(remote):
        key, value = wep(f"remote-{i}", f"other-{i % 100}", remote_addrs(i, families), iface(i))
        ops.append(TxnOp("put", key, value))
        if len(ops) >= 500:
            flush()
    blocks = range(0, local + 1, 64)
    for fam in families:
        for start in blocks:
            net = ipaddress.ip_network(f"{POOLS[fam].network_address + start}/{fam.default_block_size}")
            ops.append(TxnOp("put", ipam_keys.block_key(net), {"cidr": str(net), "affinity": f"host:{HOST}",
                                                              "allocations": [], "unallocated": [],
                                                              "attributes": []}))
            ops.append(TxnOp("put", ipam_keys.affinity_key(HOST, net), {"state": "confirmed"}))
    flush()


def make_interfaces(ns: str, first: int, count: int) -> None:
    batch = "".join(f"link add {iface(i)} type veth peer name bp{i:011x}\n"
                    f"link set {iface(i)} up\nlink set bp{i:011x} up\n" for i in range(first, first + count))
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True, timeout=120)


def our_routes(ns: str, families: tuple[Family, ...]) -> set[str]:
    """Destinations of our routes as `ip route` prints them (a /32 or /128 without its prefix length)."""
    out = "".join(ip("-n", ns, f.ip_flag, "route", "show", "proto", "77").stdout for f in families)
    return {line.split()[1] if line.startswith("blackhole") else line.split()[0] for line in out.splitlines()}


class RouteMonitor:
    """`ip monitor route` in the namespace; records when each destination first appears."""

    def __init__(self, ns: str) -> None:
        self._proc = subprocess.Popen(["ip", "-n", ns, "monitor", "route"], stdout=subprocess.PIPE, text=True)
        self.events: queue.SimpleQueue[tuple[float, str]] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if not line.startswith("Deleted"):
                self.events.put((time.monotonic(), line.split()[0] if line.strip() else ""))

    def wait_for(self, dsts: list[str], timeout: float = 5.0) -> float:
        """When the last of `dsts` appeared."""
        deadline = time.monotonic() + timeout
        pending = set(dsts)
        while True:
            at, seen = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            pending.discard(seen)
            if not pending:
                return at

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (the agent runs under `ip netns exec`, which execs it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def agent_process(ns: str, db: Path, workdir: Path, policy: bool) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "TORTIE_LOG_SEVERITY_SCREEN": "Info", "TORTIE_REPORTING_INTERVAL": "0",
           "TORTIE_POLICY_ENABLED": "true" if policy else "false",
           "TORTIE_FLOW_LOGS_DIR": str(workdir / "flows")}
    log = (workdir / "agent.log").open("wb")
    tortie = str(Path(sys.executable).parent / "tortie")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, tortie, "agent", "run", "--hostname", HOST,
                             "--datastore", f"sqlite://{db}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local", type=int, default=250)
    parser.add_argument("--remote", type=int, default=20000)
    parser.add_argument("--adds", type=int, default=100)
    parser.add_argument("--no-policy", dest="policy", action="store_false",
                        help="run the agent with policy_enabled=false (routing only)")
    parser.add_argument("--ip-family", choices=tuple(FAMILIES), default="ipv4",
                        help="dual: dual-stack endpoints, measured beside an IPv4-only baseline run")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the runs N times (medians)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    modes = ["ipv4", "dual"] if args.ip_family == "dual" else ["ipv4"]
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for round_ in range(args.rounds):
        for mode in modes:
            print(f"== {mode} (round {round_ + 1} of {args.rounds})")
            workdir = Path(tempfile.mkdtemp(prefix="tortie-bench-agent-"))
            try:
                with throwaway_netns("bagent") as ns:
                    got = run(ns, workdir, args.local, args.remote, args.adds, args.policy, FAMILIES[mode])
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            if got is None:
                return 1
            results[mode].append(got)
    if "dual" in results:
        compare(medians(results["ipv4"]), medians(results["dual"]))
    return 0


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


MEASURES = (  # (key, name, target)
    ("in_sync", "start -> in sync and programmed (s)", f"<= {TARGETS['in_sync']}"),
    ("p50", "endpoint add -> kernel p50 (ms)", ""),
    ("p99", "endpoint add -> kernel p99 (ms)", f"<= {TARGETS['add_p99_ms']}"),
    ("rss", "agent RSS (MB)", f"<= {TARGETS['rss_mb']}"),
    ("cpu", "agent CPU time, start to end of adds (s)", ""),
)


def compare(ipv4: dict[str, float], dual: dict[str, float]) -> None:
    print(f"dual stack beside IPv4 only (same run, medians; target: at most {DUAL_TARGET}x); load average "
          f"now {load_average()}")
    print(f"{'measure':<42} {'IPv4':>9} {'dual':>9} {'ratio':>7}  verdict")
    for key, name, _target in MEASURES:
        ratio = dual[key] / ipv4[key] if ipv4[key] else float("inf")
        verdict = "ok" if ratio <= DUAL_TARGET else f"MISSED by {ratio / DUAL_TARGET:.2f}x"
        print(f"{name:<42} {ipv4[key]:>9.2f} {dual[key]:>9.2f} {ratio:>6.2f}x  {verdict}")


def run(ns: str, workdir: Path, local: int, remote: int, adds: int, policy: bool,
        families: tuple[Family, ...]) -> dict[str, float] | None:
    db = workdir / "datastore.db"
    ds = SqliteDatastore(db)
    t0 = time.monotonic()
    populate(ds, local, remote, families)
    make_interfaces(ns, 0, local + adds)
    print(f"setup: {local} local + {remote} remote endpoints ({'/'.join(f.name for f in families)}), "
          f"{local + adds} interfaces in {time.monotonic() - t0:.1f}s")
    wanted = {a for i in range(local) for a in local_addrs(i, families)}
    load_before = load_average()
    monitor = RouteMonitor(ns)
    with agent_process(ns, db, workdir, policy) as proc:
        started = time.monotonic()
        while not wanted <= our_routes(ns, families):
            if proc.poll() is not None:
                print((workdir / "agent.log").read_text(), file=sys.stderr)
                return None
            time.sleep(0.02)
        in_sync = time.monotonic() - started
        time.sleep(0.5)
        latencies: list[float] = []
        for n in range(adds):
            i = local + n
            key, value = wep(f"added-{n}", HOST, local_addrs(i, families), iface(i))
            ds.put(key, value)
            written = time.monotonic()
            seen = monitor.wait_for(local_addrs(i, families))
            latencies.append((seen - written) * 1000)
            time.sleep(0.01)
        rss = rss_mb(proc.pid)
        cpu = cpu_seconds(proc.pid)
        if os.environ.get("BENCH_SHOW_LOG"):
            print((workdir / "agent.log").read_text()[-6000:])
    monitor.close()
    ds.close()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    got = {"in_sync": in_sync, "p50": p50, "p99": p99, "rss": rss, "cpu": cpu}
    print(f"policy {'on' if policy else 'off'}; load average (1/5/15 min) before: {load_before}, "
          f"after: {load_average()}")
    print(f"{'measure':<42} {'target':>10} {'measured':>10}")
    for key, name, target in MEASURES:
        print(f"{name:<42} {target:>10} {got[key]:>10.2f}")
    return got


if __name__ == "__main__":
    sys.exit(main())
