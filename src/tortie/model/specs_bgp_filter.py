"""Spec of BGPFilter (reference §1.5): ordered import/export rules per address family.

A BGPFilter does nothing until a BGPPeer names it in `filters`; `tortie.bgp.filters` renders it
into BIRD functions the way Calico's confd does. The rules follow Calico's validator and CRD:

* `cidr` (of the rule's family) and `matchOperator` (Equal, NotEqual, In, NotIn) are given together
  or not at all; `prefixLength` {min, max} (0-32 / 0-128) needs `cidr`;
* `source` is RemotePeers; `interface` is a name or pattern of 1-15 characters of
  [a-zA-Z0-9_.*-] (`*` alone matches every interface);
* `peerType` is eBGP or iBGP; `communities.values` holds exactly one community; `asPathPrefix` is
  a list of AS numbers;
* `action` (Accept, Reject) is required; `operations` (1-10, each exactly one of addCommunity,
  prependASPath, setPriority) only with Accept.

Two rules are stricter than Calico, because Calico would render a configuration BIRD refuses (and so
stop every BGP session of the node): a `cidr` with host bits set is stored masked (`10.0.0.1/24` ->
`10.0.0.0/24`), and a `prefixLength` range no route can satisfy (min above max once both are clamped
to the cidr's own length and the family's maximum) is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, TypeVar

from tortie.common.ipfamily import V4, V6
from tortie.model.fields import AS_NUMBER, check_community_value, cidr_text
from tortie.model.problems import Issues, index, join
from tortie.model.schema import Enum, Int, ListOf, Struct, Text, Wire, uses

PRIORITY = Int(1, 2147483646)
_IFACE_RE = re.compile(r"^[a-zA-Z0-9_.*-]{1,15}$")


def _check_interface(text: str) -> str:
    if not _IFACE_RE.match(text):
        raise ValueError(f"{text!r} is not a valid interface name or pattern (1-15 of [a-zA-Z0-9_.*-]; "
                         "'*' is a wildcard)")
    return text


COMMUNITY = Text(check_community_value)


@dataclass(frozen=True, kw_only=True)
class BGPFilterPrefixLengthV4:
    min: Annotated[int | None, Wire(Int(0, 32))] = None
    max: Annotated[int | None, Wire(Int(0, 32))] = None


@dataclass(frozen=True, kw_only=True)
class BGPFilterPrefixLengthV6:
    min: Annotated[int | None, Wire(Int(0, 128))] = None
    max: Annotated[int | None, Wire(Int(0, 128))] = None


@dataclass(frozen=True, kw_only=True)
class BGPFilterCommunityMatch:
    values: Annotated[tuple[str, ...], Wire(ListOf(COMMUNITY, max_items=1))]


@dataclass(frozen=True, kw_only=True)
class BGPFilterAddCommunity:
    value: Annotated[str, Wire(COMMUNITY)]


@dataclass(frozen=True, kw_only=True)
class BGPFilterPrependASPath:
    prefix: Annotated[tuple[int, ...], Wire(ListOf(AS_NUMBER, max_items=10))]


@dataclass(frozen=True, kw_only=True)
class BGPFilterSetPriority:
    value: Annotated[int, Wire(PRIORITY)]


@dataclass(frozen=True, kw_only=True)
class BGPFilterOperation:
    add_community: Annotated[BGPFilterAddCommunity | None, Wire(Struct(BGPFilterAddCommunity))] = None
    prepend_as_path: Annotated[
        BGPFilterPrependASPath | None, Wire(Struct(BGPFilterPrependASPath), "prependASPath")] = None
    set_priority: Annotated[BGPFilterSetPriority | None, Wire(Struct(BGPFilterSetPriority))] = None


def _check_operation(op: BGPFilterOperation, path: str, issues: Issues) -> None:
    given = [x for x in (op.add_community, op.prepend_as_path, op.set_priority) if x is not None]
    if len(given) != 1:
        issues.add(path, "exactly one of addCommunity, prependASPath and setPriority must be set")


def _non_empty(path: str, issues: Issues, values: tuple[object, ...]) -> None:
    if not values:
        issues.add(path, "must list at least one value")


@dataclass(frozen=True, kw_only=True)
class _RuleMatch:
    """The fields V4 and V6 rules share (each family adds its own `cidr` and `prefixLength`)."""

    match_operator: Annotated[str | None, Wire(Enum("Equal", "NotEqual", "In", "NotIn"))] = None
    source: Annotated[str | None, Wire(Enum("RemotePeers"))] = None
    interface: Annotated[str | None, Wire(Text(_check_interface))] = None
    peer_type: Annotated[str | None, Wire(Enum("eBGP", "iBGP"))] = None
    communities: Annotated[BGPFilterCommunityMatch | None, Wire(Struct(BGPFilterCommunityMatch))] = None
    as_path_prefix: Annotated[tuple[int, ...], Wire(ListOf(AS_NUMBER), "asPathPrefix")] = ()
    priority: Annotated[int | None, Wire(PRIORITY)] = None
    action: Annotated[str, Wire(Enum("Accept", "Reject"))]
    operations: Annotated[tuple[BGPFilterOperation, ...], Wire(ListOf(
        Struct(BGPFilterOperation, checks=[_check_operation]), max_items=10))] = ()


@dataclass(frozen=True, kw_only=True)
class BGPFilterRuleV4(_RuleMatch):
    cidr: Annotated[str | None, Wire(cidr_text(family=V4))] = None
    prefix_length: Annotated[BGPFilterPrefixLengthV4 | None, Wire(Struct(BGPFilterPrefixLengthV4))] = None


@dataclass(frozen=True, kw_only=True)
class BGPFilterRuleV6(_RuleMatch):
    cidr: Annotated[str | None, Wire(cidr_text(family=V6))] = None
    prefix_length: Annotated[BGPFilterPrefixLengthV6 | None, Wire(Struct(BGPFilterPrefixLengthV6))] = None


BGPFilterRule = BGPFilterRuleV4 | BGPFilterRuleV6
R = TypeVar("R", BGPFilterRuleV4, BGPFilterRuleV6)


def prefix_range(rule: BGPFilterRule) -> tuple[int, int] | None:
    """The (min, max) prefix lengths a rule's prefixLength allows, clamped as Calico renders them
    (min at least the cidr's own length, max at most the family's); None without prefixLength."""
    if rule.cidr is None or rule.prefix_length is None:
        return None
    own = int(rule.cidr.rpartition("/")[2])
    top = 32 if isinstance(rule, BGPFilterRuleV4) else 128
    low = own if rule.prefix_length.min is None else max(own, rule.prefix_length.min)
    high = top if rule.prefix_length.max is None else min(top, rule.prefix_length.max)
    return low, high


@uses("cidr", "matchOperator", "prefixLength", "action", "operations", "communities", "asPathPrefix")
def _check_rule(rule: BGPFilterRule, path: str, issues: Issues) -> None:
    if (rule.cidr is None) != (rule.match_operator is None):
        missing = "matchOperator" if rule.cidr is not None else "cidr"
        issues.add(join(path, missing), "cidr and matchOperator must both be set or both be empty")
    if rule.prefix_length is not None and rule.cidr is None:
        issues.add(join(path, "prefixLength"), "needs cidr")
    span = prefix_range(rule)
    if span is not None and span[0] > span[1]:
        issues.add(join(path, "prefixLength"), f"no route can match: the range is /{span[0]} to /{span[1]} "
                   f"once clamped to {rule.cidr} (min must not exceed max)")
    if rule.operations and rule.action != "Accept":
        issues.add(join(path, "operations"), "may only be used with action Accept")
    if rule.communities is not None:
        _non_empty(join(join(path, "communities"), "values"), issues, rule.communities.values)
    for i, op in enumerate(rule.operations):
        if op.prepend_as_path is not None:
            where = join(join(index(join(path, "operations"), i), "prependASPath"), "prefix")
            _non_empty(where, issues, op.prepend_as_path.prefix)


def _rules(cls: type[R]) -> ListOf[R]:
    return ListOf(Struct(cls, checks=[_check_rule]))


@dataclass(frozen=True, kw_only=True)
class BGPFilterSpec:
    export_v4: Annotated[tuple[BGPFilterRuleV4, ...], Wire(_rules(BGPFilterRuleV4), "exportV4")] = ()
    import_v4: Annotated[tuple[BGPFilterRuleV4, ...], Wire(_rules(BGPFilterRuleV4), "importV4")] = ()
    export_v6: Annotated[tuple[BGPFilterRuleV6, ...], Wire(_rules(BGPFilterRuleV6), "exportV6")] = ()
    import_v6: Annotated[tuple[BGPFilterRuleV6, ...], Wire(_rules(BGPFilterRuleV6), "importV6")] = ()


BGP_FILTER_SPEC = Struct(BGPFilterSpec)
