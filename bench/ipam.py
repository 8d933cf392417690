"""Benchmark: IPAM allocations per second, sequential and with 8 concurrent allocator processes, on the
embedded sqlite store and on a real single-member etcd, in one run.

    .venv/bin/python bench/ipam.py [--quick] [-n N] [--procs 8] [--backends sqlite,etcd]

For each backend it first measures a baseline from the same run: plain compare-and-swap writes of one
key per second (what one datastore round trip costs there), then:

* sequential: one process allocates N addresses (one handle each, like CNI ADD) spread over 4 hosts,
  then releases them by handle;
* concurrent: `--procs` spawned processes (2 per host, 4 hosts) allocate N addresses in total, starting
  together behind a barrier; the rate is N / wall time from the barrier to the last process finishing.

The pool is 10.0.0.0/16 in default /26 blocks, so blocks get claimed along the way. Each phase starts
from an empty datastore (a new sqlite file; a new etcd member). Output: a table of the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tortie.datastore.url import open_datastore
from tortie.ipam import Ipam
from tortie.model.kinds import kind_info
from tortie.testing.etcd_cluster import EtcdCluster

HOSTS = ("bench-a", "bench-b", "bench-c", "bench-d")
POOL = "10.0.0.0/16"


def prepare(url: str) -> None:
    ds = open_datastore(url)
    try:
        ds.put(
            kind_info("IPPool").key("bench"),
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": "bench"},
                "spec": {"cidr": POOL},
            },
        )
        for h in HOSTS:
            ds.put(
                kind_info("Node").key(h),
                {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": h}, "spec": {}},
            )
    finally:
        ds.close()


def baseline_cas(url: str, n: int) -> float:
    """Sequential CAS updates of one key per second."""
    ds = open_datastore(url)
    try:
        kv = ds.put("/bench/cas", {"n": 0})
        start = time.perf_counter()
        for i in range(n):
            kv = ds.update("/bench/cas", {"n": i + 1}, expected_revision=kv.mod_revision)
        return n / (time.perf_counter() - start)
    finally:
        ds.close()


def sequential(url: str, n: int) -> tuple[float, float]:
    """(allocations/s, releases/s) for one process."""
    ds = open_datastore(url)
    try:
        ipam = Ipam(ds)
        start = time.perf_counter()
        for i in range(n):
            ipam.auto_assign(1, 0, f"bench.seq-{i}", HOSTS[i % len(HOSTS)], {"namespace": "bench"})
        alloc_s = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(n):
            ipam.release_by_handle(f"bench.seq-{i}")
        release_s = time.perf_counter() - start
        return n / alloc_s, n / release_s
    finally:
        ds.close()


def _worker(url: str, index: int, count: int, barrier: Any, out: Any) -> None:
    ds = open_datastore(url)
    try:
        ipam = Ipam(ds)
        host = HOSTS[index % len(HOSTS)]
        barrier.wait()
        for j in range(count):
            ipam.auto_assign(1, 0, f"bench.p{index}-{j}", host, {"namespace": "bench"})
        out.put((index, time.perf_counter()))
    except Exception as exc:  # report instead of hanging the parent
        out.put((index, f"{type(exc).__name__}: {exc}"))
    finally:
        ds.close()


def concurrent(url: str, n: int, procs: int) -> float:
    """Allocations/s of `procs` processes allocating n addresses in total."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(procs + 1)
    out: Any = ctx.Queue()
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    workers = [
        ctx.Process(target=_worker, args=(url, i, per[i], barrier, out), daemon=True) for i in range(procs)
    ]
    for w in workers:
        w.start()
    try:
        barrier.wait(timeout=120)
        start = time.perf_counter()
        ends: list[float] = []
        for _ in workers:
            _, end = out.get(timeout=1800)
            if isinstance(end, str):
                raise RuntimeError(f"allocator failed: {end}")
            ends.append(end)
        return n / (max(ends) - start)
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
                w.join(timeout=5)


@contextmanager
def sqlite_store() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="tortie-bench-ipam-") as d:
        yield f"sqlite://{Path(d) / 'bench.db'}"


@contextmanager
def etcd_store() -> Iterator[str]:
    with EtcdCluster(members=1) as cluster:
        yield cluster.url


BACKENDS: dict[str, Callable[[], Any]] = {"sqlite": sqlite_store, "etcd": etcd_store}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small N (smoke run)")
    parser.add_argument("-n", type=int, default=None, help="allocations per phase (default 2000; quick 200)")
    parser.add_argument("--procs", type=int, default=8, help="concurrent allocator processes (default 8)")
    parser.add_argument("--backends", default="sqlite,etcd", help="comma-separated: sqlite, etcd")
    args = parser.parse_args(argv)
    n = args.n or (200 if args.quick else 2000)
    rows: list[tuple[str, str, int, float]] = []
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        factory = BACKENDS[name]
        print(f"[{name}] baseline ...", file=sys.stderr, flush=True)
        with factory() as url:
            rows.append((name, "baseline: CAS writes of one key, sequential", n, baseline_cas(url, n)))
        print(f"[{name}] sequential ...", file=sys.stderr, flush=True)
        with factory() as url:
            prepare(url)
            alloc, release = sequential(url, n)
            rows.append((name, "allocations, 1 process", n, alloc))
            rows.append((name, "releases by handle, 1 process", n, release))
        print(f"[{name}] concurrent ...", file=sys.stderr, flush=True)
        with factory() as url:
            prepare(url)
            rows.append((name, f"allocations, {args.procs} processes", n, concurrent(url, n, args.procs)))
    width = max(len(r[1]) for r in rows)
    print(f"{'backend':8} {'measure':{width}} {'ops':>6} {'ops/s':>9}")
    for backend, measure, count, rate in rows:
        print(f"{backend:8} {measure:{width}} {count:>6} {rate:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
