"""Kubernetes-style clusters for policy tests: manifests in, tortie's verdicts out.

Builders write wire dicts of the Kubernetes kinds (`namespace`, `network_policy`, `admin_policy`,
`baseline_policy`) and `Pod`s (tortie.testing.k8s_reference). `e2e_pods()` is Kubernetes' own
network-policy e2e layout: namespaces x, y, z with pods a, b, c each (label `pod=<name>`), every pod
serving ports 80 and 81 over TCP, UDP and SCTP under the names `serve-<port>-<protocol>`, spread over
two hosts.

`conformance_pods()` is the layout of sig-network's policy-api conformance suite: namespaces
`network-policy-conformance-<house>` (label `conformance-house=<house>`) with two pods each
(harry-potter, draco-malfoy, cedric-diggory, luna-lovegood; labels `conformance-house` and
`statefulset.kubernetes.io/pod-name`), plus professor-dumbledore-0 and professor-quirrell-0 in
`-hogwarts-staff`; every pod serves TCP 80 and 8080, UDP 53 and 5353, SCTP 9003 and 9005.

`TortieVerdicts(pods, namespaces, policies)` is what tortie makes of the same cluster: every pod a
Kubernetes WorkloadEndpoint (orchestrator `k8s`, profile `kns.<namespace>`, its named ports), every
manifest validated by tortie.model and given to the real calc as it is (the calc translates it,
tortie.calc.kubernetes_calc). On each host the connection crosses (egress on the source's host, ingress
on the destination's) the calc (PolicyGraph) runs once; `allowed(conn)` is the verdict of the nftables
table rendered from its output (run by the interpreter), `trace_allowed(conn)` the verdict of `tortie
policy trace`'s user-space evaluator on the same output, and `oracle_allowed(conn)` the Calico-semantics
test oracle's (tortie.testing.policy_oracle) on the translated resources. None of them reads the
Kubernetes reference evaluator, and it reads none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tortie.dataplane.nft.ir import Ruleset
from tortie.dataplane.nft.ruleset import PolicyState, render_ruleset
from tortie.k8s.translate import translate
from tortie.model import parse_resource
from tortie.policy.trace import Packet
from tortie.testing.k8s_reference import Connection, Pod
from tortie.testing.policy_oracle import PolicyWorld, anti_spoofing_ok, evaluate_endpoint
from tortie.testing.policy_world import dataplane_decision, policy_state, resources, trace_decision, wep

PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "SCTP": 132}
E2E_NAMESPACES = ("x", "y", "z")
E2E_PODS = ("a", "b", "c")
E2E_PORTS = (80, 81)


# -- manifests -------------------------------------------------------------------------------------------
def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def network_policy(name: str, ns: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": dict(spec),
    }


def admin_policy(
    name: str,
    priority: int,
    subject: Mapping[str, Any],
    *,
    ingress: Sequence[Mapping[str, Any]] = (),
    egress: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    spec: dict[str, Any] = {"priority": priority, "subject": dict(subject)}
    if ingress:
        spec["ingress"] = [dict(r) for r in ingress]
    if egress:
        spec["egress"] = [dict(r) for r in egress]
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "AdminNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def baseline_policy(
    subject: Mapping[str, Any],
    *,
    ingress: Sequence[Mapping[str, Any]] = (),
    egress: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    policy = admin_policy("default", 0, subject, ingress=ingress, egress=egress)
    del policy["spec"]["priority"]
    policy["kind"] = "BaselineAdminNetworkPolicy"
    return policy


def served_ports(ports: Iterable[int] = E2E_PORTS) -> tuple[tuple[str, str, int], ...]:
    return tuple(
        (f"serve-{port}-{proto.lower()}", proto, port) for port in ports for proto in PROTOCOL_NUMBERS
    )


def e2e_pods(hosts: Sequence[str] = ("h1", "h2")) -> list[Pod]:
    pods = []
    for i, ns in enumerate(E2E_NAMESPACES):
        for j, name in enumerate(E2E_PODS):
            n = i * len(E2E_PODS) + j
            pods.append(
                Pod(ns, name, f"10.1.{i}.{j + 10}", {"pod": name}, served_ports(), hosts[n % len(hosts)])
            )
    return pods


HOUSES = {
    "gryffindor": "harry-potter",
    "slytherin": "draco-malfoy",
    "hufflepuff": "cedric-diggory",
    "ravenclaw": "luna-lovegood",
}
CONFORMANCE_PORTS = (("TCP", 80), ("TCP", 8080), ("UDP", 53), ("UDP", 5353), ("SCTP", 9003), ("SCTP", 9005))
STAFF = "network-policy-conformance-hogwarts-staff"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"


def conformance_namespaces() -> dict[str, dict[str, str]]:
    out = {f"network-policy-conformance-{house}": {"conformance-house": house} for house in HOUSES}
    out[STAFF] = {}
    return out


def conformance_pods(hosts: Sequence[str] = ("h1", "h2")) -> list[Pod]:
    pods = []
    for i, (house, stem) in enumerate(HOUSES.items()):
        for j in range(2):
            name = f"{stem}-{j}"
            labels = {"conformance-house": house, POD_NAME_LABEL: name}
            pods.append(
                Pod(
                    f"network-policy-conformance-{house}",
                    name,
                    f"10.2.{i}.{j + 10}",
                    labels,
                    (),
                    hosts[(2 * i + j) % len(hosts)],
                )
            )
    for j, name in enumerate(("professor-dumbledore-0", "professor-quirrell-0")):
        pods.append(Pod(STAFF, name, f"10.2.9.{j + 10}", {POD_NAME_LABEL: name}, (), hosts[j % len(hosts)]))
    return pods


# -- tortie's side ------------------------------------------------------------------------------------
def workload_name(pod: Pod) -> str:
    return f"{pod.namespace}-{pod.name}"


def pod_endpoint(pod: Pod, index: int) -> dict[str, Any]:
    """The WorkloadEndpoint of a Kubernetes pod: orchestrator k8s, the namespace's profile."""
    return wep(
        workload_name(pod),
        f"{pod.ip}/32",
        node=pod.node,
        namespace=pod.namespace,
        labels=pod.labels,
        profiles=[f"kns.{pod.namespace}"],
        iface=f"tort{index}",
        ports=[{"name": n, "protocol": proto, "port": port} for n, proto, port in pod.ports],
        orchestrator="k8s",
    )


