"""Benchmark: a big lab — 20 hosts x 10 workloads: time until ready, memory, idle CPU, teardown.

    .venv/bin/python bench/lab_scale.py [--hosts 20] [--workloads-per-host 10] [--datastore sqlite|etcd]
                                        [--quick] [--json]

Runs `tortie lab up --hosts H --workloads-per-host W` as a user would and measures its wall time to
"ready" (every node service ready, every BGP session Established, every host routing every remote
workload through BGP). Then, for every process living in one of the lab's namespaces (node services,
agents, BIRDs, etcd members, routers) and the lab's own root-namespace helpers: the sum of RSS and
of PSS (proportional set size: shared pages split between their users, so the sum is the real
footprint), and their CPU use over 10 idle seconds. Finally `tortie lab down`'s wall time.

Targets: ready <= 60 s, memory <= 4 GB (compared with the PSS sum; RSS counts shared pages again
for every process and is shown for reference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tortie.lab.datacenter import Datacenter
from tortie.lab.processes import namespace_pids
from tortie.testing.netns import unique_name

TARGET_READY_S = 60.0
TARGET_MEMORY_GB = 4.0
TORTIE = str(Path(sys.executable).parent / "tortie")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def lab_pids(dc: Datacenter) -> list[int]:
    pids = namespace_pids(dc.lab.state.namespaces)
    pids += [p.pid for p in dc.lab.state.processes if not p.netns and dc.lab.process_running(p.pid)]
    return pids


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def cpu_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--workloads-per-host", type=int, default=10)
    parser.add_argument("--datastore", choices=("sqlite", "etcd"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="5 hosts x 4 workloads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/lab_scale.py needs root (network namespaces); skipped")
        return 0
    hosts, per_host = (5, 4) if args.quick else (args.hosts, args.workloads_per_host)
    name = unique_name("scale")
    started = time.monotonic()
    up = subprocess.run(
        [
            TORTIE,
            "lab",
            "up",
            "--name",
            name,
            "--hosts",
            str(hosts),
            "--workloads-per-host",
            str(per_host),
            "--datastore",
            args.datastore,
            "--timeout",
            "300",
        ],
        capture_output=True,
        text=True,
    )
    ready_s = time.monotonic() - started
    try:
        if up.returncode != 0:
            print(up.stdout + up.stderr)
            return 1
        dc = Datacenter.open(name)
        pids = lab_pids(dc)
        mem = [memory_kb(p) for p in pids]
        rss_gb = sum(m[0] for m in mem) / 1024 / 1024
        pss_gb = sum(m[1] for m in mem) / 1024 / 1024
        before = {p: cpu_ticks(p) for p in pids}
        time.sleep(10.0)
        idle_cpu = sum(cpu_ticks(p) - before[p] for p in pids) / CLK_TCK / 10.0
    finally:
        t = time.monotonic()
        subprocess.run([TORTIE, "lab", "down", "--name", name], capture_output=True, text=True)
        down_s = time.monotonic() - t
    result = {
        "hosts": hosts,
        "workloads": hosts * per_host,
        "datastore": args.datastore,
        "ready_s": round(ready_s, 1),
        "processes": len(pids),
        "rss_gb": round(rss_gb, 2),
        "pss_gb": round(pss_gb, 2),
        "idle_cpu_cores": round(idle_cpu, 2),
        "down_s": round(down_s, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"lab: {hosts} hosts x {per_host} workloads ({hosts * per_host}), datastore {args.datastore}")
    print(
        f"  ready (tortie lab up, wall)      {ready_s:6.1f} s    target <= {TARGET_READY_S:.0f} s "
        f"({'meets' if ready_s <= TARGET_READY_S else 'MISSES'})"
    )
    print(
        f"  memory, {len(pids)} processes: PSS {pss_gb:5.2f} GB (RSS {rss_gb:.2f} GB)    target <= "
        f"{TARGET_MEMORY_GB:.0f} GB ({'meets' if pss_gb <= TARGET_MEMORY_GB else 'MISSES'})"
    )
    print(f"  idle CPU of the lab               {idle_cpu:6.2f} cores")
    print(f"  tortie lab down                   {down_s:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
