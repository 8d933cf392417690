"""Policy rules: Rule, EntityRule, ICMPFields and friends, with Calico's rule validation.

Input: one wire rule (`spec.ingress[i]` / `spec.egress[i]` of a policy or profile). Output: a
frozen `Rule`. Rules that depend only on the rule itself are `Struct` checks here; rules that
depend on the direction or the policy kind are in `check_rule_list` (called by the policy and
profile specs).

Checks (reference §1.8): action Allow/Deny/Log/Pass; protocol names/numbers; port numbers need
protocol TCP/UDP/SCTP (named ports may omit the protocol: the endpoint's named port carries it);
icmp/notICMP need protocol ICMP/ICMPv6, ICMP needs ipVersion 4 and ICMPv6 ipVersion 6 when set;
ICMP code needs a type; nets agree with ipVersion and never mix IPv4 and IPv6 within a rule;
`0.0.0.0/0` / `::/0` in notNets is contradictory; `global()` only as a whole namespaceSelector;
services exclude selectors, nets and serviceAccounts; http only on Allow rules with TCP/no protocol.
"""

from dataclasses import dataclass
from typing import Annotated

from tortie.model.fields import (
    NAME,
    NAMESPACE_SELECTOR_IN_RULE,
    PORT,
    PROTOCOL,
    SELECTOR,
    Port,
    ProtocolValue,
    as_network,
    cidr_text,
)
from tortie.model.frozen import EMPTY_MAP, FrozenMap
from tortie.model.metadata import ANNOTATIONS
from tortie.model.problems import Issues, index, join
from tortie.model.schema import Converted, Enum, Int, ListOf, Struct, Text, Wire, uses

ACTIONS = ("Allow", "Deny", "Log", "Pass")
MAX_NETS = 256
MAX_PORTS = 50
RULE_NET = cidr_text(strict=False)


