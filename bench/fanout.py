"""Watch fan-out at datacenter scale: simulated agents against a 3-member etcd, directly and through
`etcd grpc-proxy`.

Every simulated agent is the real client code — an `EtcdDatastore` of its own (own connection) with a
watch on the workload-endpoint prefix, consumed by its own thread — without a dataplane. Many agents
share a worker process; several worker processes run at once. The parent writes WorkloadEndpoint-sized
values (~600 bytes) at a steady `--rate` (default 50 changes per second) for `--seconds`; each value
carries its send time, so each agent measures delivery latency (write sent -> event in its hands).

Modes (same run, same cluster):
  direct   every agent watches an etcd member through its JSON gateway (what agents do today; agents
           spread over the 3 members) — the baseline;
  proxy    every agent watches over gRPC through one `etcd grpc-proxy` (which holds one watch on the
           cluster for all of them).

Printed per mode and watcher count: delivery latency p50/p99 over every (event, agent) pair, events
delivered / expected, etcd members' CPU (cores, sum of the 3) and largest RSS, the proxy's CPU and RSS,
bytes written by members and proxy (/proc/PID/io wchar: socket writes, i.e. what they sent), and the
CPU the simulated agents themselves used (on a real cluster that is spread over the hosts; here it
shares the machine's cores with etcd and the proxy), the threads and file descriptors each simulated
agent holds, and the time until every agent was watching. Load average beside the figures.

The run is bounded: deliveries arriving within `--drain` seconds after the window still count with
their latency; the rest count as never delivered (p99 shows 60000 when more than 1 % are missing), and
the writer's achieved rate is printed when it fell behind. A machine cannot carry every case at full
rate (5,000 watchers x 50 changes/s are 250,000 deliveries/s to decode): `--max-deliveries N` lowers
the rate of the cases above N deliveries per second, and the rate used is printed beside each case.

Targets: p99 delivery <= 1 s at 5,000 watchers through the proxy; etcd members' CPU growing
sub-linearly with the number of watchers.

    .venv/bin/python bench/fanout.py [--quick] [--watchers 100,1000,5000] [--modes direct,proxy]
                                     [--rate 50] [--seconds 20] [--processes 4] [--drain 15]
                                     [--max-deliveries N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from tortie.datastore.etcd import EtcdDatastore
from tortie.testing.etcd_cluster import EtcdCluster, GrpcProxy

PREFIX = "/calico/resources/v3/projectcalico.org/workloadendpoints/fanout/"
HELLO = PREFIX + "hello"
KEYS = 200  # the changes cycle over this many endpoints
PAD = "x" * 420  # brings a value to about the size of a WorkloadEndpoint

# A worker process: N agents, each an EtcdDatastore with one watch and one consumer thread.
_WORKER = textwrap.dedent(
    """
    import json, resource, sys, threading, time
    from tortie.datastore.etcd import EtcdDatastore
    cfg = json.loads(sys.argv[1])
    buckets = [0] * 60001  # latency histogram, 1 ms buckets, last one = overflow
    lock = threading.Lock()
    received = [0]
    counts = [0] * cfg["agents"]  # per agent, written by its consumer only: readable at any time
    heard = [0] * cfg["agents"]  # the agent has seen a barrier event
    stores, watches = [], []
    for i in range(cfg["agents"]):
        eps = cfg["endpoints"][i % len(cfg["endpoints"]):] + cfg["endpoints"][:i % len(cfg["endpoints"])]
        ds = EtcdDatastore(eps, timeout=30.0, watch_endpoints=cfg["watch_endpoints"])
        stores.append(ds)
        watches.append(ds.watch(cfg["prefix"], cfg["after"]))
    def consume(i, w):
        local = []
        for ev in w:
            if ev.key == cfg["hello"]:
                heard[i] = 1
                continue
            t = ev.value.get("t")
            if t is None or ev.value.get("seq", -1) < 0:
                continue
            local.append(time.time() - t)
            counts[i] += 1
            if len(local) >= 64:
                with lock:
                    for x in local:
                        buckets[min(int(x * 1000), 60000)] += 1
                    received[0] += len(local)
                local.clear()
        with lock:
            for x in local:
                buckets[min(int(x * 1000), 60000)] += 1
            received[0] += len(local)
    threads = [threading.Thread(target=consume, args=(i, w), daemon=True) for i, w in enumerate(watches)]
    for t in threads:
        t.start()
    print("started", flush=True)
    for line in sys.stdin:
        if line.strip() == "hello?":
            print(f"hello {sum(heard)}", flush=True)
        elif line.strip() == "count?":
            print(f"count {sum(counts)}", flush=True)
        elif line.strip() == "stop":
            break
    for w in watches:
        w.close()
    for t in threads:
        t.join(5)
    for ds in stores:
        ds.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with lock:
        print("result " + json.dumps({"buckets": {i: n for i, n in enumerate(buckets) if n},
                                      "received": received[0], "cpu": ru.ru_utime + ru.ru_stime}), flush=True)
    """
)


def _proc_stat(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes, bytes written incl. sockets) of a process."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    wchar = 0
    with open(f"/proc/{pid}/io") as fh:
        for line in fh:
            if line.startswith("wchar:"):
                wchar = int(line.split()[1])
    return cpu, rss, wchar


def _value(seq: int) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint", "seq": seq, "t": time.time(),
            "spec": {"node": f"host-{seq % 5000}", "ipNetworks": [f"10.{seq % 200}.0.{seq % 250}/32"],
                     "pad": PAD}}


def _percentile(buckets: dict[int, int], q: float) -> float:
    total = sum(buckets.values())
    if not total:
        return float("nan")
    want = q * total
    seen = 0
    for ms in sorted(buckets):
        seen += buckets[ms]
        if seen >= want:
            return float(ms)
    return float(max(buckets))


def _ask(workers: list[subprocess.Popen[str]], question: str) -> list[int]:
    """Ask every worker `question` ("hello?", "count?"); the integer of each one's answer."""
    answers = []
    for w in workers:
        assert w.stdin is not None and w.stdout is not None
        w.stdin.write(question + "\n")
        w.stdin.flush()
    for w in workers:
        assert w.stdout is not None
        answers.append(int(w.stdout.readline().split()[1]))
    return answers


