"""AutoAssign (Calico §5.2): which blocks a request for N addresses of each IP family is served from.

Per IP family, with the pools `select_pools` allows (named pools, enabled, right family, allowed use,
nodeSelector matching the host's labels):

1. the host's affine blocks in those pools, the block this object last allocated from first (an
   ordering hint only); a young pending affinity is another process's claim in flight and is skipped,
   an abandoned one is completed or dropped (`claims.complete_pending`); a confirmed affinity whose
   block is missing gets the block recreated;
2. new blocks claimed (`claims`) while `autoAllocateBlocks` and below `maxBlocksPerHost` (0 = Calico's
   cap of 20), walked from a start point seeded by the host name so hosts diverge;
3. unless `strictAffinity`, free addresses borrowed from other hosts' blocks.

If the request still cannot be met, what the call took is released again and `PoolExhausted` is
raised: a caller gets all it asked for or nothing. Every block change goes through `BlockWriter`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import tortie.ipam.claims as claims
from tortie.common.ipfamily import (
    V4,
    V6,
    Family,
    IPInterface,
    IPNetwork,
    network_within,
    num_addresses,
)
from tortie.ipam.block import host_seed, iter_free_blocks, reserved_ordinals
from tortie.ipam.block_writes import BlockWriter
from tortie.ipam.config import IpamConfig
from tortie.ipam.errors import InvalidIpamRequest, PoolExhausted
from tortie.ipam.keys import check_segment
from tortie.ipam.pools import PoolView, select_pools
from tortie.ipam.store import IpamStore
from tortie.model.ipam_block import address_at
from tortie.model.ipam_records import AffinityState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssignResult:
    """Addresses handed out by `auto_assign`, block-masked (e.g. 10.0.0.5/26)."""

    v4: list[IPInterface] = field(default_factory=list)
    v6: list[IPInterface] = field(default_factory=list)


class AutoAssigner:
    """Serves `Ipam.auto_assign`; keeps, per (host, family), the affine block last allocated from."""

    def __init__(self, store: IpamStore, writer: BlockWriter) -> None:
        self.store = store
        self.writer = writer
        # (host, IP family) -> the affine block this object last allocated from: tried first next time,
        # so a host with many full blocks does not read them all on every allocation. Ordering only.
        self._last_block: dict[tuple[str, Family], IPNetwork] = {}

    def assign(self, num_v4: int, num_v6: int, handle: str, host: str, attrs: Mapping[str, str] | None,
               pools: Mapping[Family, Sequence[str]] | None, use: str,
               max_blocks_per_host: int | None) -> AssignResult:
        """`Ipam.auto_assign` (its docstring has the contract): check the request, then serve each
        family in turn; on any failure, release what this call took and re-raise."""
        check_segment("handle", handle)
        check_segment("host name", host)
        if num_v4 < 0 or num_v6 < 0:
            raise InvalidIpamRequest("address counts must be >= 0")
        secondary = dict(attrs or {})
        secondary.setdefault("node", host)
        all_pools = self.store.pools()
        cfg = self.store.config()
        if max_blocks_per_host is not None and max_blocks_per_host > 0:
            cfg = dataclasses.replace(cfg, max_blocks_per_host=max_blocks_per_host)
        reservations = self.store.reservations()
        labels: dict[str, str] | None = None
        done: dict[Family, list[tuple[IPNetwork, int]]] = {V4: [], V6: []}
        try:
            for fam, count in ((V4, num_v4), (V6, num_v6)):
                if count == 0:
                    continue
                requested = list((pools or {}).get(fam, ())) or None
                if labels is None:
                    needs_labels = any(p.node_selector.strip() not in ("", "all()") for p in all_pools)
                    labels = self.store.node_labels(host) if needs_labels else {}
                usable = select_pools(all_pools, fam, labels, use, requested)
                self._assign_family(fam, count, handle, host, secondary, usable, reservations, cfg, done[fam])
        except BaseException:
            for got in done.values():
                self.writer.rollback(handle, got)
            raise
        return AssignResult(
            v4=[_interface(c, o) for c, o in done[V4]],
            v6=[_interface(c, o) for c, o in done[V6]],
        )

    def _assign_family(
        self,
        fam: Family,
        count: int,
        handle: str,
        host: str,
        secondary: Mapping[str, str],
        usable: list[PoolView],
        reservations: list[IPNetwork],
        cfg: IpamConfig,
        out: list[tuple[IPNetwork, int]],
    ) -> None:
        def in_usable(cidr: IPNetwork) -> bool:
            return any(network_within(cidr, p.cidr) for p in usable)

        def take(cidr: IPNetwork, require_host: str | None) -> int | None:
            got = self.writer.assign(
                cidr, count - len(out), handle, secondary, reservations, require_host, cfg.ip_cooldown_seconds
            )
            if got is None:
                return None
            out.extend((cidr, o) for o in got)
            if got and require_host is not None:
                self._last_block[(host, fam)] = cidr
            return len(got)

        # (1) blocks already affine to this host
        affinities = self.store.host_affinities(host, fam)
        hint = self._last_block.get((host, fam))
        for aff in sorted(
            affinities,
            key=lambda a: (a.value.cidr != hint, int(a.value.cidr.network_address), a.value.cidr.prefixlen),
        ):
            if len(out) >= count:
                return
            cidr = aff.value.cidr
            if not in_usable(cidr) or aff.value.state is AffinityState.PENDING_DELETION:
                continue
            if (
                aff.value.state is AffinityState.PENDING
                and claims.complete_pending(self.store, aff, cfg.effective_max_blocks_per_host)
                is not claims.ClaimOutcome.CLAIMED
            ):
                continue  # a claim in flight (or abandoned and now dropped): not usable yet
            if take(cidr, host) is None and claims.ensure_block(self.store, aff):
                take(cidr, host)  # the confirmed affinity's block was missing: recreated
        if len(out) >= count:
            return

        # (2) claim new blocks
        if cfg.auto_allocate_blocks:
            self._claim_and_assign(fam, count, host, usable, reservations, cfg, take, out)
        if len(out) >= count:
            return

        # (3) borrow from other hosts' blocks
        if not cfg.strict_affinity:
            now = time.time()
            blocks = [
                b
                for b in self.store.list_blocks(fam)
                if in_usable(b.value.cidr)
                and b.value.host != host
                and not b.value.deleted
                and b.value.expire_cooldown(now, cfg.ip_cooldown_seconds).free_count(
                    reserved_ordinals(b.value.cidr, reservations)
                )
                > 0
            ]
            random.Random(host_seed(host)).shuffle(blocks)
            for b in blocks:
                if len(out) >= count:
                    return
                if take(b.value.cidr, None):
                    log.debug(
                        "borrowed addresses host=%s block=%s affinity=%s",
                        host,
                        b.value.cidr,
                        b.value.affinity,
                    )
        if len(out) < count:
            names = ", ".join(f"{p.name} ({p.cidr})" for p in usable)
            raise PoolExhausted(
                f"{fam.name} pool exhausted: requested {count} address(es) for host {host} but only "
                f"{len(out)} could be allocated from {names}"
                + (" (strictAffinity is on: no borrowing)" if cfg.strict_affinity else "")
                + "; add or enlarge an IPPool, or release unused addresses"
            )

    def _claim_and_assign(
        self,
        fam: Family,
        count: int,
        host: str,
        usable: list[PoolView],
        reservations: list[IPNetwork],
        cfg: IpamConfig,
        take: Callable[[IPNetwork, str | None], int | None],
        out: list[tuple[IPNetwork, int]],
    ) -> None:
        max_blocks = cfg.effective_max_blocks_per_host
        live = [
            a
            for a in self.store.host_affinities(host, fam)
            if a.value.state is not AffinityState.PENDING_DELETION
        ]
        if len(live) >= max_blocks:
            return
        existing = [b.value.cidr for b in self.store.list_blocks(fam)]
        seed = host_seed(host)
        for pool in usable:
            for cidr in iter_free_blocks(pool.cidr, pool.block_prefix, existing, seed):
                if len(reserved_ordinals(cidr, reservations)) >= num_addresses(cidr):
                    continue  # entirely reserved: nothing to hand out
                outcome = claims.claim_block(self.store, host, cidr, max_blocks)
                if outcome is claims.ClaimOutcome.OVER_LIMIT:
                    return
                if outcome is claims.ClaimOutcome.CLAIMED:
                    take(cidr, host)
                    if len(out) >= count:
                        return


def _interface(cidr: IPNetwork, ordinal: int) -> IPInterface:
    return ipaddress.ip_interface((address_at(cidr, ordinal), cidr.prefixlen))
