"""Resource-level access to a `Datastore`: typed v3 resources at Calico's etcd v3 keys.

Inputs are validated `tortie.model.Resource` values; the store keeps their wire form (JSON) at
`kind_info(kind).key(name, namespace)`. The store maintains four metadata fields:

* `resourceVersion` — the key's mod revision (not stored in the value; filled in on every read);
* `uid` — a random UUID set at creation and preserved by every update;
* `generation` — 1 at creation, incremented by every update that changes the spec (as Kubernetes
  does); a value given in the input is ignored like `uid`'s, so `get -o yaml` output applies again;
* `creationTimestamp` — RFC 3339 UTC time of creation, preserved by every update.

Writes are conditional where the caller says so: a resource carrying `resourceVersion` is written
only if the stored object still has that version (else `Conflict`). `apply_all` writes a whole batch
in one datastore transaction, so a multi-document apply is never applied partly.

Bad records (a stored value that is not JSON, or not a valid resource): `decode`/`get` raise
`ValidationError` naming the key and how to remove it; `scan` returns the good resources of a kind
and the bad ones as `BadRecord(key, reason)`, `list` logs and skips them; `delete_key` removes any
stored value by key, which is how an operator gets rid of one (`tortie delete --key KEY`).
"""

from __future__ import annotations

