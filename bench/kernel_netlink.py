"""Benchmark: tortie.kernel's rtnetlink client against pyroute2 (the baseline), in one run.

    sudo .venv/bin/python bench/kernel_netlink.py [--routes 500] [--rounds 5] [--imports 15] [--json]

What the choice between them turns on (docs/design/kernel.md):

* start-up: the CPU time (user + system) a fresh interpreter (`python -IS`, as the CNI launcher runs
  it) spends importing the client and opening one socket, minus the same interpreter doing nothing;
  median of `--imports` runs, the clients alternating. CPU rather than wall time: on a shared
  machine the wall time of a short process is mostly waiting for a core;
* a route loop in a throwaway namespace: `--routes` /32 routes written one acknowledged request at a
  time (create-or-replace, protocol 77, scope link, via a veth), one dump of protocol 77, the same
  routes deleted; median per phase over `--rounds` rounds, alternating which client goes first.

pyroute2 is a development dependency (not a runtime one): without it only tortie's figures print.
Prints the 1-minute load average before and after; `--json` adds the figures as the last line.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tortie.kernel.netns import run_in_netns
from tortie.kernel.rtnl import Rtnl
from tortie.kernel.rtnl_codec import AF_INET, RT_SCOPE_LINK
from tortie.testing.netns import ip, throwaway_netns

PROTOCOL = 77
OPEN = {
    "tortie.kernel": "from tortie.kernel.rtnl import Rtnl; Rtnl().close()",
    "pyroute2": "from pyroute2 import IPRoute; IPRoute().close()",
}


def has_pyroute2() -> bool:
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return False
    return True


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def child_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def startup_ms(runs: int, clients: list[str]) -> dict[str, float]:
    """Median extra CPU time of importing each client and opening a socket, over an empty start."""
    import tortie

    paths = [str(Path(tortie.__file__).resolve().parents[1]), *sys.path[1:]]
    prefix = f"import sys; sys.path += {paths!r}; "
    samples: dict[str, list[float]] = {name: [] for name in ["nothing", *clients]}
    for _ in range(runs):
        for name in samples:
            code = prefix + OPEN.get(name, "pass")
            start = child_cpu_ms()
            subprocess.run([sys.executable, "-IS", "-c", code], check=True)
            samples[name].append(child_cpu_ms() - start)
    empty = statistics.median(samples["nothing"])
    return {name: statistics.median(values) - empty for name, values in samples.items() if name != "nothing"}


def ours(routes: list[ipaddress.IPv4Network], oif: int) -> dict[str, float]:
    with Rtnl() as rtnl:
        start = time.perf_counter()
        for dst in routes:
            rtnl.add_route(dst, oif=oif, scope=RT_SCOPE_LINK, protocol=PROTOCOL, replace=True)
        added = time.perf_counter()
        found = rtnl.routes(AF_INET, 254, PROTOCOL)
        dumped = time.perf_counter()
        for dst in routes:
            rtnl.delete_route(dst, oif=oif, scope=RT_SCOPE_LINK, protocol=PROTOCOL)
        deleted = time.perf_counter()
    assert len(found) == len(routes), (len(found), len(routes))
    return {"add": added - start, "dump": dumped - added, "delete": deleted - dumped}


def baseline(routes: list[ipaddress.IPv4Network], oif: int) -> dict[str, float]:
    from pyroute2 import IPRoute

    ipr = IPRoute()
    try:
        start = time.perf_counter()
        for dst in routes:
            ipr.route("replace", dst=str(dst), oif=oif, proto=PROTOCOL, scope=RT_SCOPE_LINK)
        added = time.perf_counter()
        found = [r for r in ipr.route("dump", family=AF_INET, proto=PROTOCOL) if r.get("proto") == PROTOCOL]
        dumped = time.perf_counter()
        for dst in routes:
            ipr.route("del", dst=str(dst), oif=oif, proto=PROTOCOL, scope=RT_SCOPE_LINK)
        deleted = time.perf_counter()
    finally:
        ipr.close()
    assert len(found) == len(routes), (len(found), len(routes))
    return {"add": added - start, "dump": dumped - added, "delete": deleted - dumped}


def route_loop(count: int, rounds: int, clients: list[str]) -> dict[str, dict[str, float]]:
    runners: dict[str, Callable[[list[ipaddress.IPv4Network], int], dict[str, float]]] = {
        "tortie.kernel": ours,
        "pyroute2": baseline,
    }
    routes = list(ipaddress.ip_network("10.77.0.0/16").subnets(new_prefix=32))[:count]
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in clients}
    with throwaway_netns("benchnl") as netns:
        ip("-n", netns, "link", "add", "bench0", "type", "veth", "peer", "name", "bench1")
        ip("-n", netns, "link", "set", "bench0", "up")
        ip("-n", netns, "link", "set", "bench1", "up")
        oif = int(json.loads(ip("-n", netns, "-j", "link", "show", "bench0").stdout)[0]["ifindex"])
        for n in range(rounds):
            order = clients if n % 2 == 0 else list(reversed(clients))
            for name in order:
                phases = run_in_netns(netns, runners[name], routes, oif)
                for phase, seconds in phases.items():
                    samples[name].setdefault(phase, []).append(seconds * 1000)
    return {name: {p: statistics.median(v) for p, v in phases.items()} for name, phases in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--routes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--imports", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (a throwaway network namespace)", file=sys.stderr)
        return 2
    clients = ["pyroute2", "tortie.kernel"] if has_pyroute2() else ["tortie.kernel"]
    before = load()
    start = startup_ms(args.imports, clients)
    loop = route_loop(args.routes, args.rounds, clients)
    after = load()

    print(
        f"rtnetlink clients: start-up (median of {args.imports}) and {args.routes} routes "
        f"(median of {args.rounds})\n"
    )
    header = f"{'client':<28}{'import+open cpu ms':>20}{'add ms':>10}{'dump ms':>10}{'delete ms':>11}"
    print(f"{header}{'adds/s':>10}")
    for name in clients:
        label = f"{name} (baseline)" if name == "pyroute2" else name
        f = loop[name]
        rate = args.routes / f["add"] * 1000
        print(
            f"{label:<28}{start[name]:>20.1f}{f['add']:>10.1f}{f['dump']:>10.1f}{f['delete']:>11.1f}{rate:>10.0f}"
        )
    if "pyroute2" not in clients:
        print("pyroute2 is not installed: no baseline (pip install pyroute2)")
    print(
        "\ntarget: start-up well inside the CNI ADD budget (ADD p50 <= 100 ms in all); "
        f"1-minute load average {before:.1f} at the start, {after:.1f} at the end"
    )
    if args.json:
        out: dict[str, Any] = {
            "routes": args.routes,
            "load": [before, after],
            "clients": {name: {"startup_cpu_ms": start[name], **loop[name]} for name in clients},
        }
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
