"""Benchmark: the cost of a Kubernetes Namespace relabel in the agent's calc (issue 19's incrementality).

A relabelled Namespace changes the labels every pod of the namespace inherits (profile `kns.<ns>`), so
its cost must follow that namespace's pods, not the cluster's. The pure calc (`PolicyGraph`, what the
agent runs) of host h1 holds a small namespace `x` (20 pods, 2 on h1) with a NetworkPolicy that
selects peers by namespace labels (`team == blue`), an AdminNetworkPolicy over namespaces, and N pods
in 100 other namespaces (a tenth on h1, labelled `team=green`); we time one relabel of Namespace `x`
between red and blue (the datastore event, the calc and its flush), median and p99, for N = 2,000
and N = 20,000 in the same run.

Baselines beside it, same run and scale: relabelling a namespace that holds every pod (what the cost
would be if a relabel touched all endpoints), and one pod's own label change (the smallest change
the calc knows). Target: the small namespace's relabel costs about the same at both N (within 2x)
and far less than the all-pods baseline.

A second line puts the N other pods in `team=blue` namespaces too: then x's relabel moves 20 pods in
or out of an IP set of N members, and the calc sends a set's full membership when it changes (the
ipsets channel has no deltas), so that cost follows the set's size — as it does for any endpoint
change that alters a large set.

    .venv/bin/python bench/k8s_namespace.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

from tortie.calc.policy_graph import PolicyGraph
from tortie.datastore.syncer import InSync
from tortie.selector.label_index.base import IndexBase
from tortie.testing.calc_harness import kv_event
from tortie.testing.k8s_world import admin_policy, namespace, network_policy
from tortie.testing.policy_world import key_of, wep

SMALL = 20


def pod(i: int, ns: str) -> dict[str, Any]:
    return wep(
        f"p{i}",
        f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32",
        node="h1" if i % 10 == 0 else f"h{2 + i % 9}",  # a tenth on this host
        namespace=ns,
        labels={"app": f"a{i % 50}"},
        profiles=[f"kns.{ns}"],
        iface=f"tort{i}",
        orchestrator="k8s",
    )


def build(others: int, *, crowded: bool, team: str = "green") -> tuple[PolicyGraph, list[str]]:
    """A graph holding Namespace x (SMALL pods, or every pod when `crowded`) and `others` pods
    elsewhere, in namespaces of `team`."""
    graph = PolicyGraph("h1", lambda _msg: None)
    objs = [pod(i, "x") for i in range(SMALL)]
    spaces = [f"ns{j}" for j in range(100)]
    objs += [pod(SMALL + i, "x" if crowded else spaces[i % 100]) for i in range(others)]
    objs += [namespace("x", {"team": "blue"})] + [namespace(n, {"team": team}) for n in spaces]
    objs.append(
        network_policy(
            "from-blue",
            "x",
            {
                "podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}],
            },
        )
    )
    objs.append(
        admin_policy(
            "red-out", 10, {"namespaces": {"matchLabels": {"team": "red"}}},
            egress=[{"action": "Deny", "to": [{"namespaces": {"matchLabels": {"team": "blue"}}}]}],
        )
    )
    for obj in objs:
        graph.on_event(kv_event(key_of(obj), obj))
    graph.on_event(InSync())
    graph.flush()
    return graph, [key_of(o) for o in objs]


def timed(graph: PolicyGraph, events: list[tuple[str, dict[str, Any]]], runs: int) -> tuple[float, float]:
    """Median and p99 (ms) of one event + flush, cycling through `events`."""
    samples = []
    for n in range(runs):
        key, value = events[n % len(events)]
        start = time.perf_counter()
        graph.on_event(kv_event(key, value, n + 2))
        graph.flush()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def relabels() -> list[tuple[str, dict[str, Any]]]:
    return [(key_of(namespace("x")), namespace("x", {"team": team})) for team in ("red", "blue")]


def count_relabels(graph: PolicyGraph) -> int:
    """Items the label indexes re-evaluate for one Namespace relabel."""
    seen = 0
    original = IndexBase._relabel

    def counting(self: IndexBase, item_id: Any, item: Any) -> Any:
        nonlocal seen
        seen += 1
        return original(self, item_id, item)

    IndexBase._relabel = counting  # type: ignore[method-assign]
    try:
        timed(graph, relabels()[:1], 1)
    finally:
        IndexBase._relabel = original  # type: ignore[method-assign]
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the scale and of the runs")
    parser.add_argument("--json", action="store_true", help="a JSON line with the figures last")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    runs = 200 // scale
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average before: {load}")
    out: dict[str, Any] = {}
    for others in (2000 // scale, 20000 // scale):
        graph, keys = build(others, crowded=False)
        out[f"small_ns_{others}"] = timed(graph, relabels(), runs)
        out[f"small_ns_{others}_items"] = count_relabels(graph)
        pod_key = keys[0]
        pod_value = pod(0, "x")
        flipped = {**pod_value, "metadata": {**pod_value["metadata"], "labels": {"app": "other"}}}
        out[f"pod_label_{others}"] = timed(graph, [(pod_key, flipped), (pod_key, pod_value)], runs)
        crowded, _ = build(others, crowded=True)
        out[f"all_pods_ns_{others}"] = timed(crowded, relabels(), max(4, runs // 10))
        out[f"all_pods_ns_{others}_items"] = count_relabels(crowded)
        big_set, _ = build(others, crowded=False, team="blue")
        out[f"small_ns_in_big_set_{others}"] = timed(big_set, relabels(), runs)
        small_ms, small_p99 = out[f"small_ns_{others}"]
        print(
            f"N={others:>6}: relabel of a {SMALL}-pod namespace {small_ms:7.2f} ms median {small_p99:7.2f} "
            f"ms p99 ({out[f'small_ns_{others}_items']} items re-evaluated) | baselines: one pod's labels "
            f"{out[f'pod_label_{others}'][0]:6.2f} ms, a namespace of all {SMALL + others} pods "
            f"{out[f'all_pods_ns_{others}'][0]:8.2f} ms ({out[f'all_pods_ns_{others}_items']} items)"
        )
        print(
            f"          the same relabel when x's pods join an IP set of the {others} others: "
            f"{out[f'small_ns_in_big_set_{others}'][0]:7.2f} ms median (the set is re-sent whole)"
        )
    small, large = out[f"small_ns_{2000 // scale}"][0], out[f"small_ns_{20000 // scale}"][0]
    ratio = large / small if small else float("inf")
    print(f"target: the small namespace's relabel at 10x the pods within 2x: {ratio:.2f}x "
          f"({'met' if ratio <= 2 else 'MISSED'})")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        print(json.dumps({k: v for k, v in out.items()} | {"ratio": ratio}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