class TortieVerdicts:
    """What tortie enforces for pods + namespaces (name -> labels) + policy manifests."""

    def __init__(
        self,
        pods: Sequence[Pod],
        namespaces: Mapping[str, Mapping[str, str]],
        policies: Iterable[Mapping[str, Any]],
    ) -> None:
        self.pods = list(pods)
        manifests = [namespace(name, labels) for name, labels in namespaces.items()] + list(policies)
        endpoints = [pod_endpoint(p, i) for i, p in enumerate(self.pods)]
        self.translated = [translate(parse_resource(dict(m))).to_wire() for m in manifests]
        # The calc reads the manifests themselves (tortie.calc.kubernetes_calc translates them); the
        # oracle reads their translations.
        self.objs = endpoints + manifests
        self._oracle_objs = endpoints + self.translated
        self._states: dict[str, tuple[PolicyState, Ruleset]] = {}
        self._world: PolicyWorld | None = None
        self._endpoints = {workload_name(p): i for i, p in enumerate(self.pods)}

    def _state(self, host: str) -> tuple[PolicyState, Ruleset]:
        """The calc's output for `host` and the nftables table rendered from it (computed once)."""
        if host not in self._states:
            state = policy_state(self.objs, host)
            self._states[host] = (state, render_ruleset(state))
        return self._states[host]

    def _hops(self, conn: Connection) -> tuple[Packet, str | None, str | None, list[str]]:
        """The packet, the workload names of its ends (None: not a pod) and the hosts it crosses."""
        src = conn.src if isinstance(conn.src, Pod) else None
        dst = conn.dst if isinstance(conn.dst, Pod) else None
        pkt = Packet(conn.src_ip, conn.dst_ip, PROTOCOL_NUMBERS[conn.protocol], 40000, conn.port)
        hosts = list(dict.fromkeys(p.node for p in (src, dst) if p is not None))
        return pkt, workload_name(src) if src else None, workload_name(dst) if dst else None, hosts

    def allowed(self, conn: Connection) -> bool:
        """The rendered nftables table's verdict (run by the interpreter) on every host crossed."""
        pkt, src, dst, hosts = self._hops(conn)
        return all(
            dataplane_decision(self.objs, host, pkt, src, dst, self._state(host)[1]) == "accept"
            for host in hosts
        )

    def trace_allowed(self, conn: Connection) -> bool:
        """The user-space evaluator of `tortie policy trace` on the same calc output."""
        pkt, src, dst, hosts = self._hops(conn)
        return all(
            trace_decision(self.objs, host, pkt, src, dst, self._state(host)[0]) == "accept" for host in hosts
        )

    def oracle_allowed(self, conn: Connection) -> bool:
        """Calico's semantics read from the translated resources (tortie.testing.policy_oracle):
        anti-spoofing and egress of a source pod, ingress of a destination pod."""
        pkt, src, dst, _hosts = self._hops(conn)
        if self._world is None:
            self._world = PolicyWorld(resources(self._oracle_objs))
        weps = self._world.of("WorkloadEndpoint")
        if src is not None:
            ep = weps[self._endpoints[src]]
            if (
                not anti_spoofing_ok(ep, pkt.src)
                or evaluate_endpoint(self._world, ep, "egress", pkt).verdict != "allow"
            ):
                return False
        if dst is not None:
            ep = weps[self._endpoints[dst]]
            return bool(evaluate_endpoint(self._world, ep, "ingress", pkt).verdict == "allow")
        return True

    def matrix(self, protocol: str, port: int) -> dict[tuple[str, str], bool]:
        return {
            (a.id, b.id): self.allowed(Connection(a, b, protocol, port))
            for a in self.pods
            for b in self.pods
            if a is not b
        }
