"""Neutron security group -> tortie NetworkPolicy (pure; no Neutron import).

Input: a security group dict (`id`, `name`, `security_group_rules` or a separate rule list) as
Neutron returns it. Output: `SgTranslation` = a validated NetworkPolicy `ossg.default.<sg-id>` in
the OpenStack namespace plus the rules that could not be translated (with the reason).

Semantics (Neutron's, expressed in Calico's model; reference §1.8, §8.2):

* The policy selects the group's members, `has(sg.projectcalico.org/openstack-<sg-id>)`, and always
  has types [Ingress, Egress]: a group without egress rules denies egress, as in Neutron.
* Every rule is an Allow. A port in several groups gets the union: each policy that does not match
  falls through to the next, and the tier's default Deny applies when none matched. Replies to
  allowed connections pass (the dataplane is stateful, like Neutron's default `stateful` groups).
* ethertype -> ipVersion; protocol by name or number (`any`, `0`, `-1` or none -> any protocol;
  `icmp`/1 with IPv6 -> ICMPv6); port_range_min/max -> destination ports (single or `min:max`)
  for TCP/UDP/SCTP; for ICMP they are the type and code; `remote_ip_prefix` -> nets and
  `remote_group_id` -> selector, on the source side for ingress and the destination side for
  egress (port ranges always name the destination port, as in Neutron).
* Fail closed: a rule tortie cannot express exactly (ports on a protocol without port matches in
  Calico's model such as DCCP, ICMP type 255, `remote_address_group_id`) is left out, never
  widened; the driver logs each one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tortie.model import Resource, ValidationError, parse_resource

from networking_tortie import naming

# IANA protocol numbers of the names Neutron accepts (neutron-lib's IP_PROTOCOL_MAP).
PROTOCOL_NUMBERS: dict[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2, "ip": 0,
    "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6,
    "udp": 17, "udplite": 136, "vrrp": 112,
}
# Protocols with a name in Calico's model.
_CALICO_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6", 132: "SCTP", 136: "UDPLite"}
_PORT_PROTOCOLS = frozenset({6, 17, 132})
_ANY = ("", "any", "0", "-1")


@dataclass(frozen=True)
class SkippedRule:
    rule_id: str
    reason: str


@dataclass(frozen=True)
class SgTranslation:
    policy: Resource
    skipped: tuple[SkippedRule, ...]


class UntranslatableRule(ValueError):
    """A security-group rule that tortie cannot express without widening it."""


def _protocol_number(raw: object) -> int | None:
    """Neutron's protocol field -> IANA number, None for "any"."""
    if raw is None:
        return None
    text = str(raw).strip().lower()
    if text in _ANY:
        return None
    if text.isdigit():
        number = int(text)
        if not 0 <= number <= 255:
            raise UntranslatableRule(f"protocol number {number} is outside 0-255")
        return None if number == 0 else number
    if text not in PROTOCOL_NUMBERS:
        raise UntranslatableRule(f"unknown protocol {raw!r}")
    number = PROTOCOL_NUMBERS[text]
    return None if number == 0 else number


def _ip_version(rule: Mapping[str, Any]) -> int | None:
    ethertype = str(rule.get("ethertype") or "").lower()
    if ethertype == "ipv4":
        return 4
    if ethertype == "ipv6":
        return 6
    return None


