"""Benchmark: CNI ADD and DEL as a runtime sees them — tortie through the node's CNI service, tortie on
its own (the service down: the launcher serves the call in-process), and the reference `ptp` +
`host-local` plugins (Debian containernetworking-plugins, /usr/lib/cni) as the baseline, in one run.

    sudo .venv/bin/python bench/cni.py [-n 100] [--parallel 8] [--quick] [--json]

Every plugin is executed exactly as a runtime executes it (a new process, CNI_* environment, the network
config on stdin; DEL gets the ADD's result as prevResult), from one lab host namespace, into fresh
container namespaces. The host runs `tortie node run` (agent and CNI service, no BGP) on an embedded
sqlite datastore with one IPv4 pool, so a tortie ADD includes what ADD now guarantees: it returns once
the agent has programmed the endpoint's policy and routes (docs/reference/cni.md). Phases:

* sequential: N ADDs, one at a time, rotating plugin by plugin call by call (so all see the same machine
  load), then N DELs the same way; each call's CPU time (user + system of the plugin process) recorded;
* parallel: N ADDs with `--parallel` in flight, then N DELs, one plugin after the other; the node's CPU
  (CNI service + agent processes) over each tortie series is divided by its calls.

Output: p50 / p99 per plugin, verb and phase, CPU per call, the targets (tortie through the service
against the baseline: ADD p50 <= 2x, DEL p50 <= 1.5x, 8-parallel ADD p50 <= 2.5x) with their verdict,
and the 1-minute load average at the start and the end (wall times depend on it; CPU time less). With
`--json` the last line is one object: {"tortie": {...}, "tortie_standalone": {...}, "baseline": {...}},
each exactly {"add_p50_ms", "add_p99_ms", "del_p50_ms", "parallel_add_p50_ms"}.
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
from tortie.lab import Lab
from tortie.model.kinds import kind_info
from tortie.testing.cni_node import CniNode
from tortie.testing.netns import unique_name

REFERENCE_DIR = Path("/usr/lib/cni")
SERVICE, STANDALONE, BASELINE = "tortie", "tortie_standalone", "baseline"
LABELS = {SERVICE: "tortie (CNI service)", STANDALONE: "tortie (standalone)", BASELINE: "ptp + host-local"}
TARGETS = (("add_p50_ms", 2.0), ("del_p50_ms", 1.5), ("parallel_add_p50_ms", 2.5))
_TICK = os.sysconf("SC_CLK_TCK")

Times = dict[tuple[str, str], list[float]]


@dataclass
class Plugin:
    key: str
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
        raise RuntimeError(f"{plugin.key} {command} {container} failed: {proc.stdout!r} {proc.stderr!r}")
    out = proc.stdout.decode().strip()
    return elapsed, json.loads(out) if out else None


def run_sequential(plugins: list[Plugin], containers: dict[str, list[str]]) -> Times:
    """Calls one at a time, rotating plugins; also each call's CPU time (key `<VERB> cpu`)."""
    times: Times = {}
    results: dict[tuple[str, str], Any] = {}
    count = len(next(iter(containers.values())))
    for command in ("ADD", "DEL"):
        for i in range(count):
            for plugin in plugins:
                name = containers[plugin.key][i]
                prev = results.get((plugin.key, name)) if command == "DEL" else None
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                ms, out = invoke(plugin, command, name, prev)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
                results[(plugin.key, name)] = out
                times.setdefault((plugin.key, command), []).append(ms)
                times.setdefault((plugin.key, f"{command} cpu"), []).append(cpu)
    return times


