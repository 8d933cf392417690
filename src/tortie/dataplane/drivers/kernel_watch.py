"""Kernel watch: route and nftables changes reported as they happen, for drift repair on the event.

    kernel --RTNLGRP_IPV4_ROUTE / IPV6_ROUTE--+
           --RTNLGRP_NEIGH--------------------+
           --NFNLGRP_NFTABLES-----------------+--> watch thread: wait, debounce, drain, decode
                                                   --> callback(KernelChanges) (the loop's inbox)

Values: one `KernelChanges` per drained burst:

* `routes`: every RTM_NEWROUTE / RTM_DELROUTE as a `RouteChange` (destination as a canonical CIDR,
  table, protocol, kind, output interface index, gateway, metric, onlink), in arrival order;
* `neighbours`: every RTM_DELNEIGH (an ARP / NDP entry or, family AF_BRIDGE, an FDB entry deleted)
  as a `NeighbourGone(family, ifindex)`; additions and state changes are not reported (the kernel
  sends one for every ARP state change on every interface);
* `nft`: per nftables table name, the generations (low 16 bits, `tortie.kernel.nfnetlink`) of the
  transactions that touched it;
* `routes_lost` / `nft_lost`: the kernel dropped notifications (ENOBUFS: the socket buffer
  overflowed), so anything may have changed: consumers fall back to a full read-back.

Nothing is filtered here: which changes matter (our table, our protocol, our nft tables, not our
own writes) is the consumers' business (`RouteTable`, `PolicyManager`, `NftTable`), each of which
decides per change with a dictionary lookup, so the cost of an event stays flat whatever the number
of routes or rules.

Debounce: after the first notification of a burst the thread waits `debounce` seconds (default
20 ms) before draining, so an `nft delete table` (one message per rule, chain and set) or a script
deleting routes arrives as one `KernelChanges` and costs one repair.

`start(callback)` subscribes before returning (every change after it returns is reported); the
callback runs on the watch thread and must be quick and thread-safe. `stop()` returns when no
callback runs or will run. Sockets are opened inside `netns` (None: the process's own).
Construction: `NetlinkKernelWatch(netns=None, routes=True, nftables=True, debounce=0.02)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tortie.common.errors import KernelError
from tortie.dataplane.drivers.routes import RTN_KINDS, RouteKind
from tortie.kernel import nfnetlink, rtnl_codec
from tortie.kernel.netlink import NETLINK_NETFILTER, NETLINK_ROUTE, NetlinkSocket
from tortie.kernel.netns import run_in_netns

log = logging.getLogger(__name__)

_BUFFER = 4 << 20  # a BIRD full-table import is a burst of route notifications


@dataclass(frozen=True)
class RouteChange:
    """A route the kernel added, replaced (`deleted` False) or deleted."""

    deleted: bool
    dst: str
    table: int
    protocol: int
    kind: RouteKind
    ifindex: int | None = None
    gateway: str | None = None
    priority: int | None = None
    onlink: bool = False


@dataclass(frozen=True)
class NeighbourGone:
    """A neighbour or FDB entry the kernel deleted (`family` AF_INET, AF_INET6 or AF_BRIDGE)."""

    family: int
    ifindex: int


@dataclass(frozen=True)
class KernelChanges:
    """What one burst of notifications said (module docstring)."""

    routes: tuple[RouteChange, ...] = ()
    neighbours: tuple[NeighbourGone, ...] = ()
    nft: Mapping[str, frozenset[int]] = field(default_factory=dict)
    routes_lost: bool = False
    nft_lost: bool = False

    def __bool__(self) -> bool:
        return bool(self.routes or self.neighbours or self.nft or self.routes_lost or self.nft_lost)


KernelCallback = Callable[[KernelChanges], None]


class KernelWatch(Protocol):
    def start(self, callback: KernelCallback) -> None: ...

    def stop(self) -> None: ...


def route_change(kind: int, body: bytes) -> RouteChange | None:
    """An RTM_NEWROUTE / RTM_DELROUTE notification as a `RouteChange` (None: another message)."""
    if kind not in (rtnl_codec.RTM_NEWROUTE, rtnl_codec.RTM_DELROUTE):
        return None
    record = rtnl_codec.decode_route(body)
    return RouteChange(
        deleted=kind == rtnl_codec.RTM_DELROUTE,
        dst=str(record.dst),
        table=record.table,
        protocol=record.protocol,
        kind=RTN_KINDS.get(record.type, "other"),
        ifindex=record.oif,
        gateway=str(record.gateway) if record.gateway is not None else None,
        priority=record.priority,
        onlink=record.onlink,
    )


def neighbour_gone(kind: int, body: bytes) -> NeighbourGone | None:
    """An RTM_DELNEIGH notification as a `NeighbourGone` (None: another message)."""
    if kind != rtnl_codec.RTM_DELNEIGH:
        return None
    record = rtnl_codec.decode_neighbour(body)
    return NeighbourGone(record.family, record.ifindex)


def nft_changes(messages: list[tuple[int, bytes]]) -> dict[str, frozenset[int]]:
    """Per table, the generations of the transactions whose notifications name it."""
    found: dict[str, set[int]] = {}
    for kind, body in messages:
        note = nfnetlink.decode_notification(kind, body)
        if note is not None and note.table is not None:
            found.setdefault(note.table, set()).add(note.generation)
    return {table: frozenset(gens) for table, gens in found.items()}


class NetlinkKernelWatch:
    """`KernelWatch` over rtnetlink and nfnetlink multicast groups (module docstring)."""

    def __init__(
        self, netns: str | None = None, *, routes: bool = True, nftables: bool = True, debounce: float = 0.02
    ) -> None:
        self.netns = netns
        self._routes = routes
        self._nftables = nftables
        self._debounce = debounce
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._sockets: dict[str, NetlinkSocket] = {}
        self._wake: tuple[int, int] | None = None

    def _open(self) -> dict[str, NetlinkSocket]:
        sockets: dict[str, NetlinkSocket] = {}
        try:
            if self._routes:
                groups = rtnl_codec.RTMGRP_IPV4_ROUTE | rtnl_codec.RTMGRP_IPV6_ROUTE | rtnl_codec.RTMGRP_NEIGH
                sockets["routes"] = NetlinkSocket(NETLINK_ROUTE, groups=groups, buffer=_BUFFER)
            if self._nftables:
                group = nfnetlink.NFTABLES_GROUP
                sockets["nft"] = NetlinkSocket(NETLINK_NETFILTER, groups=group, buffer=_BUFFER)
        except KernelError:
            for sock in sockets.values():
                sock.close()
            raise
        return sockets

    def start(self, callback: KernelCallback) -> None:
        if self._thread is not None:
            raise RuntimeError("kernel watch already running")
        try:
            self._sockets = run_in_netns(self.netns, self._open)
        except KernelError as exc:
            raise KernelError(f"subscribe to route and nftables events: {exc}", exc.errno) from exc
        self._wake = os.pipe()
        self._stopping.clear()
        label = f"kernel-watch[{self.netns or 'self'}]"
        self._thread = threading.Thread(target=self._run, args=(callback,), name=label, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        assert self._wake is not None
        with contextlib.suppress(OSError):
            os.write(self._wake[1], b"x")
        if threading.current_thread() is not thread:
            thread.join(timeout=10.0)
        for sock in self._sockets.values():
            sock.close()
        self._sockets = {}
        for fd in self._wake:
            os.close(fd)
        self._wake = None

    def close(self) -> None:
        self.stop()

    def _drain(self, name: str) -> tuple[list[tuple[int, bytes]], bool]:
        sock = self._sockets.get(name)
        if sock is None:
            return [], False
        messages: list[tuple[int, bytes]] = []
        lost = False
        while True:
            found, dropped = sock.receive(256)
            messages += found
            lost = lost or dropped > 0
            if not found and not dropped:
                return messages, lost

    def _collect(self) -> KernelChanges:
        route_messages, routes_lost = self._drain("routes")
        nft_messages, nft_lost = self._drain("nft")
        routes = tuple(c for c in (route_change(k, b) for k, b in route_messages) if c is not None)
        gone = tuple(n for n in (neighbour_gone(k, b) for k, b in route_messages) if n is not None)
        return KernelChanges(routes, gone, nft_changes(nft_messages), routes_lost, nft_lost)

    def _run(self, callback: KernelCallback) -> None:
        assert self._wake is not None
        watched = [sock.fileno() for sock in self._sockets.values()] + [self._wake[0]]
        while not self._stopping.is_set():
            select.select(watched, [], [])
            if self._stopping.is_set():
                return
            if self._debounce > 0:
                self._stopping.wait(self._debounce)  # let the burst finish
                if self._stopping.is_set():
                    return
            try:
                changes = self._collect()
            except (KernelError, ValueError) as exc:  # a socket error, or a message we cannot read
                log.warning("kernel watch: reading notifications failed; reporting them lost error=%s", exc)
                changes = KernelChanges(routes_lost=self._routes, nft_lost=self._nftables)
                time.sleep(0.1)
            if not changes:
                continue
            try:
                callback(changes)
            except Exception:
                log.exception("kernel watch callback failed")
