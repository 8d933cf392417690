"""Benchmark: policy at scale (issue 5's targets), printed beside the measured figures.

1. Control plane, in one process (the agent's calc + policy manager + the real nftables driver in a
   throwaway namespace): 20,000 WorkloadEndpoints cluster-wide (200 on this host), 2,000 policies
   (GlobalNetworkPolicy and NetworkPolicy over 20 namespaces, 4 tiers), 500 network sets.
   * initial: from the first datastore event to the table programmed in the kernel (calc, render,
     one nft transaction);
   * one label change of a remote endpoint that moves it between rule selectors -> kernel
     (calc flush + manager apply + nft transaction), p50 / p99 over 200 changes;
   * peak RSS of the process.
2. Dataplane (root, a two-host lab): iperf3 between a workload on h1 and one on h2, same run:
   * baseline: both endpoints allowed by a profile (tortie's table present, no policy);
   * 1,000 policies (999 applying to 100 other local endpoints) + a 10,000-member IP set that the
     target's own policy matches the client against;
   * the iptables-era comparison: 1,000 non-matching rules walked by every packet (a linear chain
     in the forward hook, no conntrack shortcut), then accept.

    .venv/bin/python bench/policy_scale.py [--quick] [--no-iperf]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tortie.calc.calc_graph import CalcGraph
from tortie.calc.events import InSync, KVUpdate
from tortie.dataplane.drivers.nftables import NftablesDriver
from tortie.dataplane.managers.policy import PolicyManager
from tortie.dataplane.messages import ConfigUpdate, Message
from tortie.testing.netns import throwaway_netns
from tortie.testing.policy_world import ALLOW_ALL, gnp, key_of, network_set, np, tier, wep

HOST = "h1"
TARGETS = {"initial_s": 5.0, "label_p99_ms": 50.0, "rss_mb": 300.0, "retained_pct": 95.0}
APPS, ROLES, NAMESPACES = 200, 50, 20


def world(endpoints: int, local: int, policies: int, netsets: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    objs: list[dict[str, Any]] = [ALLOW_ALL]
    for t in range(4):
        objs.append(tier(f"t{t}", order=float(10 * (t + 1))))
    for i in range(endpoints):
        node = HOST if i < local else f"node-{i % 100}"
        ip = f"10.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}/32"
        labels = {"app": f"app-{i % APPS}", "role": f"r-{rnd.randrange(ROLES)}", "zone": f"z{i % 5}"}
        objs.append(
            wep(
                f"w{i}",
                ip,
                node=node,
                namespace=f"ns-{i % NAMESPACES}",
                labels=labels,
                profiles=["allow-all"],
                iface=f"tort{i:011x}"[:15],
                ports=[{"name": "http", "protocol": "TCP", "port": 8000 + i % 10}],
            )
        )
    for j in range(netsets):
        nets = [f"172.{16 + j % 16}.{(j * 7 + k) % 256}.0/24" for k in range(1 + j % 20)]
        objs.append(network_set(f"set-{j}", nets, labels={"set": f"set-{j}"}))
    for p in range(policies):
        app = f"app-{p % APPS}"
        ingress = [
            {
                "action": "Allow",
                "protocol": "TCP",
                "source": {"selector": f"role == 'r-{p % ROLES}'"},
                "destination": {"ports": [80, 443, "http"]},
            },
            {"action": "Deny", "source": {"selector": f"set == 'set-{p % netsets}'"}},
        ]
        egress = [
            {"action": "Allow", "destination": {"selector": f"set == 'set-{(p * 3) % netsets}'"}},
            {"action": "Pass"},
        ]
        if p % 2:
            objs.append(
                np(
                    f"pol-{p}",
                    f"ns-{p % NAMESPACES}",
                    selector=f"app == '{app}'",
                    order=float(p % 10),
                    ingress=ingress,
                    egress=egress,
                )
            )
        else:
            objs.append(
                gnp(
                    f"t{p % 4}.pol-{p}",
                    tier=f"t{p % 4}",
                    selector=f"app == '{app}'",
                    order=float(p % 10),
                    ingress=ingress,
                    egress=egress,
                )
            )
    return objs


def control_plane(args: argparse.Namespace) -> dict[str, float]:
    scale = (2000, 20, 200, 50) if args.quick else (20000, 200, 2000, 500)
    objs = world(*scale)
    keyed = [(key_of(o), o) for o in objs]
    print(
        f"control plane: {scale[0]} endpoints ({scale[1]} local), {scale[2]} policies, "
        f"{scale[3]} network sets"
    )
    out: list[Message] = []
    with throwaway_netns("pbench") as ns:
        driver = NftablesDriver(ns)
        try:
            started = time.perf_counter()
            graph = CalcGraph(HOST, out.append, policy=True)
            for key, value in keyed:
                graph.on_event(KVUpdate(key, value))
            graph.on_event(InSync())
            graph.flush()
            calc_done = time.perf_counter()
            manager = PolicyManager(driver)
            manager.on_update(ConfigUpdate({"interface_prefix": ("tort",)}))
            for msg in out:
                manager.on_update(msg)
            manager.apply()
            initial = time.perf_counter() - started
            stats = manager.stats()
            print(
                f"  messages {len(out)}, calc {calc_done - started:.2f} s, "
                f"program {initial - (calc_done - started):.2f}"
                f" s; table: {stats['nft_chains']} chains, {stats['nft_sets']} sets, "
                f"{stats['nft_set_elements']} elements, {stats['policy_active_policies']} active policies"
            )
            nft_ms: list[float] = []
            real_run = driver.run

            def timed_run(commands: list[dict[str, Any]]) -> None:
                t = time.perf_counter()
                real_run(commands)
                nft_ms.append((time.perf_counter() - t) * 1000)

            driver.run = timed_run  # type: ignore[method-assign]
            latencies = []
            remote = [o for o in objs if o["kind"] == "WorkloadEndpoint" and o["spec"]["node"] != HOST]
            rnd = random.Random(1)
            for _ in range(40 if args.quick else 200):
                obj = json.loads(json.dumps(rnd.choice(remote)))
                obj["metadata"]["labels"]["role"] = f"r-{rnd.randrange(ROLES)}"
                out.clear()
                t0 = time.perf_counter()
                graph.on_event(KVUpdate(key_of(obj), obj))
                graph.flush()
                for msg in out:
                    manager.on_update(msg)
                manager.apply()
                latencies.append((time.perf_counter() - t0) * 1000)
            latencies.sort()
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            nft_ms.sort()
            print(f"  label changes: {len(latencies)}, of which in the nft transaction: p50 "
                  f"{statistics.median(nft_ms):.1f} ms (libnftables fetches every set's elements first)")
        finally:
            driver.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS includes the benchmark's own copy of the {len(objs)} wire objects")
    return {"initial_s": initial, "label_p50_ms": p50, "label_p99_ms": p99, "rss_mb": rss_mb}


# -- dataplane throughput ---------------------------------------------------------------------------------
def _iperf(lab: Any, seconds: int) -> float:
    out = lab.exec("w1", ["iperf3", "-c", "10.72.2.2", "-t", str(seconds), "-J"], timeout=seconds + 30).stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def _program(drivers: dict[str, NftablesDriver], objs: list[dict[str, Any]]) -> None:
    """Program each host's table for `objs`: a fresh manager adopts the table and applies the diff."""
    from tortie.calc.policy_graph import run_snapshot

    keyed = [(key_of(o), o) for o in objs]
    for host, driver in drivers.items():
        manager = PolicyManager(driver)
        manager.on_update(ConfigUpdate({"interface_prefix": ("tort",)}))
        for msg in run_snapshot(host, keyed):
            manager.on_update(msg)
        manager.apply()


