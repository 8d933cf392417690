"""A write-time check across objects: IP pools that overlap must agree on vxlanMode.

    encap_conflicts(resources, stored_pools) -> ["IPPool NAME: spec.vxlanMode: ...", ...]

Two pools whose CIDRs overlap and whose `vxlanMode` differs leave the mode of the addresses they
share to chance (each agent would take the most specific pool, and two of one size would disagree).
`tortie apply` refuses the whole write and names both pools, the field and the values, instead of
the agents keeping their last routes and reporting the conflict. Pools among `resources` replace
stored ones of the same name; `stored_pools()` gives the valid stored pools.

Pure: no I/O besides the `stored_pools` callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tortie.model.resource import Resource
from tortie.model.specs_ipam import IPPoolSpec


def encap_conflicts(
    resources: Sequence[Resource], stored_pools: Callable[[], Sequence[Resource]]
) -> list[str]:
    """Problems of IPPools among `resources` overlapping a pool with another vxlanMode."""
    written = {r.metadata.name: r for r in resources if r.kind == "IPPool"}
    if not written:
        return []
    pools = {r.metadata.name: r for r in stored_pools() if r.kind == "IPPool"}
    pools.update(written)
    out = []
    seen: set[frozenset[str]] = set()
    for name, res in sorted(written.items()):
        spec = res.spec_as(IPPoolSpec)
        for other_name, other in sorted(pools.items()):
            pair = frozenset((name, other_name))
            if other_name == name or pair in seen:
                continue
            theirs = other.spec_as(IPPoolSpec)
            if theirs.family is not spec.family or not spec.network.overlaps(theirs.network):
                continue
            if theirs.effective_vxlan_mode != spec.effective_vxlan_mode:
                seen.add(pair)
                out.append(
                    f"IPPool {name}: spec.vxlanMode: {spec.effective_vxlan_mode} ({spec.cidr}) overlaps "
                    f"IPPool {other_name} ({theirs.cidr}) with vxlanMode {theirs.effective_vxlan_mode}; "
                    "overlapping pools must use the same vxlanMode"
                )
    return out
