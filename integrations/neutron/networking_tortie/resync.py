"""Resync: make the datastore's OpenStack-owned objects equal what Neutron's DB says they should be.

Input: a `Desired` state (built from one Neutron snapshot by `desired_state`) and the datastore.
Output: repairs (create missing, update differing, delete extra) and a `ResyncReport`.

Ownership: the objects this driver owns, and no others, are compared:

    WorkloadEndpoints     in the OpenStack namespace
    NetworkPolicies       in the OpenStack namespace named `ossg.default.*`
    IPPools               named `openstack-subnet-*`
    Profile               `openstack-port-security-disabled`
    DHCP subnet records   /calico/dhcp/v2/<region>/subnet/*

Ordering and races (as networking-calico): the datastore is listed FIRST, then the caller reads
Neutron, and every repair is conditional on the revision seen in the listing (create-if-absent,
update/delete-if-unchanged). A write by a concurrent postcommit therefore makes the repair fail
with a conflict instead of being overwritten by older data; such objects are counted as `raced`
and compared again in another pass, at most `max_passes` passes in all (bounded retries).
Invalid stored objects are rewritten (or deleted if not desired).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tortie.common.errors import AlreadyExists, Conflict, NotFound
from tortie.datastore.api import KV, Datastore
from tortie.datastore.resources import ResourceStore
from tortie.dhcp.records import subnet_prefix
from tortie.model import Resource, ValidationError
from tortie.model.kinds import kind_info

from networking_tortie import naming

log = logging.getLogger(__name__)

_STORE_MANAGED = ("uid", "creationTimestamp", "resourceVersion", "generation")


@dataclass(frozen=True)
class Desired:
    """Wanted objects by datastore key: v3 resources, and raw JSON records (DHCP subnets)."""

    resources: Mapping[str, Resource] = field(default_factory=dict)
    records: Mapping[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ResyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    raced: list[str] = field(default_factory=list)
    passes: int = 0

    @property
    def changes(self) -> int:
        return len(self.created) + len(self.updated) + len(self.deleted)


def owned_prefixes(region: str) -> dict[str, Callable[[str], bool]]:
    """Listing prefix -> predicate on the key: which stored keys this driver owns."""
    ns = naming.namespace(region)
    np_prefix = kind_info("NetworkPolicy").list_prefix(ns)
    pool_prefix = kind_info("IPPool").list_prefix()
    profile_key = kind_info("Profile").key(naming.PORT_SECURITY_DISABLED_PROFILE)
    return {
        kind_info("WorkloadEndpoint").list_prefix(ns): lambda _key: True,
        np_prefix: lambda key: key[len(np_prefix):].startswith(naming.POLICY_PREFIX),
        pool_prefix: lambda key: key[len(pool_prefix):].startswith(naming.POOL_PREFIX),
        profile_key: lambda key: key == profile_key,
        subnet_prefix(region): lambda _key: True,
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _comparable(value: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(value)
    meta = {k: v for k, v in (out.get("metadata") or {}).items() if k not in _STORE_MANAGED}
    out["metadata"] = meta
    return out


def list_owned(ds: Datastore, region: str) -> dict[str, KV]:
    """The stored objects this driver owns, by key."""
    owned: dict[str, KV] = {}
    for prefix, mine in owned_prefixes(region).items():
        kvs, _rev = ds.list(prefix)
        for kv in kvs:
            if kv.key.startswith(prefix) and mine(kv.key):
                owned[kv.key] = kv
    return owned


class Resyncer:
    def __init__(self, ds: Datastore, region: str = "", *, max_passes: int = 3) -> None:
        self.ds = ds
        self.region = region
        self.store = ResourceStore(ds)
        self.max_passes = max_passes

    def resync(self, read_desired: Callable[[], Desired]) -> ResyncReport:
        """List the datastore, then call `read_desired` (which reads Neutron), then repair; repeat
        while repairs raced with other writers, at most `max_passes` times."""
        report = ResyncReport()
        for _ in range(self.max_passes):
            report.passes += 1
            actual = list_owned(self.ds, self.region)
            desired = read_desired()
            raced = self._repair(actual, desired, report)
            if not raced:
                break
        log.info("resync done region=%s created=%d updated=%d deleted=%d raced=%d passes=%d",
                 self.region or "-", len(report.created), len(report.updated), len(report.deleted),
                 len(report.raced), report.passes)
        return report

    def _repair(self, actual: Mapping[str, KV], desired: Desired, report: ResyncReport) -> bool:
        raced = False
        wanted: dict[str, Resource | dict[str, Any]] = {**desired.resources, **desired.records}
        for key in sorted(set(actual) | set(wanted)):
            want = wanted.get(key)
            have = actual.get(key)
            try:
                outcome = self._repair_one(key, want, have)
            except (Conflict, AlreadyExists, NotFound) as exc:
                log.info("resync repair raced with another writer key=%s error=%s", key, exc)
                report.raced.append(key)
                raced = True
                continue
            if outcome == "created":
                report.created.append(key)
            elif outcome == "updated":
                report.updated.append(key)
            elif outcome == "deleted":
                report.deleted.append(key)
            if outcome != "unchanged":
                log.info("resync %s key=%s", outcome, key)
        return raced

    def _repair_one(self, key: str, want: Resource | dict[str, Any] | None, have: KV | None) -> str:
        if want is None:
            assert have is not None
            self.ds.delete(key, expected_revision=have.mod_revision)
            return "deleted"
        if isinstance(want, Resource):
            return self._repair_resource(want, have)
        if have is None:
            self.ds.create(key, want)
            return "created"
        if have.value == want:
            return "unchanged"
        self.ds.update(key, want, expected_revision=have.mod_revision)
        return "updated"

    def _repair_resource(self, want: Resource, have: KV | None) -> str:
        if have is None:
            self.store.apply_all([want.replace_metadata(resource_version=None)], mode="create")
            return "created"
        try:
            self.store.decode(have)
            if _comparable(have.value) == _comparable(want.to_wire()):
                return "unchanged"
        except ValidationError:
            log.warning("resync: stored object is invalid; rewriting key=%s", have.key)
            # An invalid stored object cannot be decoded by apply_all's unchanged-check either:
            # replace it directly, still conditional on the revision we saw.
            raw_meta = have.value.get("metadata")
            meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
            old_generation = meta.get("generation")
            generation = old_generation + 1 if isinstance(old_generation, int) and old_generation > 0 else 1
            wire = ResourceStore._stamp(want, uid=str(meta.get("uid") or uuid.uuid4()),
                                        created=str(meta.get("creationTimestamp") or _now()),
                                        generation=generation)
            self.ds.update(have.key, wire, expected_revision=have.mod_revision)
            return "updated"
        self.store.apply_all([want.replace_metadata(resource_version=str(have.mod_revision))], mode="replace")
        return "updated"


def keyed(resources: Iterable[Resource]) -> dict[str, Resource]:
    return {r.key: r for r in resources}
