"""Benchmark: one host with 1,000 workloads — does every per-event cost stay flat as the host fills up?

    sudo .venv/bin/python bench/density.py [--workloads 1000] [--parallel 8] [--policies 200]
        [--probes 40] [--label-changes 20] [--quick] [--json]

A two-host lab: h1 runs `tortie node run` (agent + CNI service, no BGP) on an embedded sqlite datastore
holding `--policies` GlobalNetworkPolicies; h2 runs nothing and takes the baseline, the reference `ptp` +
`host-local` plugins. Each host is filled with `--workloads` containers through CNI, `--parallel` ADDs
in flight, as a runtime would. Workload i carries labels app=a<i % 100>, group=g<i % 20>, density=yes;
policy k selects group g<k % 20> and allows ingress on one port from app a<k % 100> and egress to
density=yes, so each workload has ~10 policies and its address sits in several selector sets (one with
every workload).

At 10, 100, 500 and 1,000 workloads the fill pauses and measures, on both hosts:

* per-ADD latency: `--probes` extra containers ADDed (`--parallel` at a time) and DELed again, so the
  host holds N workloads while they are measured: p50 / p99 (a tortie ADD returns once the agent has
  programmed the endpoint's policy and routes);
* CPU per ADD over those probes: user + system time of the plugin processes and, for tortie, of the
  node's CNI service and agent (wall time on a shared machine is mostly waiting for a CPU; CPU is not);
* tortie only: the agent's resident memory (VmRSS); at 10 and at the last milestone, the time from a
  label change (a workload's app label toggled between a1 and a2, which policies select from) written
  to the datastore (from the start of the write) to the kernel's notification that its address changed
  set (nftables netlink), median of `--label-changes`.

Printed: total fill time, the milestone table (tortie beside the baseline, with the load average at
each), RSS growth per workload, the flatness target (tortie's ADD p99 at the last milestone <= 1.5x its
p99 at 10), and the 1-minute load average at the start and the end; `--json` adds one object as the
last line: {"tortie": {"add_p50_ms": {"10": ..}, "add_p99_ms", "add_cpu_ms", "add_plugin_cpu_ms",
"add_service_cpu_ms", "add_agent_cpu_ms", "fill_s", "agent_rss_mb", "rss_kib_per_workload",
"label_to_kernel_ms"}, "baseline": {"add_p50_ms", "add_p99_ms", "add_cpu_ms",
"fill_s"}, "load_average": {"10": ..}}. The containers are not DELed at the end: their namespaces and
the lab go, and with them every veth.
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
from functools import partial
from pathlib import Path
from typing import Any

from cni import (
    REFERENCE_DIR,
    Plugin,
    baseline_netconf,
    delete_namespaces,
    invoke,
    make_namespaces,
    percentile,
    process_cpu_ms,
    tortie_netconf,
)
from policy_scale import SetElementMonitor, proc_status_mb

from tortie.cni.install import install
from tortie.cni.naming import wep_name
from tortie.datastore.resources import ResourceStore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.lab import Lab
from tortie.model import parse_resource
from tortie.testing.cni_node import CniNode
from tortie.testing.netns import unique_name

TARGET_P99_RATIO = 1.5
NETWORK = "dense"


def labels(i: int) -> dict[str, str]:
    return {"app": f"a{i % 100}", "group": f"g{i % 20}", "density": "yes"}


def seed(db: Path, policies: int) -> None:
    ds = SqliteDatastore(db)
    store = ResourceStore(ds)
    objects: list[dict[str, Any]] = [
        {"kind": "IPPool", "metadata": {"name": "dense"}, "spec": {"cidr": "10.90.0.0/16", "blockSize": 26}},
        {"kind": "Node", "metadata": {"name": "h1"}, "spec": {}},
    ]
    for k in range(policies):
        objects.append(
            {
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": f"dense-{k}"},
                "spec": {
                    "order": k,
                    "selector": f"group == 'g{k % 20}'",
                    "types": ["Ingress", "Egress"],
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "source": {"selector": f"app == 'a{k % 100}'"},
                            "destination": {"ports": [8000 + k]},
                        }
                    ],
                    "egress": [{"action": "Allow", "destination": {"selector": "density == 'yes'"}}],
                },
            }
        )
    store.apply_all([parse_resource({"apiVersion": "projectcalico.org/v3", **o}) for o in objects])
    ds.close()


class Series:
    """One plugin filling one host."""

    def __init__(self, key: str, plugin: Plugin, lab: Lab, parallel: int) -> None:
        self.key = key
        self.plugin = plugin
        self.prefix = f"{lab.name}-{key[0]}"
        self.parallel = parallel
        self.created: list[str] = []
        self.results: dict[str, Any] = {}
        self.fill_ms: list[float] = []
        self.fill_seconds = 0.0

    def conf_for(self, i: int) -> Plugin:
        if self.key != "tortie":
            return self.plugin
        return Plugin(
            self.plugin.key,
            self.plugin.executable,
            {**self.plugin.conf, "labels": labels(i)},
            self.plugin.cni_path,
        )

    def add(self, names: list[str], first: int) -> list[float]:
        def one(item: tuple[int, str]) -> float:
            i, name = item
            ms, out = invoke(self.conf_for(i), "ADD", name)
            self.results[name] = out
            return ms

        with ThreadPoolExecutor(self.parallel) as pool:
            return list(pool.map(one, enumerate(names, first)))

    def delete(self, names: list[str]) -> None:
        def one(name: str) -> float:
            return invoke(self.plugin, "DEL", name, self.results.pop(name, None))[0]

        with ThreadPoolExecutor(self.parallel) as pool:
            list(pool.map(one, names))

    def fill_to(self, count: int) -> None:
        names = [f"{self.prefix}{i}" for i in range(len(self.created), count)]
        make_namespaces(names)
        started = time.monotonic()
        self.fill_ms += self.add(names, len(self.created))
        self.fill_seconds += time.monotonic() - started
        self.created += names

    def probe(
        self, count: int, tag: str, node_cpu: Callable[[], tuple[float, float]]
    ) -> tuple[list[float], tuple[float, float, float]]:
        """ADD `count` containers and DEL them again: their ADD latencies and the CPU per ADD of the
        plugin processes and, for tortie, of the node's CNI service and of its agent (both finish their
        part of an ADD before it returns)."""
        names = [f"{self.prefix}p{tag}x{i}" for i in range(count)]
        make_namespaces(names)
        try:
            plugins, (service, agent) = children_cpu_ms(), node_cpu()
            latencies = self.add(names, 100_000)
            service_after, agent_after = node_cpu()
            cpu = (children_cpu_ms() - plugins, service_after - service, agent_after - agent)
            return latencies, (cpu[0] / count, cpu[1] / count, cpu[2] / count)
        finally:
            self.delete(names)
            delete_namespaces(names)


def children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def label_latency(ds: SqliteDatastore, monitor: SetElementMonitor, name: str, ip: str, changes: int) -> float:
    """Median ms from a label change's datastore write (its start) to the kernel's set notification."""
    store = ResourceStore(ds)
    samples = []
    for _change in range(changes):
        current = store.get("WorkloadEndpoint", name, "default")
        wire = current.to_wire()
        # between a1 and a2, which every run's policies select from: the address changes sets each time
        wire["metadata"]["labels"]["app"] = "a2" if wire["metadata"]["labels"]["app"] == "a1" else "a1"
        time.sleep(0.3)  # every notification of the previous change has arrived: none is taken for this one
        monitor.drain()
        written = time.monotonic()
        store.update(parse_resource(wire, source="bench"))
        samples.append((monitor.wait_for([ip]) - written) * 1000)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--policies", type=int, default=200)
    parser.add_argument("--probes", type=int, default=40, help="ADDs measured at each milestone")
    parser.add_argument("--label-changes", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 workloads, 40 policies")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.workloads, args.policies, args.probes, args.label_changes = 100, 40, 16, 5
    if os.geteuid() != 0:
        print("bench/density.py needs root (network namespaces)", file=sys.stderr)
        return 2
    if not (REFERENCE_DIR / "ptp").exists():
        print("needs Debian containernetworking-plugins (/usr/lib/cni/ptp, host-local)", file=sys.stderr)
        return 2
    milestones = [m for m in (10, 100, 500, 1000) if m < args.workloads] + [args.workloads]

    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="tortie-bench-density-"))
    bindir = work / "bin"
    install(bindir)
    db = work / "ds.db"
    seed(db, args.policies)
    lab = Lab.create(unique_name("bden"), work / "lab", hosts=2)
    node = CniNode(lab, "h1", f"sqlite://{db}", work)
    # generous waits: on a shared machine an ADD can queue for seconds; this measures, it tests no timeout
    tortie_conf = {
        **tortie_netconf(work, db, node, NETWORK),
        "policy_setup_timeout_seconds": 60,
        "service_timeout_seconds": 120,
    }
    baseline_conf = baseline_netconf(work, "dense-ptp", "10.91.0.0/16")
    series = {
        "tortie": Series(
            "tortie", Plugin("tortie", bindir / "tortie", tortie_conf, str(bindir)), lab, args.parallel
        ),
        "baseline": Series(
            "baseline",
            Plugin("baseline", REFERENCE_DIR / "ptp", baseline_conf, str(REFERENCE_DIR)),
            lab,
            args.parallel,
        ),
    }
    hosts = {"tortie": "h1", "baseline": "h2"}
    rows: dict[tuple[str, int], dict[str, float]] = {}
    label_ms: dict[int, float] = {}
    monitor: SetElementMonitor | None = None
    ds: SqliteDatastore | None = None
    try:
        node.start(timeout=300)

        def agent_pid() -> int:
            agent = ((node.status() or {}).get("components") or {}).get("agent") or {}
            return int(agent["pid"])

        def node_cpu(key: str) -> tuple[float, float]:
            if key != "tortie" or node.proc is None:
                return 0.0, 0.0
            return process_cpu_ms([node.proc.pid]), process_cpu_ms([agent_pid()])

        ds = SqliteDatastore(db)
        for milestone in milestones:
            for key, s in series.items():
                in_host(lab, hosts[key], partial(s.fill_to, milestone))
                probes, cpu = in_host(
                    lab, hosts[key], partial(s.probe, args.probes, str(milestone), partial(node_cpu, key))
                )
                row = {"p50": statistics.median(probes), "p99": percentile(probes, 99), "cpu_ms": sum(cpu)}
                row.update(zip(("plugin_cpu_ms", "service_cpu_ms", "agent_cpu_ms"), cpu, strict=True))
                row["load"] = os.getloadavg()[0]
                if key == "tortie":
                    row["rss_mb"] = proc_status_mb(agent_pid(), "VmRSS")
                rows[(key, milestone)] = row
            if milestone in (milestones[0], milestones[-1]):
                s = series["tortie"]
                name = s.created[milestone // 2]
                wep = wep_name("h1", "cni", name, "eth0")
                ip = s.results[name]["ips"][0]["address"].split("/")[0]
                # listening only now: a listener makes the kernel report every rule and element loaded
                monitor = SetElementMonitor(lab.netns("h1"))
                label_ms[milestone] = label_latency(ds, monitor, wep, ip, args.label_changes)
                monitor.close()
                monitor = None
            print(f"  {milestone} workloads per host measured (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        if monitor is not None:
            monitor.close()
        if ds is not None:
            ds.close()
        node.stop()
        # no DELs: the containers' namespaces take their veth ends with them, the lab its hosts', and
        # the datastore and host-local's files are in `work`
        for s in series.values():
            delete_namespaces(s.created)
        lab.down()
        subprocess.run(["rm", "-rf", str(work)], check=False)

    load = os.getloadavg()[0]
    first, last = milestones[0], milestones[-1]
    t = {m: rows[("tortie", m)] for m in milestones}
    b = {m: rows[("baseline", m)] for m in milestones}
    print(
        f"\n{args.workloads} workloads per host, {args.parallel} ADDs in flight, {args.policies} policies; "
        f"per-ADD latency of {args.probes} probe containers at each size (ms)\n"
    )
    print(
        f"{'workloads':>9}  {'tortie p50':>10} {'p99':>7} {'CPU/ADD':>7} {'(launcher':>9} {'service':>7} "
        f"{'agent)':>7}  {'ptp+host-local p50':>18} {'p99':>7} {'CPU/ADD':>7}  {'agent RSS MB':>12}  "
        f"{'load':>5}"
    )
    for m in milestones:
        print(
            f"{m:>9}  {t[m]['p50']:10.1f} {t[m]['p99']:7.1f} {t[m]['cpu_ms']:7.1f} "
            f"{t[m]['plugin_cpu_ms']:9.1f} {t[m]['service_cpu_ms']:7.1f} {t[m]['agent_cpu_ms']:7.1f}  "
            f"{b[m]['p50']:18.1f} {b[m]['p99']:7.1f} {b[m]['cpu_ms']:7.1f}  {t[m]['rss_mb']:12.1f}  "
            f"{t[m]['load']:5.1f}"
        )
    print(
        "(CPU/ADD: user + system ms of the plugin processes and, for tortie, of the node's CNI service and "
        "agent, over the probe ADDs; load: 1-minute load average when the milestone was measured)"
    )
    fill = {k: s.fill_seconds for k, s in series.items()}
    print(
        f"\nfill time: tortie {fill['tortie']:.1f} s, ptp + host-local {fill['baseline']:.1f} s "
        f"(all ADDs: tortie p50 {statistics.median(series['tortie'].fill_ms):.1f} / p99 "
        f"{percentile(series['tortie'].fill_ms, 99):.1f} ms; baseline p50 "
        f"{statistics.median(series['baseline'].fill_ms):.1f} / p99 "
        f"{percentile(series['baseline'].fill_ms, 99):.1f})"
    )
    growth = (t[last]["rss_mb"] - t[first]["rss_mb"]) * 1024 / max(1, last - first)
    print(
        f"agent RSS growth: {growth:.1f} KiB per workload "
        f"({t[first]['rss_mb']:.1f} -> {t[last]['rss_mb']:.1f} MB)"
    )
    print(
        f"label change -> kernel (median of {args.label_changes}): {label_ms[first]:.1f} ms at {first} "
        f"workloads, "
        f"{label_ms[last]:.1f} ms at {last}"
    )
    ratio = t[last]["p99"] / t[first]["p99"]
    verdict = "met" if ratio <= TARGET_P99_RATIO else f"MISSED ({ratio:.2f}x)"
    print(
        f"target: tortie ADD p99 at {last} <= {TARGET_P99_RATIO}x p99 at {first}: "
        f"{t[last]['p99']:.1f} vs {t[first]['p99']:.1f} ms = {ratio:.2f}x: {verdict}"
    )
    print(f"1-minute load average {load_start:.1f} at the start, {load:.1f} at the end")
    if args.json:
        out = {
            key: {
                "add_p50_ms": {str(m): round(rows[(key, m)]["p50"], 1) for m in milestones},
                "add_p99_ms": {str(m): round(rows[(key, m)]["p99"], 1) for m in milestones},
                "add_cpu_ms": {str(m): round(rows[(key, m)]["cpu_ms"], 1) for m in milestones},
                "fill_s": round(fill[key], 1),
            }
            for key in series
        }
        out["tortie"].update(
            {
                "agent_rss_mb": {str(m): round(t[m]["rss_mb"], 1) for m in milestones},
                **{
                    f"add_{part}": {str(m): round(t[m][part], 1) for m in milestones}
                    for part in ("plugin_cpu_ms", "service_cpu_ms", "agent_cpu_ms")
                },
                "rss_kib_per_workload": round(growth, 1),
                "label_to_kernel_ms": {str(m): round(v, 1) for m, v in label_ms.items()},
            }
        )
        out["load_average"] = {str(m): round(t[m]["load"], 1) for m in milestones}
        print(json.dumps(out))
    return 0


def in_host(lab: Lab, host: str, fn: Callable[[], Any]) -> Any:
    """Run `fn` with the plugin processes it starts inside `host`'s namespace."""
    from tortie.kernel.netns import entered

    with entered(f"/run/netns/{lab.netns(host)}"):
        return fn()


if __name__ == "__main__":
    sys.exit(main())