def _parse_ip_version(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TypeError(raw)
    if raw not in (4, 6):
        raise ValueError(f"{raw} is not valid: ipVersion must be 4 or 6")
    return raw


IP_VERSION = Converted(_parse_ip_version, lambda v: v, "4 or 6")


@dataclass(frozen=True, kw_only=True)
class ICMPFields:
    """ICMP match: `type` 0-254 and optional `code` 0-255 (a code needs a type)."""

    type: Annotated[int | None, Wire(Int(0, 254, hint="ICMP types must be 0-254"))] = None
    code: Annotated[int | None, Wire(Int(0, 255, hint="ICMP codes must be 0-255"))] = None


def _check_icmp(icmp: ICMPFields, path: str, issues: Issues) -> None:
    if icmp.code is not None and icmp.type is None:
        issues.add(join(path, "code"), "an ICMP code needs an ICMP type")


ICMP = Struct(ICMPFields, checks=[_check_icmp])


@dataclass(frozen=True, kw_only=True)
class ServiceAccountMatch:
    """Match endpoints by Kubernetes service account: any of `names`, and/or by `selector`."""

    names: Annotated[tuple[str, ...], Wire(ListOf(Text(non_empty=True)))] = ()
    selector: Annotated[str | None, Wire(SELECTOR)] = None


@dataclass(frozen=True, kw_only=True)
class ServiceMatch:
    """Match the endpoints behind a Kubernetes Service."""

    name: Annotated[str, Wire(NAME)]
    namespace: Annotated[str | None, Wire(NAME)] = None


@dataclass(frozen=True, kw_only=True)
class EntityRule:
    """One side (source or destination) of a rule; all given fields must match."""

    nets: Annotated[tuple[str, ...], Wire(ListOf(RULE_NET, max_items=MAX_NETS))] = ()
    not_nets: Annotated[tuple[str, ...], Wire(ListOf(RULE_NET, max_items=MAX_NETS))] = ()
    selector: Annotated[str | None, Wire(SELECTOR)] = None
    not_selector: Annotated[str | None, Wire(SELECTOR)] = None
    namespace_selector: Annotated[str | None, Wire(NAMESPACE_SELECTOR_IN_RULE)] = None
    ports: Annotated[tuple[Port, ...], Wire(ListOf(PORT, max_items=MAX_PORTS))] = ()
    not_ports: Annotated[tuple[Port, ...], Wire(ListOf(PORT, max_items=MAX_PORTS))] = ()
    service_accounts: Annotated[ServiceAccountMatch | None, Wire(Struct(ServiceAccountMatch))] = None
    services: Annotated[ServiceMatch | None, Wire(Struct(ServiceMatch))] = None

    @property
    def all_nets(self) -> tuple[str, ...]:
        return self.nets + self.not_nets


@uses("notNets")
def _check_not_nets(rule: EntityRule, path: str, issues: Issues) -> None:
    for i, net in enumerate(rule.not_nets):
        if as_network(net).prefixlen == 0:
            issues.add(index(join(path, "notNets"), i),
                       f"{net} matches every address, so a rule negating it could never match")


@uses("services", "selector", "notSelector", "namespaceSelector", "serviceAccounts", "nets", "notNets")
def _check_services(rule: EntityRule, path: str, issues: Issues) -> None:
    if rule.services is not None:
        clashes = [wire for wire, present in (
            ("selector", rule.selector is not None), ("notSelector", rule.not_selector is not None),
            ("namespaceSelector", rule.namespace_selector is not None),
            ("serviceAccounts", rule.service_accounts is not None),
            ("nets", bool(rule.nets)), ("notNets", bool(rule.not_nets)),
        ) if present]
        if clashes:
            issues.add(join(path, "services"), f"cannot be combined with {', '.join(clashes)} in the same "
                       "entity (the service defines the endpoints)")


ENTITY_RULE = Struct(EntityRule, checks=[_check_not_nets, _check_services])
EMPTY_ENTITY = EntityRule()


@dataclass(frozen=True, kw_only=True)
class HTTPPath:
    exact: Annotated[str | None, Wire(Text())] = None
    prefix: Annotated[str | None, Wire(Text())] = None


def _check_http_path(p: HTTPPath, path: str, issues: Issues) -> None:
    if (p.exact is None) == (p.prefix is None):
        issues.add(path, "set exactly one of exact or prefix")
        return
    value = p.exact if p.exact is not None else p.prefix
    assert value is not None
    if not value.startswith("/") or any(c in value for c in "? #"):
        issues.add(path, f"{value!r} is not a valid HTTP path: it must start with '/' and not contain "
                   "'?', '#' or spaces")


@dataclass(frozen=True, kw_only=True)
class HTTPMatch:
    """Layer-7 match (enforced by an application-layer proxy, not by the L3/L4 dataplane)."""

    methods: Annotated[tuple[str, ...], Wire(ListOf(Text(non_empty=True), unique=True))] = ()
    paths: Annotated[tuple[HTTPPath, ...], Wire(ListOf(Struct(HTTPPath, checks=[_check_http_path])))] = ()


@dataclass(frozen=True, kw_only=True)
class RuleMetadata:
    annotations: Annotated[FrozenMap[str, str], Wire(ANNOTATIONS)] = EMPTY_MAP


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One policy rule; evaluated in order, first Allow/Deny/Pass decides (Log continues)."""

    action: Annotated[str, Wire(Enum(*ACTIONS))]
    ip_version: Annotated[int | None, Wire(IP_VERSION, "ipVersion")] = None
    protocol: Annotated[ProtocolValue | None, Wire(PROTOCOL)] = None
    not_protocol: Annotated[ProtocolValue | None, Wire(PROTOCOL)] = None
    icmp: Annotated[ICMPFields | None, Wire(ICMP)] = None
    not_icmp: Annotated[ICMPFields | None, Wire(ICMP, "notICMP")] = None
    source: Annotated[EntityRule, Wire(ENTITY_RULE)] = EMPTY_ENTITY
    destination: Annotated[EntityRule, Wire(ENTITY_RULE)] = EMPTY_ENTITY
    http: Annotated[HTTPMatch | None, Wire(Struct(HTTPMatch))] = None
    metadata: Annotated[RuleMetadata | None, Wire(Struct(RuleMetadata))] = None

    @property
    def effective_ip_version(self) -> int | None:
        """The IP version the rule is restricted to: ipVersion, else implied by ICMP/ICMPv6 or nets."""
        if self.ip_version is not None:
            return self.ip_version
        for proto in (self.protocol, self.not_protocol):
            if proto is not None and proto.is_icmp:
                return 4
            if proto is not None and proto.is_icmpv6:
                return 6
        nets = self.source.all_nets + self.destination.all_nets
        return as_network(nets[0]).version if nets else None


@uses("ipVersion", "protocol", "notProtocol")
def _check_ip_version(rule: Rule, path: str, issues: Issues) -> None:
    for wire, proto in (("protocol", rule.protocol), ("notProtocol", rule.not_protocol)):
        if proto is None or rule.ip_version is None:
            continue
        if proto.is_icmp and rule.ip_version != 4:
            issues.add(join(path, "ipVersion"), f"must be 4 with {wire} {proto} (use ICMPv6 for IPv6)")
        if proto.is_icmpv6 and rule.ip_version != 6:
            issues.add(join(path, "ipVersion"), f"must be 6 with {wire} {proto} (use ICMP for IPv4)")


@uses("protocol", "source", "destination")
def _check_ports(rule: Rule, path: str, issues: Issues) -> None:
    proto = rule.protocol
    for side_wire, side in (("source", rule.source), ("destination", rule.destination)):
        for wire, ports in (("ports", side.ports), ("notPorts", side.not_ports)):
            if not ports:
                continue
            where = join(join(path, side_wire), wire)
            numeric = any(not p.is_named for p in ports)
            if proto is None and numeric:
                issues.add(where, "rules that specify port numbers must set protocol to TCP, UDP or SCTP")
            elif proto is not None and not proto.supports_ports:
                issues.add(where, f"protocol {proto} has no ports: rules with ports need TCP, UDP or SCTP")


@uses("protocol", "icmp", "notICMP")
def _check_icmp_protocol(rule: Rule, path: str, issues: Issues) -> None:
    proto = rule.protocol
    is_icmp = proto is not None and (proto.is_icmp or proto.is_icmpv6)
    for wire, fields in (("icmp", rule.icmp), ("notICMP", rule.not_icmp)):
        if fields is not None and not is_icmp:
            issues.add(join(path, wire), "rules that specify ICMP fields must set protocol to ICMP or ICMPv6")


@uses("ipVersion", "source", "destination")
def _check_nets(rule: Rule, path: str, issues: Issues) -> None:
    seen: set[int] = set()
    for side_wire, side in (("source", rule.source), ("destination", rule.destination)):
        for wire, nets in (("nets", side.nets), ("notNets", side.not_nets)):
            if not nets:
                continue
            where = join(join(path, side_wire), wire)
            versions = {as_network(n).version for n in nets}
            if rule.ip_version is not None and versions - {rule.ip_version}:
                issues.add(where, f"holds IPv{min(versions - {rule.ip_version})} CIDRs but the rule's "
                           f"ipVersion is {rule.ip_version}")
            if len(versions) > 1 or (seen and versions - seen):
                issues.add(where, "the rule mixes IPv4 and IPv6 CIDRs; split it into one rule per IP version")
            seen |= versions


@uses("http", "action", "protocol")
def _check_http(rule: Rule, path: str, issues: Issues) -> None:
    if rule.http is None:
        return
    if rule.action != "Allow":
        issues.add(join(path, "http"), "HTTP matches are only valid in Allow rules")
    if rule.protocol is not None and rule.protocol.number != 6:
        issues.add(join(path, "protocol"), "rules with HTTP matches must use protocol TCP or leave it unset")


@uses("destination")
def _check_services_ports(rule: Rule, path: str, issues: Issues) -> None:
    dst = rule.destination
    if dst.services is not None:
        for wire, ports in (("ports", dst.ports), ("notPorts", dst.not_ports)):
            if ports:
                issues.add(join(join(path, "destination"), wire),
                           "cannot be combined with destination services (the service defines the ports)")


RULE = Struct(Rule, checks=[_check_ip_version, _check_ports, _check_icmp_protocol, _check_nets, _check_http,
                            _check_services_ports])
RULES = ListOf(RULE, max_items=1024)


def check_rule_list(rules: tuple[Rule, ...], path: str, issues: Issues, *, direction: str,
                    global_scope: bool) -> None:
    """Direction/scope rules for `spec.ingress` / `spec.egress` (direction "ingress"/"egress").

    * egress rules may not use source services or HTTP matches;
    * ingress rules may not use destination services;
    * in cluster-scoped policies a service match must name its namespace.
    """
    for i, rule in enumerate(rules):
        where = index(path, i)
        if direction == "egress":
            if rule.source.services is not None:
                issues.add(join(join(where, "source"), "services"),
                           "not allowed in the source of an egress rule")
            if rule.http is not None:
                issues.add(join(where, "http"), "HTTP matches are not allowed in egress rules")
        else:
            if rule.destination.services is not None:
                issues.add(join(join(where, "destination"), "services"),
                           "not allowed in the destination of an ingress rule")
        if global_scope:
            for side_wire, side in (("source", rule.source), ("destination", rule.destination)):
                if side.services is not None and side.services.namespace is None:
                    issues.add(join(join(join(where, side_wire), "services"), "namespace"),
                               "is required in a cluster-scoped policy")
