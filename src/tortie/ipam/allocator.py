"""The IPAM allocator: `Ipam(datastore)` hands out and takes back workload addresses.

Inputs: a `Datastore` holding IPPools, IPReservations, Nodes and the IPAM objects (see `keys`). Outputs:
addresses as block-masked interfaces, like Calico (`10.0.0.5/26`: the prefix is the block's, so a caller
knows which block route covers it; CNI narrows it to /32).

Every write is create-only or compare-and-swap, retried up to `MAX_RETRIES` times with a fresh read and
a short random back-off on `Conflict`; there is no global lock. Each change of a block is ONE datastore
transaction (`Datastore.commit`):

    block   /calico/ipam/v2/assignment/ipvN/block/<cidr>   CAS on the revision read
    handle  /calico/ipam/v2/handle/<h>                      create / CAS-update / CAS-delete (count per block)

so a handle's counts always equal its allocations, and a crash leaves all of a change or none of it:
no address is ever held without a handle record that can release it. Claiming a block follows the
affinity protocol in `claims` (pending affinity -> block create -> confirmed affinity).

AutoAssign (Calico §5.2), per IP version: (1) the host's affine blocks in the usable pools, (2) claim new
blocks (`claims`) while `autoAllocateBlocks` and below `maxBlocksPerHost` (0 = Calico's cap of 20),
choosing free blocks from a start point seeded by the host name so hosts diverge, (3) unless
`strictAffinity`, borrow free addresses from other hosts' blocks. If the request still cannot be met,
what this call took is released again (rollback, like the CNI plugin does for dual stack) and
`PoolExhausted` is raised: a caller gets all it asked for or nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tortie.common.errors import AlreadyExists, Conflict, NotFound
from tortie.common.ipfamily import (
    V4,
    V6,
    Family,
    IPAddress,
    IPInterface,
    IPNetwork,
    address_in,
    family_of,
    network_within,
    num_addresses,
    sort_key,
)
from tortie.datastore.api import Datastore, TxnOp
from tortie.ipam import claims
from tortie.ipam.block import block_containing, host_seed, is_reserved, iter_free_blocks, reserved_ordinals
from tortie.ipam.config import IpamConfig, validated_config
from tortie.ipam.errors import (
    AddressInUse,
    AddressNotAvailable,
    InvalidIpamRequest,
    IpamContention,
    PoolExhausted,
)
from tortie.ipam.keys import check_segment
from tortie.ipam.pools import USE_WORKLOAD, PoolView, pool_containing, select_pools
from tortie.ipam.store import MAX_RETRIES, IpamStore, Versioned, backoff
from tortie.model.ipam_block import Block, OrdinalInUse, ReleaseResult, address_at, ordinal_of
from tortie.model.ipam_records import AffinityState, Handle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssignResult:
    """Addresses handed out by `auto_assign`, block-masked (e.g. 10.0.0.5/26)."""

    v4: list[IPInterface] = field(default_factory=list)
    v6: list[IPInterface] = field(default_factory=list)


class _Commit(enum.Enum):
    DONE = "done"
    CONFLICT = "conflict"  # a CAS condition failed: re-read and retry
    HANDLE_EXISTS = "handle-exists"  # we assumed a new handle but it exists: read it and retry


@dataclass(frozen=True)
class Assignment:
    """Who holds one address: its handle and attributes, its block and the block's host affinity."""

    ip: IPAddress
    handle: str | None
    attrs: Mapping[str, str]
    block: IPNetwork
    block_host: str | None
    borrowed: bool  # the holder's node attribute differs from the block's host


def _as_address(ip: IPAddress | str) -> IPAddress:
    try:
        return ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    except ValueError:
        raise InvalidIpamRequest(f"{ip!r} is not an IP address") from None


