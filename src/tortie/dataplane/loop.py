"""The dataplane loop: drain messages, hand them to the managers, apply, retry, refresh.

    calc --send()/send_many()--+
                               +--> inbox (thread-safe) --> loop thread:
    LinkDriver monitor --------+      drain all -> each item to the managers that declare its type
        (send_link_event)      |                   (on_update / on_link_event / on_kernel_changes)
    KernelWatch ---------------+
        (send_kernel_changes: routes and nftables changed by anyone)
                                      if in sync: due refreshes -> manager.resync()
                                                  managers needing it -> apply()  (in order)
                                      failure -> stay dirty, retry after backoff (doubling)
                                      failing longer than fail_after -> DataplaneFailed

Contract:

* Dispatch by declaration: each manager lists in `handles` the message types it takes (and
  `LinkEvent` for interface changes, `KernelChanges` for route and nftables changes); the loop
  routes every item only to those managers, in the order the managers were given. Wiring errors
  fail construction (`ValueError`): a declared type that is not a member of `messages.Message`
  (or is `InSync`, which is the loop's own), and a member of
  `Message` that no manager takes and that is not listed in `unhandled` (types the caller knows it
  will send without a consumer, e.g. the policy messages when policy is off: dropped quietly). An
  item of any other type at run time is a bug upstream: logged as an error and dropped.
* Nothing is applied before the `InSync` message; messages before it are recorded. The first
  apply after it is each manager's full read-back (adoption: remove only our unwanted state).
* Batching: everything queued is drained before an apply, so bursts coalesce while an apply runs.
* Apply order: the managers' order; `needs_apply` is asked just before each manager's turn, so a
  manager made dirty by an earlier one (a route source's status after the route table wrote) is
  applied in the same round.
* Retry: a failed apply leaves the manager dirty; the next apply waits `retry_initial` seconds,
  doubling up to `retry_max` (messages keep being recorded meanwhile). When applies have kept
  failing for `fail_after` seconds the loop raises `DataplaneFailed` (exit non-zero and let the
  supervisor restart: a fresh process re-reads everything).
* Drift repair on the event: with a `kernel_watch`, every burst of route and nftables
  notifications (`KernelChanges`) goes to the managers that declare `KernelChanges` in `handles`
  (`on_kernel_changes`); each marks dirty only what someone else changed (its own writes are
  recognised and ignored), and the apply that follows repairs it.
* Drift repair as a safety net: every `refresh_interval` seconds (default 90, like Felix's route refresh) each
  manager is resynced (full read-back and repair); `refresh_overrides` sets it per manager name;
  0 or None disables.
* Observability: a `DataplaneObserver` (no-op base class, override what you need) is told about
  batches, applies (per manager, with duration and error), the latency from message to kernel,
  resyncs and manager stats; `status()` gives a snapshot for health checks. Observer calls run on
  the loop thread.

Threads: `start()` runs the loop on its own thread (and starts the link monitor and the kernel
watch when given); `stop()` ends them all. Tests drive it synchronously instead with `step()`
and an injected `Clock` (anything with `monotonic()`).

Construction: `DataplaneLoop(managers, unhandled=(), link_driver=None, kernel_watch=None,
refresh_interval=90.0, refresh_overrides=None, retry_initial=0.05, retry_max=5.0, fail_after=120.0,
observer=None, clock=None, on_fatal=None)`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.kernel_watch import KernelChanges, KernelWatch
from tortie.dataplane.drivers.links import LinkDriver, LinkEvent
from tortie.dataplane.managers.manager_api import Manager
from tortie.dataplane.messages import MESSAGE_TYPES, InSync, Message

log = logging.getLogger(__name__)


class Clock(Protocol):
    def monotonic(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()


class DataplaneFailed(DataplaneError):
    """Kernel programming kept failing for longer than the configured limit."""


class DataplaneObserver:
    """Hooks for metrics and logs; every method is a no-op here. Called on the loop thread."""

    def on_batch(self, messages: int, link_events: int) -> None:
        """A batch was drained from the inbox."""

    def on_in_sync(self) -> None:
        """The InSync message arrived."""

    def on_apply(self, manager: str, seconds: float, error: BaseException | None) -> None:
        """One manager's apply finished (error None on success)."""

    def on_applied(self) -> None:
        """An apply round succeeded: every manager that needed it applied without error."""

    def on_first_apply(self, seconds: float) -> None:
        """Everything was programmed for the first time, `seconds` after InSync arrived."""

    def on_programmed(self, latency: float) -> None:
        """A batch reached the kernel, `latency` seconds after its oldest message was sent."""

    def on_resync(self, manager: str) -> None:
        """A periodic full resync of `manager` was scheduled."""

    def on_stats(self, stats: Mapping[str, int]) -> None:
        """Merged manager stats after an apply round."""


