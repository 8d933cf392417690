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
shares the machine's cores with etcd and the proxy). Load average beside the figures.

Targets: p99 delivery <= 1 s at 5,000 watchers through the proxy; etcd members' CPU growing
sub-linearly with the number of watchers.

    .venv/bin/python bench/fanout.py [--quick] [--watchers 100,1000,5000] [--modes direct,proxy]
                                     [--rate 50] [--seconds 20] [--processes 4] [--json]
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
    hello = [0]
    stores, watches = [], []
    for i in range(cfg["agents"]):
        eps = cfg["endpoints"][i % len(cfg["endpoints"]):] + cfg["endpoints"][:i % len(cfg["endpoints"])]
        ds = EtcdDatastore(eps, timeout=30.0, watch_endpoints=cfg["watch_endpoints"])
        stores.append(ds)
        watches.append(ds.watch(cfg["prefix"], cfg["after"]))
    def consume(w):
        local = []
        for ev in w:
            if ev.key == cfg["hello"]:
                with lock:
                    hello[0] += 1
                continue
            t = ev.value.get("t")
            if t is None or ev.value.get("seq", -1) < 0:
                continue
            local.append(time.time() - t)
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
    threads = [threading.Thread(target=consume, args=(w,), daemon=True) for w in watches]
    for t in threads:
        t.start()
    print("started", flush=True)
    for line in sys.stdin:
        if line.strip() == "hello?":
            with lock:
                print(f"hello {hello[0]}", flush=True)
        elif line.strip() == "stop":
            break
    time.sleep(cfg["drain"])
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


def run_case(cluster: EtcdCluster, proxy: GrpcProxy | None, watchers: int, *, processes: int, rate: float,
             seconds: float) -> dict[str, Any]:
    writer = EtcdDatastore(cluster.client_endpoints)
    after = writer.current_revision()
    per = [watchers // processes + (1 if i < watchers % processes else 0) for i in range(processes)]
    workers = []
    for n in per:
        if not n:
            continue
        cfg = {"agents": n, "endpoints": cluster.client_endpoints, "prefix": PREFIX, "after": after,
               "hello": HELLO, "drain": 3.0, "watch_endpoints": [proxy.target] if proxy else []}
        workers.append(subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(cfg)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "started"
        # barrier: every agent's watch delivers one event before the measurement starts
        deadline = time.monotonic() + 120
        while True:
            writer.put(HELLO, {"t": time.time(), "seq": -1})
            time.sleep(1.0)
            heard = 0
            for w in workers:
                assert w.stdin is not None and w.stdout is not None
                w.stdin.write("hello?\n")
                w.stdin.flush()
                heard += int(w.stdout.readline().split()[1]) > 0
            counts = sum(1 for _ in workers)
            if heard == counts:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("agents did not all start watching within 120 s")
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
        member_cpu = sum(after_stat[p][0] - before[p][0] for p in pids) / window
        member_rss = max(after_stat[p][1] for p in pids)
        member_bytes = sum(after_stat[p][2] - before[p][2] for p in pids) / window
        out: dict[str, Any] = {
            "watchers": watchers, "changes": sent, "rate": round(sent / elapsed, 1),
            "p50_ms": _percentile(buckets, 0.5), "p99_ms": _percentile(buckets, 0.99),
            "delivered": received, "expected": sent * watchers,
            "etcd_cpu_cores": round(member_cpu, 3), "etcd_rss_mb": round(member_rss / 2**20, 1),
            "etcd_sent_mb_s": round(member_bytes / 2**20, 2), "agents_cpu_s": round(client_cpu, 1),
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
            for mode in modes:
                if mode == "proxy":
                    with GrpcProxy(cluster) as proxy:
                        res = run_case(cluster, proxy, watchers, processes=processes, rate=args.rate,
                                       seconds=seconds)
                else:
                    res = run_case(cluster, None, watchers, processes=processes, rate=args.rate,
                                   seconds=seconds)
                res["mode"] = mode
                res["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
                results.append(res)
                print(json.dumps(res), flush=True)
    print()
    head = (f"{'mode':<7} {'watchers':>8} {'p50 ms':>8} {'p99 ms':>8} {'delivered':>10} {'etcd cores':>10} "
            f"{'etcd MB':>8} {'etcd MB/s':>9} {'proxy cores':>11} {'proxy MB':>8} {'proxy MB/s':>10} "
            f"{'agents cpu-s':>12} {'load':>5}")
    print(head)
    for r in results:
        share = 100.0 * r["delivered"] / r["expected"] if r["expected"] else 0.0
        print(f"{r['mode']:<7} {r['watchers']:>8} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} {share:>9.1f}% "
              f"{r['etcd_cpu_cores']:>10.3f} {r['etcd_rss_mb']:>8.1f} {r['etcd_sent_mb_s']:>9.2f} "
              f"{r.get('proxy_cpu_cores', float('nan')):>11.3f} {r.get('proxy_rss_mb', float('nan')):>8.1f} "
              f"{r.get('proxy_sent_mb_s', float('nan')):>10.2f} {r['agents_cpu_s']:>12.1f} {r['loadavg']:>5}")
    print("targets: proxy p99 <= 1000 ms at 5000 watchers; etcd cores growing sub-linearly with watchers")
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
