"""Typed access to IPAM objects in a `Datastore`: reads return values with their revisions, writes are
create-only or compare-and-swap. Multi-key changes go through `commit` (one atomic
transaction of CAS ops). No retry policy lives here: see `allocator` and `claims`.

Input: any `tortie.datastore.api.Datastore`. Output: `Versioned[...]` records of `tortie.model.ipam_records`
(blocks, affinities, handles) and `tortie.ipam.config` (the configuration).
Errors: datastore errors pass through (`AlreadyExists`, `Conflict`, `NotFound`, `DatastoreUnavailable`);
undecodable blocks/affinities met while listing are skipped with a warning (the audit reports them).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import tortie.ipam.keys as keys
from tortie.common.errors import InvalidRecord, NotFound
from tortie.common.ipfamily import Family, IPNetwork
from tortie.datastore.api import KV, Datastore, TxnOp
from tortie.ipam.config import IpamConfig, decode_config, encode_config, newest_config
from tortie.ipam.pools import PoolView, pool_from_resource, reservations_from_resources
from tortie.model.ipam_block import Block
from tortie.model.ipam_records import (
    Affinity,
    AffinityState,
    Handle,
    decode_affinity,
    decode_block,
    decode_handle,
    encode_affinity,
    encode_block,
    encode_handle,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RETRIES = 100


@dataclass(frozen=True)
class Versioned(Generic[T]):
    value: T
    revision: int
    create_revision: int


def backoff(attempt: int) -> None:
    """Sleep a little after a CAS conflict: random, growing with the attempt, capped at ~50 ms, so that
    contenders spread out instead of colliding again in lock-step."""
    time.sleep(random.uniform(0, min(0.05, 0.001 * (attempt + 1))))


class IpamStore:
    def __init__(self, ds: Datastore) -> None:
        self.ds = ds

    # ---- blocks

    def get_block(self, cidr: IPNetwork) -> Versioned[Block] | None:
        kv = self.ds.get(keys.block_key(cidr))
        return None if kv is None else _versioned(kv, decode_block(kv.value, cidr))

    def create_block(self, block: Block) -> Versioned[Block]:
        kv = self.ds.create(keys.block_key(block.cidr), encode_block(block))
        return _versioned(kv, block)

    def block_op(self, block: Block, revision: int | None) -> TxnOp:
        """Create (revision None) or CAS-update a block, as a transaction op."""
        if revision is None:
            return TxnOp("create", keys.block_key(block.cidr), encode_block(block))
        return TxnOp("update", keys.block_key(block.cidr), encode_block(block), expected_revision=revision)

    def block_delete_op(self, cidr: IPNetwork, revision: int) -> TxnOp:
        return TxnOp("delete", keys.block_key(cidr), expected_revision=revision)

    def commit(self, ops: Sequence[TxnOp | None]) -> None:
        """Apply the ops atomically (None entries are skipped). Raises Conflict / AlreadyExists / NotFound
        when any condition fails, in which case nothing was written."""
        real = [op for op in ops if op is not None]
        if real:
            self.ds.commit(real)

    def list_blocks(self, fam: Family | None = None) -> list[Versioned[Block]]:
        prefix = keys.BLOCK_ROOT if fam is None else keys.block_prefix(fam)
        kvs, _ = self.ds.list(prefix)
        out: list[Versioned[Block]] = []
        for kv in kvs:
            cidr = keys.parse_block_key(kv.key)
            if cidr is None:
                continue
            try:
                out.append(_versioned(kv, decode_block(kv.value, cidr)))
            except InvalidRecord as exc:
                log.warning("skipping malformed IPAM block key=%s: %s", kv.key, exc)
        return out

    # ---- affinities

    def host_affinities(self, host: str, fam: Family | None = None) -> list[Versioned[Affinity]]:
        kvs, _ = self.ds.list(keys.host_affinity_prefix(host, fam))
        out: list[Versioned[Affinity]] = []
        for kv in kvs:
            parsed = keys.parse_affinity_key(kv.key)
            if parsed is None or parsed[0] != host:
                continue
            try:
                out.append(_versioned(kv, decode_affinity(parsed[0], parsed[1], kv.value)))
            except InvalidRecord as exc:
                log.warning("skipping malformed block affinity key=%s: %s", kv.key, exc)
        return out

    def get_affinity(self, host: str, cidr: IPNetwork) -> Versioned[Affinity] | None:
        kv = self.ds.get(keys.affinity_key(host, cidr))
        return None if kv is None else _versioned(kv, decode_affinity(host, cidr, kv.value))

    def create_affinity(self, aff: Affinity) -> Versioned[Affinity]:
        kv = self.ds.create(keys.affinity_key(aff.host, aff.cidr), encode_affinity(aff))
        return _versioned(kv, aff)

    def set_affinity_state(self, current: Versioned[Affinity], state: AffinityState) -> Versioned[Affinity]:
        aff = dataclasses.replace(current.value, state=state)
        kv = self.ds.update(
            keys.affinity_key(aff.host, aff.cidr), encode_affinity(aff), expected_revision=current.revision
        )
        return _versioned(kv, aff)

    def affinity_delete_op(self, host: str, cidr: IPNetwork, revision: int) -> TxnOp:
        return TxnOp("delete", keys.affinity_key(host, cidr), expected_revision=revision)

    def delete_affinity(self, host: str, cidr: IPNetwork, revision: int | None = None) -> bool:
        """Delete an affinity (CAS when `revision` is given). False if it was already gone."""
        try:
            self.ds.delete(keys.affinity_key(host, cidr), expected_revision=revision)
        except NotFound:
            return False
        return True

    # ---- handles

    def get_handle(self, handle: str) -> Versioned[Handle] | None:
        kv = self.ds.get(keys.handle_key(handle))
        return None if kv is None else _versioned(kv, decode_handle(handle, kv.value))

    def handle_op(
        self, handle: str, current: Versioned[Handle] | None, cidr: IPNetwork, delta: int
    ) -> TxnOp | None:
        """The transaction op that adds `delta` to the handle's count for `cidr`: create on first use,
        CAS-update, or CAS-delete when the total reaches zero. None when there is nothing to write."""
        key = keys.handle_key(handle)
        if current is None:
            if delta <= 0:
                return None
            return TxnOp("create", key, encode_handle(Handle(handle).adjusted(cidr, delta)))
        new = current.value.adjusted(cidr, delta)
        if new.total <= 0:
            return TxnOp("delete", key, expected_revision=current.revision)
        return TxnOp("update", key, encode_handle(new), expected_revision=current.revision)

    def delete_handle(self, handle: str, revision: int) -> None:
        self.ds.delete(keys.handle_key(handle), expected_revision=revision)

    # ---- configuration

    def get_config(self) -> Versioned[IpamConfig] | None:
        """Calico's backend config record (what `write_config` CASes against)."""
        kv = self.ds.get(keys.CONFIG_KEY)
        return None if kv is None else _versioned(kv, decode_config(kv.value))

    def config(self) -> IpamConfig:
        """The effective configuration: the newer of the backend record and an applied v3 resource."""
        kvs, _ = self.ds.list(keys.CONFIG_KEY)  # one read covers both keys (one is a prefix of the other)
        backend = next((kv for kv in kvs if kv.key == keys.CONFIG_KEY), None)
        resource = next((kv for kv in kvs if kv.key == keys.CONFIG_RESOURCE_KEY), None)
        return newest_config(
            None if backend is None else (backend.mod_revision, backend.value),
            None if resource is None else (resource.mod_revision, resource.value),
        )

    def write_config(self, cfg: IpamConfig, revision: int | None) -> None:
        """Create the config (revision None) or CAS-update it.

        Calico's backend record and the v3 `IPAMConfiguration default` resource are written in one
        transaction, so `tortie get ipamconfig` always shows what IPAM uses."""
        if revision is None:
            backend = TxnOp("create", keys.CONFIG_KEY, encode_config(cfg))
        else:
            backend = TxnOp("update", keys.CONFIG_KEY, encode_config(cfg), expected_revision=revision)
        current = self.ds.get(keys.CONFIG_RESOURCE_KEY)
        meta: dict[str, Any] = {"name": "default"}
        if current is not None:
            old_meta = current.value.get("metadata") or {}
            meta.update({k: old_meta[k] for k in ("uid", "creationTimestamp", "labels") if k in old_meta})
        spec: dict[str, Any] = {
            "strictAffinity": cfg.strict_affinity,
            "autoAllocateBlocks": cfg.auto_allocate_blocks,
            "maxBlocksPerHost": cfg.max_blocks_per_host,
        }
        if cfg.ip_cooldown_seconds:
            spec["ipCooldownSeconds"] = cfg.ip_cooldown_seconds
        resource = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPAMConfiguration",
            "metadata": meta,
            "spec": spec,
        }
        if current is None:
            mirror = TxnOp("create", keys.CONFIG_RESOURCE_KEY, resource)
        else:
            mirror = TxnOp(
                "update", keys.CONFIG_RESOURCE_KEY, resource, expected_revision=current.mod_revision
            )
        self.ds.commit([backend, mirror])

    # ---- resources IPAM reads

    def pools(self) -> list[PoolView]:
        kvs, _ = self.ds.list(keys.POOL_PREFIX)
        return [p for p in (pool_from_resource(kv.value) for kv in kvs) if p is not None]

    def reservations(self) -> list[IPNetwork]:
        kvs, _ = self.ds.list(keys.RESERVATION_PREFIX)
        return reservations_from_resources(kv.value for kv in kvs)

    def node(self, host: str) -> Mapping[str, Any] | None:
        kv = self.ds.get(keys.node_key(host))
        return None if kv is None else kv.value

    def node_labels(self, host: str) -> dict[str, str]:
        node = self.node(host)
        if node is None:
            return {}
        labels = (node.get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}


def _versioned(kv: KV, value: T) -> Versioned[T]:
    return Versioned(value, kv.mod_revision, kv.create_revision)
