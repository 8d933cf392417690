"""Event sequencer: the last stage of the calculation. Coalesces per key, flushes in dependency order.

Inputs: calculators call `queue_config`, `queue_update(channel, key, msg)`, `queue_remove(channel, key)`
and `on_datastore_in_sync()`. Output: `tortie.dataplane.messages` through the sink, only from `flush()`.

A *channel* is one keyed family of Update/Remove messages (endpoints, host blocks; issue 5 adds IP
sets, policies, profiles). Each channel has a rank: a lower rank is depended upon by higher ranks,
so on flush updates go out by ascending rank (an IP set exists before the policy that uses it) and
removes by descending rank (the endpoint goes before the policy it referenced).

Invariants:

* At most one pending message per (channel, key); a later queue call replaces the earlier one. So an
  update followed by a remove before a flush sends only the remove, or nothing when the key never
  reached the dataplane. An update equal to what the dataplane already has is dropped.
* The sequencer remembers the last message sent per key (`sent`), so a Remove is sent only for keys
  the dataplane knows, and never twice.
* Nothing is emitted before the datastore's first in-sync: until then `flush()` keeps coalescing.
  The first emitting flush sends, in order: the config, the removes, the updates, then `InSync` (once).
  The dataplane thus sees one consistent snapshot with its configuration first.
* Flush order: config, removes (descending rank), updates (ascending rank), InSync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from tortie.dataplane.messages import ConfigUpdate, InSync, Message

log = logging.getLogger(__name__)

Sink = Callable[[Message], None]


@dataclass(frozen=True)
class Channel:
    """One keyed family of messages. `remove(key)` builds the Remove message for a key."""

    name: str
    rank: int
    remove: Callable[[Hashable], Message]


class _RemoveMarker:
    def __repr__(self) -> str:
        return "<remove>"


_REMOVE: Final = _RemoveMarker()


class EventSequencer:
    def __init__(self, sink: Sink, channels: Sequence[Channel]) -> None:
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate channel names: {names}")
        self._sink = sink
        self._channels = {c.name: c for c in channels}
        self._by_rank = sorted(channels, key=lambda c: c.rank)
        self._pending: dict[str, dict[Hashable, Message | _RemoveMarker]] = {c.name: {} for c in channels}
        self._sent: dict[str, dict[Hashable, Message]] = {c.name: {} for c in channels}
        self._pending_config: Mapping[str, object] | None = None
        self._sent_config: Mapping[str, object] | None = None
        self._datastore_in_sync = False
        self._in_sync_sent = False

    # -- inputs ------------------------------------------------------------------------------------
    def queue_config(self, values: Mapping[str, object]) -> None:
        snapshot = dict(values)
        self._pending_config = None if snapshot == self._sent_config else snapshot

    def queue_update(self, channel: str, key: Hashable, msg: Message) -> None:
        pending = self._pending[channel]
        if self._sent[channel].get(key) == msg:
            pending.pop(key, None)  # the dataplane already has exactly this
        else:
            pending[key] = msg

    def queue_remove(self, channel: str, key: Hashable) -> None:
        pending = self._pending[channel]
        if key in self._sent[channel]:
            pending[key] = _REMOVE
        else:
            pending.pop(key, None)  # never reached the dataplane: nothing to undo

    def on_datastore_in_sync(self) -> None:
        self._datastore_in_sync = True

    # -- state -------------------------------------------------------------------------------------
    @property
    def in_sync_sent(self) -> bool:
        return self._in_sync_sent

    def sent(self, channel: str) -> Mapping[Hashable, Message]:
        """What the dataplane currently holds for a channel (read-only view, for metrics/tests)."""
        return self._sent[channel]

    def pending_count(self) -> int:
        return sum(len(p) for p in self._pending.values()) + (self._pending_config is not None)

    # -- output ------------------------------------------------------------------------------------
    def flush(self) -> int:
        """Send everything pending in dependency order; returns the number of messages sent."""
        if not self._datastore_in_sync:
            return 0
        count = 0
        if self._pending_config is not None:
            self._sent_config = self._pending_config
            self._pending_config = None
            self._sink(ConfigUpdate(values=dict(self._sent_config)))
            count += 1
        elif self._sent_config is None:
            raise RuntimeError("event sequencer: no configuration queued before the first flush")
        for channel in reversed(self._by_rank):
            pending, sent = self._pending[channel.name], self._sent[channel.name]
            for key, item in list(pending.items()):
                if isinstance(item, _RemoveMarker):
                    del pending[key]
                    del sent[key]
                    self._sink(channel.remove(key))
                    count += 1
        for channel in self._by_rank:
            pending, sent = self._pending[channel.name], self._sent[channel.name]
            for key, item in pending.items():
                assert not isinstance(item, _RemoveMarker)
                sent[key] = item
                self._sink(item)
                count += 1
            pending.clear()
        if not self._in_sync_sent:
            self._in_sync_sent = True
            self._sink(InSync())
            count += 1
            log.info("calc in-sync: initial snapshot flushed messages=%d", count)
        return count
