"""The packet trace behind `tortie policy trace` and the web view's trace: which tier, policy and rule
decide a packet between two ends, from the agent's own code.

Inputs: a datastore snapshot of the policy kinds (`load_objects`: every policy kind — the Kubernetes
kinds too —, endpoints, network sets, pools), two `End`s (`resolve_end`: a WorkloadEndpoint as
`namespace/name` or a unique `name` — a Kubernetes pod's endpoint also by its pod name —, or an IP
address) and a `Packet`. `trace` returns, per host the packet crosses, the verdict of the nftables
table the agent would program there and the rules that fired (tier, policy, rule index, default
actions); then the user-space evaluation of the same resolved policy (`tortie.policy.trace`: which
tier, policy and rule decide, or why a default applies) and whether the two agree (a disagreement is a
rendering fault). Every translated object and rule is followed by its Kubernetes origin
(tortie.k8s.explain), a default deny names the Kubernetes NetworkPolicies whose isolation it is, and a
missing `kns.<ns>` profile says that the Namespace does not exist.

How: for each involved host it runs the agent's pure policy calc (`PolicyGraph`) on the snapshot,
renders the table (`render_ruleset`) and runs the packet through the forward hook with the nft
interpreter: the same code path as the running agent, minus the kernel. The evaluation reads the
calc's messages directly (egress of a local source on its host, ingress of a local destination on its
host). Pure apart from `load_objects` (one datastore list per policy kind).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from tortie.calc.policy_graph import POLICY_KINDS, run_snapshot
from tortie.common.errors import UserError
from tortie.common.ipfamily import FAMILIES, Family, address_in, family_of
from tortie.dataplane.messages import WorkloadEndpointId
from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.interp import NftPacket, Outcome, forward
from tortie.dataplane.nft.ir import Log, SetMark, Verdict
from tortie.dataplane.nft.ruleset import PolicyState, render_ruleset
from tortie.k8s.explain import KubernetesSources
from tortie.model import Resource, ValidationError, parse_resource
from tortie.model.kinds import kind_info
from tortie.policy.trace import Decision, Direction, Packet, anti_spoofing_ok, evaluate_endpoint

PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}
ICMP_PROTOCOLS = {f.icmp_protocol for f in FAMILIES}
_QUIET = (
    "clear marks",
    "leave tier",
    "leave profile",
    "conntrack",
    "dispatch by",
    "from workload",
    "to workload",
    "from host endpoint",
    "to host endpoint",
    "untracked",
    "preDNAT",
    "workload to host",
    "no endpoint",
)



@dataclass
class End:
    text: str
    ip: str
    endpoint: Resource | None
    ips: tuple[str, ...] = ()
    """Every address of the end (an endpoint's, one per family it has); `ip` is the one traced."""
    literal: bool = False
    """Given as an address (its family is the packet's)."""

    def families(self) -> list[Family]:
        return [f for f in FAMILIES if any(family_of(a) == f for a in self.ips)]

    def at(self, fam: Family) -> End:
        """This end with its address of `fam` as the traced one (UserError when it has none)."""
        for address in self.ips:
            if family_of(address) == fam:
                return replace(self, ip=address)
        raise UserError(f"{self.text} has no {fam} address (it has {', '.join(self.ips)})")

    @property
    def host(self) -> str | None:
        return getattr(self.endpoint.spec, "node", None) if self.endpoint is not None else None

    @property
    def iface(self) -> str:
        return (
            str(getattr(self.endpoint.spec, "interface_name", "") or "") if self.endpoint is not None else ""
        )

    @property
    def label(self) -> str:
        if self.endpoint is None:
            return self.ip
        return f"{self.endpoint.metadata.namespace}/{self.endpoint.metadata.name}"


def load_objects(ds: Any) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for kind in POLICY_KINDS:
        kvs, _rev = ds.list(kind_info(kind).prefix)
        out += [(kv.key, dict(kv.value)) for kv in kvs]
    return out


def valid_resources(objects: list[tuple[str, dict[str, Any]]]) -> list[Resource]:
    out = []
    for _key, value in objects:
        try:
            out.append(parse_resource(value))
        except ValidationError:
            continue  # the agent treats invalid objects as absent; so does the trace
    return out


def resolve_end(text: str, weps: list[Resource]) -> End:
    try:
        ip = str(ipaddress.ip_address(text))
    except ValueError:
        ip = ""
    if ip:
        for wep in weps:
            nets = [ipaddress.ip_network(n, strict=False) for n in getattr(wep.spec, "ip_networks", ())]
            if any(address_in(ipaddress.ip_address(ip), n) for n in nets):
                return End(text, ip, wep, (ip,), literal=True)
        return End(text, ip, None, (ip,), literal=True)
    ns, _, name = text.rpartition("/")
    found = [
        w
        for w in weps
        if name in (w.metadata.name, getattr(w.spec, "pod", None)) and (not ns or w.metadata.namespace == ns)
    ]
    if not found:
        raise UserError(f"no WorkloadEndpoint {text!r} (give namespace/name or an IP address)")
    if len(found) > 1:
        where = ", ".join(f"{w.metadata.namespace}/{w.metadata.name}" for w in found)
        raise UserError(f"{text!r} is ambiguous ({where}): give namespace/name")
    spec: Any = found[0].spec
    addresses = [str(ipaddress.ip_network(n, strict=False).network_address) for n in spec.ip_networks]
    if not addresses:
        raise UserError(f"WorkloadEndpoint {text!r} has no ipNetworks")
    return End(text, addresses[0], found[0], tuple(addresses))


def explain(outcome: Outcome) -> list[str]:
    """The rules that fired, as their labels (tier/policy/rule), in order."""
    lines = []
    for chain, r in outcome.trail:
        label = r.label
        if not label or label.startswith(_QUIET):
            continue
        if chain.startswith(("pi-", "po-", "pri-", "pro-")):
            lines.append(f"  rule {label}: {_action(r.stmts)}")
        else:
            lines.append(f"  {label}")
    return lines


def _action(stmts: tuple[Any, ...]) -> str:
    cfg = RenderConfig()
    for stmt in stmts:
        if isinstance(stmt, Log):
            return "Log (continue)"
        if isinstance(stmt, Verdict) and stmt.kind == "drop":
            return "Deny"
        if isinstance(stmt, SetMark):
            return "Allow" if stmt.or_bits == cfg.accept_mark else "Pass (next tier)"
    return "matched"


def policy_state(objects: list[tuple[str, dict[str, Any]]], host: str) -> PolicyState:
    """What the agent on `host` would be told about policy (the calc run on this snapshot)."""
    state = PolicyState(RenderConfig())
    for msg in run_snapshot(host, objects):
        state.record(msg)
    return state


def _hop(state: PolicyState, pkt: Packet, iif: str, oif: str) -> Outcome:
    return forward(render_ruleset(state), NftPacket.of(pkt, iif or "eth0", oif or "eth0"))


def _evaluate(
    state: PolicyState, end: End, direction: Direction, pkt: Packet, sources: KubernetesSources
) -> tuple[str, bool]:
    """The user-space evaluation of one local end: a line to print (Kubernetes objects named in
    their own terms) and whether it allows."""
    assert end.endpoint is not None
    meta = end.endpoint.metadata
    ep = state.endpoints.get(WorkloadEndpointId(str(meta.namespace), meta.name))
    if ep is None:
        return f"{direction} of {end.label}: deny (no policy programmed for it on {end.host})", False
    if direction == "egress" and not anti_spoofing_ok(ep, pkt.src):
        return f"egress of {end.label}: deny (anti-spoofing)", False
    cfg = state.config
    if direction == "egress" and cfg.drop_vxlan_from_workloads and (pkt.protocol, pkt.dst_port) == (
            17, cfg.vxlan_port):
        return f"egress of {end.label}: deny (VXLAN packets from workloads are dropped)", False
    decision = evaluate_endpoint(state, ep, direction, pkt)
    why = sources.annotate(_why(decision))
    if decision.verdict == "deny" and decision.tier and decision.policy is None:
        tier = next((t for t in ep.tiers if t.name == decision.tier), None)
        pids = (tier.ingress if direction == "ingress" else tier.egress) if tier is not None else ()
        isolating = sources.isolated_by(str(pid) for pid in pids)
        if isolating:
            why += f"; isolated by {', '.join(isolating)}: none of their rules allows this"
    if decision.verdict == "deny" and decision.policy is None and not decision.tier:
        missing = [sources.describe(f"Profile({name})") for name in ep.profile_ids]
        why += "".join(f"; {note}" for note in missing if note and note.startswith("no Namespace"))
    return f"{direction} of {end.label}: {decision.verdict} ({why})", decision.verdict == "allow"


def trace(objects: list[tuple[str, dict[str, Any]]], src: End, dst: End, pkt: Packet) -> dict[str, Any]:
    states = {host: policy_state(objects, host) for host in {src.host, dst.host} if host is not None}
    sources = KubernetesSources.of(valid_resources(objects))
    hops = []
    if src.host is not None:
        same = dst.host == src.host
        outcome = _hop(states[src.host], pkt, src.iface, dst.iface if same else "eth0")
        hops.append(
            {
                "host": src.host,
                "checks": "egress of " + src.label + (" and ingress of " + dst.label if same else ""),
                "verdict": outcome.verdict,
                "rules": [sources.annotate(line) for line in explain(outcome)],
            }
        )
    if dst.host is not None and dst.host != src.host:
        outcome = _hop(states[dst.host], pkt, "eth0", dst.iface)
        hops.append(
            {
                "host": dst.host,
                "checks": "ingress of " + dst.label,
                "verdict": outcome.verdict,
                "rules": [sources.annotate(line) for line in explain(outcome)],
            }
        )
    dataplane = "accept" if all(h["verdict"] == "accept" for h in hops) else "drop"

    evaluator: list[str] = []
    allowed = True
    ends: tuple[tuple[End, Direction], ...] = ((src, "egress"), (dst, "ingress"))
    for end, direction in ends:
        if end.host is not None:
            line, ok = _evaluate(states[end.host], end, direction, pkt, sources)
            evaluator.append(line)
            allowed &= ok
    evaluated = "accept" if allowed else "drop"
    return {
        "packet": _describe(pkt),
        "hops": hops,
        "dataplane": dataplane,
        "evaluator": evaluator,
        "evaluator_verdict": evaluated,
        "agree": evaluated == dataplane,
    }


def _why(decision: Decision) -> str:
    parts = [decision.reason]
    if decision.tier:
        parts.append(f"tier {decision.tier}")
    if decision.policy:
        parts.append(f"{decision.policy} {decision.rule or ''}".strip())
    if decision.logged:
        parts.append("logged by " + ", ".join(decision.logged))
    return "; ".join(parts)


def _describe(pkt: Packet) -> str:
    name = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6"}.get(pkt.protocol, str(pkt.protocol))
    if pkt.protocol in ICMP_PROTOCOLS:
        return f"{name} type {pkt.icmp_type} code {pkt.icmp_code} {pkt.src} -> {pkt.dst}"
    return f"{name} {pkt.src}:{pkt.src_port} -> {pkt.dst}:{pkt.dst_port}"
