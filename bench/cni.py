"""Benchmark: CNI ADD and DEL latency of `tortie` (+ `tortie-ipam`), with the reference `ptp` +
`host-local` plugins (Debian containernetworking-plugins, /usr/lib/cni) as the baseline, in one run.

    sudo .venv/bin/python bench/cni.py [-n 100] [--parallel 8] [--quick]

Both plugins are executed exactly as a runtime executes them (a new process, CNI_* environment, the
network config on stdin; DEL gets the ADD's result as prevResult), from a host network namespace built
for the run, into fresh container namespaces. Latency is the wall time of one plugin process. Phases:

* sequential: N ADDs, one at a time, alternating baseline and tortie call by call (so both see the same
  machine load), then N DELs the same way;
* parallel: N ADDs with `--parallel` in flight, then N DELs, baseline first, then tortie.

The sequential phase also records each call's CPU time (user + system), which other work on a shared
machine disturbs less than wall time. tortie uses the embedded sqlite datastore (a temp file) with one
IPv4 pool and its host-wide IPAM lock; host-local keeps its state in a temp dir. Output: p50 / p99 per
plugin and phase, CPU p50, the target (tortie ADD p50 <= 100 ms) beside the measured figure, and the
1-minute load average at the start and the end of the run (wall times depend on it; CPU time less).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tortie.cni.install import install
from tortie.datastore.sqlite import SqliteDatastore
from tortie.kernel.netns import entered, open_netns
from tortie.model.kinds import kind_info
from tortie.testing.netns import unique_name

REFERENCE_DIR = Path("/usr/lib/cni")
TARGET_ADD_P50_MS = 100.0


@dataclass
class Plugin:
    label: str
    executable: Path
    conf: dict[str, Any]
    cni_path: str


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def invoke(
    plugin: Plugin, command: str, container: str, prev: dict[str, Any] | None = None
) -> tuple[float, Any]:
    conf = dict(plugin.conf)
    if prev is not None:
        conf["prevResult"] = prev
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/run/netns/{container}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": plugin.cni_path,
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [str(plugin.executable)], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=120
    )
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{plugin.label} {command} {container} failed: {proc.stdout!r} {proc.stderr!r}")
    out = proc.stdout.decode().strip()
    return elapsed, json.loads(out) if out else None


def run_sequential(
    plugins: list[Plugin], containers: dict[str, list[str]]
) -> dict[tuple[str, str], list[float]]:
    """Calls one at a time; also records each call's CPU time (key `<VERB> cpu`)."""
    times: dict[tuple[str, str], list[float]] = {}
    results: dict[tuple[str, str], Any] = {}
    count = len(next(iter(containers.values())))
    for command in ("ADD", "DEL"):
        for i in range(count):
            for plugin in plugins:
                name = containers[plugin.label][i]
                prev = results.get((plugin.label, name)) if command == "DEL" else None
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                ms, out = invoke(plugin, command, name, prev)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
                results[(plugin.label, name)] = out
                times.setdefault((plugin.label, command), []).append(ms)
                times.setdefault((plugin.label, f"{command} cpu"), []).append(cpu)
    return times


def run_parallel(
    plugins: list[Plugin], containers: dict[str, list[str]], width: int
) -> dict[tuple[str, str], list[float]]:
    """N ADDs with `width` in flight, then N DELs, one plugin after the other."""
    times: dict[tuple[str, str], list[float]] = {}
    for plugin in plugins:
        names = containers[plugin.label]

        def add(name: str, plugin: Plugin = plugin) -> tuple[float, Any]:
            return invoke(plugin, "ADD", name)

        with ThreadPoolExecutor(width) as pool:
            adds = list(pool.map(add, names))
        prevs = {n: out for n, (_, out) in zip(names, adds, strict=True)}

        def delete(name: str, plugin: Plugin = plugin, prevs: dict[str, Any] = prevs) -> tuple[float, Any]:
            return invoke(plugin, "DEL", name, prevs[name])

        with ThreadPoolExecutor(width) as pool:
            dels = list(pool.map(delete, names))
        times[(plugin.label, "ADD")] = [ms for ms, _ in adds]
        times[(plugin.label, "DEL")] = [ms for ms, _ in dels]
    return times