class Ipam:
    """Calico-compatible IP address management over any `Datastore` (see the module docstring)."""

    def __init__(self, datastore: Datastore, max_retries: int = MAX_RETRIES) -> None:
        self.store = IpamStore(datastore)
        self.max_retries = max_retries
        # (host, IP family) -> the affine block this object last allocated from: tried first next time,
        # so a host with many full blocks does not read them all on every allocation. Ordering only.
        self._last_block: dict[tuple[str, Family], IPNetwork] = {}

    # ------------------------------------------------------------------ configuration

    def get_config(self) -> IpamConfig:
        return self.store.config()

    def configure(
        self,
        strict_affinity: bool | None = None,
        max_blocks_per_host: int | None = None,
        auto_allocate_blocks: bool | None = None,
    ) -> IpamConfig:
        """Change the given settings (CAS on the config key); returns the configuration now stored."""
        for attempt in range(self.max_retries):
            cur = self.store.get_config()
            base = self.store.config()
            new = validated_config(
                IpamConfig(
                    strict_affinity=base.strict_affinity if strict_affinity is None else strict_affinity,
                    auto_allocate_blocks=base.auto_allocate_blocks
                    if auto_allocate_blocks is None
                    else auto_allocate_blocks,
                    max_blocks_per_host=base.max_blocks_per_host
                    if max_blocks_per_host is None
                    else max_blocks_per_host,
                )
            )
            try:
                self.store.write_config(new, None if cur is None else cur.revision)
                log.info(
                    "IPAM configuration changed strict_affinity=%s max_blocks_per_host=%s "
                    "auto_allocate_blocks=%s",
                    new.strict_affinity,
                    new.max_blocks_per_host,
                    new.auto_allocate_blocks,
                )
                return new
            except (Conflict, NotFound, AlreadyExists):
                backoff(attempt)
        raise IpamContention("could not update the IPAM configuration: too many concurrent changes")

    # ------------------------------------------------------------------ allocation

    def auto_assign(
        self,
        num_v4: int,
        num_v6: int,
        handle: str,
        host: str,
        attrs: Mapping[str, str] | None = None,
        pools: Sequence[str] | None = None,
        use: str = USE_WORKLOAD,
        max_blocks_per_host: int | None = None,
    ) -> AssignResult:
        """Allocate `num_v4` IPv4 and `num_v6` IPv6 addresses for `host` under `handle`.

        `pools` optionally names the pools to use (names or CIDRs, either family). `max_blocks_per_host`
        (> 0) caps the host's blocks for this request instead of the configuration's cap, like Calico's
        per-request `AutoAssignArgs.MaxBlocksPerHost` (borrowing stays allowed unless strictAffinity).
        All or nothing: on `PoolExhausted` / `NoSuitablePool` nothing stays allocated by this call."""
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
                requested = _requested_for_family(pools, all_pools, fam)
                if labels is None:
                    needs_labels = any(p.node_selector.strip() not in ("", "all()") for p in all_pools)
                    labels = self.store.node_labels(host) if needs_labels else {}
                usable = select_pools(all_pools, fam, labels, use, requested)
                self._assign_family(fam, count, handle, host, secondary, usable, reservations, cfg, done[fam])
        except BaseException:
            for got in done.values():
                self._rollback(handle, got)
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
            got = self._assign_in_block(cidr, count - len(out), handle, secondary, reservations, require_host)
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
            blocks = [
                b
                for b in self.store.list_blocks(fam)
                if in_usable(b.value.cidr)
                and b.value.host != host
                and not b.value.deleted
                and b.value.free_count(reserved_ordinals(b.value.cidr, reservations)) > 0
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

    def _assign_in_block(
        self,
        cidr: IPNetwork,
        count: int,
        handle: str,
        secondary: Mapping[str, str],
        reservations: list[IPNetwork],
        require_host: str | None,
    ) -> tuple[int, ...] | None:
        """Take up to `count` free ordinals of one block. Returns the ordinals taken; () when the block is
        full or no longer affine to `require_host`; None when it does not exist."""
        excluded = reserved_ordinals(cidr, reservations)
        # Optimistic: most handles are new (one per workload), so first try creating the handle record
        # without reading it; AlreadyExists tells us to read it and retry.
        handles: dict[str, Versioned[Handle] | None] = {handle: None}
        for attempt in range(self.max_retries):
            cur = self.store.get_block(cidr)
            if cur is None or cur.value.deleted:
                return None
            if require_host is not None and cur.value.host != require_host:
                return ()
            new, taken = cur.value.assign(count, handle, secondary, excluded)
            if not taken:
                return ()
            outcome = self._commit_block(cur.revision, new, {handle: len(taken)}, handles)
            if outcome is _Commit.DONE:
                return taken
            handles[handle] = self.store.get_handle(handle)
            if outcome is _Commit.CONFLICT:
                backoff(attempt)
        raise IpamContention(f"could not allocate in block {cidr}: {self.max_retries} conflicting updates")

    def _commit_block(
        self,
        revision: int,
        block: Block,
        handle_deltas: Mapping[str | None, int],
        known_handles: Mapping[str, Versioned[Handle] | None] | None = None,
    ) -> _Commit:
        """Write `block` (CAS on `revision`; deleted instead when it is empty and has no affinity) together
        with the handle count changes, in one transaction; nothing is written unless it is DONE. Handle
        records are read unless given in `known_handles` (None there = assumed absent)."""
        ops: list[TxnOp | None] = []
        if block.is_empty and block.affinity is None:
            ops.append(self.store.block_delete_op(block.cidr, revision))
        else:
            ops.append(self.store.block_op(block, revision))
        for h, delta in handle_deltas.items():
            if h is not None and delta:
                current = (
                    known_handles[h] if known_handles and h in known_handles else self.store.get_handle(h)
                )
                ops.append(self.store.handle_op(h, current, block.cidr, delta))
        try:
            self.store.commit(ops)
        except AlreadyExists:
            return _Commit.HANDLE_EXISTS
        except (Conflict, NotFound):
            return _Commit.CONFLICT
        return _Commit.DONE

    def assign_ip(
        self,
        ip: IPAddress | str,
        handle: str,
        host: str,
        attrs: Mapping[str, str] | None = None,
        use: str | None = None,
    ) -> IPInterface:
        """Allocate one specific address (e.g. a Neutron fixed IP). Raises AddressNotAvailable if it is in
        no pool, in a disabled pool, not allowed for `use` or reserved; AddressInUse if it is taken.
        An explicitly requested address may sit in another host's block (affinity is not enforced)."""
        addr = _as_address(ip)
        check_segment("handle", handle)
        check_segment("host name", host)
        secondary = dict(attrs or {})
        secondary.setdefault("node", host)
        pool = pool_containing(self.store.pools(), addr)
        if pool is None:
            raise AddressNotAvailable(f"{addr} is not in any IPPool; create a pool containing it first")
        if pool.disabled:
            raise AddressNotAvailable(f"{addr} is in IPPool {pool.name}, which is disabled")
        if use is not None and use not in pool.allowed_uses:
            raise AddressNotAvailable(f"{addr} is in IPPool {pool.name}, which does not allow use {use}")
        reservations = self.store.reservations()
        if is_reserved(addr, reservations):
            raise AddressNotAvailable(f"{addr} is reserved by an IPReservation")
        cidr = block_containing(addr, pool.block_prefix)
        ordinal = ordinal_of(cidr, addr)
        for attempt in range(self.max_retries):
            cur = self.store.get_block(cidr)
            if cur is None:
                claims.claim_block(self.store, host, cidr, None)  # whoever wins, the block now exists
                continue
            try:
                new = cur.value.assign_ordinal(ordinal, handle, secondary)
            except OrdinalInUse as exc:
                raise AddressInUse(
                    f"{addr} is already assigned (handle {exc.owner.handle_id!r})", exc.owner.handle_id
                ) from None
            if self._commit_block(cur.revision, new, {handle: 1}) is _Commit.DONE:
                return ipaddress.ip_interface((addr, cidr.prefixlen))
            backoff(attempt)
        raise IpamContention(f"could not assign {addr}: {self.max_retries} conflicting updates")

    # ------------------------------------------------------------------ release

    def release_ips(self, ips: Iterable[IPAddress | str]) -> list[IPAddress]:
        """Release the given addresses, whoever holds them. Returns those that were not allocated."""
        by_block: dict[IPNetwork, list[int]] = {}
        not_allocated: list[IPAddress] = []
        finder = _BlockFinder(self.store)
        for ip in ips:
            addr = _as_address(ip)
            cidr = finder.block_of(addr)
            if cidr is None:
                not_allocated.append(addr)
            else:
                by_block.setdefault(cidr, []).append(ordinal_of(cidr, addr))
        for cidr, ordinals in by_block.items():
            res = self._release_in_block(cidr, ordinals, only_handle=None)
            missing = ordinals if res is None else res.not_allocated
            not_allocated.extend(address_at(cidr, o) for o in missing)
        return not_allocated

    def release_by_handle(self, handle: str) -> list[IPAddress]:
        """Release every address of `handle` and delete the handle. Returns the addresses released;
        releasing an unknown (or already released) handle is a no-op returning []."""
        check_segment("handle", handle)
        released: list[IPAddress] = []
        for attempt in range(self.max_retries):
            h = self.store.get_handle(handle)
            if h is None:
                return _sorted_ips(released)
            for cidr_text in h.value.blocks:
                try:
                    cidr = ipaddress.ip_network(cidr_text)
                except ValueError:
                    log.warning("handle %s names an invalid block %r", handle, cidr_text)
                    continue
                res = self._release_in_block(cidr, None, only_handle=handle)
                if res is not None:
                    released.extend(address_at(cidr, o) for o in res.freed.get(handle, ()))
            # Normally the last block commit deleted the handle; a record that over-counts (written by a
            # non-transactional writer, see `audit`) is removed here.
            h = self.store.get_handle(handle)
            if h is None:
                return _sorted_ips(released)
            try:
                self.store.delete_handle(handle, h.revision)
                return _sorted_ips(released)
            except NotFound:
                return _sorted_ips(released)
            except Conflict:  # the handle changed (e.g. a concurrent assign): release what it holds now
                backoff(attempt)
        raise IpamContention(f"could not release handle {handle!r}: {self.max_retries} conflicting updates")

    def _release_in_block(
        self, cidr: IPNetwork, ordinals: Sequence[int] | None, only_handle: str | None
    ) -> ReleaseResult | None:
        """Free ordinals of one block (all of `only_handle`'s when `ordinals` is None; with both, only those
        of the ordinals `only_handle` holds). None if the block does not exist. The block and the handle
        counts change in one transaction. An emptied block without affinity is deleted; affine blocks stay
        with their host."""
        for attempt in range(self.max_retries):
            cur = self.store.get_block(cidr)
            if cur is None:
                return None
            block = cur.value
            wanted: Sequence[int]
            if ordinals is None:
                assert only_handle is not None
                wanted = block.ordinals_of_handle(only_handle)
            elif only_handle is not None:
                wanted = [
                    o
                    for o in ordinals
                    if (a := block.attribute_of(o)) is not None and a.handle_id == only_handle
                ]
            else:
                wanted = ordinals
            res = block.release(wanted)
            if ordinals is not None and only_handle is not None:
                skipped = tuple(o for o in ordinals if o not in wanted)
                res = ReleaseResult(res.block, res.not_allocated + skipped, res.freed)
            if res.freed_count == 0:
                return res
            deltas = {h: -len(v) for h, v in res.freed.items()}
            if self._commit_block(cur.revision, res.block, deltas) is _Commit.DONE:
                return res
            backoff(attempt)
        raise IpamContention(
            f"could not release addresses in block {cidr}: {self.max_retries} conflicting updates"
        )

    def _rollback(self, handle: str, got: list[tuple[IPNetwork, int]]) -> None:
        by_block: dict[IPNetwork, list[int]] = {}
        for cidr, o in got:
            by_block.setdefault(cidr, []).append(o)
        for cidr, ordinals in by_block.items():
            self._release_in_block(cidr, ordinals, only_handle=handle)
        got.clear()

    # ------------------------------------------------------------------ lookups

    def ips_by_handle(self, handle: str) -> list[IPAddress]:
        """Addresses currently held by `handle` (found through its handle record), sorted."""
        check_segment("handle", handle)
        h = self.store.get_handle(handle)
        if h is None:
            return []
        out: list[IPAddress] = []
        for cidr_text in h.value.blocks:
            cidr = ipaddress.ip_network(cidr_text)
            cur = self.store.get_block(cidr)
            if cur is not None:
                out.extend(address_at(cidr, o) for o in cur.value.ordinals_of_handle(handle))
        return _sorted_ips(out)

    def get_assignment(self, ip: IPAddress | str) -> Assignment | None:
        """Who holds `ip`, or None when it is not allocated."""
        addr = _as_address(ip)
        cidr = _BlockFinder(self.store).block_of(addr)
        if cidr is None:
            return None
        cur = self.store.get_block(cidr)
        if cur is None:
            return None
        attr = cur.value.attribute_of(ordinal_of(cidr, addr))
        if attr is None:
            return None
        node = attr.secondary.get("node")
        block_host = cur.value.host
        return Assignment(
            addr,
            attr.handle_id,
            dict(attr.secondary),
            cidr,
            block_host,
            borrowed=node is not None and node != block_host,
        )

    def get_assignment_attrs(self, ip: IPAddress | str) -> Mapping[str, str] | None:
        got = self.get_assignment(ip)
        return None if got is None else got.attrs

    def release_orphan_blocks(self) -> list[IPNetwork]:
        """Release empty blocks affine to hosts that have no Node any more (see `audit`)."""
        from tortie.ipam.audit import release_orphan_blocks

        return release_orphan_blocks(self.store.ds)


class _BlockFinder:
    """Finds the block holding an address: from its pool's block size, else by scanning the blocks (the
    pool may have been deleted or recreated with another block size)."""

    def __init__(self, store: IpamStore) -> None:
        self.store = store
        self._pools: list[PoolView] | None = None
        self._cidrs: list[IPNetwork] | None = None

    def block_of(self, addr: IPAddress) -> IPNetwork | None:
        if self._pools is None:
            self._pools = self.store.pools()
        pool = pool_containing(self._pools, addr)
        if pool is not None:
            cidr = block_containing(addr, pool.block_prefix)
            if self.store.get_block(cidr) is not None:
                return cidr
        if self._cidrs is None:
            self._cidrs = [b.value.cidr for b in self.store.list_blocks(family_of(addr))]
        return next((c for c in self._cidrs if address_in(addr, c)), None)


def _sorted_ips(ips: Iterable[IPAddress]) -> list[IPAddress]:
    """Addresses sorted IPv4 first, then IPv6 (ipaddress refuses to compare across versions)."""
    return sorted(ips, key=sort_key)


def _interface(cidr: IPNetwork, ordinal: int) -> IPInterface:
    return ipaddress.ip_interface((address_at(cidr, ordinal), cidr.prefixlen))


def _requested_for_family(
    requested: Sequence[str] | None, pools: Sequence[PoolView], fam: Family
) -> list[str] | None:
    """The caller's pool list restricted to one family (names are resolved against known pools; unknown
    names are kept for both families so that select_pools reports them)."""
    if not requested:
        return None
    out: list[str] = []
    for item in requested:
        try:
            if family_of(ipaddress.ip_network(item, strict=False)) is fam:
                out.append(item)
            continue
        except ValueError:
            pass
        known = [p for p in pools if p.name == item]
        if not known or any(p.family is fam for p in known):
            out.append(item)
    return out or None