import builtins
import datetime
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tortie.common.errors import AlreadyExists, Conflict, NotFound
from tortie.datastore.api import KV, Datastore, TxnOp
from tortie.model import Resource, ValidationError, parse_resource
from tortie.model.kinds import kind_info
from tortie.model.problems import Problem

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_uid() -> str:
    """A random (version 4) UUID, formatted without the uuid module (whose import costs the CNI
    plugin's start-up a few milliseconds)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _describe(kind: str, name: str, namespace: str | None) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def removal_hint(key: str) -> str:
    return f"remove it with `tortie delete --key {key}`"


@dataclass(frozen=True)
class BadRecord:
    """A stored object that cannot be read as a resource: where it is and why."""

    key: str
    reason: str


@dataclass(frozen=True)
class WriteResult:
    """What a batch write did to one resource: "created", "updated", "deleted" or "unchanged"."""

    action: str
    resource: Resource


class ResourceStore:
    """Typed CRUD over a KV datastore. Thread-safe as far as the datastore is."""

    def __init__(self, ds: Datastore, *, now: Callable[[], str] = _now) -> None:
        self.ds = ds
        self._now = now

    # -- reads ---------------------------------------------------------------------------------
    def decode(self, kv: KV) -> Resource:
        """Turn a stored KV into a Resource with resourceVersion filled in (ValidationError if the
        stored object is not valid, e.g. written by another tool)."""
        if kv.problem is not None:
            raise ValidationError([Problem(kv.key, 0, "", "", "", f"{kv.problem}; {removal_hint(kv.key)}")])
        wire = dict(kv.value)
        meta = dict(wire.get("metadata") or {})
        meta["resourceVersion"] = str(kv.mod_revision)
        wire["metadata"] = meta
        return parse_resource(wire, source=kv.key)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Resource:
        """One resource; namespaced kinds default to namespace "default" (as calicoctl does)."""
        info = kind_info(kind)
        ns = (namespace or "default") if info.namespaced else None
        kv = self.ds.get(info.key(name, ns))
        if kv is None:
            raise NotFound(f"{_describe(info.kind, name, ns)} not found")
        return self.decode(kv)

    def scan(
        self, kind: str, namespace: str | None = None
    ) -> tuple[builtins.list[Resource], builtins.list[BadRecord]]:
        """All resources of a kind (of one namespace when given), in key order, and the stored objects
        under that kind's keys that are not valid resources."""
        info = kind_info(kind)
        kvs, _rev = self.ds.list(info.list_prefix(namespace))
        out: builtins.list[Resource] = []
        bad: builtins.list[BadRecord] = []
        for kv in kvs:
            try:
                out.append(self.decode(kv))
            except ValidationError as exc:
                reason = kv.problem or "; ".join(
                    f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems
                )
                bad.append(BadRecord(kv.key, reason))
        return out, bad

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[Resource]:
        """`scan` without the bad records, which are skipped with a warning naming their key."""
        out, bad = self.scan(kind, namespace)
        for b in bad:
            log.warning("skipping invalid stored object key=%s problems=%s", b.key, b.reason)
        return out

    def delete_key(self, key: str) -> KV:
        """Delete whatever is stored at `key` (valid or not); NotFound if nothing is. Returns the KV."""
        kv = self.ds.get(key)
        if kv is None:
            raise NotFound(f"nothing is stored at key {key!r}")
        return self.ds.delete(key, expected_revision=kv.mod_revision)

    # -- single writes -------------------------------------------------------------------------
    def create(self, res: Resource) -> Resource:
        return self.apply_all([res], mode="create")[0].resource

    def update(self, res: Resource) -> Resource:
        return self.apply_all([res], mode="replace")[0].resource

    def apply(self, res: Resource) -> Resource:
        return self.apply_all([res], mode="apply")[0].resource

    def delete(self, kind: str, name: str, namespace: str | None = None,
               resource_version: str | None = None) -> Resource:
        info = kind_info(kind)
        key = info.key(name, namespace or "default") if info.namespaced else info.key(name)
        kv = self.ds.get(key)
        if kv is None:
            raise NotFound(f"{_describe(info.kind, name, namespace)} not found")
        expected = int(resource_version) if resource_version else kv.mod_revision
        deleted = self.decode(kv)  # a bad record raises here, before anything is deleted (see delete_key)
        self.ds.delete(key, expected_revision=expected)
        return deleted

    # -- batches -------------------------------------------------------------------------------
    def apply_all(self, resources: Sequence[Resource], mode: str = "apply") -> builtins.list[WriteResult]:
        """Write a batch atomically. mode: "create" (each must not exist), "replace" (each must
        exist), "apply" (create or replace), "delete" (each must exist; removed).

        A resource with metadata.resourceVersion set is written only if the stored version matches.
        Conditions are checked against a snapshot and then enforced again by the transaction, so a
        concurrent writer causes `Conflict` rather than a partial write.
        """
        return self.write_all([(mode, res) for res in resources])

    def write_all(self, writes: Sequence[tuple[str, Resource]]) -> builtins.list[WriteResult]:
        """`apply_all` with a mode per resource (e.g. apply one object and delete another in the same
        transaction: `tortie policy promote`)."""
        ops: builtins.list[TxnOp] = []
        planned: builtins.list[tuple[str, Resource]] = []
        seen: set[str] = set()
        for mode, res in writes:
            if mode not in ("create", "replace", "apply", "delete"):
                raise ValueError(f"unknown mode {mode!r}")
            key = res.key
            if key in seen:
                raise Conflict(f"{_describe(res.kind, res.metadata.name, res.metadata.namespace)} "
                               "appears more than once in the input")
            seen.add(key)
            existing = self.ds.get(key)
            rv = res.metadata.resource_version
            desc = _describe(res.kind, res.metadata.name, res.metadata.namespace)
            if rv is not None and existing is not None and str(existing.mod_revision) != rv:
                raise Conflict(
                    f"{desc}: resourceVersion {rv} is stale (stored version is {existing.mod_revision}); "
                    "get the resource again, re-apply your change and retry"
                )
            if rv is not None and existing is None and mode != "create":
                raise NotFound(f"{desc} not found (the input names resourceVersion {rv})")
            if mode == "delete":
                if existing is None:
                    raise NotFound(f"{desc} not found")
                ops.append(TxnOp("delete", key, expected_revision=existing.mod_revision))
                planned.append(("deleted", self.decode(existing)))
                continue
            if existing is None:
                if mode == "replace":
                    raise NotFound(f"{desc} not found; use create or apply")
                stored = self._stamp(res, uid=_new_uid(), created=self._now(), generation=1)
                ops.append(TxnOp("create", key, value=stored))
                planned.append(("created", res))
            else:
                if mode == "create":
                    raise AlreadyExists(f"{desc} already exists; use apply or replace")
                old_meta = existing.value.get("metadata") or {}
                old_generation = old_meta.get("generation")
                generation = old_generation if isinstance(old_generation, int) and old_generation > 0 else 1
                if res.to_wire().get("spec") != existing.value.get("spec"):
                    generation += 1
                stored = self._stamp(
                    res,
                    uid=str(old_meta.get("uid") or _new_uid()),
                    created=str(old_meta.get("creationTimestamp") or self._now()),
                    generation=generation,
                )
                if stored == existing.value:
                    planned.append(("unchanged", self.decode(existing)))
                    continue
                ops.append(TxnOp("update", key, value=stored, expected_revision=existing.mod_revision))
                planned.append(("updated", res))
        kvs = iter(self.ds.commit(ops) if ops else [])
        results: builtins.list[WriteResult] = []
        for action, res in planned:
            if action in ("created", "updated"):
                results.append(WriteResult(action, self.decode(next(kvs))))
            elif action == "deleted":
                next(kvs)
                results.append(WriteResult(action, res))
            else:
                results.append(WriteResult(action, res))
        return results

    @staticmethod
    def _stamp(res: Resource, *, uid: str, created: str, generation: int) -> dict[str, object]:
        """The stored wire form: store-maintained metadata set, resourceVersion dropped."""
        wire = res.to_wire()
        meta = dict(wire.get("metadata") or {})
        meta.pop("resourceVersion", None)
        meta["uid"] = uid
        meta["creationTimestamp"] = created
        meta["generation"] = generation
        wire["metadata"] = meta
        return wire
