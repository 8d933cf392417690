"""Builders and the three deciders of the policy tests: the dataplane's answer, the user-space
evaluator's and the oracle's.

Builders return wire objects (`projectcalico.org/v3` dicts) for WorkloadEndpoints, HostEndpoints,
policies, profiles, tiers, network sets and pools; `keyed(objs)` gives (datastore key, value) pairs.

`dataplane_decision(objs, host, pkt, src, dst)` runs the real calc (`PolicyGraph`) for `host`,
collects its messages into a `PolicyState`, renders the nft table and runs the packet through the
forward hook with the interpreter, the interfaces being those of the local endpoints `src`
(egress) and/or `dst` (ingress), "eth0" otherwise. `trace_decision` evaluates the same calc output
with `tortie.policy.trace` (what `tortie policy trace` prints), and `oracle_decision` answers from
the resources with `tortie.testing.policy_oracle`; both: anti-spoofing, then egress of a local
source, then ingress of a local destination.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tortie.calc.policy_graph import run_snapshot
from tortie.dataplane.messages import WorkloadEndpointId
from tortie.dataplane.messages.policy import EndpointPolicyUpdate
from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.interp import NftPacket, forward
from tortie.dataplane.nft.ir import Ruleset
from tortie.dataplane.nft.ruleset import PolicyState, render_ruleset
from tortie.model import Resource, parse_resource
from tortie.model.kinds import kind_info, manifest_kind_info
from tortie.policy import trace
from tortie.policy.trace import Packet
from tortie.testing.policy_oracle import PolicyWorld, anti_spoofing_ok, evaluate_endpoint

API = "projectcalico.org/v3"


def _obj(
    kind: str,
    name: str,
    spec: Mapping[str, Any],
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": dict(spec)}


def wep(
    name: str,
    ip: str | Sequence[str],
    *,
    node: str = "h1",
    namespace: str = "default",
    labels: Mapping[str, str] | None = None,
    profiles: Sequence[str] = (),
    iface: str | None = None,
    ports: Sequence[Mapping[str, Any]] = (),
    service_account: str | None = None,
    allow_spoofed: Sequence[str] = (),
    orchestrator: str = "cni",
) -> dict[str, Any]:
    ips = [ip] if isinstance(ip, str) else list(ip)
    spec: dict[str, Any] = {
        "orchestrator": orchestrator,
        "workload": name,
        "endpoint": "eth0",
        "node": node,
        "ipNetworks": ips,
        "interfaceName": iface or f"tort{name}"[:15],
    }
    if profiles:
        spec["profiles"] = list(profiles)
    if ports:
        spec["ports"] = [dict(p) for p in ports]
    if service_account:
        spec["serviceAccountName"] = service_account
    if allow_spoofed:
        spec["allowSpoofedSourcePrefixes"] = list(allow_spoofed)
    return _obj("WorkloadEndpoint", name, spec, namespace, labels)


def hep(
    name: str,
    *,
    node: str = "h1",
    iface: str | None = None,
    ips: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    profiles: Sequence[str] = (),
) -> dict[str, Any]:
    spec: dict[str, Any] = {"node": node}
    if iface:
        spec["interfaceName"] = iface
    if ips:
        spec["expectedIPs"] = list(ips)
    if profiles:
        spec["profiles"] = list(profiles)
    return _obj("HostEndpoint", name, spec, None, labels)


def _rules(
    spec: dict[str, Any], ingress: Sequence[Mapping[str, Any]], egress: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    if ingress:
        spec["ingress"] = [dict(r) for r in ingress]
    if egress:
        spec["egress"] = [dict(r) for r in egress]
    return spec


def gnp(
    name: str,
    *,
    selector: str = "all()",
    ingress: Sequence[Mapping[str, Any]] = (),
    egress: Sequence[Mapping[str, Any]] = (),
    **extra: Any,
) -> dict[str, Any]:
    return _obj("GlobalNetworkPolicy", name, _rules({"selector": selector, **extra}, ingress, egress))


def np(
    name: str,
    namespace: str = "default",
    *,
    selector: str = "all()",
    ingress: Sequence[Mapping[str, Any]] = (),
    egress: Sequence[Mapping[str, Any]] = (),
    **extra: Any,
) -> dict[str, Any]:
    return _obj("NetworkPolicy", name, _rules({"selector": selector, **extra}, ingress, egress), namespace)


def profile(
    name: str,
    *,
    ingress: Sequence[Mapping[str, Any]] = (),
    egress: Sequence[Mapping[str, Any]] = (),
    labels_to_apply: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    spec = _rules({}, ingress, egress)
    if labels_to_apply:
        spec["labelsToApply"] = dict(labels_to_apply)
    return _obj("Profile", name, spec)


ALLOW_ALL = profile("allow-all", ingress=[{"action": "Allow"}], egress=[{"action": "Allow"}])


def tier(name: str, order: float | None = None, default_action: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if order is not None:
        spec["order"] = order
    if default_action:
        spec["defaultAction"] = default_action
    return _obj("Tier", name, spec)


def network_set(
    name: str, nets: Sequence[str], *, namespace: str | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    kind = "NetworkSet" if namespace else "GlobalNetworkSet"
    return _obj(kind, name, {"nets": list(nets)}, namespace, labels)


def pool(name: str, cidr: str, *, nat_outgoing: bool = False) -> dict[str, Any]:
    return _obj("IPPool", name, {"cidr": cidr, "natOutgoing": nat_outgoing})


def key_of(obj: Mapping[str, Any]) -> str:
    """The datastore key of a manifest (any kind, Kubernetes kinds by their apiVersion)."""
    meta = obj["metadata"]
    info = manifest_kind_info(obj.get("apiVersion", API), obj["kind"]) or kind_info(obj["kind"])
    return info.key(meta["name"], meta.get("namespace"))


def keyed(objs: Iterable[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(key_of(o), o) for o in objs]


def resources(objs: Iterable[Mapping[str, Any]]) -> list[Resource]:
    return [parse_resource(dict(o)) for o in objs]


# -- deciders -------------------------------------------------------------------------------------------
def policy_state(
    objs: Iterable[Mapping[str, Any]], host: str, config: RenderConfig | None = None
) -> PolicyState:
    state = PolicyState(config or RenderConfig())
    for msg in run_snapshot(host, keyed(objs)):
        state.record(msg)
    return state


def _local(objs: Iterable[Mapping[str, Any]], name: str | None, host: str) -> Mapping[str, Any] | None:
    """The WorkloadEndpoint `name` if it is on `host`."""
    for o in objs:
        if o["kind"] == "WorkloadEndpoint" and o["metadata"]["name"] == name and o["spec"]["node"] == host:
            return o
    return None


def _iface(objs: Iterable[Mapping[str, Any]], name: str | None, host: str) -> str:
    local = _local(objs, name, host)
    return str(local["spec"]["interfaceName"]) if local is not None else "eth0"


def dataplane_decision(
    objs: Sequence[Mapping[str, Any]],
    host: str,
    pkt: Packet,
    src: str | None,
    dst: str | None,
    ruleset: Ruleset | None = None,
) -> str:
    """ "accept" or "drop" for a packet forwarded by `host` from endpoint `src` to endpoint `dst`
    (names of WorkloadEndpoints; None or a remote endpoint: via eth0)."""
    rs = ruleset if ruleset is not None else render_ruleset(policy_state(objs, host))
    return forward(rs, NftPacket.of(pkt, _iface(objs, src, host), _iface(objs, dst, host))).verdict


def trace_decision(
    objs: Sequence[Mapping[str, Any]],
    host: str,
    pkt: Packet,
    src: str | None,
    dst: str | None,
    state: PolicyState | None = None,
) -> str:
    """The user-space evaluator's answer on the calc output for `host` (see the module docstring)."""
    state = state if state is not None else policy_state(objs, host)

    def endpoint(name: str | None) -> EndpointPolicyUpdate | None:
        local = _local(objs, name, host)
        if local is None:
            return None
        meta = local["metadata"]
        return state.endpoints[WorkloadEndpointId(meta.get("namespace", "default"), meta["name"])]

    src_ep, dst_ep = endpoint(src), endpoint(dst)
    if src_ep is not None:
        if not trace.anti_spoofing_ok(src_ep, pkt.src):
            return "drop"
        if trace.evaluate_endpoint(state, src_ep, "egress", pkt).verdict != "allow":
            return "drop"
    if dst_ep is not None and trace.evaluate_endpoint(state, dst_ep, "ingress", pkt).verdict != "allow":
        return "drop"
    return "accept"


def oracle_decision(
    objs: Sequence[Mapping[str, Any]], host: str, pkt: Packet, src: str | None, dst: str | None
) -> str:
    world = PolicyWorld(resources(objs))
    weps = {r.metadata.name: r for r in world.of("WorkloadEndpoint")}
    src_ep = weps.get(src) if src else None
    dst_ep = weps.get(dst) if dst else None
    if src_ep is not None and getattr(src_ep.spec, "node", None) == host:
        if not anti_spoofing_ok(src_ep, pkt.src):
            return "drop"
        if evaluate_endpoint(world, src_ep, "egress", pkt).verdict != "allow":
            return "drop"
    local_dst = dst_ep is not None and getattr(dst_ep.spec, "node", None) == host
    if (
        local_dst
        and dst_ep is not None
        and evaluate_endpoint(world, dst_ep, "ingress", pkt).verdict != "allow"
    ):
        return "drop"
    return "accept"