def translate_rule(rule: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """One Neutron rule -> (direction "ingress"/"egress", Calico wire rule).

    Raises UntranslatableRule when the rule cannot be expressed exactly."""
    direction = str(rule.get("direction") or "")
    if direction not in ("ingress", "egress"):
        raise UntranslatableRule(f"unknown direction {direction!r}")
    if rule.get("remote_address_group_id"):
        raise UntranslatableRule("remote address groups are not supported")
    out: dict[str, Any] = {"action": "Allow"}
    version = _ip_version(rule)
    if version is not None:
        out["ipVersion"] = version
    number = _protocol_number(rule.get("protocol"))
    if number == 1 and version == 6:
        number = 58  # Neutron lets "icmp" stand for ICMPv6 on an IPv6 rule
    if number == 58 and version == 4:
        raise UntranslatableRule("ICMPv6 on an IPv4 rule")
    if number is not None:
        out["protocol"] = _CALICO_NAMES.get(number, number)
    lo, hi = rule.get("port_range_min"), rule.get("port_range_max")
    other_side: dict[str, Any] = {}  # the remote end: source for ingress, destination for egress
    ports_side: dict[str, Any] = {}  # always the destination
    if number in (1, 58):
        if lo is not None:
            if not 0 <= int(lo) <= 254:
                raise UntranslatableRule(f"ICMP type {lo} cannot be matched (0-254)")
            icmp = {"type": int(lo)}
            if hi is not None:
                icmp["code"] = int(hi)
            out["icmp"] = icmp
    elif lo is not None or hi is not None:
        if number not in _PORT_PROTOCOLS:
            raise UntranslatableRule(f"port ranges on protocol {rule.get('protocol')!r} cannot be matched")
        low = int(lo if lo is not None else hi)  # type: ignore[arg-type]
        high = int(hi if hi is not None else lo)  # type: ignore[arg-type]
        if not (low == 1 and high == 65535):
            ports_side["ports"] = [low if low == high else f"{low}:{high}"]
    prefix = rule.get("remote_ip_prefix")
    if prefix:
        net = ipaddress.ip_network(str(prefix), strict=False)
        if version is not None and net.version != version:
            raise UntranslatableRule(f"remote_ip_prefix {prefix} does not match ethertype IPv{version}")
        other_side["nets"] = [str(net)]
    remote_group = rule.get("remote_group_id")
    if remote_group:
        other_side["selector"] = naming.sg_selector(str(remote_group))
    if direction == "ingress":
        source, destination = other_side, ports_side
    else:
        source, destination = {}, {**other_side, **ports_side}
    if source:
        out["source"] = source
    if destination:
        out["destination"] = destination
    return direction, out


def _rules_of(sg: Mapping[str, Any], rules: Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    chosen = list(rules) if rules is not None else list(sg.get("security_group_rules") or [])
    return sorted(chosen, key=lambda r: str(r.get("id") or ""))


def policy_wire(sg_id: str, ingress: list[dict[str, Any]], egress: list[dict[str, Any]],
                region: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": naming.policy_name(sg_id), "namespace": naming.namespace(region)},
        "spec": {
            "tier": "default",
            "selector": naming.sg_selector(sg_id),
            "types": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def security_group_to_policy(sg: Mapping[str, Any], rules: Iterable[Mapping[str, Any]] | None = None,
                             *, region: str = "") -> SgTranslation:
    """The NetworkPolicy of security group `sg` (its rules from `rules` or the dict itself)."""
    sg_id = str(sg["id"])
    ingress: list[dict[str, Any]] = []
    egress: list[dict[str, Any]] = []
    skipped: list[SkippedRule] = []
    for rule in _rules_of(sg, rules):
        rule_id = str(rule.get("id") or "?")
        try:
            direction, wire = translate_rule(rule)
            # Check the rule alone so that one bad rule drops only itself.
            parse_resource(policy_wire(sg_id, [wire] if direction == "ingress" else [],
                                       [wire] if direction == "egress" else [], region))
        except (UntranslatableRule, ValueError, TypeError) as exc:
            reason = str(exc) if not isinstance(exc, ValidationError) else f"invalid: {exc}"
            skipped.append(SkippedRule(rule_id, reason))
            continue
        (ingress if direction == "ingress" else egress).append(wire)
    policy = parse_resource(policy_wire(sg_id, ingress, egress, region),
                            source=f"neutron security group {sg_id}")
    return SgTranslation(policy, tuple(skipped))
