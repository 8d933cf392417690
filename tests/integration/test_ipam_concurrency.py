"""IPAM under real concurrency: separate processes allocating from one pool, on sqlite and on real etcd.

Scenario (8 processes x 100 allocations over 4 hosts, one pool that forces claiming AND borrowing):

    pool 10.10.0.0/21 in /26 blocks (32 blocks x 64); each request caps the host at 5 blocks (320
    addresses; Calico's per-request AutoAssignArgs.MaxBlocksPerHost), borrowing allowed
    demand  host-a 370 (must borrow >= 50), host-b 211, host-c 211, host-d 8

Every process first allocates once for host-d, so host-d's block (56 spare addresses) exists before
anyone needs to borrow: whatever the interleaving, host-a always finds something to borrow and nobody
can legitimately run out. Each allocation has its own handle. Checked: no duplicate, every request
satisfied, handles exact, borrowing only by hosts that reached maxBlocksPerHost; then every process
releases its handles concurrently and `ipam check` must be clean with zero addresses in use.
"""

from __future__ import annotations

import ipaddress
import multiprocessing
import random
from typing import Any

import pytest

from tortie.datastore.url import open_datastore
from tortie.ipam import Ipam, PoolExhausted, keys
from tortie.ipam.audit import check
from tortie.ipam.report import pool_usage
from tortie.ipam.snapshot import take_snapshot
from tortie.model.kinds import kind_info

PROCS = 8
PER_PROC = 100
HOSTS = ("host-a", "host-b", "host-c", "host-d")
DEMAND = {"host-a": 370, "host-b": 211, "host-c": 211, "host-d": 8}
POOL = "10.10.0.0/21"
MAX_BLOCKS = 5
RESULT_TIMEOUT_S = 240


def plans() -> list[list[str]]:
    """Per process: host-d first, then a seeded shuffle of the rest; totals equal DEMAND exactly."""
    rest = [h for h in HOSTS[:3] for _ in range(DEMAND[h])]
    random.Random(7).shuffle(rest)
    per = PER_PROC - 1
    return [["host-d", *rest[i * per : (i + 1) * per]] for i in range(PROCS)]


