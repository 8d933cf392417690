"""Rule resolution: model policies and rules -> selectors and `ResolvedRule`s (pure functions).

Inputs: a policy's or profile's spec and its scope (the namespace of a NetworkPolicy, None for
GlobalNetworkPolicy and Profile). Outputs: the selector of the endpoints a policy applies to, and
each rule as a `ResolvedRule` plus the IP sets (`SetSpec`: selector, optional named port) it needs.

Namespaces and service accounts are labels (Calico's conventions, reference §1.8, §1.11):

* every namespaced object (WorkloadEndpoint, NetworkSet) carries `projectcalico.org/namespace=<ns>`
  and `pcns.projectcalico.org/name=<ns>`, and inherits the `labelsToApply` of profile `kns.<ns>`
  (Calico stores a namespace's labels there, prefixed `pcns.`);
* a WorkloadEndpoint with a service account carries `projectcalico.org/serviceaccount=<sa>` and
  inherits profile `ksa.<ns>.<sa>` (its labels are prefixed `pcsa.`).

So a `namespaceSelector` is the same selector with every label key prefixed `pcns.` (`global()`
alone: "not namespaced", i.e. `!has(projectcalico.org/namespace)`), and a service-account selector
is prefixed `pcsa.`.

Entity scoping: in a NetworkPolicy a rule's selector, notSelector, serviceAccounts and named ports
are limited to the policy's namespace unless the rule gives a namespaceSelector; in a
GlobalNetworkPolicy or Profile they range over all namespaces (and non-namespaced objects). nets
are never scoped. notSelector excludes what `namespace part && notSelector` selects.

IP set ids depend only on canonical selector text (and the port name), so equal selectors in
different policies share one set, and ids survive restarts: `s:<hash>` for address sets (the
selector's `unique_id`), `n:<hash>` for named-port sets.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from tortie.dataplane.messages.policy import PortRange, ResolvedRule, RuleAction
from tortie.model.rules import EntityRule, Rule
from tortie.model.specs_policy import GlobalNetworkPolicySpec, NetworkPolicySpec
from tortie.selector import Selector, parse
from tortie.selector.nodes import (
    AndNode,
    CompareNode,
    CompareOp,
    HasNode,
    InSetNode,
    Node,
    NotNode,
    OrNode,
    conjunction,
)

NAMESPACE_LABEL = "projectcalico.org/namespace"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
NAMESPACE_NAME_LABEL = "pcns.projectcalico.org/name"
SERVICE_ACCOUNT_NAME_LABEL = "pcsa.projectcalico.org/name"
NAMESPACE_LABEL_PREFIX = "pcns."
SERVICE_ACCOUNT_LABEL_PREFIX = "pcsa."
NAMESPACE_PROFILE_PREFIX = "kns."
SERVICE_ACCOUNT_PROFILE_PREFIX = "ksa."
NAMED_PORT_SET_PREFIX = "n:"


@dataclass(frozen=True)
class SetSpec:
    """What one IP set holds: addresses of everything `selector` matches (named_port None), or
    (address, protocol, port) of their ports named `named_port`."""

    id: str
    selector: Selector
    named_port: str | None = None


def prefixed(node: Node, prefix: str) -> Node:
    """The same selector tree with every label key prefixed."""
    if isinstance(node, HasNode):
        return HasNode(prefix + node.label)
    if isinstance(node, CompareNode):
        return CompareNode(prefix + node.label, node.op, node.value)
    if isinstance(node, InSetNode):
        return InSetNode(prefix + node.label, node.values, node.negated)
    if isinstance(node, NotNode):
        return NotNode(prefixed(node.operand, prefix))
    if isinstance(node, AndNode):
        return AndNode(tuple(prefixed(o, prefix) for o in node.operands))
    if isinstance(node, OrNode):
        return OrNode(tuple(prefixed(o, prefix) for o in node.operands))
    return node  # all(), global()


def namespace_selector_node(text: str) -> Node:
    """A namespaceSelector as a selector over endpoint labels: namespaced objects whose namespace's
    labels match (`global()` alone: objects that are not namespaced)."""
    sel = parse(text)
    if sel.is_global_only:
        return NotNode(HasNode(NAMESPACE_LABEL))
    return conjunction([HasNode(NAMESPACE_LABEL), prefixed(sel.root, NAMESPACE_LABEL_PREFIX)])


def service_account_selector_node(text: str) -> Node:
    """A service-account selector over endpoint labels: endpoints with a service account whose
    labels match."""
    return conjunction(
        [HasNode(SERVICE_ACCOUNT_LABEL), prefixed(parse(text).root, SERVICE_ACCOUNT_LABEL_PREFIX)]
    )


def in_namespace(namespace: str) -> Node:
    return CompareNode(NAMESPACE_LABEL, CompareOp.EQ, namespace)


def _selector(parts: list[Node]) -> Selector:
    return Selector(conjunction(parts))


def named_port_set_id(selector: Selector, port_name: str) -> str:
    digest = hashlib.sha224(f"{selector}\x00{port_name}".encode()).digest()
    return NAMED_PORT_SET_PREFIX + base64.b32encode(digest).decode("ascii").lower()[:28]


def policy_selector(
    kind: str, namespace: str | None, spec: NetworkPolicySpec | GlobalNetworkPolicySpec
) -> Selector:
    """The endpoints a policy applies to (before `types`): its selector, limited to its namespace
    (NetworkPolicy) or to `namespaceSelector` (GlobalNetworkPolicy), and to
    `serviceAccountSelector` when given."""
    parts: list[Node] = []
    if kind == "NetworkPolicy":
        parts.append(in_namespace(namespace or ""))
    elif isinstance(spec, GlobalNetworkPolicySpec) and spec.namespace_selector:
        parts.append(namespace_selector_node(spec.namespace_selector))
    parts.append(parse(spec.effective_selector).root)
    if spec.service_account_selector:
        parts.append(service_account_selector_node(spec.service_account_selector))
    return _selector(parts)


@dataclass(frozen=True)
class EntitySelectors:
    """One rule side as selectors: `positive` must match (None: no selector constraint),
    `negative` must not, `named_ports` is the selector named ports are looked up on."""

    positive: Selector | None
    negative: Selector | None
    named_ports: Selector


def entity_selectors(entity: EntityRule, namespace: str | None) -> EntitySelectors:
    ns_part: Node | None = None
    if entity.namespace_selector:
        ns_part = namespace_selector_node(entity.namespace_selector)
    elif namespace is not None:
        ns_part = in_namespace(namespace)
    scope = [ns_part] if ns_part is not None else []
    positive: list[Node] = []
    if entity.selector:
        positive.append(parse(entity.selector).root)
    sa = entity.service_accounts
    if sa is not None:
        if sa.names:
            positive.append(InSetNode(SERVICE_ACCOUNT_LABEL, tuple(sa.names)))
        if sa.selector:
            positive.append(service_account_selector_node(sa.selector))
        if not sa.names and not sa.selector:
            positive.append(HasNode(SERVICE_ACCOUNT_LABEL))
    pos: Selector | None = None
    if positive or entity.namespace_selector:
        pos = _selector(scope + positive)
    neg = _selector([*scope, parse(entity.not_selector).root]) if entity.not_selector else None
    named = pos if pos is not None else (_selector(scope) if scope else parse("all()"))
    return EntitySelectors(pos, neg, named)


@dataclass
class _SideOut:
    sets: tuple[str, ...] = ()
    not_sets: tuple[str, ...] = ()
    ports: tuple[PortRange, ...] = ()
    not_ports: tuple[PortRange, ...] = ()
    named: tuple[str, ...] = ()
    not_named: tuple[str, ...] = ()


def _resolve_side(entity: EntityRule, namespace: str | None, needs: dict[str, SetSpec]) -> _SideOut:
    sels = entity_selectors(entity, namespace)
    out = _SideOut()
    if sels.positive is not None:
        needs.setdefault(sels.positive.unique_id, SetSpec(sels.positive.unique_id, sels.positive))
        out.sets = (sels.positive.unique_id,)
    if sels.negative is not None:
        needs.setdefault(sels.negative.unique_id, SetSpec(sels.negative.unique_id, sels.negative))
        out.not_sets = (sels.negative.unique_id,)

    def named(ports: tuple[object, ...]) -> tuple[str, ...]:
        ids = []
        for port in ports:
            name = getattr(port, "name", None)
            if name is None:
                continue
            set_id = named_port_set_id(sels.named_ports, name)
            needs.setdefault(set_id, SetSpec(set_id, sels.named_ports, name))
            ids.append(set_id)
        return tuple(dict.fromkeys(ids))

    out.ports = tuple(sorted({PortRange(p.min_port, p.max_port) for p in entity.ports if not p.is_named}))
    out.not_ports = tuple(
        sorted({PortRange(p.min_port, p.max_port) for p in entity.not_ports if not p.is_named})
    )
    out.named = named(entity.ports)
    out.not_named = named(entity.not_ports)
    return out


def resolve_rule(rule: Rule, namespace: str | None, origin: str, needs: dict[str, SetSpec]) -> ResolvedRule:
    """One rule, resolved; the IP sets it uses are added to `needs` (id -> SetSpec)."""
    src = _resolve_side(rule.source, namespace, needs)
    dst = _resolve_side(rule.destination, namespace, needs)
    action: RuleAction = rule.action  # type: ignore[assignment]  # validated by the model
    return ResolvedRule(
        action=action,
        origin=origin,
        ip_version=rule.effective_ip_version,
        protocol=rule.protocol.number if rule.protocol is not None else None,
        not_protocol=rule.not_protocol.number if rule.not_protocol is not None else None,
        icmp_type=rule.icmp.type if rule.icmp is not None else None,
        icmp_code=rule.icmp.code if rule.icmp is not None else None,
        not_icmp_type=rule.not_icmp.type if rule.not_icmp is not None else None,
        not_icmp_code=rule.not_icmp.code if rule.not_icmp is not None else None,
        src_nets=tuple(rule.source.nets),
        not_src_nets=tuple(rule.source.not_nets),
        dst_nets=tuple(rule.destination.nets),
        not_dst_nets=tuple(rule.destination.not_nets),
        src_sets=src.sets,
        not_src_sets=src.not_sets,
        dst_sets=dst.sets,
        not_dst_sets=dst.not_sets,
        src_ports=src.ports,
        not_src_ports=src.not_ports,
        dst_ports=dst.ports,
        not_dst_ports=dst.not_ports,
        src_named_port_sets=src.named,
        not_src_named_port_sets=src.not_named,
        dst_named_port_sets=dst.named,
        not_dst_named_port_sets=dst.not_named,
        never_matches=rule.source.services is not None or rule.destination.services is not None,
    )


def resolve_rules(
    rules: tuple[Rule, ...], namespace: str | None, direction: str, needs: dict[str, SetSpec]
) -> tuple[ResolvedRule, ...]:
    return tuple(resolve_rule(rule, namespace, f"{direction}[{i}]", needs) for i, rule in enumerate(rules))