def make_namespaces(names: list[str]) -> None:
    subprocess.run(
        ["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in names), text=True, check=True
    )


def delete_namespaces(names: list[str]) -> None:
    subprocess.run(
        ["ip", "-force", "-batch", "-"],
        input="".join(f"netns del {n}\n" for n in names),
        text=True,
        check=False,
        capture_output=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="containers per phase and plugin (default 100)")
    parser.add_argument("--parallel", type=int, default=8, help="calls in flight in the parallel phase")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 containers per phase")
    args = parser.parse_args(argv)
    count = 10 if args.quick else args.n
    if os.geteuid() != 0:
        print("bench/cni.py needs root (network namespaces)", file=sys.stderr)
        return 2
    if not (REFERENCE_DIR / "ptp").exists() or not (REFERENCE_DIR / "host-local").exists():
        print("needs Debian containernetworking-plugins (/usr/lib/cni/ptp, host-local)", file=sys.stderr)
        return 2

    load_start = os.getloadavg()[0]
    tag = unique_name("bcni")
    host = f"{tag}-host"
    work = Path(tempfile.mkdtemp(prefix="tortie-bench-cni-"))
    bindir = work / "bin"
    install(bindir)
    db = work / "ds.db"
    ds = SqliteDatastore(db)
    ds.put(
        kind_info("IPPool").key("bench"),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "bench"},
            "spec": {"cidr": "10.72.0.0/16"},
        },
    )
    ds.put(
        kind_info("Node").key("bench-node"),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": "bench-node"},
            "spec": {},
        },
    )
    ds.close()
    plugins = [
        Plugin(
            "ptp + host-local (baseline)",
            REFERENCE_DIR / "ptp",
            {
                "cniVersion": "1.0.0",
                "name": "bench-ptp",
                "type": "ptp",
                "ipMasq": False,
                "mtu": 1500,
                "ipam": {"type": "host-local", "subnet": "10.71.0.0/16", "dataDir": str(work / "host-local")},
            },
            str(REFERENCE_DIR),
        ),
        Plugin(
            "tortie + tortie-ipam",
            bindir / "tortie",
            {
                "cniVersion": "1.0.0",
                "name": "bench-tortie",
                "type": "tortie",
                "nodename": "bench-node",
                "mtu": 1500,
                "datastore": f"sqlite://{db}",
                "ipam_lock_file": str(work / "ipam.lock"),
                "ipam": {"type": "tortie-ipam"},
            },
            str(bindir),
        ),
    ]
    phases: list[tuple[str, Callable[[dict[str, list[str]]], dict[tuple[str, str], list[float]]]]] = [
        ("sequential", lambda c: run_sequential(plugins, c)),
        (f"{args.parallel} in parallel", lambda c: run_parallel(plugins, c, args.parallel)),
    ]
    all_namespaces = [host]
    rows: list[tuple[str, str, str, float, float, float | None]] = []
    subprocess.run(["ip", "netns", "add", host], check=True)
    subprocess.run(["ip", "-n", host, "link", "set", "lo", "up"], check=True)
    # proxy ARP for 169.254.1.1 needs a unicast route to it via another device (see tortie.cni.plumbing)
    subprocess.run(["ip", "-n", host, "route", "add", "169.254.1.1/32", "dev", "lo"], check=True)
    host_fd = open_netns(f"/run/netns/{host}")
    try:
        for phase_index, (phase, runner) in enumerate(phases):
            containers = {
                p.label: [f"{tag}-{phase_index}{k}{i}" for i in range(count)] for k, p in enumerate(plugins)
            }
            names = [n for group in containers.values() for n in group]
            all_namespaces += names
            make_namespaces(names)
            with entered(host_fd):  # plugin processes inherit the host namespace, as on a real node
                times = runner(containers)
            delete_namespaces(names)
            for plugin in plugins:
                for command in ("ADD", "DEL"):
                    values = times[(plugin.label, command)]
                    cpu = times.get((plugin.label, f"{command} cpu"))
                    p50, p99 = statistics.median(values), percentile(values, 99)
                    rows.append(
                        (phase, plugin.label, command, p50, p99, statistics.median(cpu) if cpu else None)
                    )
    finally:
        os.close(host_fd)
        delete_namespaces(all_namespaces)
        subprocess.run(["rm", "-rf", str(work)], check=False)

    print(f"CNI latency, {count} containers per phase and plugin (wall time of one plugin process, ms)\n")
    print(f"{'phase':<16} {'plugin':<30} {'verb':<4} {'p50':>8} {'p99':>8} {'cpu p50':>8}  target")
    for phase, label, command, p50, p99, cpu in rows:
        target = ""
        if label.startswith("tortie") and command == "ADD":
            verdict = "met" if p50 <= TARGET_ADD_P50_MS else "MISSED"
            target = f"p50 <= {TARGET_ADD_P50_MS:.0f} ({verdict})"
        cpu_text = f"{cpu:8.1f}" if cpu is not None else f"{'-':>8}"
        print(f"{phase:<16} {label:<30} {command:<4} {p50:8.1f} {p99:8.1f} {cpu_text}  {target}")
    load = os.getloadavg()[0]
    print(
        "\ncpu p50: user+system CPU of one plugin process (sequential phase); "
        f"1-minute load average {load_start:.1f} at the start, {load:.1f} at the end"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
