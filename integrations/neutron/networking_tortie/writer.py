"""Desired resources -> the tortie datastore, with compare-and-swap and bounded retries.

Input: validated `Resource`s (or raw JSON records for the DHCP subnet keys) and deletions. Output:
datastore writes. Every write reads the current object, does nothing if it already matches, and
otherwise writes conditionally on the revision it read (create-if-absent, update-if-unchanged,
delete-if-unchanged). A `Conflict`/`AlreadyExists`/`NotFound` from a concurrent writer makes it
read again and retry, at most `max_attempts` times; then `WriteConflict` is raised and the next
resync repairs whatever is left.

`WriteOutcome` says what happened: "created", "updated", "deleted", "unchanged" or "absent".
Thread-safe as far as the datastore is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from tortie.common.errors import AlreadyExists, Conflict, DatastoreError, NotFound
from tortie.datastore.api import Datastore
from tortie.datastore.resources import ResourceStore
from tortie.model import Resource
from tortie.model.kinds import kind_info

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 5
T = TypeVar("T")


class WriteConflict(DatastoreError):
    """Concurrent writers kept changing the object; gave up after the bounded retries."""


class DatastoreWriter:
    def __init__(self, ds: Datastore, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.ds = ds
        self.store = ResourceStore(ds)
        self.max_attempts = max_attempts

    def _retry(self, what: str, attempt: Callable[[], T]) -> T:
        last: Exception | None = None
        for _ in range(self.max_attempts):
            try:
                return attempt()
            except (Conflict, AlreadyExists, NotFound) as exc:
                last = exc
                log.debug("write raced; retrying what=%s error=%s", what, exc)
        raise WriteConflict(f"{what}: gave up after {self.max_attempts} attempts ({last})")

    # -- v3 resources --------------------------------------------------------------------------------
    def put_resource(self, res: Resource) -> str:
        """Make the stored resource equal `res` (labels, annotations, spec)."""
        def attempt() -> str:
            existing = self.ds.get(res.key)
            rv = str(existing.mod_revision) if existing is not None else None
            result = self.store.apply_all([res.replace_metadata(resource_version=rv)],
                                          mode="create" if existing is None else "replace")[0]
            return result.action

        action = self._retry(f"{res.kind} {res.metadata.namespace or ''}/{res.metadata.name}", attempt)
        if action != "unchanged":
            log.info("datastore %s kind=%s name=%s", action, res.kind, res.metadata.name)
        return action

    def delete_resource(self, kind: str, name: str, namespace: str | None = None) -> str:
        info = kind_info(kind)
        key = info.key(name, namespace) if info.namespaced else info.key(name)
        return self.delete_key(key, what=f"{kind} {namespace or ''}/{name}")

    # -- raw JSON records ------------------------------------------------------------------------------
    def put_json(self, key: str, value: dict[str, Any]) -> str:
        def attempt() -> str:
            existing = self.ds.get(key)
            if existing is None:
                self.ds.create(key, value)
                return "created"
            if existing.value == value:
                return "unchanged"
            self.ds.update(key, value, expected_revision=existing.mod_revision)
            return "updated"

        action = self._retry(key, attempt)
        if action != "unchanged":
            log.info("datastore %s key=%s", action, key)
        return action

    def delete_key(self, key: str, *, what: str | None = None) -> str:
        def attempt() -> str:
            existing = self.ds.get(key)
            if existing is None:
                return "absent"
            self.ds.delete(key, expected_revision=existing.mod_revision)
            return "deleted"

        action = self._retry(what or key, attempt)
        if action == "deleted":
            log.info("datastore deleted %s", what or key)
        return action
