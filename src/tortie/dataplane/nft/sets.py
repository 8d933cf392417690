"""Named sets of the policy table and their elements (pure): IP sets per family, pool sets.

Input: the calc's `IPSetUpdate`s and `PoolUpdate`s. Output: per set name its `SetDef` and its
elements as the canonical strings of `ir` ("10.0.0.0/24", "10.0.0.1/32", "10.0.0.1|6|80").

* An address IP set ("net") becomes one interval set per family (`s4-`/`s6-`), holding
  non-overlapping CIDRs (the kernel rejects overlapping intervals; adjacent ones are fine, so
  nothing is merged, only contained CIDRs are dropped). A named-port set ("port") becomes an
  `address . inet_proto . inet_service` set per family (`n4-`/`n6-`).
* Families: sets exist only in the families in which some IP set has a member (`set_families`);
  rule rendering (`rules.py`) leaves out what needs a set of another family.
* Pools: `all-pools-4/6` (every pool) and `masq-pools-4/6` (natOutgoing pools), always present.
* `placeholder_set(name)`: the definition of a set that is referenced but was never sent (kept
  empty so the table loads; an empty set holds nothing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from tortie.common.ipfamily import FAMILIES, V6, Family, family
from tortie.dataplane.messages.policy import IPSetUpdate, NamedPortMember, PoolUpdate
from tortie.dataplane.nft.ir import SetDef
from tortie.dataplane.nft.names import pool_set_name, set_name

ALL_FAMILIES = frozenset(FAMILIES)
SetContents = dict[str, tuple[SetDef, frozenset[str]]]


def _interval_set(name: str, fam: Family) -> SetDef:
    return SetDef(name, fam.nft_addr_type, interval=True)


def _port_set(name: str, fam: Family) -> SetDef:
    return SetDef(name, (fam.nft_addr_type, "inet_proto", "inet_service"))


def interval_elements(members: Iterable[str], fam: Family) -> frozenset[str]:
    """Non-overlapping canonical CIDRs covering `members` of one family (an interval set rejects
    overlapping elements; adjacent ones are fine, so nothing is merged, only contained ones drop)."""
    host_suffix = f"/{fam.host_prefix}"
    v6 = fam == V6
    mine = [m for m in members if (":" in m) is v6]  # `family_of`'s rule, inlined: sets are big
    if all(m.endswith(host_suffix) for m in mine):  # canonical host addresses never overlap: no parsing
        return frozenset(mine)
    nets = [ipaddress.ip_network(m, strict=False) for m in mine]
    nets.sort(key=lambda n: (int(n.network_address), n.prefixlen))
    out: list[str] = []
    covered_to = -1
    for net in nets:
        if int(net.broadcast_address) <= covered_to:
            continue
        out.append(str(net))
        covered_to = int(net.broadcast_address)
    return frozenset(out)


def port_elements(members: Iterable[NamedPortMember], fam: Family) -> frozenset[str]:
    v6 = fam == V6
    return frozenset(f"{m.ip}|{m.protocol}|{m.port}" for m in members if (":" in m.ip) is v6)


def member_families(update: IPSetUpdate) -> frozenset[Family]:
    """The address families of an IP set's members."""
    texts = (m if isinstance(m, str) else m.ip for m in update.members)
    found = {":" in t for t in texts}  # `family_of`'s rule, inlined: this runs over every member
    return frozenset(fam for fam in FAMILIES if (fam == V6) in found)


def set_families(updates: Iterable[IPSetUpdate]) -> frozenset[Family]:
    """Families in which IP sets exist: those with a member in at least one set. In a family where
    every set is empty, sets are not created and rules do not refer to them: a match on an empty set
    can never hold, a negated one always does, so the rules render as if the reference were there
    (rules that need a member are left out, negations dropped). A single-stack cluster thus loads
    half the sets and set-matching rules (the kernel looks up a set reference by name, linearly)."""
    found: set[Family] = set()
    for update in updates:
        found |= member_families(update)
        if len(found) == len(FAMILIES):
            break
    return frozenset(found)


def ipset_defs(update: IPSetUpdate, families: frozenset[Family] = ALL_FAMILIES) -> SetContents:
    out: SetContents = {}
    for fam in FAMILIES:
        if fam not in families:
            continue
        name = set_name(update.id, fam)
        if update.kind == "net":
            members = [m for m in update.members if isinstance(m, str)]
            out[name] = (_interval_set(name, fam), interval_elements(members, fam))
        else:
            ports = [m for m in update.members if isinstance(m, NamedPortMember)]
            out[name] = (_port_set(name, fam), port_elements(ports, fam))
    return out


def pool_defs(pools: Iterable[PoolUpdate]) -> SetContents:
    pools = list(pools)
    out: SetContents = {}
    for fam in FAMILIES:
        for kind in ("all", "masq"):
            members = [p.cidr for p in pools if kind == "all" or p.nat_outgoing]
            name = pool_set_name(kind, fam)
            out[name] = (_interval_set(name, fam), interval_elements(members, fam))
    return out


def placeholder_set(name: str) -> SetDef:
    """The definition of the set `name` (as `set_name` or `pool_defs` names them), to create empty."""
    fam = family(6) if name[1:2] == "6" or name.endswith("-6") else family(4)
    return _port_set(name, fam) if name.startswith("n") else _interval_set(name, fam)
