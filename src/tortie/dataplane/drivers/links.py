"""Link driver: list interfaces and report when they come, go, go up or go down (rtnetlink).

Values: `Link(name, index, admin_up, oper_state, flags)`; `is_up` is what the dataplane means by
"up": administratively up (IFF_UP) and operationally UP or UNKNOWN (devices without carrier
reporting, e.g. loopback, report UNKNOWN). A veth is operationally UP only when its peer is up too,
so a workload interface is "up" exactly when both ends are.

Events: `LinkEvent(kind, link)` with kind `added`, `removed`, `up` or `down`. A rename is
`removed` (old name) then `added` (new name); an interface that appears already up produces only
`added` (look at `link.is_up`).

Monitor design: a thread waits on a NETLINK_ROUTE socket subscribed to RTMGRP_LINK (a
`tortie.kernel.netlink.NetlinkSocket` created in the driver's namespace). When anything arrives it
drains the socket, applies the links' RTM_NEWLINK / RTM_DELLINK notifications (whole link records,
family AF_UNSPEC; bridge-port ones are not about the link's existence) to its snapshot and diffs only
the interfaces they named, so an event costs the same on a host with a thousand interfaces as on one
with ten. When notifications were lost (ENOBUFS on overflow) or one cannot be decoded, it re-lists
all links and diffs the whole snapshot instead. Consequences: bursts coalesce; a lost notification
is harmless, the re-listed snapshot sees the truth; events carry whole `Link` values.
`start_monitor` subscribes and takes the first snapshot before returning, so every change made
after it returns is reported. Callbacks run on the monitor thread and must be quick and thread-safe
(the dataplane loop just enqueues them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from tortie.common.errors import KernelError
from tortie.dataplane.drivers.rtnl_driver import RtnlDriver
from tortie.kernel.netlink import NETLINK_ROUTE, Message, NetlinkSocket
from tortie.kernel.rtnl_codec import IFF_UP, RTM_DELLINK, RTM_NEWLINK, RTMGRP_LINK, decode_link
from tortie.kernel.rtnl_codec import Link as KernelLink

log = logging.getLogger(__name__)

_UP_OPER_STATES = frozenset({"UP", "UNKNOWN"})
_RETRY_AFTER_ERROR_S = 1.0
_AF_UNSPEC = 0

LinkEventKind = Literal["added", "removed", "up", "down"]


@dataclass(frozen=True)
class Link:
    """One network interface as the kernel reports it."""

    name: str
    index: int
    admin_up: bool
    oper_state: str = "UNKNOWN"
    flags: int = 0

    @property
    def is_up(self) -> bool:
        return self.admin_up and self.oper_state in _UP_OPER_STATES


@dataclass(frozen=True)
class LinkEvent:
    kind: LinkEventKind
    link: Link


LinkCallback = Callable[[LinkEvent], None]


class LinkDriver(Protocol):
    """Interfaces of one network namespace."""

    def list_links(self) -> list[Link]:
        """Every interface, sorted by index."""
        ...

    def start_monitor(self, callback: LinkCallback) -> None:
        """Report every later change through `callback` (from another thread) until stopped."""
        ...

    def stop_monitor(self) -> None:
        """Stop reporting; when this returns no callback is running or will run."""
        ...

    def close(self) -> None: ...


def diff_links(before: dict[int, Link], after: dict[int, Link]) -> list[LinkEvent]:
    """The events that turn snapshot `before` into `after` (both keyed by ifindex)."""
    events: list[LinkEvent] = []
    for index, gone in sorted(before.items()):
        now = after.get(index)
        if now is None or now.name != gone.name:
            events.append(LinkEvent("removed", gone))
    for index, link in sorted(after.items()):
        was = before.get(index)
        if was is None or was.name != link.name:
            events.append(LinkEvent("added", link))
        elif was.is_up != link.is_up:
            events.append(LinkEvent("up" if link.is_up else "down", link))
    return events


class NetlinkLinkDriver(RtnlDriver):
    """`LinkDriver` over rtnetlink (`tortie.kernel.rtnl.Rtnl` for dumps, one subscribed socket for
    notifications), both opened in the namespace by the worker thread."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(netns, "link driver")
        self._monitor: _Monitor | None = None

    def _dump(self) -> list[Link]:
        return sorted((_link(record) for record in self._rtnl.get().links()), key=lambda link: link.index)

    def list_links(self) -> list[Link]:
        return self._dump()

    @staticmethod
    def _subscribe() -> NetlinkSocket:
        return NetlinkSocket(NETLINK_ROUTE, groups=RTMGRP_LINK)

    def start_monitor(self, callback: LinkCallback) -> None:
        if self._monitor is not None:
            raise RuntimeError("link monitor already running")
        try:
            sock = self._rtnl.worker.call(self._subscribe)
        except KernelError as exc:
            raise KernelError(f"subscribe to link events: {exc}", exc.errno) from exc
        try:
            first = {link.index: link for link in self.list_links()}
        except KernelError:
            sock.close()
            raise
        self._monitor = _Monitor(sock, self.list_links, callback, first, self.netns)

    def stop_monitor(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()

    def close(self) -> None:
        self.stop_monitor()
        self._rtnl.close()


def _link(record: KernelLink) -> Link:
    return Link(name=record.name, index=record.ifindex, admin_up=bool(record.flags & IFF_UP),
                oper_state=record.oper_state, flags=record.flags)


def _notified(messages: list[Message]) -> dict[int, Link | None] | None:
    """The links named by a burst of notifications: ifindex -> its last state (None: deleted); None
    when one cannot be decoded (the caller re-lists instead)."""
    changed: dict[int, Link | None] = {}
    for kind, body in messages:
        if kind not in (RTM_NEWLINK, RTM_DELLINK) or not body or body[0] != _AF_UNSPEC:
            continue
        try:
            link = _link(decode_link(body))
        except (ValueError, IndexError, struct.error):
            return None
        changed[link.index] = link if kind == RTM_NEWLINK else None
    return changed


class _Monitor:
    """The monitor thread of one `NetlinkLinkDriver` (see the module docstring)."""

    def __init__(
        self,
        sock: NetlinkSocket,
        list_links: Callable[[], list[Link]],
        callback: LinkCallback,
        first: dict[int, Link],
        netns: str | None,
    ) -> None:
        self._sock = sock
        self._list_links = list_links
        self._callback = callback
        self._snapshot = first
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = threading.Event()
        label = f"link-monitor[{netns or 'self'}]"
        self._thread = threading.Thread(target=self._run, name=label, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10.0)
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        timeout: float | None = None
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._sock.fileno(), self._wake_r], [], [], timeout)
            if self._stopping.is_set():
                return
            try:
                changed = self._read_notifications() if self._sock.fileno() in readable else None
                if changed is None:  # lost or undecodable notifications, or a retry: re-list
                    current = {link.index: link for link in self._list_links()}
                    events = diff_links(self._snapshot, current)
                    self._snapshot = current
                else:
                    events = self._apply(changed)
            except KernelError as exc:
                log.warning("link monitor: reading links failed, retrying error=%s", exc)
                timeout = _RETRY_AFTER_ERROR_S
                continue
            timeout = None
            for event in events:
                if self._stopping.is_set():
                    return
                try:
                    self._callback(event)
                except Exception:
                    log.exception("link event callback failed event=%s", event)

    def _read_notifications(self) -> dict[int, Link | None] | None:
        """Everything queued on the socket: the links it names, or None if some were lost."""
        messages: list[Message] = []
        while True:
            found, lost = self._sock.receive()
            if lost:
                self._sock.discard_pending()
                return None
            if not found:
                return _notified(messages)
            messages += found

    def _apply(self, changed: dict[int, Link | None]) -> list[LinkEvent]:
        """Fold the notified links into the snapshot; the events of those links only."""
        before = {index: self._snapshot[index] for index in changed if index in self._snapshot}
        after = {index: link for index, link in changed.items() if link is not None}
        for index, link in changed.items():
            if link is None:
                self._snapshot.pop(index, None)
            else:
                self._snapshot[index] = link
        return diff_links(before, after)