@dataclass(frozen=True)
class LoopStatus:
    in_sync: bool
    programmed: bool
    """The first apply after InSync completed (readiness)."""
    failing_since: float | None
    applies: int
    failures: int
    fatal: str | None


_Item = tuple[float, Message | LinkEvent | KernelChanges]
_EVENTS = (LinkEvent, KernelChanges)  # what the kernel says, beside the calc's messages


def route_by_declaration(
    managers: Sequence[Manager], unhandled: Collection[type] = ()
) -> dict[type, tuple[Manager, ...]]:
    """Message type (and `LinkEvent`) -> the managers that declare it, in the managers' order; a
    type in `unhandled` maps to no manager. Raises ValueError for the wiring errors of the module
    docstring."""
    accepted = set(MESSAGE_TYPES) - {InSync}
    routes: dict[type, list[Manager]] = {kind: [] for kind in (*accepted, *_EVENTS)}
    for manager in managers:
        for kind in manager.handles:
            if kind not in routes:
                raise ValueError(f"dataplane manager {manager.name} declares {kind!r}, which is not a "
                                 "dataplane message type the loop routes")
            routes[kind].append(manager)
    for kind in unhandled:
        if kind not in accepted:
            raise ValueError(f"{kind!r} is declared unhandled but is not a dataplane message type")
        if routes[kind]:
            raise ValueError(f"{kind.__name__} is declared unhandled but manager "
                             f"{routes[kind][0].name} handles it")
    orphans = sorted(kind.__name__ for kind in accepted if not routes[kind] and kind not in unhandled)
    if orphans:
        raise ValueError(f"no dataplane manager handles {', '.join(orphans)}: give them to a manager "
                         "or declare them unhandled")
    return {kind: tuple(found) for kind, found in routes.items()}