def process_cpu_ms(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * 1000 / _TICK


def run_parallel(
    plugins: list[Plugin], containers: dict[str, list[str]], width: int, node_pids: Callable[[], list[int]]
) -> Times:
    """N ADDs with `width` in flight, then N DELs, one plugin after the other; for tortie, the node's
    CPU (CNI service + agent) per call (key `node cpu`)."""
    times: Times = {}
    for plugin in plugins:
        names = containers[plugin.key]
        pids = node_pids()
        cpu_before = process_cpu_ms(pids)

        def add(name: str, plugin: Plugin = plugin) -> tuple[float, Any]:
            return invoke(plugin, "ADD", name)

        with ThreadPoolExecutor(width) as pool:
            adds = list(pool.map(add, names))
        prevs = {n: out for n, (_, out) in zip(names, adds, strict=True)}

        def delete(name: str, plugin: Plugin = plugin, prevs: dict[str, Any] = prevs) -> tuple[float, Any]:
            return invoke(plugin, "DEL", name, prevs[name])

        with ThreadPoolExecutor(width) as pool:
            dels = list(pool.map(delete, names))
        times[(plugin.key, "ADD")] = [ms for ms, _ in adds]
        times[(plugin.key, "DEL")] = [ms for ms, _ in dels]
        if plugin.key != BASELINE:
            times[(plugin.key, "node cpu")] = [(process_cpu_ms(pids) - cpu_before) / (2 * len(names))]
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


def seed(db: Path) -> None:
    ds = SqliteDatastore(db)
    for kind, name, spec in (("IPPool", "bench", {"cidr": "10.72.0.0/16"}), ("Node", "h1", {})):
        ds.put(
            kind_info(kind).key(name),
            {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name}, "spec": spec},
        )
    ds.close()


def tortie_netconf(work: Path, db: Path, node: CniNode, network: str) -> dict[str, Any]:
    """The network configuration of a tortie network on lab host h1, served by `node`."""
    return {
        "cniVersion": "1.0.0",
        "name": network,
        "type": "tortie",
        "nodename": "h1",
        "mtu": 1500,
        "datastore": f"sqlite://{db}",
        "ipam_lock_file": str(work / "ipam.lock"),
        "ipam": {"type": "tortie-ipam"},
        **node.netconf(),
    }


def baseline_netconf(work: Path, network: str, subnet: str) -> dict[str, Any]:
    """The reference plugins' network: ptp with host-local IPAM keeping its state under `work`."""
    return {
        "cniVersion": "1.0.0",
        "name": network,
        "type": "ptp",
        "ipMasq": False,
        "mtu": 1500,
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(work / "host-local")},
    }


def plugins_for(work: Path, bindir: Path, db: Path, node: CniNode) -> list[Plugin]:
    def tortie(key: str, network: str, socket: str) -> Plugin:
        conf = {**tortie_netconf(work, db, node, network), "service_socket": socket}
        return Plugin(key, bindir / "tortie", conf, str(bindir))

    return [
        Plugin(BASELINE, REFERENCE_DIR / "ptp", baseline_netconf(work, "bench-ptp", "10.71.0.0/16"),
               str(REFERENCE_DIR)),
        tortie(SERVICE, "bench-svc", node.socket),
        tortie(STANDALONE, "bench-alone", str(work / "no-service-here.sock")),  # the service is down
    ]


