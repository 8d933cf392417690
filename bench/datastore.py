"""Datastore benchmark: sqlite (embedded default) and etcd (one local member) side by side, one run.

Measures, per backend:
  * sequential creates per second (one client, one key at a time, each acknowledged);
  * gets per second;
  * seconds to list a prefix holding LIST_N objects (best of 3);
  * watch latency, write call -> event received, p50/p99 over WATCH_N paced writes, with the watcher
    in another thread of the writing process and in another OS process.

The etcd member is started by the script (tortie.testing.etcd_cluster) on free loopback ports and
removed afterwards. The target row is the contract's "a watcher sees a write within 100 ms".

    .venv/bin/python bench/datastore.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tortie.datastore.api import Datastore, TxnOp
from tortie.datastore.url import open_datastore
from tortie.testing.etcd_cluster import EtcdCluster

_REMOTE_WATCHER = textwrap.dedent(
    """
    import sys, time
    from tortie.datastore.url import open_datastore
    url, prefix, after, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ds = open_datastore(url)
    w = ds.watch(prefix, after)
    print("ready", flush=True)
    for _ in range(count):
        ev = w.get(timeout=60)
        if ev is None:
            break
        print(ev.key, repr(time.time()), flush=True)
    ds.close()
    """
)


def _rate(n: int, fn: Callable[[int], object]) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def _percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50, p99


def _watch_latency_thread(ds: Datastore, prefix: str, n: int) -> tuple[float, float]:
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    watch = ds.watch(prefix, ds.current_revision())
    done = threading.Event()

    def consume() -> None:
        while len(got) < n:
            ev = watch.get(timeout=30)
            if ev is None:
                break
            got[ev.key] = time.perf_counter()
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    for i in range(n):
        key = f"{prefix}{i:05d}"
        sent[key] = time.perf_counter()
        ds.create(key, {"i": i})
        time.sleep(0.002)
    done.wait(60)
    watch.close()
    return _percentiles([(got[k] - sent[k]) * 1000 for k in sent if k in got])


def _watch_latency_process(ds: Datastore, url: str, prefix: str, n: int) -> tuple[float, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _REMOTE_WATCHER, url, prefix, str(ds.current_revision()), str(n)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("remote watcher did not start")
        sent: dict[str, float] = {}
        for i in range(n):
            key = f"{prefix}{i:05d}"
            sent[key] = time.time()
            ds.create(key, {"i": i})
            time.sleep(0.002)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    got = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line.strip()}
    return _percentiles([(got[k] - sent[k]) * 1000 for k in sent if k in got])


def run_backend(url: str, *, writes: int, list_n: int, watch_n: int) -> dict[str, str]:
    ds = open_datastore(url)
    try:
        results: dict[str, str] = {}
        pad = "x" * 200
        write_rate = _rate(writes, lambda i: ds.create(f"/bench/w/{i:06d}", {"i": i, "pad": pad}))
        results["writes"] = f"{write_rate:.0f}"
        results["reads"] = f"{_rate(writes, lambda i: ds.get(f'/bench/w/{i:06d}')):.0f}"
        for start in range(0, list_n, 100):
            ds.commit(
                [TxnOp("create", f"/bench/l/{i:06d}", {"i": i, "pad": pad})
                 for i in range(start, min(start + 100, list_n))]
            )
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            kvs, _ = ds.list("/bench/l/")
            best = min(best, time.perf_counter() - t0)
            assert len(kvs) == list_n
        results["list"] = f"{best:.3f}"
        p50, p99 = _watch_latency_thread(ds, "/bench/wt/", watch_n)
        results["watch_thread"] = f"{p50:.1f} / {p99:.1f}"
        p50, p99 = _watch_latency_process(ds, url, "/bench/wp/", watch_n)
        results["watch_process"] = f"{p50:.1f} / {p99:.1f}"
        return results
    finally:
        ds.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N (a smoke run, not a measurement)")
    args = parser.parse_args()
    writes, list_n, watch_n = (200, 1000, 100) if args.quick else (2000, 10_000, 500)

    tmp = Path(tempfile.mkdtemp(prefix="tortie-bench-"))
    columns: dict[str, dict[str, str]] = {}
    try:
        sizes = {"writes": writes, "list_n": list_n, "watch_n": watch_n}
        columns["sqlite"] = run_backend(f"sqlite://{tmp}/bench.db", **sizes)
        if shutil.which("etcd"):
            with EtcdCluster(members=1) as cluster:
                columns["etcd (1 member)"] = run_backend(cluster.url, **sizes)
        else:
            print("etcd binary not found: etcd column skipped", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [
        ("writes", f"sequential creates ({writes}), per second", "-"),
        ("reads", f"gets ({writes}), per second", "-"),
        ("list", f"list {list_n} objects, seconds (best of 3)", "-"),
        ("watch_thread", f"watch latency p50 / p99 ms, other thread ({watch_n})", "p99 < 100"),
        ("watch_process", f"watch latency p50 / p99 ms, other process ({watch_n})", "p99 < 100"),
    ]
    names = list(columns)
    width = max(len(r[1]) for r in rows)
    print(f"{'metric':<{width}}  " + "  ".join(f"{n:>16}" for n in names) + f"  {'target':>10}")
    for key, label, target in rows:
        print(f"{label:<{width}}  " + "  ".join(f"{columns[n][key]:>16}" for n in names) + f"  {target:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
