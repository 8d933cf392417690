"""Benchmark: a big lab — 50 hosts x 10 workloads: time until ready, memory, idle CPU, teardown.

    .venv/bin/python bench/lab_scale.py [--hosts 50] [--workloads-per-host 10] [--datastore sqlite|etcd]
                                        [--route-reflectors 0,2] [--ip-family ipv4|dual|ipv6]
                                        [--idle-seconds 20] [--quick] [--json]

Runs `tortie lab up --hosts H --workloads-per-host W` as a user would and measures its wall time to
"ready" (every node service ready, every BGP session Established, every host routing every remote
workload through BGP). Then, for every process living in one of the lab's namespaces (node services,
agents, BIRDs, etcd members, routers) and the lab's own root-namespace helpers: the sum of RSS and
of PSS (proportional set size: shared pages split between their users, so the sum is the real
footprint), per host and per role (node service, agent, BIRD, other), and their CPU use over
`--idle-seconds` idle seconds, also per role. Finally `tortie lab down`'s wall time.

`--route-reflectors 0,2` builds the lab once per value, one after the other: 0 is the full mesh
(every host peers with every other: H*(H-1)/2 sessions), R > 0 makes the first R hosts route
reflectors for the others (the mesh is off). The results are printed side by side with the machine's
load average at the start and end of each run: the VM is shared, and its load changes the figures.
`--ip-family` defaults to ipv4 (one BGP session per pair of hosts, as in the earlier figures); `dual`
doubles the sessions.

Targets: ready <= 60 s, idle CPU of the whole lab <= 0.1 cores, memory <= 4 GB (compared with the
PSS sum; RSS counts shared pages again for every process and is shown for reference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tortie.lab.datacenter import Datacenter
from tortie.lab.processes import namespace_pids
from tortie.testing.netns import unique_name

TARGET_READY_S = 60.0
TARGET_IDLE_CORES = 0.1
TARGET_MEMORY_GB = 4.0
ROLES = ("node", "agent", "bird", "other")
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


def role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "other"
    words = [a.decode(errors="replace") for a in argv]
    if "node" in words and "run" in words:
        return "node"
    if "agent" in words and "run" in words:
        return "agent"
    if words and os.path.basename(words[0]) == "bird":
        return "bird"
    return "other"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_lab(hosts: int, per_host: int, datastore: str, reflectors: int, family: str,
            idle_s: float) -> dict[str, Any]:
    """Build one lab, measure it, tear it down (see the module docstring)."""
    name = unique_name("scale")
    load_start = load()
    started = time.monotonic()
    up = subprocess.run(
        [TORTIE, "lab", "up", "--name", name, "--hosts", str(hosts), "--workloads-per-host", str(per_host),
         "--datastore", datastore, "--route-reflectors", str(reflectors), "--ip-family", family,
         "--timeout", "600"],
        capture_output=True, text=True,
    )
    ready_s = time.monotonic() - started
    pids: list[int] = []
    mem_role = dict.fromkeys(ROLES, (0, 0))
    cpu_role = dict.fromkeys(ROLES, 0.0)
    try:
        if up.returncode != 0:
            raise RuntimeError(f"tortie lab up failed:\n{up.stdout}{up.stderr}")
        dc = Datacenter.open(name)
        pids = lab_pids(dc)
        roles = {p: role(p) for p in pids}
        for p in pids:
            rss, pss = memory_kb(p)
            old = mem_role[roles[p]]
            mem_role[roles[p]] = (old[0] + rss, old[1] + pss)
        before = {p: cpu_ticks(p) for p in pids}
        time.sleep(idle_s)
        for p in pids:
            cpu_role[roles[p]] += (cpu_ticks(p) - before[p]) / CLK_TCK / idle_s
    finally:
        t = time.monotonic()
        subprocess.run([TORTIE, "lab", "down", "--name", name], capture_output=True, text=True)
        down_s = time.monotonic() - t
    rss_gb = sum(m[0] for m in mem_role.values()) / 1024 / 1024
    pss_gb = sum(m[1] for m in mem_role.values()) / 1024 / 1024
    return {
        "hosts": hosts, "workloads": hosts * per_host, "datastore": datastore,
        "route_reflectors": reflectors, "ip_family": family, "ready_s": round(ready_s, 1),
        "processes": len(pids),
        "rss_gb": round(rss_gb, 2), "pss_gb": round(pss_gb, 2),
        "pss_per_host_mb": round(pss_gb * 1024 / hosts, 1),
        "pss_mb_by_role": {r: round(m[1] / 1024, 1) for r, m in mem_role.items()},
        "idle_cpu_cores": round(sum(cpu_role.values()), 3),
        "idle_cores_by_role": {r: round(c, 3) for r, c in cpu_role.items()},
        "down_s": round(down_s, 1), "load_start": load_start, "load_end": load(),
    }


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--workloads-per-host", type=int, default=10)
    parser.add_argument("--datastore", choices=("sqlite", "etcd"), default="sqlite")
    parser.add_argument("--route-reflectors", default="0,2", help="comma-separated: 0 = full mesh")
    parser.add_argument("--ip-family", choices=("ipv4", "dual", "ipv6"), default="ipv4")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="5 hosts x 4 workloads, full mesh only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/lab_scale.py needs root (network namespaces); skipped")
        return 0
    hosts, per_host = (5, 4) if args.quick else (args.hosts, args.workloads_per_host)
    variants = [0] if args.quick else [int(x) for x in args.route_reflectors.split(",")]
    results = []
    for reflectors in variants:
        try:
            idle_s = 5.0 if args.quick else args.idle_seconds
            res = run_lab(hosts, per_host, args.datastore, reflectors, args.ip_family, idle_s)
        except RuntimeError as exc:
            print(exc)
            return 1
        results.append(res)
        print(json.dumps(res), flush=True)
    print(f"\nlab: {hosts} hosts x {per_host} workloads ({hosts * per_host}), datastore {args.datastore}, "
          f"{args.ip_family}")
    for r in results:
        kind = "full mesh" if not r["route_reflectors"] else f"{r['route_reflectors']} route reflectors"
        print(f"{kind}  (load average {r['load_start']} at the start, {r['load_end']} at the end)")
        print(f"  ready (tortie lab up, wall)   {r['ready_s']:7.1f} s     target <= {TARGET_READY_S:.0f} s "
              f"({verdict(r['ready_s'] <= TARGET_READY_S)})")
        print(f"  idle CPU of the lab           {r['idle_cpu_cores']:7.3f} cores "
              f"target <= {TARGET_IDLE_CORES} "
              f"({verdict(r['idle_cpu_cores'] <= TARGET_IDLE_CORES)}); by role: "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["idle_cores_by_role"].items()))
        print(f"  memory, {r['processes']} processes: PSS {r['pss_gb']:.2f} GB (RSS {r['rss_gb']:.2f} GB), "
              f"{r['pss_per_host_mb']:.1f} MB per host; target <= {TARGET_MEMORY_GB:.0f} GB "
              f"({verdict(r['pss_gb'] <= TARGET_MEMORY_GB)}); PSS MB by role: "
              + ", ".join(f"{k} {v:.0f}" for k, v in r["pss_mb_by_role"].items()))
        print(f"  tortie lab down               {r['down_s']:7.1f} s")
    if args.json:
        print(json.dumps({"results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
