"""Connectivity probes between lab namespaces: is traffic from SRC to DST allowed or denied?

    run_probes([Probe(src_netns, dst_netns, dst_ip), ...], protocol, port, timeout) -> [bool, ...]
    run_probe_sets([(probes, protocol, port), ...], timeout) -> [[bool, ...], ...]   (sets in parallel)

Everything runs in this process, in parallel, with sockets opened inside the namespaces (a socket
belongs to the network namespace of the thread that creates it; one `NetnsWorker` thread per
namespace creates them, and any thread may use them afterwards):

* tcp: a listener on `port` in each destination namespace unless something already listens there
  (EADDRINUSE: the user's server answers instead); from the source, non-blocking connects, a fresh
  one every 0.25 s (the first SYN after plumbing can be lost to ARP) until one completes (allowed) or
  `timeout` passes (denied). A refused or unreachable attempt is retried the same way.
* udp: an echo responder on `port` in each destination namespace; the source sends a datagram every
  0.2 s and waits for its echo. If the port is taken the owner must echo, or the probe says denied.
* icmp: echo requests from a raw socket in the source namespace every 0.2 s (one identifier per
  probe); the destination's kernel answers, no listener is needed.

Invariants: every socket and worker thread is closed before `run_probes` returns (a thread that
entered a namespace would keep it alive after `ip netns del`); at most `MAX_PARALLEL` probes are in
flight at once (file descriptors). Allowed means a reply came back within `timeout`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import ipaddress
import os
import resource
import selectors
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from tortie.common.ipfamily import V4, family_of, family_of_af
from tortie.kernel.netns import NetnsWorker

PROTOCOLS = ("tcp", "udp", "icmp")
MAX_PARALLEL = 256
RETRY_INTERVAL = 0.25


@dataclass(frozen=True)
class Probe:
    src_netns: str
    dst_netns: str | None
    """The destination's namespace (a listener is started there for tcp/udp); None for a bare IP."""
    dst_ip: str


