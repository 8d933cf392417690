"""Benchmark: BGP route propagation between hosts, and cold start of a full mesh (needs root, BIRD 2).

    .venv/bin/python bench/bgp_convergence.py [--hosts 5] [--endpoints 100] [--mesh-hosts 10] [--quick]
                                              [--quickack] [--json]

Lab: hosts in network namespaces on one fabric (`tortie.testing.bgp_fabric`), one IPAM block each
(blackholed as the agent does), an in-process `tortie bgp run` daemon per host driving a real BIRD,
full iBGP mesh, fast test timers (connect delay 0 s).

* propagation: for each of N endpoints, a /32 route is added on one host (round robin) exactly as the
  agent adds a workload route (`dev caliN scope link proto 77`) for an address borrowed from outside
  the host's blocks (an address inside the host's own block is covered by its aggregate and causes no
  BGP update). `ip -tshort monitor route` in every host namespace timestamps each kernel change; the
  latency of an endpoint is (last other host's kernel has it) - (its own host's kernel has it). The
  same is measured for withdrawal (route deleted). Endpoints are sequential: the next starts when the
  previous is everywhere.
* cold start: a fresh lab of M hosts, datastore already populated; time from starting all daemons
  until every host's kernel has every other host's block, plus the time until every BIRD answered.

Prints measured figures beside the target (propagation p99 <= 50 ms). tortie is not on this path
(BIRD learns the agent's route from the kernel itself), so the figures are BIRD + netlink + TCP;
`--quickack` repeats the propagation run with delayed ACKs off on the fabric route, which shows the
share of TCP's delayed-ACK/Nagle wait (docs/benchmarks.md, "BGP").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from tortie.datastore.memory import MemoryDatastore
from tortie.testing.bgp_fabric import BgpTestBed, apply_manifests, node_manifest, put_block, run, wait_until

TARGET_P99_MS = 50.0
POOL = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool}\nspec: {cidr: 10.65.0.0/16}\n"


class RouteMonitor:
    """`ip -tshort monitor route` in one namespace; records when each destination was added/deleted."""

    def __init__(self, ns: str) -> None:
        self.proc = subprocess.Popen(["ip", "-n", ns, "-tshort", "monitor", "route"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.added: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("["):
                continue
            stamp, _, rest = line[1:].partition("] ")
            try:
                t = datetime.datetime.fromisoformat(stamp).timestamp()
            except ValueError:
                continue
            words = rest.split()
            if not words:
                continue
            target = self.deleted if words[0] == "Deleted" else self.added
            dst = words[1] if words[0] == "Deleted" else words[0]
            with self.lock:
                target.setdefault(dst, t)

    def seen(self, dst: str, deleted: bool = False) -> float | None:
        with self.lock:
            return (self.deleted if deleted else self.added).get(dst)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def build(bed: BgpTestBed, ds: MemoryDatastore, n: int, quickack: bool = False) -> list[str]:
    fabric = bed.add_fabric("fab", "172.31.0.0/24")
    manifests = ""
    names = [f"h{i}" for i in range(1, n + 1)]
    for i, name in enumerate(names, start=1):
        host = bed.add_host(name, fabric, i)
        if quickack:  # no delayed ACKs on the fabric: BIRD's back-to-back updates are not held by Nagle
            run(["ip", "-n", host.ns, "route", "change", "172.31.0.0/24", "dev", "eth0", "proto", "kernel",
                 "scope", "link", "src", str(host.address.ip), "quickack", "1"])
        manifests += node_manifest(name, f"172.31.0.{i}/24")
        put_block(ds, f"10.65.{i}.0/26", name)
        bed.add_block_blackhole(name, f"10.65.{i}.0/26")
    apply_manifests(ds, manifests + POOL)
    return names


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def propagation(hosts: int, endpoints: int, quickack: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tortie-bench-bgp-") as wd, BgpTestBed(wd, "bb") as bed:
        ds = MemoryDatastore()
        names = build(bed, ds, hosts, quickack)
        for name in names:
            bed.start_daemon(ds, name)
        wait_until(lambda: all(len([d for d in bed.bird_routes(h) if d.startswith("10.65.")]) == hosts - 1
                               for h in names), 60, what="mesh convergence")
        ifaces = {}
        for name in names:  # one workload interface per host, made before measuring
            h = bed.hosts[name]
            run(["ip", "-n", h.ns, "link", "add", "cali1", "type", "veth", "peer", "name", "wl1"])
            run(["ip", "-n", h.ns, "link", "set", "cali1", "up"])
            run(["ip", "-n", h.ns, "link", "set", "wl1", "up"])
            ifaces[name] = "cali1"
        monitors = {name: RouteMonitor(bed.hosts[name].ns) for name in names}
        time.sleep(0.3)  # let the monitors subscribe
        add_ms: list[float] = []
        del_ms: list[float] = []
        def latency_ms(origin: str, dst: str, deleted: bool) -> float:
            """Wait until `dst` was added (deleted) everywhere; origin's kernel -> the last other kernel."""
            others = [n for n in names if n != origin]

            def everywhere() -> bool:
                return all(monitors[n].seen(dst, deleted) is not None for n in names)

            wait_until(everywhere, 10, interval=0.002, what=f"{dst} {'withdrawn' if deleted else 'added'}")
            t0 = monitors[origin].seen(dst, deleted) or 0.0
            return 1000 * (max(monitors[n].seen(dst, deleted) or 0.0 for n in others) - t0)

        try:
            for k in range(endpoints):
                origin = names[k % hosts]
                ip = f"10.65.{200 + k // 250}.{k % 250 + 1}"  # pool addresses in no host's block
                route = [f"{ip}/32", "dev", ifaces[origin], "scope", "link", "proto", "77"]
                ns = bed.hosts[origin].ns
                run(["ip", "-n", ns, "route", "add", *route])
                add_ms.append(latency_ms(origin, ip, False))
                run(["ip", "-n", ns, "route", "del", *route])
                del_ms.append(latency_ms(origin, ip, True))
        finally:
            for m in monitors.values():
                m.close()
    return {
        "add_p50_ms": statistics.median(add_ms), "add_p99_ms": percentile(add_ms, 99),
        "add_max_ms": max(add_ms),
        "del_p50_ms": statistics.median(del_ms), "del_p99_ms": percentile(del_ms, 99),
    }