def _threads_and_fds(pid: int) -> tuple[int, int]:
    threads = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def run_case(cluster: EtcdCluster, proxy: GrpcProxy | None, watchers: int, *, processes: int, rate: float,
             seconds: float, drain: float) -> dict[str, Any]:
    # A generous timeout: with thousands of agents on the machine etcd itself may answer slowly, and a
    # writer giving up would end the run instead of measuring it.
    writer = EtcdDatastore(cluster.client_endpoints, timeout=60.0)
    after = writer.current_revision()
    per = [watchers // processes + (1 if i < watchers % processes else 0) for i in range(processes)]
    workers = []
    for n in per:
        if not n:
            continue
        cfg = {"agents": n, "endpoints": cluster.client_endpoints, "prefix": PREFIX, "after": after,
               "hello": HELLO, "watch_endpoints": [proxy.target] if proxy else []}
        workers.append(subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(cfg)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "started"
        # barrier: every agent's watch delivers one event before the measurement starts
        started = time.monotonic()
        limit = max(120.0, watchers * 0.1)
        while True:
            writer.put(HELLO, {"t": time.time(), "seq": -1})
            time.sleep(1.0)
            heard = _ask(workers, "hello?")
            if sum(heard) == watchers:
                break
            if time.monotonic() - started > limit:
                raise RuntimeError(f"{sum(heard)} of {watchers} agents watching after {limit:.0f} s")
        setup_s = time.monotonic() - started
        footprint = [_threads_and_fds(w.pid) for w in workers]
        pids = [p for p in (cluster.pid(i) for i in range(3)) if p is not None]
        before = {pid: _proc_stat(pid) for pid in pids}
        proxy_before = _proc_stat(proxy.pid) if proxy and proxy.pid else None
        t0 = time.monotonic()
        sent = 0
        while True:
            due = t0 + sent / rate
            now = time.monotonic()
            if due - t0 >= seconds:
                break
            if due > now:
                time.sleep(due - now)
            writer.put(f"{PREFIX}wep-{sent % KEYS:04d}", _value(sent))
            sent += 1
        elapsed = time.monotonic() - t0
        time.sleep(1.0)
        after_stat = {pid: _proc_stat(pid) for pid in pids}
        proxy_after = _proc_stat(proxy.pid) if proxy and proxy.pid else None
        window = time.monotonic() - t0
        # Late deliveries still count (with their latency) for up to `drain` seconds; what has not
        # arrived by then is counted as never delivered (the overflow bucket: >= 60 s or never).
        drain_end = time.monotonic() + drain
        while sum(_ask(workers, "count?")) < sent * watchers and time.monotonic() < drain_end:
            time.sleep(0.5)
        buckets: dict[int, int] = {}
        received = 0
        client_cpu = 0.0
        for w in workers:
            assert w.stdin is not None and w.stdout is not None
            w.stdin.write("stop\n")
            w.stdin.flush()
            for line in w.stdout:
                if line.startswith("result "):
                    res = json.loads(line[7:])
                    for k, v in res["buckets"].items():
                        buckets[int(k)] = buckets.get(int(k), 0) + v
                    received += res["received"]
                    client_cpu += res["cpu"]
                    break
            w.wait(60)
        if received < sent * watchers:
            buckets[60000] = buckets.get(60000, 0) + sent * watchers - received
        member_cpu = sum(after_stat[p][0] - before[p][0] for p in pids) / window
        member_rss = max(after_stat[p][1] for p in pids)
        member_bytes = sum(after_stat[p][2] - before[p][2] for p in pids) / window
        out: dict[str, Any] = {
            "watchers": watchers, "changes": sent, "rate": round(sent / elapsed, 1),
            "p50_ms": _percentile(buckets, 0.5), "p99_ms": _percentile(buckets, 0.99),
            "delivered": received, "expected": sent * watchers,
            "etcd_cpu_cores": round(member_cpu, 3), "etcd_rss_mb": round(member_rss / 2**20, 1),
            "etcd_sent_mb_s": round(member_bytes / 2**20, 2), "agents_cpu_s": round(client_cpu, 1),
            "setup_s": round(setup_s, 1), "rate_asked": round(rate, 2),
            "threads_per_agent": round(sum(f[0] for f in footprint) / watchers, 2),
            "fds_per_agent": round(sum(f[1] for f in footprint) / watchers, 2),
        }
        if proxy_before is not None and proxy_after is not None:
            out["proxy_cpu_cores"] = round((proxy_after[0] - proxy_before[0]) / window, 3)
            out["proxy_rss_mb"] = round(proxy_after[1] / 2**20, 1)
            out["proxy_sent_mb_s"] = round((proxy_after[2] - proxy_before[2]) / window / 2**20, 2)
        return out
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (20 and 100 watchers, 4 s)")
    parser.add_argument("--watchers", default=None, help="comma-separated counts (default 100,1000,5000)")
    parser.add_argument("--modes", default="direct,proxy")
    parser.add_argument("--rate", type=float, default=50.0, help="workload changes per second")
    parser.add_argument("--seconds", type=float, default=None, help="measurement window per case")
    parser.add_argument("--processes", type=int, default=4, help="worker processes holding the agents")
    parser.add_argument("--max-deliveries", type=float, default=0.0,
                        help="cap watchers x rate at this many deliveries per second by lowering the rate "
                             "of the bigger cases (0: no cap); the rate used is printed beside each case")
    parser.add_argument("--drain", type=float, default=15.0,
                        help="seconds after the window during which late deliveries still count")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on the last line")
    args = parser.parse_args()
    counts = [int(x) for x in (args.watchers or ("20,100" if args.quick else "100,1000,5000")).split(",")]
    seconds = args.seconds or (4.0 if args.quick else 20.0)
    processes = 2 if args.quick else args.processes
    modes = args.modes.split(",")
    results: list[dict[str, Any]] = []
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    with EtcdCluster(members=3) as cluster:
        for watchers in counts:
            rate = args.rate
            if args.max_deliveries > 0:
                rate = min(rate, args.max_deliveries / watchers)
            for mode in modes:
                if mode == "proxy":
                    with GrpcProxy(cluster) as proxy:
                        res = run_case(cluster, proxy, watchers, processes=processes, rate=rate,
                                       seconds=seconds, drain=args.drain)
                else:
                    res = run_case(cluster, None, watchers, processes=processes, rate=rate,
                                   seconds=seconds, drain=args.drain)
                res["mode"] = mode
                res["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
                results.append(res)
                print(json.dumps(res), flush=True)
    print()
    head = (f"{'mode':<7} {'watchers':>8} {'p50 ms':>8} {'p99 ms':>8} {'delivered':>10} {'etcd cores':>10} "
            f"{'etcd MB':>8} {'etcd MB/s':>9} {'proxy cores':>11} {'proxy MB':>8} {'proxy MB/s':>10} "
            f"{'agents cpu-s':>12} {'rate':>6} {'thr/agent':>9} {'fd/agent':>8} {'load':>5}")
    print(head)
    for r in results:
        share = 100.0 * r["delivered"] / r["expected"] if r["expected"] else 0.0
        print(f"{r['mode']:<7} {r['watchers']:>8} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} {share:>9.1f}% "
              f"{r['etcd_cpu_cores']:>10.3f} {r['etcd_rss_mb']:>8.1f} {r['etcd_sent_mb_s']:>9.2f} "
              f"{r.get('proxy_cpu_cores', float('nan')):>11.3f} {r.get('proxy_rss_mb', float('nan')):>8.1f} "
              f"{r.get('proxy_sent_mb_s', float('nan')):>10.2f} {r['agents_cpu_s']:>12.1f} "
              f"{r['rate']:>6} {r['threads_per_agent']:>9} {r['fds_per_agent']:>8} {r['loadavg']:>5}")
    print("targets: proxy p99 <= 1000 ms at 5000 watchers; etcd cores growing sub-linearly with watchers")
    print("p99 60000 = more than 1 % of the deliveries arrived 60 s late or never (within the drain time)")
    for r in results:
        if r["rate"] < args.rate * 0.9:
            print(f"{r['mode']} {r['watchers']}: {r['rate']} changes/s, not {args.rate:g} "
                  f"({'--max-deliveries' if r['rate_asked'] < args.rate else 'the writer fell behind'})")
    for mode in modes:
        rows = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["watchers"])
        if len(rows) >= 2 and rows[0]["etcd_cpu_cores"] > 0:
            growth = rows[-1]["etcd_cpu_cores"] / rows[0]["etcd_cpu_cores"]
            factor = rows[-1]["watchers"] / rows[0]["watchers"]
            print(f"{mode}: etcd CPU x{growth:.1f} for x{factor:.0f} watchers "
                  f"({'sub-linear' if growth < factor else 'NOT sub-linear'})")
    if args.json:
        print(json.dumps({"results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