class NamespaceSockets:
    """Creates sockets inside named namespaces through one worker thread per namespace."""

    def __init__(self) -> None:
        self._workers: dict[str, NetnsWorker] = {}
        self._lock = threading.Lock()

    def socket(self, netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        with self._lock:
            worker = self._workers.get(netns)
            if worker is None:
                worker = self._workers[netns] = NetnsWorker(netns, name="lab-probe")
        return worker.call(socket.socket, family, kind, proto)

    def close(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.close()

    def __enter__(self) -> NamespaceSockets:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _family(ip: str) -> int:
    return family_of(ip).af


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _bind_any(sockets: NamespaceSockets, netns: str, kind: int, port: int) -> socket.socket | None:
    """A dual-stack socket bound to `port` in `netns`; None if the port is taken."""
    try:
        sock = sockets.socket(netns, socket.AF_INET6, kind)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[str, int] = ("::", port)
    except OSError:  # IPv6 off in that namespace
        sock = sockets.socket(netns, socket.AF_INET, kind)
        address = ("0.0.0.0", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    return sock


@dataclass
class _Listeners:
    sockets: list[socket.socket] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(2.0)
        for sock in self.sockets:
            sock.close()


def _start_listeners(sockets: NamespaceSockets, namespaces: set[str], protocol: str, port: int) -> _Listeners:
    listeners = _Listeners()
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    for netns in sorted(namespaces):
        sock = _bind_any(sockets, netns, kind, port)
        if sock is None:
            continue
        if protocol == "tcp":
            sock.listen(1024)  # the handshake completes in the kernel; nobody needs to accept()
        sock.setblocking(False)
        listeners.sockets.append(sock)
    if protocol == "udp" and listeners.sockets:
        listeners.thread = threading.Thread(target=_echo, args=(listeners,), name="lab-udp-echo", daemon=True)
        listeners.thread.start()
    return listeners


def _echo(listeners: _Listeners) -> None:
    with selectors.DefaultSelector() as sel:
        for sock in listeners.sockets:
            sel.register(sock, selectors.EVENT_READ)
        while not listeners.stop.is_set():
            for key, _mask in sel.select(0.05):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                with contextlib.suppress(OSError):
                    while True:
                        data, peer = ready.recvfrom(2048)
                        ready.sendto(data, peer)


def run_probes(probes: Sequence[Probe], protocol: str, port: int, timeout: float) -> list[bool]:
    """Allowed (True) or denied (False) for each probe, in order. See the module docstring."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    _raise_fd_limit()
    results: list[bool] = [False] * len(probes)
    with NamespaceSockets() as sockets:
        listeners = _Listeners()
        if protocol in ("tcp", "udp"):
            listeners = _start_listeners(
                sockets, {p.dst_netns for p in probes if p.dst_netns}, protocol, port
            )
        try:
            for start in range(0, len(probes), MAX_PARALLEL):
                chunk = list(enumerate(probes))[start : start + MAX_PARALLEL]
                if protocol == "tcp":
                    found = _tcp(sockets, chunk, port, timeout)
                elif protocol == "udp":
                    found = _udp(sockets, chunk, port, timeout)
                else:
                    found = _icmp(sockets, chunk, timeout)
                for index in found:
                    results[index] = True
        finally:
            listeners.close()
    return results


def run_probe_sets(sets: Sequence[tuple[Sequence[Probe], str, int]], timeout: float) -> list[list[bool]]:
    """`run_probes` for several (probes, protocol, port) sets at once, one thread each, so that a
    matrix over several protocols and ports takes about one `timeout`, not one per set. Two sets of
    one protocol and port would fight over the listening port: refused (ValueError)."""
    kinds = [(protocol, port if protocol != "icmp" else 0) for _probes, protocol, port in sets]
    if len(set(kinds)) != len(kinds):
        raise ValueError("each protocol and port may be probed once per call")
    if len(sets) == 1:
        probes, protocol, port = sets[0]
        return [run_probes(probes, protocol, port, timeout)]
    with concurrent.futures.ThreadPoolExecutor(len(sets), thread_name_prefix="lab-probes") as pool:
        futures = [pool.submit(run_probes, probes, proto, port, timeout) for probes, proto, port in sets]
        return [future.result() for future in futures]


def _tcp(sockets: NamespaceSockets, chunk: list[tuple[int, Probe]], port: int, timeout: float) -> set[int]:
    allowed: set[int] = set()
    open_socks: dict[int, list[socket.socket]] = {i: [] for i, _p in chunk}
    next_try = {i: 0.0 for i, _p in chunk}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        try:
            while len(allowed) < len(chunk):
                now = time.monotonic()
                if now >= deadline:
                    break
                for i, probe in chunk:
                    if i in allowed or now < next_try[i] or len(open_socks[i]) >= 8:
                        continue
                    next_try[i] = now + RETRY_INTERVAL
                    sock = sockets.socket(probe.src_netns, _family(probe.dst_ip), socket.SOCK_STREAM)
                    sock.setblocking(False)
                    code = sock.connect_ex((probe.dst_ip, port))
                    if code not in (0, errno.EINPROGRESS):
                        sock.close()
                        continue
                    open_socks[i].append(sock)
                    sel.register(sock, selectors.EVENT_WRITE, i)
                for key, _mask in sel.select(min(0.05, max(0.0, deadline - time.monotonic()))):
                    done = key.fileobj
                    assert isinstance(done, socket.socket)
                    i = int(key.data)
                    sel.unregister(done)
                    open_socks[i].remove(done)
                    if done.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        allowed.add(i)
                        for other in open_socks[i]:
                            sel.unregister(other)
                            other.close()
                        open_socks[i] = []
                    done.close()
        finally:
            for socks in open_socks.values():
                for sock in socks:
                    sock.close()
    return allowed


def _udp(sockets: NamespaceSockets, chunk: list[tuple[int, Probe]], port: int, timeout: float) -> set[int]:
    allowed: set[int] = set()
    socks: dict[int, socket.socket] = {}
    tokens: dict[int, bytes] = {}
    deadline = time.monotonic() + timeout
    next_try = {i: 0.0 for i, _p in chunk}
    with selectors.DefaultSelector() as sel:
        try:
            for i, probe in chunk:
                sock = sockets.socket(probe.src_netns, _family(probe.dst_ip), socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.connect((probe.dst_ip, port))  # only replies from the destination are received
                socks[i] = sock
                tokens[i] = f"tortie-probe {i} {os.urandom(4).hex()}".encode()
                sel.register(sock, selectors.EVENT_READ, i)
            while len(allowed) < len(chunk):
                now = time.monotonic()
                if now >= deadline:
                    break
                for i, _probe in chunk:
                    if i not in allowed and now >= next_try[i]:
                        next_try[i] = now + RETRY_INTERVAL
                        with contextlib.suppress(OSError):  # e.g. ECONNREFUSED from an earlier send
                            socks[i].send(tokens[i])
                for key, _mask in sel.select(min(0.05, max(0.0, deadline - time.monotonic()))):
                    i = int(key.data)
                    with contextlib.suppress(OSError):
                        if socks[i].recv(2048) == tokens[i]:
                            allowed.add(i)
                            sel.unregister(socks[i])
        finally:
            for sock in socks.values():
                sock.close()
    return allowed


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _icmp(sockets: NamespaceSockets, chunk: list[tuple[int, Probe]], timeout: float) -> set[int]:
    """Echo requests from one raw socket per (source namespace, family); identifiers tell probes apart."""
    allowed: set[int] = set()
    raw: dict[tuple[str, int], socket.socket] = {}
    ident: dict[int, int] = {}
    by_ident: dict[tuple[str, int, int], int] = {}
    base = int.from_bytes(os.urandom(2), "big")
    for n, (i, probe) in enumerate(chunk):
        ident[i] = (base + n) & 0xFFFF
        by_ident[(probe.src_netns, _family(probe.dst_ip), ident[i])] = i
    deadline = time.monotonic() + timeout
    next_try = {i: 0.0 for i, _p in chunk}
    seq = 0
    with selectors.DefaultSelector() as sel:
        try:
            for _i, probe in chunk:
                fam = family_of(probe.dst_ip)
                family = fam.af
                if (probe.src_netns, family) not in raw:
                    sock = sockets.socket(probe.src_netns, family, socket.SOCK_RAW, fam.icmp_protocol)
                    sock.setblocking(False)
                    raw[(probe.src_netns, family)] = sock
                    sel.register(sock, selectors.EVENT_READ, (probe.src_netns, family))
            while len(allowed) < len(chunk):
                now = time.monotonic()
                if now >= deadline:
                    break
                seq = (seq + 1) & 0xFFFF
                for i, probe in chunk:
                    if i in allowed or now < next_try[i]:
                        continue
                    next_try[i] = now + RETRY_INTERVAL
                    fam = family_of(probe.dst_ip)
                    payload = b"tortie-probe"
                    header = struct.pack("!BBHHH", fam.echo_request, 0, 0, ident[i], seq)
                    # the ICMP checksum; for ICMPv6 the kernel replaces it (it covers a pseudo-header)
                    csum = _checksum(header + payload)
                    packet = struct.pack("!BBHHH", fam.echo_request, 0, csum, ident[i], seq) + payload
                    with contextlib.suppress(OSError):
                        raw[(probe.src_netns, fam.af)].sendto(packet, (probe.dst_ip, 0))
                for key, _mask in sel.select(min(0.05, max(0.0, deadline - time.monotonic()))):
                    src_netns, family = key.data
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    while True:
                        try:
                            data, peer = ready.recvfrom(4096)
                        except OSError:
                            break
                        fam = family_of_af(family)
                        if fam is V4:  # raw IPv4 sockets include the IP header, raw IPv6 ones do not
                            data = data[(data[0] & 0x0F) * 4 :]
                        if len(data) < 8 or data[0] != fam.echo_reply:
                            continue
                        got = struct.unpack("!H", data[4:6])[0]
                        i = by_ident.get((src_netns, family, got), -1)
                        if i >= 0 and ipaddress.ip_address(peer[0].split("%")[0]) == ipaddress.ip_address(
                            dict(chunk)[i].dst_ip
                        ):
                            allowed.add(i)
        finally:
            for sock in raw.values():
                sock.close()
    return allowed
