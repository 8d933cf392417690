"""Lease-based master election in the tortie datastore (one writer of periodic work per region).

Every neutron-server process runs an `Elector` on the same key (naming.election_key). The master
holds the key, written with a datastore lease of `ttl` seconds and refreshed every `interval`
seconds; when it dies its lease expires and the key disappears, so another process takes over
after at most `ttl` (+ `check_interval`). Reference §8.3 (networking-calico's elector).

    tick():  not master -> create key (create-if-absent, with a new lease)  -> master
                           key exists, held by a dead process of this host  -> CAS-delete it
             master     -> refresh the lease; re-read the key; lost either  -> step down
    stop():  master     -> CAS-delete the key, revoke the lease (clean step-down)

Value: {"server": <elector name, default hostname>, "pid": <pid>, "id": <random per elector>}.
Invariants: ttl > interval; at most one process believes it is master for longer than the time
its own refresh takes to fail (a master that cannot refresh steps down at once); `on_change(bool)`
is called from the elector's thread on every transition.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from tortie.common.errors import AlreadyExists, Conflict, DatastoreError, LeaseExpired, NotFound
from tortie.datastore.api import Datastore

log = logging.getLogger(__name__)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Elector:
    def __init__(
        self,
        ds_factory: Callable[[], Datastore],
        key: str,
        *,
        name: str | None = None,
        interval: float = 10.0,
        ttl: float = 60.0,
        check_interval: float = 5.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if ttl <= interval:
            raise ValueError(f"election ttl ({ttl}s) must exceed the refresh interval ({interval}s)")
        self._ds_factory = ds_factory
        self.key = key
        self.name = name or socket.gethostname()
        self.interval = interval
        self.ttl = ttl
        self.check_interval = check_interval
        self._on_change = on_change or (lambda _master: None)
        self._id = uuid.uuid4().hex
        self._lease: int | None = None
        self._revision: int | None = None
        self._master = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_master(self) -> bool:
        return self._master

    def _value(self) -> dict[str, Any]:
        return {"server": self.name, "pid": os.getpid(), "id": self._id}

    def _set_master(self, master: bool) -> None:
        if master != self._master:
            self._master = master
            log.info("election %s key=%s server=%s pid=%d", "won" if master else "lost",
                     self.key, self.name, os.getpid())
            self._on_change(master)

    # -- one step ---------------------------------------------------------------------------------------
    def tick(self) -> bool:
        """One election step (see the module docstring); returns whether this process is master."""
        try:
            if self._master:
                self._refresh()
            else:
                self._try_acquire()
        except DatastoreError as exc:
            log.warning("election step failed key=%s error=%s", self.key, exc)
            if self._master:
                self._drop_lease()
                self._set_master(False)
        return self._master

    def _try_acquire(self) -> None:
        ds = self._ds_factory()
        current = ds.get(self.key)
        if current is not None:
            self._reap_dead_local_master(ds, current.value, current.mod_revision)
            return
        lease = ds.grant_lease(self.ttl)
        try:
            kv = ds.create(self.key, self._value(), lease=lease)
        except AlreadyExists:
            with contextlib.suppress(DatastoreError):
                ds.revoke_lease(lease)
            return
        self._lease, self._revision = lease, kv.mod_revision
        self._set_master(True)

    def _reap_dead_local_master(self, ds: Datastore, value: dict[str, Any], revision: int) -> None:
        """A master process of this host that died leaves its key until the lease expires; free it
        at once (compare-and-delete, so a live new master is never removed)."""
        pid = value.get("pid")
        if value.get("server") != self.name or not isinstance(pid, int) or pid == os.getpid():
            return
        if _process_alive(pid):
            return
        with contextlib.suppress(Conflict, NotFound):
            ds.delete(self.key, expected_revision=revision)
            log.info("election key of dead local process %d removed key=%s", pid, self.key)

    def _refresh(self) -> None:
        ds = self._ds_factory()
        assert self._lease is not None
        try:
            ds.refresh_lease(self._lease)
        except LeaseExpired:
            log.warning("election lease expired; stepping down key=%s", self.key)
            self._lease = None
            self._set_master(False)
            return
        current = ds.get(self.key)
        if current is None or current.value.get("id") != self._id:
            log.warning("election key taken over or removed; stepping down key=%s", self.key)
            self._drop_lease()
            self._set_master(False)

    def _drop_lease(self) -> None:
        if self._lease is not None:
            with contextlib.suppress(DatastoreError):
                self._ds_factory().revoke_lease(self._lease)
        self._lease = None
        self._revision = None

    # -- thread -----------------------------------------------------------------------------------------
    def start(self) -> Elector:
        def run() -> None:
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(self.interval if self._master else self.check_interval)

        self._thread = threading.Thread(target=run, name="tortie-elector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop electing; a master steps down cleanly (its key is removed at once)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self._master:
            ds = self._ds_factory()
            if self._revision is not None:
                with contextlib.suppress(DatastoreError):
                    ds.delete(self.key, expected_revision=self._revision)
            self._drop_lease()
            self._set_master(False)