def cold_start(hosts: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tortie-bench-bgp-") as wd, BgpTestBed(wd, "bc") as bed:
        ds = MemoryDatastore()
        names = build(bed, ds, hosts)
        t0 = time.monotonic()
        for name in names:
            bed.start_daemon(ds, name)
        bed.wait_ready(names, timeout=60)
        t_ready = time.monotonic() - t0
        wait_until(lambda: all(len([d for d in bed.bird_routes(h) if d.startswith("10.65.")]) == hosts - 1
                               for h in names), 120, interval=0.02, what="mesh convergence")
        return {"ready_s": t_ready, "converged_s": time.monotonic() - t0, "sessions": hosts * (hosts - 1) / 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--mesh-hosts", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 hosts, 10 endpoints, 4-host cold start")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--quickack", action="store_true",
                        help="also measure with `quickack 1` on the hosts' fabric route (no delayed ACKs)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bgp_convergence: needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.quick:
        args.hosts, args.endpoints, args.mesh_hosts = 3, 10, 4
    results = {"default": propagation(args.hosts, args.endpoints, quickack=False)}
    if args.quickack:
        results["quickack"] = propagation(args.hosts, args.endpoints, quickack=True)
    cold = cold_start(args.mesh_hosts)
    print(f"BGP propagation, {args.hosts}-host mesh, {args.endpoints} endpoints "
          "(kernel on origin -> kernel on every other host):")
    for label, prop in results.items():
        print(f"  [{label}]")
        print(f"  add       p50 {prop['add_p50_ms']:6.1f} ms   p99 {prop['add_p99_ms']:6.1f} ms   "
              f"(max {prop['add_max_ms']:5.1f})   target p99 <= {TARGET_P99_MS:.0f} ms   "
              f"{'OK' if prop['add_p99_ms'] <= TARGET_P99_MS else 'MISSED'}")
        print(f"  withdraw  p50 {prop['del_p50_ms']:6.1f} ms   p99 {prop['del_p99_ms']:6.1f} ms   "
              f"                target p99 <= {TARGET_P99_MS:.0f} ms   "
              f"{'OK' if prop['del_p99_ms'] <= TARGET_P99_MS else 'MISSED'}")
    print(f"Cold start, {args.mesh_hosts}-host mesh ({cold['sessions']:.0f} sessions): every BIRD answering "
          f"after {cold['ready_s']:.2f} s, every block in every kernel after {cold['converged_s']:.2f} s")
    if args.json:
        print(json.dumps({"propagation": results, "cold_start": cold, "target_p99_ms": TARGET_P99_MS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
