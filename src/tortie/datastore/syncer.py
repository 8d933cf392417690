"""List-then-watch over a set of key prefixes, turned into a stream of sync events for one consumer.

    Datastore --list(prefix)--> diff against what was sent --> Update/Delete ... InSync --> sink
              --watch(prefix, after=list revision)--> Update/Delete (as they arrive)  --> sink
              RESYNC or DatastoreUnavailable --> (Status disconnected, backoff) --> list again, diff, InSync

Inputs: a `Datastore`, prefixes that do not overlap (no prefix starts with another), and a sink
callable. Outputs, to the sink, in one thread: `Update(key, value, revision)`, `Delete(key, revision)`,
`InSync()` after every complete listing, and `Status("disconnected" | "reconnected")` around outages.
These records are the one vocabulary from the datastore to its consumers: the agent's calc
(`tortie.calc.calc_graph`) takes them as they are (ignoring `Status`), as do BGP and DHCP.

Invariants:
* The syncer remembers the mod_revision of every key it has sent. After a re-list it sends only the
  differences: Updates for new/changed keys, Deletes for keys that vanished, so a consumer's view
  equals the store at the list revision — an outage never produces spurious Deletes.
* Each prefix is watched from the revision its own list was taken at, so no change is missed or
  repeated; per-key order is the store's revision order.
* The sink is called from one thread at a time (the syncer thread, or the caller of
  `run_once_until_in_sync`/`poll`). An exception from the sink stops the syncer (`failure`).
* A bad record (a stored value that is not a JSON object: the datastore flags it with `problem`,
  see `tortie.datastore.api`) is treated as absent: a key sent before gets a Delete, a new one is
  not sent, and the key is logged once per stored revision (a re-list does not repeat it);
  `bad_records` holds the keys that are bad now. Nothing stops: the other keys flow as before, and
  a later good value of the key is an ordinary Update.
* `alive()` is False once the syncer thread has ended while it was not asked to stop (with or
  without a `failure`): a consumer's health must say so.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tortie.common.errors import DatastoreError, DatastoreUnavailable
from tortie.datastore.api import Datastore, EventType, JSONObject, Watch, WatchEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """The key now has this value (created or changed) as of `revision`."""

    key: str
    value: JSONObject
    revision: int


@dataclass(frozen=True)
class Delete:
    """The key no longer exists as of `revision`."""

    key: str
    revision: int


@dataclass(frozen=True)
class InSync:
    """Everything under the prefixes has been sent: the consumer's view equals the store."""


@dataclass(frozen=True)
class Status:
    """Connection state change: "disconnected" (retrying) or "reconnected"."""

    state: str


SyncEvent = Update | Delete | InSync | Status

_END = object()  # a pump's watch ended (closed, RESYNC already queued, or failed)
_Item = tuple[int, object]  # (generation of the watches that produced it, event | error | _END)


