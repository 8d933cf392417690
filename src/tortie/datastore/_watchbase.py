"""The queue behind every backend's `Watch`: producers push events, one consumer takes them.

A backend's delivery machinery (memory: the writer itself; sqlite: the poller thread; etcd: the
stream reader thread) calls `push(event)`, `end()` or `fail(error)`; the consumer calls `get`, iterates,
or `close()`s. Invariants:

* events come out in the order they were pushed, each exactly once;
* after a RESYNC event has been taken, or after `close()`, `get` returns None forever;
* `fail(err)` lets the consumer drain what was already queued, then `get` raises `err` once (the
  watch is then over and returns None forever) — this is how "the store is unreachable beyond the
  backend's retries" reaches the consumer (a `DatastoreUnavailable`);
* `close()` runs the backend's `on_close` hook once (unregister, interrupt a blocking read).

`tick`, when given, is called about every `tick_interval` seconds while a consumer is blocked in
`get` — the memory backend uses it to reap expired leases without a thread of its own.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator

from tortie.common.errors import DatastoreError
from tortie.datastore.api import EventType, WatchEvent


class QueueWatch:
    """A `tortie.datastore.api.Watch` fed by a backend; see the module docstring."""

    def __init__(
        self,
        on_close: Callable[[], None] | None = None,
        *,
        tick: Callable[[], None] | None = None,
        tick_interval: float = 0.05,
    ) -> None:
        self._cond = threading.Condition()
        self._items: collections.deque[WatchEvent] = collections.deque()
        self._ended = False  # producer is done (RESYNC pushed, end() or fail())
        self._error: DatastoreError | None = None
        self._closed = False
        self._finished = False  # consumer has seen the end
        self._on_close = on_close
        self._tick = tick
        self._tick_interval = tick_interval

    # ----- producer side -----

    def push(self, event: WatchEvent) -> bool:
        """Queue one event; returns False if the watch no longer accepts events."""
        with self._cond:
            if self._ended or self._closed:
                return False
            self._items.append(event)
            if event.type is EventType.RESYNC:
                self._ended = True
            self._cond.notify_all()
            return True

    def end(self) -> None:
        """No more events will come; the consumer sees the end after draining the queue."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def fail(self, error: DatastoreError) -> None:
        """End the watch with an error raised to the consumer after the queued events."""
        with self._cond:
            if self._ended or self._closed:
                return
            self._error = error
            self._ended = True
            self._cond.notify_all()

    @property
    def active(self) -> bool:
        """True while the producer should keep delivering."""
        with self._cond:
            return not (self._ended or self._closed)

    # ----- consumer side -----

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._tick is not None:
                self._tick()
            with self._cond:
                if self._closed or self._finished:
                    return None
                if self._items:
                    event = self._items.popleft()
                    if event.type is EventType.RESYNC:
                        self._finished = True
                    return event
                if self._ended:
                    self._finished = True
                    if self._error is not None:
                        err, self._error = self._error, None
                        raise err
                    return None
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                if self._tick is not None:
                    wait = self._tick_interval if wait is None else min(wait, self._tick_interval)
                self._cond.wait(wait)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._items.clear()
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close()

    def __iter__(self) -> Iterator[WatchEvent]:
        while True:
            event = self.get(None)
            if event is None:
                return
            yield event

    def __enter__(self) -> QueueWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