def _linear_table(on: bool, lab: Any) -> None:
    for host in ("h1", "h2"):
        lab.exec(host, ["nft", "delete", "table", "inet", "linear"], check=False)
        if not on:
            continue
        rules = "\n".join(
            f"    ip saddr 10.99.{i // 256}.{i % 256} ip daddr 10.98.{i // 256}.{i % 256} tcp dport "
            f"{1000 + i} accept"
            for i in range(1000)
        )
        head = "table inet linear {\n  chain forward {\n"
        head += "    type filter hook forward priority -10; policy accept;\n"
        text = f"{head}{rules}\n  }}\n}}\n"
        lab.exec(host, ["nft", "-f", "-"], stdin=text)


def dataplane(args: argparse.Namespace) -> dict[str, float]:
    from tortie.lab import Lab, host_interface_name
    from tortie.testing.netns import unique_name

    seconds = 2 if args.quick else 4
    workdir = Path(tempfile.mkdtemp(prefix="policy-bench-"))
    lab = Lab.create(unique_name("pb"), workdir / "lab", hosts=2)
    drivers: dict[str, NftablesDriver] = {}
    try:
        lab.add_static_route("h1", "10.72.2.0/24", lab.host_ip("h2"))
        lab.add_static_route("h2", "10.72.1.0/24", lab.host_ip("h1"))
        lab.add_workload("w1", "h1", "10.72.1.2", plumb_host_side=True)
        lab.add_workload("w2", "h2", "10.72.2.2", plumb_host_side=True)
        server = lab.start_process("w2", ["iperf3", "-s"])
        time.sleep(0.5)
        for host in ("h1", "h2"):
            drivers[host] = NftablesDriver(lab.netns(host))

        def iface(name: str) -> str:
            return host_interface_name(lab.state.interface_prefix, lab.name, name)

        base = [
            ALLOW_ALL,
            wep(
                "w1",
                "10.72.1.2/32",
                node="h1",
                labels={"role": "client"},
                profiles=["allow-all"],
                iface=iface("w1"),
            ),
            wep(
                "w2",
                "10.72.2.2/32",
                node="h2",
                labels={"app": "server"},
                profiles=["allow-all"],
                iface=iface("w2"),
            ),
        ]
        loaded = [
            ALLOW_ALL,
            base[2],
            wep(
                "w1",
                "10.72.1.2/32",
                node="h1",
                labels={"role": "client", "big": "yes"},
                profiles=["allow-all"],
                iface=iface("w1"),
            ),
        ]
        loaded += [
            wep(
                f"other{i}",
                f"10.72.3.{i}/32",
                node="h2",
                labels={"app": f"o{i % 10}"},
                profiles=["allow-all"],
                iface=f"tortx{i:010x}"[:15],
            )
            for i in range(100)
        ]
        loaded += [
            wep(
                f"big{i}",
                f"10.{80 + i // 65536}.{(i // 256) % 256}.{i % 256}/32",
                node="elsewhere",
                labels={"big": "yes"},
            )
            for i in range(10_000)
        ]
        loaded += [
            gnp(
                f"p{i}",
                selector=f"app == 'o{i % 10}'",
                order=float(i),
                ingress=[
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"selector": f"role == 'r{i}'"},
                        "destination": {"ports": [80 + i]},
                    }
                ],
            )
            for i in range(999)
        ]
        loaded.append(
            gnp(
                "server-in",
                selector="app == 'server'",
                ingress=[{"action": "Allow", "source": {"selector": "big == 'yes'"}}],
            )
        )
        rows: dict[str, list[float]] = {"baseline": [], "policies": [], "linear": []}
        configs: dict[str, Callable[[], None]] = {
            "baseline": lambda: (_linear_table(False, lab), _program(drivers, base))[0],
            "policies": lambda: (_linear_table(False, lab), _program(drivers, loaded))[0],
            "linear": lambda: (_program(drivers, base), _linear_table(True, lab))[0],
        }
        for _round in range(1 if args.quick else 2):
            for name, setup in configs.items():
                setup()
                rows[name].append(_iperf(lab, seconds))
        lab.stop_process(server)
        best = {name: max(values) for name, values in rows.items()}
        print(f"dataplane: iperf3 w1 (h1) -> w2 (h2), {seconds} s per run, best of {len(rows['baseline'])}")
        for name, value in best.items():
            print(f"  {name:9s} {value:6.2f} Gbit/s   runs {', '.join(f'{v:.2f}' for v in rows[name])}")
        return {
            "baseline_gbps": best["baseline"],
            "policies_gbps": best["policies"],
            "linear_gbps": best["linear"],
            "retained_pct": 100 * best["policies"] / best["baseline"],
            "linear_pct": 100 * best["linear"] / best["baseline"],
        }
    finally:
        for driver in drivers.values():
            driver.close()
        lab.down()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the scale, shorter iperf runs")
    parser.add_argument("--no-iperf", action="store_true", help="skip the dataplane throughput part")
    args = parser.parse_args()
    results = control_plane(args)
    if not args.no_iperf:
        results.update(dataplane(args))
    print("\nmetric                              measured      target")
    print(f"initial calc + program (s)          {results['initial_s']:8.2f}      <= {TARGETS['initial_s']}")
    print(f"label change -> kernel p50 (ms)     {results['label_p50_ms']:8.1f}")
    print(
        f"label change -> kernel p99 (ms)     {results['label_p99_ms']:8.1f}      "
        f"<= {TARGETS['label_p99_ms']}"
    )
    print(f"peak RSS (MB)                       {results['rss_mb']:8.0f}      <= {TARGETS['rss_mb']}")
    if "retained_pct" in results:
        print(
            f"throughput with 1,000 policies (%)  {results['retained_pct']:8.1f}      "
            f">= {TARGETS['retained_pct']}"
        )
        print(f"linear 1,000-rule chain (%)         {results['linear_pct']:8.1f}      (comparison)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