def setup_cluster_state(url: str, pool: str, block_size: int) -> None:
    ds = open_datastore(url)
    try:
        ds.put(
            kind_info("IPPool").key("pool"),
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": "pool"},
                "spec": {"cidr": pool, "blockSize": block_size},
            },
        )
        for h in HOSTS:
            ds.put(
                kind_info("Node").key(h),
                {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": h}, "spec": {}},
            )
        Ipam(ds).configure(strict_affinity=False)  # borrowing allowed (Calico's default), written out
    finally:
        ds.close()


def allocate_worker(url: str, index: int, plan: list[str], barrier: Any, out: Any) -> None:
    """Child process: wait for all, allocate one address per plan entry, report; wait for the parent's
    go, release every handle (twice: the second must be a no-op), report."""
    ds = open_datastore(url)
    try:
        ipam = Ipam(ds)
        barrier.wait()
        got: list[tuple[str, str, str, str]] = []
        errors: list[str] = []
        for j, host in enumerate(plan):
            handle = f"net.p{index}-{j}"
            try:
                attrs = {"namespace": "ns", "pod": f"p{index}-{j}"}
                iface = ipam.auto_assign(1, 0, handle, host, attrs, max_blocks_per_host=MAX_BLOCKS).v4[0]
                got.append((handle, host, str(iface.ip), str(iface.network)))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        out.put((got, errors))
        barrier.wait()
        release_errors: list[str] = []
        for handle, *_ in got:
            try:
                if len(ipam.release_by_handle(handle)) != 1:
                    release_errors.append(f"{handle}: did not release exactly one address")
                if ipam.release_by_handle(handle) != []:
                    release_errors.append(f"{handle}: second release was not a no-op")
            except Exception as exc:
                release_errors.append(f"{handle}: {type(exc).__name__}: {exc}")
        out.put(([], release_errors))
    finally:
        ds.close()


class Workers:
    """The spawned allocator processes of one scenario, in two phases separated by a barrier so that the
    parent can inspect the state between allocation and release. Processes are always joined, or killed
    by their own handle, on exit."""

    def __init__(self, url: str, work: list[list[str]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(len(work) + 1)
        self.out: Any = ctx.Queue()
        self.procs = [
            ctx.Process(target=allocate_worker, args=(url, i, p, self.barrier, self.out), daemon=True)
            for i, p in enumerate(work)
        ]

    def __enter__(self) -> Workers:
        for p in self.procs:
            p.start()
        return self

    def _collect(self) -> tuple[list[Any], list[str]]:
        got: list[Any] = []
        errors: list[str] = []
        for _ in self.procs:
            g, errs = self.out.get(timeout=RESULT_TIMEOUT_S)
            got.extend(g)
            errors.extend(errs)
        return got, errors

    def allocate(self) -> tuple[list[Any], list[str]]:
        self.barrier.wait(timeout=120)  # everyone starts together
        return self._collect()

    def release(self) -> list[str]:
        self.barrier.wait(timeout=60)
        return self._collect()[1]

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.join(timeout=30 if exc[0] is None else 0.1)
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


def assert_scenario(url: str) -> None:
    setup_cluster_state(url, POOL, 26)
    work = plans()
    assert [len(p) for p in work] == [PER_PROC] * PROCS
    with Workers(url, work) as workers:
        allocated, errors = workers.allocate()
        assert errors == []
        assert len(allocated) == PROCS * PER_PROC  # every request satisfied
        ips = [ip for _, _, ip, _ in allocated]
        assert len(set(ips)) == len(ips)  # no duplicate address
        assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(POOL) for ip in ips)
        inspect_allocations(url, allocated)
        assert workers.release() == []
    ds = open_datastore(url)
    try:
        snap = take_snapshot(ds)
        assert check(snap) == []
        assert [p.in_use for p in pool_usage(snap)] == [0]
        assert snap.handles == {}
        kvs, _ = ds.list(keys.HANDLE_ROOT)
        assert kvs == []
    finally:
        ds.close()


def inspect_allocations(url: str, allocated: list[Any]) -> None:
    ds = open_datastore(url)
    try:
        snap = take_snapshot(ds)
        ips = [ip for _, _, ip, _ in allocated]
        # IPAM's own view agrees with what the workers were told
        held = {
            str(b.address(o)): b.attribute_of(o)
            for b in snap.blocks.values()
            for o in range(b.size)
            if b.attribute_of(o) is not None
        }
        assert set(held) == set(ips)
        for handle, host, ip, _ in allocated:
            attr = held[ip]
            assert attr is not None and attr.handle_id == handle and attr.secondary["node"] == host
            assert snap.handles[handle].total == 1
        # own blocks first; borrowing only by hosts that reached maxBlocksPerHost
        affine = {h: {a.cidr for a in snap.affinities if a.host == h} for h in HOSTS}
        for h in HOSTS:
            assert len(affine[h]) <= MAX_BLOCKS
            assert all(snap.blocks[c].host == h for c in affine[h])
        borrowed = dict.fromkeys(HOSTS, 0)
        for _, host, _, block in allocated:
            if ipaddress.ip_network(block) not in affine[host]:
                borrowed[host] += 1
        assert borrowed["host-a"] >= DEMAND["host-a"] - MAX_BLOCKS * 64  # claiming AND borrowing happened
        for h, n in borrowed.items():
            if n:
                assert len(affine[h]) == MAX_BLOCKS, f"{h} borrowed {n} address(es) below its block cap"
        assert all(b.problems() == [] for b in snap.blocks.values())
        owner = Ipam(ds).get_assignment(ips[0])
        assert owner is not None and owner.handle == allocated[0][0]
    finally:
        ds.close()


def exhaustion_worker(url: str, index: int, count: int, out: Any) -> None:
    ds = open_datastore(url)
    try:
        ipam = Ipam(ds)
        got: list[str] = []
        errors: list[str] = []
        for j in range(count):
            try:
                got.append(str(ipam.auto_assign(1, 0, f"x{index}-{j}", HOSTS[index % 4]).v4[0].ip))
            except PoolExhausted as exc:
                errors.append(str(exc))
            except Exception as exc:
                errors.append(f"UNEXPECTED {type(exc).__name__}: {exc}")
        out.put((got, errors))
    finally:
        ds.close()


def assert_exhaustion(url: str) -> None:
    """4 processes x 12 requests against 32 addresses: 32 distinct successes, 16 clear errors."""
    setup_cluster_state(url, "10.20.0.0/27", 29)
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=exhaustion_worker, args=(url, i, 12, out), daemon=True) for i in range(4)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=RESULT_TIMEOUT_S) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    got = [ip for g, _ in results for ip in g]
    errors = [e for _, errs in results for e in errs]
    assert len(set(got)) == len(got)
    assert len(got) == 32 and len(errors) == 16
    assert all("pool exhausted" in e for e in errors), errors[:3]
    ds = open_datastore(url)
    try:
        snap = take_snapshot(ds)
        assert sum(b.in_use for b in snap.blocks.values()) == 32
        assert len(snap.handles) == 32  # failed requests left no handle behind
    finally:
        ds.close()


@pytest.mark.slow
def test_concurrent_allocation_sqlite(sqlite_url: str) -> None:
    assert_scenario(sqlite_url)


@pytest.mark.slow
@pytest.mark.etcd
def test_concurrent_allocation_etcd(etcd_url: str) -> None:
    assert_scenario(etcd_url)


def test_exhaustion_sqlite(sqlite_url: str) -> None:
    assert_exhaustion(sqlite_url)


@pytest.mark.etcd
def test_exhaustion_etcd(etcd_url: str) -> None:
    assert_exhaustion(etcd_url)
