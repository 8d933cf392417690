"""BGPFilter resources as BIRD functions, the way Calico's confd renders them (pure: records in, text out).

One function per filter, direction and family that has rules, named as Calico names it:

    function 'bgp_<name>_importFilterV4'()            # 'bgp_<name>_exportFilterV6'(bool is_same_as) ...
    {
      if ((net ~ [ 10.0.0.0/16{24,28} ])&&((defined(ifname))&&(ifname ~ "eth0"))) then { accept; }
      reject;                                         # a rule without conditions acts at once
    }

A rule's conditions are AND-ed in Calico's order: `cidr` with `matchOperator` (Equal `=`, NotEqual
`!=`, In `~`, NotIn `!~`; with `prefixLength` the cidr becomes the pattern `[ cidr{min,max} ]`,
min clamped up to the cidr's own length and max down to 32/128), `source: RemotePeers` (the route
was learned over BGP), `interface` (BIRD's `ifname` pattern), `communities` (the route carries
that standard or large community), `asPathPrefix` (the AS path starts with those numbers). The body
applies `operations` in order (addCommunity; prependASPath, listed first ends up first in the
path) and then the action. A rule with `peerType` runs only for sessions of that type: the function
then takes `bool is_same_as` (iBGP = the peer's AS equals ours) and the rule is wrapped in
`if (is_same_as)` / `if (!is_same_as)`.

A function that reaches its end without accepting or rejecting returns, so the peer's filter goes on
(`tortie.bgp.render` calls the functions of a peer's `filters` in order, then its default policy).
Names longer than BIRD's 64-character symbols are truncated and hashed as Calico does (the first 16
hex digits of the SHA-256 of the whole name).

Invariants: every string comes from validated model values (CIDRs are masked, interfaces match
[a-zA-Z0-9_.*-], communities are digits and colons), so the output needs no quoting beyond what is
written here; the same filter always renders the same text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from tortie.bgp.records import Filter
from tortie.common.ipfamily import V4, Family
from tortie.model.specs_bgp_filter import BGPFilterOperation, BGPFilterRule, BGPFilterSpec, prefix_range

DIRECTIONS = ("import", "export")
MAX_SYMBOL = 64
_OPERATORS = {"Equal": "=", "NotEqual": "!=", "In": "~", "NotIn": "!~"}


def rules_of(spec: BGPFilterSpec, direction: str, fam: Family) -> tuple[BGPFilterRule, ...]:
    """The rules of `direction` ("import" or "export") for `fam`, in order."""
    if direction == "import":
        return spec.import_v4 if fam is V4 else spec.import_v6
    return spec.export_v4 if fam is V4 else spec.export_v6


def _truncated(name: str, max_len: int) -> str:
    if len(name) <= max_len:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest().upper()[:16]
    return f"{name[:max_len - 17]}_{digest}"


def function_name(filter_name: str, direction: str, fam: Family) -> str:
    """`'bgp_<name>_importFilterV4'` (quoted BIRD symbol), at most 64 characters inside the quotes."""
    suffix = f"_{direction}FilterV{fam.version}"
    return f"'bgp_{_truncated(filter_name, MAX_SYMBOL - len('bgp_') - len(suffix))}{suffix}'"


def _community(value: str) -> tuple[str, str]:
    """(BIRD tuple text, the attribute it lives in) of `aa:nn` / `aa:nn:mm`."""
    parts = value.split(":")
    return f"({', '.join(parts)})", "bgp_community" if len(parts) == 2 else "bgp_large_community"


def conditions(rule: BGPFilterRule) -> list[str]:
    """A rule's match conditions as BIRD expressions (empty: the rule matches every route)."""
    out: list[str] = []
    if rule.cidr is not None and rule.match_operator is not None:
        span = prefix_range(rule) if rule.prefix_length is not None else None
        target = rule.cidr if span is None else f"[ {rule.cidr}{{{span[0]},{span[1]}}} ]"
        out.append(f"(net {_OPERATORS[rule.match_operator]} {target})")
    if rule.source == "RemotePeers":
        out.append("((defined(source))&&(source ~ [ RTS_BGP ]))")
    if rule.interface is not None:
        out.append(f'((defined(ifname))&&(ifname ~ "{rule.interface}"))')
    if rule.communities is not None and rule.communities.values:
        value, attribute = _community(rule.communities.values[0])
        out.append(f"({value} ~ {attribute})")
    if len(rule.as_path_prefix) == 1:
        out.append(f"(bgp_path.first = {rule.as_path_prefix[0]})")
    elif rule.as_path_prefix:
        out.append(f"(bgp_path ~ [= {' '.join(str(n) for n in rule.as_path_prefix)} * =])")
    return out


def _operation(op: BGPFilterOperation) -> list[str]:
    if op.add_community is not None:
        value, attribute = _community(op.add_community.value)
        return [f"{attribute}.add({value});"]
    if op.prepend_as_path is not None:
        return [f"bgp_path.prepend({n});" for n in reversed(op.prepend_as_path.prefix)]
    return []  # setPriority: refused by the model until route priorities exist (model/support_bgp)


def statement(rule: BGPFilterRule) -> str:
    """One rule as a BIRD statement (see the module docstring)."""
    body = [s for op in rule.operations for s in _operation(op)]
    body.append(f"{rule.action.lower()};")
    text = " ".join(body)
    conds = conditions(rule)
    if conds:
        text = f"if ({'&&'.join(conds)}) then {{ {text} }}"
    if rule.peer_type == "iBGP":
        text = f"if (is_same_as) then {{ {text} }}"
    elif rule.peer_type == "eBGP":
        text = f"if (!is_same_as) then {{ {text} }}"
    return text


def takes_peer_type(rules: Iterable[BGPFilterRule]) -> bool:
    """Whether the function of these rules takes `bool is_same_as` (some rule has a peerType)."""
    return any(rule.peer_type is not None for rule in rules)


def render_functions(filters: Iterable[Filter], fam: Family) -> list[str]:
    """The BIRD functions of `filters` for `fam` (each filter and direction that has rules)."""
    out: list[str] = []
    for flt in sorted(filters, key=lambda f: f.name):
        directions = [(d, rules_of(flt.spec, d, fam)) for d in DIRECTIONS]
        directions = [(d, rules) for d, rules in directions if rules]
        if not directions:
            continue
        out.append(f"# v{fam.version} BGPFilter {flt.name}")
        for direction, rules in directions:
            params = "bool is_same_as" if takes_peer_type(rules) else ""
            out.append(f"function {function_name(flt.name, direction, fam)}({params})")
            out.append("{")
            out.extend(f"  {statement(rule)}" for rule in rules)
            out.append("}")
    return out


def calls(filters: Iterable[Filter], direction: str, fam: Family, same_as: bool) -> list[str]:
    """The statements a peer's `direction` filter runs for its BGPFilters, in the peer's order."""
    out: list[str] = []
    for flt in filters:
        rules = rules_of(flt.spec, direction, fam)
        if rules:
            arg = str(same_as).lower() if takes_peer_type(rules) else ""
            out.append(f"{function_name(flt.name, direction, fam)}({arg});")
    return out
