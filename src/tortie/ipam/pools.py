"""Which IPPools an allocation may use, and the IPReservations it must avoid.

Input: IPPool and IPReservation resources (v3 wire dicts as stored in the datastore, validated and read
through `tortie.model`; an invalid one is treated as absent, with a warning), the host's Node
labels, the intended use (Workload / Tunnel / LoadBalancer) and optionally the pools the caller named
(by name or CIDR). Output: `PoolView` values in the order allocation should try them.

Rules (Calico §5.2): named pools if the caller gave any, else every pool in Automatic assignment mode;
in both cases a pool must be enabled, of the requested IP version, allow the use, and have a
`nodeSelector` matching the host's labels (`tortie.selector`).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tortie.common.ipfamily import Family, IPAddress, IPNetwork, address_in, family_of
from tortie.ipam.block import check_block_prefix
from tortie.ipam.errors import NoSuitablePool

# tortie.model and tortie.selector are imported where they are used, not here: releasing addresses
# (CNI DEL) needs neither, and a pool without a nodeSelector needs no selector parser.

log = logging.getLogger(__name__)

USE_WORKLOAD = "Workload"
USE_TUNNEL = "Tunnel"
USE_LOAD_BALANCER = "LoadBalancer"
DEFAULT_ALLOWED_USES = (USE_WORKLOAD, USE_TUNNEL)


@dataclass(frozen=True)
class PoolView:
    """What IPAM needs of an IPPool."""

    name: str
    cidr: IPNetwork
    block_prefix: int
    disabled: bool = False
    node_selector: str = "all()"
    allowed_uses: tuple[str, ...] = DEFAULT_ALLOWED_USES
    manual: bool = False  # assignmentMode Manual: only used when named by the caller
    vxlan_mode: str = "Never"  # Never / Always / CrossSubnet: VXLAN pools get tunnel addresses

    @property
    def family(self) -> Family:
        return family_of(self.cidr)

    def matches_node(self, labels: Mapping[str, str]) -> bool:
        text = self.node_selector.strip()
        if text in ("", "all()"):
            return True
        from tortie.selector import SelectorError, parse

        try:
            return parse(text).evaluate(labels)
        except SelectorError as exc:
            log.warning(
                "IPPool %s has an invalid nodeSelector, treating it as matching nothing: %s", self.name, exc
            )
            return False


def pool_from_resource(obj: Mapping[str, Any]) -> PoolView | None:
    """A PoolView from a stored IPPool (validated by `tortie.model`), or None with a warning when the
    pool does not validate: an invalid pool is treated as absent."""
    from tortie.model import ValidationError, parse_resource
    from tortie.model.specs_ipam import IPPoolSpec

    try:
        res = parse_resource(obj)
    except ValidationError as exc:
        log.warning("ignoring invalid IPPool: %s", exc)
        return None
    spec = res.spec
    if not isinstance(spec, IPPoolSpec):
        log.warning("ignoring %s %s found among IPPools", res.kind, res.metadata.name)
        return None
    cidr = spec.network
    block_prefix = spec.effective_block_size
    problem = check_block_prefix(spec.family, block_prefix, cidr)
    if problem:  # only possible for a disabled pool smaller than one block: never allocated from anyway
        log.debug("IPPool %s cannot be carved into blocks: %s", res.metadata.name, problem)
        return None
    return PoolView(
        name=res.metadata.name,
        cidr=cidr,
        block_prefix=block_prefix,
        disabled=spec.effective_disabled,
        node_selector=spec.effective_node_selector,
        allowed_uses=tuple(spec.effective_allowed_uses),
        manual=spec.effective_assignment_mode == "Manual",
        vxlan_mode=spec.effective_vxlan_mode,
    )


def reservations_from_resources(objs: Iterable[Mapping[str, Any]]) -> list[IPNetwork]:
    """Every CIDR of every valid IPReservation (invalid ones are ignored with a warning)."""
    from tortie.model import ValidationError, parse_resource
    from tortie.model.specs_ipam import IPReservationSpec

    out: list[IPNetwork] = []
    for obj in objs:
        try:
            res = parse_resource(obj)
        except ValidationError as exc:
            log.warning("ignoring invalid IPReservation: %s", exc)
            continue
        if not isinstance(res.spec, IPReservationSpec):
            continue
        for text in res.spec.reserved_cidrs:
            out.append(ipaddress.ip_network(text, strict=False))
    return out


def _matches_request(pool: PoolView, requested: Sequence[str]) -> bool:
    for item in requested:
        if item == pool.name:
            return True
        try:
            if ipaddress.ip_network(item, strict=False) == pool.cidr:
                return True
        except ValueError:
            continue
    return False


def select_pools(
    pools: Iterable[PoolView],
    fam: Family,
    node_labels: Mapping[str, str],
    use: str = USE_WORKLOAD,
    requested: Sequence[str] | None = None,
) -> list[PoolView]:
    """Pools to allocate from, in order (requested order if named, else by CIDR).

    Raises NoSuitablePool naming the reason when a requested pool does not exist or none qualifies."""
    every = list(pools)
    all_pools = [p for p in every if p.family is fam]
    if requested:
        chosen: list[PoolView] = []
        for item in requested:
            match = [p for p in all_pools if _matches_request(p, [item])]
            other = [p for p in every if p.family is not fam and _matches_request(p, [item])]
            if not match and other:
                raise NoSuitablePool(
                    f"requested {fam.name} pool {item!r} is an {other[0].family.name} pool ({other[0].cidr})"
                )
            if not match:
                raise NoSuitablePool(f"requested {fam.name} pool {item!r} does not exist")
            chosen.extend(p for p in match if p not in chosen)
        candidates = chosen
    else:
        candidates = sorted(
            (p for p in all_pools if not p.manual),
            key=lambda p: (int(p.cidr.network_address), p.cidr.prefixlen),
        )
    usable = [
        p for p in candidates if not p.disabled and use in p.allowed_uses and p.matches_node(node_labels)
    ]
    if not usable:
        what = f"requested pools {list(requested)}" if requested else f"{fam.name} pools"
        raise NoSuitablePool(
            f"no usable {what} for use {use}: none is enabled, allows {use} and has a nodeSelector matching "
            "this host (create or enable an IPPool)"
        )
    return usable


def pool_containing(pools: Iterable[PoolView], ip: IPAddress) -> PoolView | None:
    """The pool whose CIDR contains `ip` (the most specific one when pools nest)."""
    best: PoolView | None = None
    for p in pools:
        if (
            address_in(ip, p.cidr)
            and (best is None or p.cidr.prefixlen > best.cidr.prefixlen)
        ):
            best = p
    return best
