"""Rendering resources for `tortie get`: tables (default and wide, with rich), yaml, json, name.

Table columns follow calicoctl's per-kind headings (reference §6.2); yaml/json output is the wire
form and loads back through `tortie apply` unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tortie.k8s import names
from tortie.model import Resource, dump_json, dump_yaml
from tortie.model.kinds import kind_info

Getter = Callable[[dict[str, Any]], str]


def _f(*path: str, default: str = "") -> Getter:
    def get(wire: dict[str, Any]) -> str:
        cur: Any = wire
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return default
            cur = cur[p]
        if isinstance(cur, bool):
            return "true" if cur else "false"
        if isinstance(cur, list):
            return ",".join(str(x) for x in cur)
        return str(cur)

    return get


_NAME = ("NAME", _f("metadata", "name"))
_NAMESPACE = ("NAMESPACE", _f("metadata", "namespace"))


def _selector(*path: str) -> Getter:
    """A Kubernetes label selector as kubectl prints it (`app=web,tier in (a,b)`; `<none>` = all)."""

    def get(wire: dict[str, Any]) -> str:
        cur: Any = wire
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        if not isinstance(cur, dict):
            return "<none>"
        terms = [f"{k}={v}" for k, v in sorted((cur.get("matchLabels") or {}).items())]
        for e in cur.get("matchExpressions") or ():
            op, key, values = e.get("operator"), e.get("key"), ",".join(e.get("values") or ())
            terms.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                          "Exists": f"{key}", "DoesNotExist": f"!{key}"}.get(str(op), str(op)))
        return ",".join(terms) or "<none>"

    return get


def _labels(wire: dict[str, Any]) -> str:
    labels = (wire.get("metadata") or {}).get("labels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def _enforced_as(prefix: str) -> Getter:
    """The name of the Calico object a Kubernetes object is translated into (tortie.k8s.names)."""
    return lambda wire: prefix + str((wire.get("metadata") or {}).get("name", ""))


# kind -> (default columns, extra columns for wide)
_COLUMNS: dict[str, tuple[list[tuple[str, Getter]], list[tuple[str, Getter]]]] = {
    "IPPool": (
        [_NAME, ("CIDR", _f("spec", "cidr")), ("SELECTOR", _f("spec", "nodeSelector", default="all()"))],
        [("NAT", _f("spec", "natOutgoing", default="false")),
         ("IPIPMODE", _f("spec", "ipipMode", default="Never")),
         ("VXLANMODE", _f("spec", "vxlanMode", default="Never")),
         ("DISABLED", _f("spec", "disabled", default="false")),
         ("DISABLEBGPEXPORT", _f("spec", "disableBGPExport", default="false"))],
    ),
    "BGPPeer": (
        [_NAME, ("PEERIP", _f("spec", "peerIP")), ("NODE", _f("spec", "node", default="(global)")),
         ("ASN", _f("spec", "asNumber"))],
        [("NODESELECTOR", _f("spec", "nodeSelector")), ("PEERSELECTOR", _f("spec", "peerSelector"))],
    ),
    "BGPConfiguration": (
        [_NAME, ("LOGSEVERITY", _f("spec", "logSeverityScreen", default="Info")),
         ("MESHENABLED", _f("spec", "nodeToNodeMeshEnabled", default="true")),
         ("ASNUMBER", _f("spec", "asNumber", default="64512"))],
        [("LISTENPORT", _f("spec", "listenPort", default="179"))],
    ),
    "NetworkPolicy": (
        [_NAMESPACE, _NAME, ("TIER", _f("spec", "tier", default="default"))],
        [("ORDER", _f("spec", "order")), ("SELECTOR", _f("spec", "selector", default="all()"))],
    ),
    "GlobalNetworkPolicy": (
        [_NAME, ("TIER", _f("spec", "tier", default="default"))],
        [("ORDER", _f("spec", "order")), ("SELECTOR", _f("spec", "selector", default="all()"))],
    ),
    "Tier": ([_NAME, ("ORDER", _f("spec", "order"))], [("DEFAULTACTION", _f("spec", "defaultAction"))]),
    "HostEndpoint": (
        [_NAME, ("NODE", _f("spec", "node"))],
        [("INTERFACE", _f("spec", "interfaceName")), ("IPS", _f("spec", "expectedIPs"))],
    ),
    "WorkloadEndpoint": (
        [_NAMESPACE, ("WORKLOAD", _f("spec", "workload")), ("NODE", _f("spec", "node")),
         ("NETWORKS", _f("spec", "ipNetworks")), ("INTERFACE", _f("spec", "interfaceName"))],
        [_NAME, ("PROFILES", _f("spec", "profiles"))],
    ),
    "Node": (
        [_NAME],
        [("ASN", _f("spec", "bgp", "asNumber")), ("IPV4", _f("spec", "bgp", "ipv4Address")),
         ("IPV6", _f("spec", "bgp", "ipv6Address"))],
    ),
    "NetworkSet": ([_NAMESPACE, _NAME], [("NETS", _f("spec", "nets"))]),
    "GlobalNetworkSet": ([_NAME], [("NETS", _f("spec", "nets"))]),
    "IPReservation": ([_NAME], [("CIDRS", _f("spec", "reservedCIDRs"))]),
    "Namespace": ([_NAME, ("LABELS", _labels)], [("PROFILE", _enforced_as(names.NAMESPACE_PROFILE_PREFIX))]),
    "NetworkPolicy.networking.k8s.io": (
        [_NAMESPACE, _NAME, ("POD-SELECTOR", _selector("spec", "podSelector"))],
        [("POLICY-TYPES", _f("spec", "policyTypes")),
         ("ENFORCED-AS", _enforced_as(names.NETWORK_POLICY_PREFIX))],
    ),
    "StagedKubernetesNetworkPolicy": (
        [_NAMESPACE, _NAME, ("POD-SELECTOR", _selector("spec", "podSelector")),
         ("STAGED-ACTION", _f("spec", "stagedAction", default="Set"))],
        [("POLICY-TYPES", _f("spec", "policyTypes")),
         ("PREVIEWS", _enforced_as(names.NETWORK_POLICY_PREFIX))],
    ),
    "AdminNetworkPolicy.policy.networking.k8s.io": (
        [_NAME, ("PRIORITY", _f("spec", "priority"))],
        [("ENFORCED-AS", _enforced_as(names.ADMIN_POLICY_PREFIX))],
    ),
    "BaselineAdminNetworkPolicy.policy.networking.k8s.io": (
        [_NAME], [("ENFORCED-AS", _enforced_as(names.BASELINE_POLICY_PREFIX))],
    ),
    "IPAMConfiguration": (
        [_NAME, ("STRICTAFFINITY", _f("spec", "strictAffinity", default="false")),
         ("MAXBLOCKSPERHOST", _f("spec", "maxBlocksPerHost", default="0"))],
        [],
    ),
}


def columns_for(kind: str, wide: bool) -> list[tuple[str, Getter]]:
    base, extra = _COLUMNS.get(kind, ([_NAME], []))
    return base + extra if wide else list(base)


def render_table(kind: str, resources: Sequence[Resource], wide: bool) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    cols = columns_for(kind, wide)
    for title, _ in cols:
        table.add_column(title, overflow="fold")
    for res in resources:
        wire = res.to_wire()
        table.add_row(*(get(wire) for _, get in cols))
    return table


def print_resources(kind: str, resources: Sequence[Resource], fmt: str) -> None:
    """Print in one of: ps (default table), wide, yaml, json, name."""
    if fmt in ("yaml", "yml"):
        if resources:
            sys.stdout.write(dump_yaml(list(resources)))
    elif fmt == "json":
        sys.stdout.write(dump_json(list(resources)) + "\n")
    elif fmt == "name":
        plural = kind_info(kind).kind.lower()
        for res in resources:
            print(f"{plural}/{res.metadata.name}")
    else:
        console = Console(width=None if sys.stdout.isatty() else 250, soft_wrap=False)
        console.print(render_table(kind, resources, wide=(fmt == "wide")))