def summary(rows: dict[tuple[str, str, str], list[float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in (SERVICE, STANDALONE, BASELINE):
        seq_add, seq_del = rows[("sequential", key, "ADD")], rows[("sequential", key, "DEL")]
        par_add, par_del = rows[("parallel", key, "ADD")], rows[("parallel", key, "DEL")]
        figures = {
            "add_p50_ms": statistics.median(seq_add),
            "add_p99_ms": percentile(seq_add, 99),
            "del_p50_ms": statistics.median(seq_del),
            "del_p99_ms": percentile(seq_del, 99),
            "parallel_add_p50_ms": statistics.median(par_add),
            "parallel_add_p99_ms": percentile(par_add, 99),
            "parallel_del_p50_ms": statistics.median(par_del),
            "add_cpu_ms": statistics.median(rows[("sequential", key, "ADD cpu")]),
            "del_cpu_ms": statistics.median(rows[("sequential", key, "DEL cpu")]),
        }
        node_cpu = rows.get(("parallel", key, "node cpu"))
        if node_cpu:
            figures["node_cpu_per_call_ms"] = node_cpu[0]
        out[key] = {k: round(v, 2) for k, v in figures.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="containers per phase and plugin (default 100)")
    parser.add_argument("--parallel", type=int, default=8, help="calls in flight in the parallel phase")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 containers per phase")
    parser.add_argument("--json", action="store_true", help="print the summary object as the last line")
    args = parser.parse_args(argv)
    count = 10 if args.quick else args.n
    if os.geteuid() != 0:
        print("bench/cni.py needs root (network namespaces)", file=sys.stderr)
        return 2
    if not (REFERENCE_DIR / "ptp").exists() or not (REFERENCE_DIR / "host-local").exists():
        print("needs Debian containernetworking-plugins (/usr/lib/cni/ptp, host-local)", file=sys.stderr)
        return 2

    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="tortie-bench-cni-"))
    bindir = work / "bin"
    install(bindir)
    db = work / "ds.db"
    seed(db)
    lab = Lab.create(unique_name("bcni"), work / "lab", hosts=1)
    node = CniNode(lab, "h1", f"sqlite://{db}", work, service=True)
    all_namespaces: list[str] = []
    rows: dict[tuple[str, str, str], list[float]] = {}
    host_fd = -1
    try:
        node.start()

        def node_pids() -> list[int]:
            agent = ((node.status() or {}).get("components") or {}).get("agent") or {}
            return [p for p in (node.proc.pid if node.proc else None, agent.get("pid")) if p]

        plugins = plugins_for(work, bindir, db, node)
        phases: list[tuple[str, Callable[[dict[str, list[str]]], Times]]] = [
            ("sequential", lambda c: run_sequential(plugins, c)),
            ("parallel", lambda c: run_parallel(plugins, c, args.parallel, node_pids)),
        ]
        host_fd = open_netns(f"/run/netns/{lab.netns('h1')}")
        for phase_index, (phase, runner) in enumerate(phases):
            containers = {
                p.key: [f"{lab.name}-{phase_index}{k}{i}" for i in range(count)]
                for k, p in enumerate(plugins)
            }
            names = [n for group in containers.values() for n in group]
            all_namespaces += names
            make_namespaces(names)
            with entered(host_fd):  # plugin processes inherit the host namespace, as on a real node
                times = runner(containers)
            delete_namespaces(names)
            for (key, what), values in times.items():
                rows[(phase, key, what)] = values
    finally:
        if host_fd >= 0:
            os.close(host_fd)
        node.stop()
        delete_namespaces(all_namespaces)
        lab.down()
        subprocess.run(["rm", "-rf", str(work)], check=False)

    load = os.getloadavg()[0]
    figures = summary(rows)
    print(f"CNI latency, {count} containers per phase and plugin (wall time of one plugin process, ms)\n")
    print(f"{'phase':<12} {'plugin':<22} {'verb':<4} {'p50':>8} {'p99':>8} {'cpu p50':>8}")
    for phase in ("sequential", "parallel"):
        shown = phase if phase == "sequential" else f"{args.parallel} parallel"
        for key in (BASELINE, SERVICE, STANDALONE):
            for verb in ("ADD", "DEL"):
                values = rows[(phase, key, verb)]
                cpu = rows.get((phase, key, f"{verb} cpu"))
                cpu_text = f"{statistics.median(cpu):8.1f}" if cpu else f"{'-':>8}"
                print(
                    f"{shown:<12} {LABELS[key]:<22} "
                    f"{verb:<4} {statistics.median(values):8.1f} {percentile(values, 99):8.1f} {cpu_text}"
                )
    print()
    for key in (SERVICE, STANDALONE):
        node_cpu = figures[key].get("node_cpu_per_call_ms")
        print(f"node CPU (CNI service + agent) per call, {LABELS[key]}: {node_cpu} ms")
    print("\ntargets (tortie through the service against the same-run baseline):")
    for name, factor in TARGETS:
        ours, base = figures[SERVICE][name], figures[BASELINE][name]
        ratio = ours / base if base else float("inf")
        verdict = "met" if ratio <= factor else f"MISSED by {ours - factor * base:.1f} ms"
        print(f"  {name:<20} {ours:8.1f} vs {base:8.1f} ms = {ratio:4.2f}x (target <= {factor}x): {verdict}")
    print(
        "\ncpu p50: user+system CPU of one plugin process (sequential phase); "
        f"1-minute load average {load_start:.1f} at the start, {load:.1f} at the end"
    )
    if args.json:
        keys = ("add_p50_ms", "add_p99_ms", "del_p50_ms", "parallel_add_p50_ms")
        print(
            json.dumps(
                {series: {k: figures[series][k] for k in keys} for series in (SERVICE, STANDALONE, BASELINE)}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
