"""What the web view shows, gathered per request: flows, nodes with BGP sessions, workloads, policies.

`UiSources` reads, without changing anything:

* flows: the flow stores of the node(s) (`flow_dirs`: host -> store directory), newest first, with
  the `FlowFilter` of the request, at most `limit`;
* nodes: the datastore's Node resources (addresses, AS), each with the BGP sessions `bgp(host)`
  reports (BIRD's control socket; None when BIRD does not answer there);
* workloads: the datastore's WorkloadEndpoints;
* policies: every policy kind and the staged kinds, with hit counts (connections whose records name
  one of the policy's rules, by action) over the records in the stores; the Kubernetes policy kinds
  too, with the hits of their translations (`enforcedAs`, tortie.k8s.names), in tier `default`
  (order 1000), `kube-admin` (order = priority) and `kube-baseline`;
* trace: `tortie policy trace` for one flow (the product's trace on the datastore's state).

Two constructions: `node_sources` (`tortie ui`: this host's store, its run directory's BIRD) and
`lab_sources` (`tortie lab ui`: every lab host's store and BIRD).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tortie.common.errors import UserError
from tortie.datastore.api import Datastore
from tortie.flows.query import FlowFilter
from tortie.flows.records import PROTOCOL_NUMBERS, FlowRecord
from tortie.flows.store import ReadReport, read_records
from tortie.k8s.names import (
    ADMIN_POLICY_KIND,
    ADMIN_TIER,
    BASELINE_POLICY_KIND,
    BASELINE_TIER,
    DEFAULT_TIER,
    NETWORK_POLICY_KIND,
    derived,
)
from tortie.model.kinds import kind_info

POLICY_KINDS = ("GlobalNetworkPolicy", "NetworkPolicy", "StagedGlobalNetworkPolicy", "StagedNetworkPolicy",
                "StagedKubernetesNetworkPolicy")
# Kubernetes kind -> tier of its translation (docs/reference/kubernetes-policy.md)
KUBERNETES_POLICY_TIERS = {NETWORK_POLICY_KIND: DEFAULT_TIER, ADMIN_POLICY_KIND: ADMIN_TIER,
                           BASELINE_POLICY_KIND: BASELINE_TIER}


@dataclass
class UiSources:
    flow_dirs: Callable[[], dict[str, Path]]
    open_datastore: Callable[[], Datastore]
    bgp: Callable[[str], list[dict[str, Any]] | None]

    def records(self, selector: FlowFilter, report: ReadReport) -> Iterator[FlowRecord]:
        for directory in self.flow_dirs().values():
            if directory.is_dir():
                found = read_records(directory, report, selector.since)
                yield from (r for r in found if selector.matches(r))

    def flows(self, params: dict[str, str]) -> dict[str, Any]:
        limit_text = params.pop("limit", "500")
        if not limit_text.isdigit() or not 0 < int(limit_text) <= 10_000:
            raise UserError(f"limit={limit_text!r}: give a number from 1 to 10000")
        selector = FlowFilter.from_params(params, time.time())
        report = ReadReport()
        found = sorted(self.records(selector, report), key=lambda r: r.end, reverse=True)[: int(limit_text)]
        return {"flows": [r.to_json() for r in found], "skipped": report.skipped}

    def _list(self, kind: str) -> list[dict[str, Any]]:
        with closing(self.open_datastore()) as ds:
            kvs, _ = ds.list(kind_info(kind).prefix)
        return [dict(kv.value) for kv in kvs if isinstance(kv.value, dict)]

    def nodes(self) -> dict[str, Any]:
        out = []
        for node in self._list("Node"):
            name = str(node.get("metadata", {}).get("name", ""))
            bgp = node.get("spec", {}).get("bgp") or {}
            out.append({
                "name": name,
                "ipv4Address": bgp.get("ipv4Address"),
                "ipv6Address": bgp.get("ipv6Address"),
                "asNumber": bgp.get("asNumber"),
                "bgp": self.bgp(name),
            })
        return {"nodes": sorted(out, key=lambda n: n["name"])}

    def workloads(self) -> dict[str, Any]:
        out = []
        for wep in self._list("WorkloadEndpoint"):
            meta, spec = wep.get("metadata", {}), wep.get("spec", {})
            out.append({
                "name": spec.get("workload") or meta.get("name"),
                "endpoint": meta.get("name"),
                "namespace": meta.get("namespace"),
                "node": spec.get("node"),
                "ips": spec.get("ipNetworks", []),
                "labels": meta.get("labels", {}),
            })
        return {"workloads": sorted(out, key=lambda w: (str(w["namespace"]), str(w["name"])))}

    def policies(self) -> dict[str, Any]:
        hits: dict[str, dict[str, int]] = {}
        report = ReadReport()
        for record in self.records(FlowFilter(), report):
            pending_only = [h for h in record.pending_policies if h not in record.policies]
            for hit in (*record.policies, *pending_only):  # staged policies appear as pending only
                parts = hit.split("|")
                if len(parts) == 4:
                    counts = hits.setdefault(parts[1], {})
                    counts[parts[3]] = counts.get(parts[3], 0) + max(record.started, 1)
        out = []
        for kind in POLICY_KINDS:
            for obj in self._list(kind):
                meta, spec = obj.get("metadata", {}), obj.get("spec", {})
                ns = meta.get("namespace")
                label = f"{kind}({ns}/{meta.get('name')})" if ns else f"{kind}({meta.get('name')})"
                out.append({
                    "kind": kind,
                    "namespace": ns,
                    "name": meta.get("name"),
                    "tier": spec.get("tier") or "default",
                    "order": spec.get("order"),
                    "selector": _selector_text(kind, spec),
                    "stagedAction": spec.get("stagedAction", "Set") if kind.startswith("Staged") else None,
                    "hits": hits.get(label, {}),
                })
        for kind, tier in KUBERNETES_POLICY_TIERS.items():
            for obj in self._list(kind):
                meta, spec = obj.get("metadata", {}), obj.get("spec", {})
                ns = meta.get("namespace")
                translation = derived(kind, str(meta.get("name")), ns)
                where = f"{ns}/{translation.name}" if ns else translation.name
                out.append({
                    "kind": kind,
                    "namespace": ns,
                    "name": meta.get("name"),
                    "tier": tier,
                    "order": 1000 if kind == NETWORK_POLICY_KIND else spec.get("priority"),
                    "selector": _selector_text(kind, spec),
                    "stagedAction": None,
                    "enforcedAs": translation.name,
                    "hits": hits.get(f"{translation.kind}({where})", {}),
                })
        return {"policies": out}

    def trace(self, params: dict[str, str]) -> dict[str, Any]:
        from tortie.policy.packet_trace import load_objects, resolve_end, trace, valid_resources
        from tortie.policy.trace import Packet

        src, dst = params.get("src", ""), params.get("dst", "")
        proto_text = params.get("protocol", "tcp").lower()
        protocol = int(proto_text) if proto_text.isdigit() else PROTOCOL_NUMBERS.get(proto_text)
        if not src or not dst or protocol is None:
            raise UserError("trace needs src, dst (IP addresses) and a known protocol")
        port_text = params.get("port") or ""
        with closing(self.open_datastore()) as ds:
            objects = load_objects(ds)
        weps = [r for r in valid_resources(objects) if r.kind == "WorkloadEndpoint"]
        source, destination = resolve_end(src, weps), resolve_end(dst, weps)
        if source.endpoint is None and destination.endpoint is None:
            raise UserError("neither end is a WorkloadEndpoint: nothing of tortie's polices this packet")
        if protocol in (1, 58):
            echo = 8 if protocol == 1 else 128
            pkt = Packet(source.ip, destination.ip, protocol, icmp_type=echo, icmp_code=0)
        else:
            port = int(port_text) if port_text.isdigit() else 80
            pkt = Packet(source.ip, destination.ip, protocol, 40000, port)
        return trace(objects, source, destination, pkt)


def node_sources(
    store_dir: Path, hostname: str, run_dir: str, open_datastore: Callable[[], Datastore]
) -> UiSources:
    def bgp(host: str) -> list[dict[str, Any]] | None:
        if host != hostname:
            return None  # other nodes' BIRD is not reachable from here
        from tortie.bgp.control import BirdControl, BirdNotRunning
        from tortie.bgp.daemon import RunPaths
        from tortie.bgp.status import query_peers

        try:
            with BirdControl(RunPaths(run_dir).socket, timeout=2.0) as ctl:
                return [p.to_json() for p in query_peers(ctl)]
        except (BirdNotRunning, OSError):
            return None

    return UiSources(lambda: {hostname: store_dir}, open_datastore, bgp)


def lab_sources(name: str) -> UiSources:
    from tortie.lab.datacenter import Datacenter

    def dc() -> Datacenter:
        return Datacenter.open(name)

    return UiSources(
        lambda: dc().flow_dirs(), lambda: dc().datastore(), lambda host: dc().nodes.bgp_peers(host)
    )


def _selector_text(kind: str, spec: dict[str, Any]) -> str:
    """A policy's selector as the policies table shows it (a Kubernetes policy's podSelector or
    subject)."""
    if kind in ("StagedKubernetesNetworkPolicy", NETWORK_POLICY_KIND):
        return "podSelector: " + json.dumps(spec.get("podSelector") or {}, sort_keys=True)
    if kind in (ADMIN_POLICY_KIND, BASELINE_POLICY_KIND):
        return "subject: " + json.dumps(spec.get("subject") or {}, sort_keys=True)
    return str(spec.get("selector") or "all()")