class Syncer:
    """Keeps a consumer in sync with the store under `prefixes`; see the module docstring."""

    def __init__(
        self,
        ds: Datastore,
        prefixes: Sequence[str],
        sink: Callable[[SyncEvent], None],
        *,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        prefixes = list(prefixes)
        if not prefixes:
            raise ValueError("a Syncer needs at least one prefix")
        for a in prefixes:
            for b in prefixes:
                if a is not b and b.startswith(a):
                    raise ValueError(f"syncer prefixes overlap: {a!r} contains {b!r}")
        self._ds = ds
        self._prefixes = prefixes
        self._sink = sink
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._sent: dict[str, int] = {}
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._generation = 0
        self._watches: list[Watch] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = True
        self._in_sync = False
        self.failure: BaseException | None = None
        self.bad_records: dict[str, int] = {}  # key -> revision of the bad value stored there now

    # ----- public -----

    @property
    def in_sync(self) -> bool:
        return self._in_sync

    def alive(self) -> bool:
        """False when the syncer thread ended without being stopped (see the module docstring)."""
        if self.failure is not None:
            return False
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def start(self) -> None:
        """Run the syncer in a daemon thread until `stop()`."""
        if self._thread is not None:
            raise RuntimeError("syncer already started")
        self._thread = threading.Thread(target=self._run, name="tortie-syncer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (if any) and close the watches."""
        self._stop.set()
        self._close_watches()
        self._queue.put((-1, _END))  # wake a blocked poll
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run_once_until_in_sync(self) -> None:
        """List every prefix, send the differences and InSync, then open the watches.

        Retries `DatastoreUnavailable` with backoff until it succeeds or `stop()` is called.
        """
        backoff = self._backoff_initial
        while not self._stop.is_set():
            try:
                self._resync()
                return
            except DatastoreUnavailable as e:
                self._disconnected(e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)

    def poll(self, timeout: float | None = None) -> bool:
        """Handle watch events arriving within `timeout` (re-listing when needed).

        Returns after the first event (or batch) was handled, or on timeout; False once stopped.
        """
        try:
            gen, item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return not self._stop.is_set()
        while True:
            if self._stop.is_set():
                return False
            if gen == self._generation:
                self._handle(item)
            try:
                gen, item = self._queue.get_nowait()
            except queue.Empty:
                return True

    # ----- internals -----

    def _run(self) -> None:
        try:
            self.run_once_until_in_sync()
            while self.poll(0.5):
                pass
        except BaseException as e:  # the sink or the store failed in a way we cannot retry
            if not self._stop.is_set():
                self.failure = e
                log.exception("syncer stopped prefixes=%s", self._prefixes)
        finally:
            self._close_watches()

    def _handle(self, item: object) -> None:
        if isinstance(item, WatchEvent):
            if item.type is EventType.PUT:
                assert item.value is not None
                if item.problem is not None:
                    self._on_bad_record(item.key, item.revision, item.problem)
                    if self._sent.pop(item.key, None) is not None:
                        self._sink(Delete(item.key, item.revision))
                    return
                if self._sent.get(item.key, 0) >= item.revision:
                    return  # already sent by a listing
                self.bad_records.pop(item.key, None)
                self._sent[item.key] = item.revision
                self._sink(Update(item.key, item.value, item.revision))
            elif item.type is EventType.DELETE:
                self.bad_records.pop(item.key, None)
                if self._sent.pop(item.key, None) is not None:
                    self._sink(Delete(item.key, item.revision))
            else:
                log.info("syncer watch fell behind compaction; re-listing prefixes=%s", self._prefixes)
                self.run_once_until_in_sync()
        elif isinstance(item, DatastoreUnavailable):
            self._disconnected(item)
            self._stop.wait(self._backoff_initial)
            self.run_once_until_in_sync()
        elif isinstance(item, DatastoreError):
            raise item
        elif item is _END and not self._stop.is_set():
            log.info("syncer watch ended; re-listing prefixes=%s", self._prefixes)
            self.run_once_until_in_sync()

    def _on_bad_record(self, key: str, revision: int, problem: str) -> None:
        if self.bad_records.get(key) != revision:
            log.warning("bad record in the datastore treated as absent key=%s revision=%d problem=%s "
                        "(delete it with `tortie delete --key`)", key, revision, problem)
        self.bad_records[key] = revision

    def _disconnected(self, e: DatastoreError) -> None:
        self._in_sync = False
        if self._connected:
            self._connected = False
            log.warning("syncer lost the datastore; retrying error=%s", e)
            self._sink(Status("disconnected"))

    def _resync(self) -> None:
        self._close_watches()
        listings = [(prefix, *self._ds.list(prefix)) for prefix in self._prefixes]
        if not self._connected:
            self._connected = True
            log.info("syncer reconnected to the datastore")
            self._sink(Status("reconnected"))
        current: dict[str, int] = {}
        bad: dict[str, int] = {}
        top = 0
        for _, kvs, revision in listings:
            top = max(top, revision)
            for kv in kvs:
                if kv.problem is not None:
                    self._on_bad_record(kv.key, kv.mod_revision, kv.problem)
                    bad[kv.key] = kv.mod_revision
                    continue
                current[kv.key] = kv.mod_revision
                if self._sent.get(kv.key) != kv.mod_revision:
                    self._sent[kv.key] = kv.mod_revision
                    self._sink(Update(kv.key, kv.value, kv.mod_revision))
        self.bad_records = bad
        for key in sorted(set(self._sent) - set(current)):
            del self._sent[key]
            self._sink(Delete(key, top))
        self._in_sync = True
        log.info("syncer in sync prefixes=%s keys=%d revision=%d", self._prefixes, len(current), top)
        self._sink(InSync())
        self._generation += 1
        for prefix, _, revision in listings:
            watch = self._ds.watch(prefix, revision)
            self._watches.append(watch)
            threading.Thread(
                target=self._pump, args=(self._generation, watch), name=f"tortie-syncer-pump:{prefix}",
                daemon=True,
            ).start()

    def _pump(self, generation: int, watch: Watch) -> None:
        try:
            for event in watch:
                self._queue.put((generation, event))
        except DatastoreError as e:
            self._queue.put((generation, e))
        except Exception:  # a bug below the watch: never a silent, dead watch; re-list instead
            log.exception("syncer watch failed; re-listing prefixes=%s", self._prefixes)
        finally:
            self._queue.put((generation, _END))

    def _close_watches(self) -> None:
        watches, self._watches = self._watches, []
        for w in watches:
            w.close()
