"""An independent reference evaluator of Kubernetes network policy, written from the specifications.

Sources: the networking.k8s.io/v1 NetworkPolicy API reference (isolation, additive allow rules,
peers, ports, ipBlock, policyTypes defaulting) and sig-network's AdminNetworkPolicy KEP and API
(ANP priority and Allow / Deny / Pass, BANP after NetworkPolicy). It reads the manifests as plain
wire dicts and knows nothing of tortie's model, translation, selectors or calc, so that a test
comparing it with tortie's verdicts compares two independent readings of the specification.

    cluster = Cluster(pods, namespaces={"x": {"team": "a"}}, policies=[np_dict, anp_dict])
    cluster.allowed(Connection(src=pod_a, dst=pod_b, protocol="TCP", port=80))

Per connection: the source pod's egress, then the destination pod's ingress (an address that is no
pod has no policy). For one pod and direction:

1. AdminNetworkPolicies whose subject selects the pod, by priority (ties by name; the specification
   leaves ties undefined), rules in order: the first rule whose peers and ports match decides —
   Allow and Deny are final, Pass skips every remaining ANP;
2. NetworkPolicies of the pod's namespace that select it and list the direction in their
   (defaulted) policyTypes: if there are any, the traffic is allowed iff one of their rules matches;
3. otherwise the BaselineAdminNetworkPolicy, if it selects the pod: the first matching rule's Allow
   or Deny decides;
4. otherwise allowed.

Namespaces carry `kubernetes.io/metadata.name=<name>` besides their own labels. Named ports resolve
against the destination pod's container ports: name, protocol and number must all match.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[tuple[str, str, int], ...] = ()  # named container ports: (name, protocol, number)
    node: str = "h1"

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Connection:
    src: Pod | str  # a pod, or the address of something that is no pod
    dst: Pod | str
    protocol: str  # TCP, UDP or SCTP
    port: int

    @property
    def src_ip(self) -> str:
        return self.src.ip if isinstance(self.src, Pod) else self.src

    @property
    def dst_ip(self) -> str:
        return self.dst.ip if isinstance(self.dst, Pod) else self.dst


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: matchLabels and every matchExpression; {} (or None) selects all."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr["key"], expr["operator"], list(expr.get("values") or ())
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


def _in_cidr(ip: str, cidr: str) -> bool:
    addr = ipaddress.ip_address(ip)
    net = ipaddress.ip_network(cidr, strict=False)
    return addr.version == net.version and addr in net


class Cluster:
    """Pods, namespaces (name -> labels) and policy manifests (wire dicts of any of the four kinds)."""

    def __init__(
        self,
        pods: Iterable[Pod],
        namespaces: Mapping[str, Mapping[str, str]],
        policies: Iterable[Mapping[str, Any]],
    ) -> None:
        self.pods = list(pods)
        self.namespaces = {name: {**labels, NAME_LABEL: name} for name, labels in namespaces.items()}
        by_kind: dict[str, list[Mapping[str, Any]]] = {}
        for policy in policies:
            by_kind.setdefault(policy["kind"], []).append(policy)
        self.network_policies = by_kind.get("NetworkPolicy", [])
        self.admin_policies = sorted(
            by_kind.get("AdminNetworkPolicy", []),
            key=lambda p: (p["spec"]["priority"], p["metadata"]["name"]),
        )
        baselines = [
            b for b in by_kind.get("BaselineAdminNetworkPolicy", []) if b["metadata"]["name"] == "default"
        ]
        self.baseline = baselines[0] if baselines else None

    def ns_labels(self, namespace: str) -> Mapping[str, str]:
        return self.namespaces.get(namespace, {NAME_LABEL: namespace})

    def pod_at(self, ip: str) -> Pod | None:
        return next((p for p in self.pods if p.ip == ip), None)

    # -- the verdict ----------------------------------------------------------------------------------
    def allowed(self, conn: Connection) -> bool:
        src = conn.src if isinstance(conn.src, Pod) else self.pod_at(conn.src)
        dst = conn.dst if isinstance(conn.dst, Pod) else self.pod_at(conn.dst)
        if src is not None and not self.direction_allows(src, "egress", dst, conn.dst_ip, conn, dst):
            return False
        return dst is None or self.direction_allows(dst, "ingress", src, conn.src_ip, conn, dst)

    def direction_allows(
        self,
        pod: Pod,
        direction: str,
        peer: Pod | None,
        peer_ip: str,
        conn: Connection,
        port_owner: Pod | None,
    ) -> bool:
        """Does `pod`'s policy for `direction` let the traffic with `peer` (at `peer_ip`) through?
        `port_owner` is the destination pod, whose container ports named ports refer to."""
        for anp in self.admin_policies:
            if not self._subject_selects(anp["spec"]["subject"], pod):
                continue
            action = self._first_admin_match(anp, direction, peer, peer_ip, conn, port_owner)
            if action == "Allow":
                return True
            if action == "Deny":
                return False
            if action == "Pass":
                break
        isolating = [np for np in self.network_policies if self._np_isolates(np, pod, direction)]
        if isolating:
            return any(
                self._np_rule_matches(np, rule, direction, peer, peer_ip, conn, port_owner)
                for np in isolating
                for rule in np["spec"].get(direction) or ()
            )
        if self.baseline is not None and self._subject_selects(self.baseline["spec"]["subject"], pod):
            action = self._first_admin_match(self.baseline, direction, peer, peer_ip, conn, port_owner)
            if action == "Deny":
                return False
        return True

    # -- NetworkPolicy ------------------------------------------------------------------------------
    @staticmethod
    def _policy_types(np: Mapping[str, Any]) -> list[str]:
        spec = np["spec"]
        if spec.get("policyTypes"):
            return list(spec["policyTypes"])
        return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]

    def _np_isolates(self, np: Mapping[str, Any], pod: Pod, direction: str) -> bool:
        if np["metadata"].get("namespace") != pod.namespace:
            return False
        if direction.capitalize() not in self._policy_types(np):
            return False
        return selects(np["spec"].get("podSelector"), pod.labels)

    def _np_rule_matches(
        self,
        np: Mapping[str, Any],
        rule: Mapping[str, Any],
        direction: str,
        peer: Pod | None,
        peer_ip: str,
        conn: Connection,
        port_owner: Pod | None,
    ) -> bool:
        peers = rule.get("from" if direction == "ingress" else "to") or []
        if peers and not any(self._np_peer_matches(np, p, peer, peer_ip) for p in peers):
            return False
        ports = rule.get("ports") or []
        return not ports or any(self._np_port_matches(p, conn, port_owner) for p in ports)

    def _np_peer_matches(
        self, np: Mapping[str, Any], spec: Mapping[str, Any], peer: Pod | None, peer_ip: str
    ) -> bool:
        block = spec.get("ipBlock")
        if block is not None:
            return _in_cidr(peer_ip, block["cidr"]) and not any(
                _in_cidr(peer_ip, e) for e in block.get("except") or ()
            )
        if peer is None:
            return False
        if "namespaceSelector" in spec and spec["namespaceSelector"] is not None:
            if not selects(spec["namespaceSelector"], self.ns_labels(peer.namespace)):
                return False
        elif peer.namespace != np["metadata"]["namespace"]:
            return False
        return selects(spec.get("podSelector"), peer.labels)

    @staticmethod
    def _np_port_matches(spec: Mapping[str, Any], conn: Connection, port_owner: Pod | None) -> bool:
        protocol = spec.get("protocol") or "TCP"
        if protocol != conn.protocol:
            return False
        port = spec.get("port")
        if port is None:
            return True
        if isinstance(port, str):
            return _named_port(port_owner, port, conn)
        end = spec.get("endPort")
        return bool(port <= conn.port <= end) if end is not None else bool(conn.port == port)

    # -- AdminNetworkPolicy / BaselineAdminNetworkPolicy --------------------------------------------------
    def _subject_selects(self, subject: Mapping[str, Any], pod: Pod) -> bool:
        """A subject, or an in-cluster peer: `namespaces` (every pod of those namespaces) or `pods`
        (namespaceSelector AND podSelector)."""
        if subject.get("namespaces") is not None:
            return selects(subject["namespaces"], self.ns_labels(pod.namespace))
        pods = subject["pods"]
        return selects(pods["namespaceSelector"], self.ns_labels(pod.namespace)) and selects(
            pods["podSelector"], pod.labels
        )

    def _first_admin_match(
        self,
        policy: Mapping[str, Any],
        direction: str,
        peer: Pod | None,
        peer_ip: str,
        conn: Connection,
        port_owner: Pod | None,
    ) -> str | None:
        for rule in policy["spec"].get(direction) or ():
            peers = rule["from" if direction == "ingress" else "to"]
            if not any(self._admin_peer_matches(p, peer, peer_ip) for p in peers):
                continue
            ports = rule.get("ports")
            if ports is not None and not any(_admin_port_matches(p, conn, port_owner) for p in ports):
                continue
            return str(rule["action"])
        return None

    def _admin_peer_matches(self, spec: Mapping[str, Any], peer: Pod | None, peer_ip: str) -> bool:
        if spec.get("networks") is not None:
            return any(_in_cidr(peer_ip, cidr) for cidr in spec["networks"])
        return peer is not None and self._subject_selects(spec, peer)

    # -- matrices -------------------------------------------------------------------------------------
    def matrix(
        self, protocol: str, port: int, pods: Sequence[Pod] | None = None
    ) -> dict[tuple[str, str], bool]:
        """(src pod id, dst pod id) -> allowed, for every ordered pair of distinct pods."""
        chosen = list(pods) if pods is not None else self.pods
        return {
            (a.id, b.id): self.allowed(Connection(a, b, protocol, port))
            for a in chosen
            for b in chosen
            if a is not b
        }


def _named_port(owner: Pod | None, name: str, conn: Connection) -> bool:
    return owner is not None and (name, conn.protocol, conn.port) in owner.ports


def _admin_port_matches(spec: Mapping[str, Any], conn: Connection, port_owner: Pod | None) -> bool:
    if spec.get("portNumber") is not None:
        number = spec["portNumber"]
        return (number.get("protocol") or "TCP") == conn.protocol and number["port"] == conn.port
    if spec.get("portRange") is not None:
        span = spec["portRange"]
        return (span.get("protocol") or "TCP") == conn.protocol and span["start"] <= conn.port <= span["end"]
    return _named_port(port_owner, spec["namedPort"], conn)
