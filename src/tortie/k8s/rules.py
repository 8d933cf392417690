"""Calico rules from a Kubernetes rule: one Calico rule per (port group, peer), as libcalico-go does.

A Kubernetes rule matches when the traffic's peer matches ANY of its peers AND its port matches ANY of
its ports. A Calico rule has one protocol and one peer description, so a Kubernetes rule becomes the
cross product of its port groups (`group_ports`: per protocol) and its peers, every one with the
Kubernetes rule's action. Since all of them share that action, their order does not
change the verdict; the Kubernetes rules' own order is kept (it matters for ANP/BANP).

Each Calico rule carries annotations naming its origin in the Kubernetes object (`origin:
spec.ingress[0].from[1]`) and, for admin policies, the Kubernetes rule's name (`name`, as Calico sets it).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tortie.model.fields import Port, parse_protocol
from tortie.model.frozen import FrozenMap
from tortie.model.rules import MAX_PORTS, EntityRule, Rule, RuleMetadata

Peer = tuple[str, EntityRule]  # (origin suffix such as "from[1]", the peer as a Calico entity)


@dataclass(frozen=True)
class PortGroup:
    """The ports of one Calico rule: `protocol` None = any protocol (no port restriction at all, or
    named ports whose container port gives the protocol); `ports` () = every port of the protocol;
    otherwise either all numbers/ranges or all names (`named`)."""

    protocol: str | None
    ports: tuple[Port, ...] = ()

    @property
    def named(self) -> bool:
        return any(p.is_named for p in self.ports)


def group_ports(items: Iterable[tuple[str | None, Port | None]]) -> tuple[PortGroup, ...]:
    """(protocol, port) pairs -> groups by protocol, Calico's way: a pair with port None opens every
    port of its protocol (and makes its other ports redundant); no pairs at all = one group matching
    all traffic. Named ports are grouped apart from numbers (the translation may scope them). Groups
    are sorted (protocol None first, numbers before names) and hold at most a Calico rule's 50 ports;
    tortie.model.specs_k8s.calico_rules_per_peer bounds their number for validation."""
    pairs = list(items)
    if not pairs:
        return (PortGroup(None),)
    every = {protocol for protocol, port in pairs if port is None}
    listed: dict[tuple[str | None, bool], list[Port]] = {}
    for protocol, port in pairs:
        if port is None or protocol in every:
            continue
        ports = listed.setdefault((protocol, port.is_named), [])
        if port not in ports:
            ports.append(port)
    groups = [PortGroup(protocol) for protocol in every]
    for (protocol, _named), ports in listed.items():
        groups += [
            PortGroup(protocol, tuple(ports[i : i + MAX_PORTS])) for i in range(0, len(ports), MAX_PORTS)
        ]
    return tuple(sorted(groups, key=lambda g: (g.protocol is not None, g.protocol or "", g.named)))


def split_by_family(nets: Iterable[str]) -> list[tuple[str, ...]]:
    """CIDRs split into IPv4 and IPv6 lists (a Calico rule holds one IP version), empty ones dropped."""
    by_version: dict[int, list[str]] = {}
    for net in nets:
        by_version.setdefault(ipaddress.ip_network(net).version, []).append(net)
    return [tuple(by_version[v]) for v in sorted(by_version)]


def calico_rules(
    *,
    action: str,
    direction: str,
    groups: Sequence[PortGroup],
    peers: Sequence[Peer],
    origin: str,
    name: str | None = None,
    scope_named: EntityRule | None = None,
) -> list[Rule]:
    """The Calico rules of one Kubernetes rule. `peers` empty = any peer. For egress, `scope_named`
    (when given) is merged into a peer entity that has no selector of its own whenever the port group
    is of named ports: it says where those names are looked up (see tortie.k8s.network_policy)."""
    out: list[Rule] = []
    for group in groups:
        protocol = parse_protocol(group.protocol) if group.protocol is not None else None
        for suffix, entity in peers or [("", EntityRule())]:
            peer = entity
            if (
                direction == "egress"
                and group.named
                and scope_named is not None
                and peer.selector is None
                and peer.namespace_selector is None
            ):
                peer = dataclasses.replace(
                    peer, selector=scope_named.selector, namespace_selector=scope_named.namespace_selector
                )
            annotations = {"origin": f"{origin}.{suffix}" if suffix else origin}
            if name:
                annotations["name"] = name
            meta = RuleMetadata(annotations=FrozenMap(annotations))
            if direction == "ingress":
                rule = Rule(
                    action=action,
                    protocol=protocol,
                    source=peer,
                    destination=EntityRule(ports=group.ports),
                    metadata=meta,
                )
            else:
                rule = Rule(
                    action=action,
                    protocol=protocol,
                    destination=dataclasses.replace(peer, ports=group.ports),
                    metadata=meta,
                )
            out.append(rule)
    return out