class DataplaneLoop:
    """See the module docstring."""

    def __init__(
        self,
        managers: Sequence[Manager],
        *,
        unhandled: Collection[type] = (),
        link_driver: LinkDriver | None = None,
        kernel_watch: KernelWatch | None = None,
        refresh_interval: float | None = 90.0,
        refresh_overrides: Mapping[str, float | None] | None = None,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
        fail_after: float = 120.0,
        observer: DataplaneObserver | None = None,
        clock: Clock | None = None,
        on_fatal: Callable[[DataplaneFailed], None] | None = None,
    ) -> None:
        self._managers = list(managers)
        names = [m.name for m in self._managers]
        if len(set(names)) != len(names):
            raise ValueError(f"dataplane manager names must be unique: {names}")
        self._routes = route_by_declaration(self._managers, unhandled)
        self._unknown_logged: set[type] = set()
        self._link_driver = link_driver
        self._kernel_watch = kernel_watch
        self._watching = False
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._observer = observer if observer is not None else DataplaneObserver()
        self._on_fatal = on_fatal
        overrides = dict(refresh_overrides or {})
        self._intervals = {m.name: overrides.get(m.name, refresh_interval) for m in self._managers}
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._fail_after = fail_after

        self._cond = threading.Condition()
        self._inbox: deque[_Item] = deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._monitoring = False

        self._in_sync = False
        self._in_sync_at = 0.0
        self._programmed = False
        self._next_refresh: dict[str, float] = {}
        self._backoff = retry_initial
        self._retry_at: float | None = None
        self._failing_since: float | None = None
        self._oldest_unapplied: float | None = None
        self._applies = 0
        self._failures = 0
        self._fatal: DataplaneFailed | None = None

    # -- input (any thread) --------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        self.send_many((msg,))

    def send_many(self, msgs: Iterable[Message]) -> None:
        now = self._clock.monotonic()
        with self._cond:
            self._inbox.extend((now, msg) for msg in msgs)
            self._cond.notify()

    def send_link_event(self, event: LinkEvent) -> None:
        self._send_event(event)

    def send_kernel_changes(self, changes: KernelChanges) -> None:
        self._send_event(changes)

    def _send_event(self, event: LinkEvent | KernelChanges) -> None:
        now = self._clock.monotonic()
        with self._cond:
            self._inbox.append((now, event))
            self._cond.notify()

    # -- one iteration (loop thread, or a test) -----------------------------------------------------

    def step(self) -> None:
        """Drain the inbox, dispatch, and apply if due. Raises DataplaneFailed on persistent failure."""
        with self._cond:
            items = list(self._inbox)
            self._inbox.clear()
        if items:
            self._dispatch(items)
        if self._in_sync:
            self._apply_round()

    def _dispatch(self, items: list[_Item]) -> None:
        messages = 0
        for sent_at, item in items:
            if self._oldest_unapplied is None:
                self._oldest_unapplied = sent_at
            if isinstance(item, _EVENTS):
                for manager in self._routes[type(item)]:
                    self._record(manager, item)
                continue
            messages += 1
            if isinstance(item, InSync):
                self._on_in_sync()
                continue
            managers = self._routes.get(type(item))
            if managers is None:
                self._unknown(item)
                continue
            for manager in managers:
                self._record(manager, item)
        self._observer.on_batch(messages, len(items) - messages)

    @staticmethod
    def _record(manager: Manager, item: Message | LinkEvent | KernelChanges) -> None:
        try:
            if isinstance(item, LinkEvent):
                manager.on_link_event(item)
            elif isinstance(item, KernelChanges):
                on_changes: Callable[[KernelChanges], None] = getattr(manager, "on_kernel_changes")  # noqa: B009
                on_changes(item)
            else:
                manager.on_update(item)
        except Exception:  # one bad record must not stop the others
            log.exception("dataplane manager failed to record manager=%s item=%r", manager.name, item)

    def _unknown(self, item: object) -> None:
        if type(item) not in self._unknown_logged:
            self._unknown_logged.add(type(item))
            log.error("not a dataplane message; dropped (a bug upstream) type=%s item=%r",
                      type(item).__name__, item)

    def _on_in_sync(self) -> None:
        if self._in_sync:
            return
        now = self._clock.monotonic()
        self._in_sync = True
        self._in_sync_at = now
        for manager in self._managers:
            interval = self._intervals[manager.name]
            if interval:
                self._next_refresh[manager.name] = now + interval
        log.info(
            "dataplane in sync; first apply adopts existing kernel state managers=%s",
            ",".join(m.name for m in self._managers),
        )
        self._observer.on_in_sync()

    def _refresh_due(self, now: float) -> None:
        for manager in self._managers:
            due = self._next_refresh.get(manager.name)
            if due is not None and now >= due:
                interval = self._intervals[manager.name]
                assert interval
                self._next_refresh[manager.name] = now + interval
                manager.resync()
                log.debug("dataplane periodic resync manager=%s", manager.name)
                self._observer.on_resync(manager.name)

    def _apply_round(self) -> None:
        now = self._clock.monotonic()
        self._refresh_due(now)
        if self._retry_at is not None and now < self._retry_at:
            return
        if not any(m.needs_apply for m in self._managers):
            # Nothing is pending (e.g. only the echoes of our own writes arrived): nothing is waiting
            # to be programmed, so the next batch's latency must not count from these.
            self._oldest_unapplied = None
            return
        errors: list[str] = []
        for manager in self._managers:
            if not manager.needs_apply:  # asked now: an earlier manager's apply may have changed it
                continue
            started = self._clock.monotonic()
            error: BaseException | None = None
            try:
                manager.apply()
            except DataplaneError as exc:
                error = exc
            except Exception as exc:  # a bug in a manager: treat like a failed apply, keep going
                log.exception("dataplane manager apply crashed manager=%s", manager.name)
                error = exc
            self._observer.on_apply(manager.name, self._clock.monotonic() - started, error)
            if error is not None:
                errors.append(f"{manager.name}: {error}")
        self._applies += 1
        finished = self._clock.monotonic()
        self._observer.on_stats(self.stats())
        if errors:
            self._on_failure(finished, errors)
        else:
            self._on_success(finished)

    def _on_failure(self, now: float, errors: list[str]) -> None:
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = now
        self._retry_at = now + self._backoff
        log.warning(
            "dataplane apply failed; will retry retry_in=%.3fs failing_for=%.1fs errors=%s",
            self._backoff,
            now - self._failing_since,
            " | ".join(errors),
        )
        self._backoff = min(self._backoff * 2, self._retry_max)
        if now - self._failing_since >= self._fail_after:
            self._fatal = DataplaneFailed(
                f"kernel programming has failed for {now - self._failing_since:.0f}s "
                f"(limit {self._fail_after:.0f}s): {' | '.join(errors)}"
            )
            raise self._fatal

    def _on_success(self, now: float) -> None:
        if self._failing_since is not None:
            log.info("dataplane apply recovered after=%.1fs", now - self._failing_since)
        self._failing_since = None
        self._retry_at = None
        self._backoff = self._retry_initial
        self._observer.on_applied()
        if not self._programmed:
            self._programmed = True
            log.info(
                "dataplane programmed after in-sync seconds=%.3f stats=%s",
                now - self._in_sync_at,
                dict(self.stats()),
            )
            self._observer.on_first_apply(now - self._in_sync_at)
        elif self._oldest_unapplied is not None:
            self._observer.on_programmed(now - self._oldest_unapplied)
        self._oldest_unapplied = None

    # -- queries ------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for manager in self._managers:
            merged.update(manager.stats())
        return merged

    def status(self) -> LoopStatus:
        return LoopStatus(
            in_sync=self._in_sync,
            programmed=self._programmed,
            failing_since=self._failing_since,
            applies=self._applies,
            failures=self._failures,
            fatal=str(self._fatal) if self._fatal is not None else None,
        )

    def next_deadline(self) -> float | None:
        """The clock time at which the loop must run even without input (retry or refresh)."""
        deadlines = list(self._next_refresh.values()) if self._in_sync else []
        if self._retry_at is not None:
            deadlines.append(self._retry_at)
        return min(deadlines) if deadlines else None

    # -- running on a thread -------------------------------------------------------------------------------

    def start_link_monitor(self) -> None:
        """Subscribe to the link driver's events and the kernel watch's (done by start(); call it
        yourself with step())."""
        if self._link_driver is not None and not self._monitoring:
            self._link_driver.start_monitor(self.send_link_event)
            self._monitoring = True
        if self._kernel_watch is not None and not self._watching:
            self._kernel_watch.start(self.send_kernel_changes)
            self._watching = True

    def stop_link_monitor(self) -> None:
        if self._link_driver is not None and self._monitoring:
            self._monitoring = False
            self._link_driver.stop_monitor()
        if self._kernel_watch is not None and self._watching:
            self._watching = False
            self._kernel_watch.stop()

    def run_forever(self) -> None:
        """Run until stop(); raises DataplaneFailed on persistent failure."""
        self.start_link_monitor()
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    if not self._inbox:
                        deadline = self.next_deadline()
                        timeout = None if deadline is None else max(0.0, deadline - self._clock.monotonic())
                        self._cond.wait(timeout)
                    if self._stopping:
                        return
                self.step()
        finally:
            self.stop_link_monitor()

    def _thread_main(self) -> None:
        try:
            self.run_forever()
        except DataplaneFailed as exc:
            self._fail_permanently(exc)
        except Exception as exc:  # a bug: die loudly rather than leave a silent, dead dataplane
            log.exception("dataplane loop crashed")
            self._fail_permanently(DataplaneFailed(f"dataplane loop crashed: {exc!r}"))

    def _fail_permanently(self, exc: DataplaneFailed) -> None:
        self._fatal = exc
        log.critical("dataplane failed permanently: %s", exc)
        if self._on_fatal is not None:
            self._on_fatal(exc)

    def start(self) -> None:
        """Start the link monitor (errors raise here) and the loop thread."""
        if self._thread is not None:
            raise RuntimeError("dataplane loop already started")
        self.start_link_monitor()
        self._thread = threading.Thread(target=self._thread_main, name="dataplane-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def alive(self) -> bool:
        """False once the loop thread has ended without `stop()` (a fatal failure or a crash)."""
        return self._thread is None or self._thread.is_alive() or self._stopping

    def wait(self, timeout: float | None = None) -> None:
        """Block until the loop thread ends; re-raise its DataplaneFailed if that is why."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._fatal is not None:
            raise self._fatal
