"""The IPAM allocator: `Ipam(datastore)` hands out and takes back workload addresses.

Inputs: a `Datastore` holding IPPools, IPReservations, Nodes and the IPAM objects (see `keys`). Outputs:
addresses as block-masked interfaces, like Calico (`10.0.0.5/26`: the prefix is the block's, so a caller
knows which block route covers it; CNI narrows it to /32).

`Ipam` is the facade of the package's roles:

    auto_assign     AutoAssigner (auto_assign.py): affine blocks, claims, borrowing; all or nothing
    assign_ip       one given address (e.g. a Neutron fixed IP), claiming its block if needed
    release_*       by address or by handle
    lookups         who holds an address, what a handle holds
    configure       the IPAM configuration (CAS on its key)

Every write is create-only or compare-and-swap, retried up to `MAX_RETRIES` times with a fresh read and
a short random back-off on `Conflict`; there is no global lock. Each change of a block is ONE datastore
transaction together with its handle counts (`BlockWriter`, block_writes.py), and claiming a block
follows the affinity protocol in `claims` (pending affinity -> block create -> confirmed affinity).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import tortie.ipam.claims as claims
from tortie.common.errors import AlreadyExists, Conflict, NotFound
from tortie.common.ipfamily import (
    Family,
    IPAddress,
    IPInterface,
    IPNetwork,
    address_in,
    family_of,
    sort_key,
)
from tortie.datastore.api import Datastore
from tortie.ipam.auto_assign import AssignResult, AutoAssigner
from tortie.ipam.block import block_containing, is_reserved
from tortie.ipam.block_writes import BlockWriter, Commit
from tortie.ipam.config import IpamConfig, validated_config
from tortie.ipam.errors import (
    AddressInUse,
    AddressNotAvailable,
    InvalidIpamRequest,
    IpamContention,
)
from tortie.ipam.keys import check_segment
from tortie.ipam.pools import USE_WORKLOAD, PoolView, pool_containing
from tortie.ipam.store import MAX_RETRIES, IpamStore, backoff
from tortie.model.ipam_block import OrdinalInUse, address_at, ordinal_of
from tortie.model.ipam_records import format_timestamp

log = logging.getLogger(__name__)


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
        self.writer = BlockWriter(self.store, max_retries)
        self._auto = AutoAssigner(self.store, self.writer)

    # ------------------------------------------------------------------ configuration

    def get_config(self) -> IpamConfig:
        return self.store.config()

    def configure(
        self,
        strict_affinity: bool | None = None,
        max_blocks_per_host: int | None = None,
        auto_allocate_blocks: bool | None = None,
        ip_cooldown_seconds: int | None = None,
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
                    ip_cooldown_seconds=base.ip_cooldown_seconds
                    if ip_cooldown_seconds is None
                    else ip_cooldown_seconds,
                )
            )
            try:
                self.store.write_config(new, None if cur is None else cur.revision)
                log.info(
                    "IPAM configuration changed strict_affinity=%s max_blocks_per_host=%s "
                    "auto_allocate_blocks=%s ip_cooldown_seconds=%s",
                    new.strict_affinity,
                    new.max_blocks_per_host,
                    new.auto_allocate_blocks,
                    new.ip_cooldown_seconds,
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
        pools: Mapping[Family, Sequence[str]] | None = None,
        use: str = USE_WORKLOAD,
        max_blocks_per_host: int | None = None,
    ) -> AssignResult:
        """Allocate `num_v4` IPv4 and `num_v6` IPv6 addresses for `host` under `handle` (`auto_assign`).

        `pools` optionally names, per family, the pools to use (names or CIDRs; Calico's IPv4Pools /
        IPv6Pools): a family without names may use any of its pools, a name of the other family's pool
        is an error (`NoSuitablePool`). `max_blocks_per_host`
        (> 0) caps the host's blocks for this request instead of the configuration's cap, like Calico's
        per-request `AutoAssignArgs.MaxBlocksPerHost` (borrowing stays allowed unless strictAffinity).
        All or nothing: on `PoolExhausted` / `NoSuitablePool` nothing stays allocated by this call."""
        return self._auto.assign(num_v4, num_v6, handle, host, attrs, pools, use, max_blocks_per_host)

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
        cooldown = self.store.config().ip_cooldown_seconds
        for attempt in range(self.max_retries):
            cur = self.store.get_block(cidr)
            if cur is None:
                claims.claim_block(self.store, host, cidr, None)  # whoever wins, the block now exists
                continue
            try:
                block = cur.value.expire_cooldown(time.time(), cooldown)
                new = block.assign_ordinal(ordinal, handle, secondary)
            except OrdinalInUse as exc:
                if exc.owner.released_at is not None:
                    raise AddressNotAvailable(
                        f"{addr} was released at {format_timestamp(exc.owner.released_at)} and cools down "
                        f"for ipCooldownSeconds={cooldown} before it can be assigned again"
                    ) from None
                raise AddressInUse(
                    f"{addr} is already assigned (handle {exc.owner.handle_id!r})", exc.owner.handle_id
                ) from None
            if self.writer.commit(cur.revision, new, {handle: 1}) is Commit.DONE:
                return ipaddress.ip_interface((addr, cidr.prefixlen))
            backoff(attempt)
        raise IpamContention(f"could not assign {addr}: {self.max_retries} conflicting updates")

    # ------------------------------------------------------------------ release

    def release_ips(self, ips: Iterable[IPAddress | str]) -> list[IPAddress]:
        """Release the given addresses, whoever holds them. Returns those that were not allocated."""
        by_block: dict[IPNetwork, list[int]] = {}
        not_allocated: list[IPAddress] = []
        finder = _BlockFinder(self.store)
        cooldown = self.store.config().ip_cooldown_seconds
        for ip in ips:
            addr = _as_address(ip)
            cidr = finder.block_of(addr)
            if cidr is None:
                not_allocated.append(addr)
            else:
                by_block.setdefault(cidr, []).append(ordinal_of(cidr, addr))
        for cidr, ordinals in by_block.items():
            res = self.writer.release(cidr, ordinals, only_handle=None, cooldown_s=cooldown)
            missing = ordinals if res is None else res.not_allocated
            not_allocated.extend(address_at(cidr, o) for o in missing)
        return not_allocated

    def release_by_handle(self, handle: str) -> list[IPAddress]:
        """Release every address of `handle` and delete the handle. Returns the addresses released;
        releasing an unknown (or already released) handle is a no-op returning []."""
        check_segment("handle", handle)
        released: list[IPAddress] = []
        cooldown: int | None = None
        for attempt in range(self.max_retries):
            h = self.store.get_handle(handle)
            if h is None:
                return _sorted_ips(released)
            if cooldown is None:  # read only when there is something to release (DEL repeats are common)
                cooldown = self.store.config().ip_cooldown_seconds
            for cidr_text in h.value.blocks:
                try:
                    cidr = ipaddress.ip_network(cidr_text)
                except ValueError:
                    log.warning("handle %s names an invalid block %r", handle, cidr_text)
                    continue
                res = self.writer.release(cidr, None, only_handle=handle, cooldown_s=cooldown)
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
        """Who holds `ip`, or None when it is not allocated (or released and cooling down)."""
        addr = _as_address(ip)
        cidr = _BlockFinder(self.store).block_of(addr)
        if cidr is None:
            return None
        cur = self.store.get_block(cidr)
        if cur is None:
            return None
        attr = cur.value.attribute_of(ordinal_of(cidr, addr))
        if attr is None or attr.released_at is not None:  # free, or cooling down: held by nobody
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
