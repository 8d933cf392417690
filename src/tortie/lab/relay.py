"""A TCP relay from the root namespace's loopback into lab namespaces (etcd mode of `tortie lab`).

    python -m tortie.lab.relay --ports-file FILE NETNS:PORT [NETNS:PORT ...]

For each NETNS:PORT it listens on 127.0.0.1:<free port> in the namespace it runs in (the root
namespace) and forwards every connection to 127.0.0.1:PORT inside NETNS (the socket is created by a
thread that entered NETNS). The chosen ports are written, in argument order, to FILE as
`{"ports": [...]}` once every listener is up. Why: the etcd members live in namespaces on the lab
fabric (where the hosts reach them, like a real cluster), and commands run in the root namespace
(`tortie` after `eval "$(tortie lab env)"`, tests) need a way in that changes nothing in the root
namespace but loopback sockets.

A member that is down must look down: while its upstream refuses connections the relay closes that
listener (clients get "connection refused" and fail over at once, which the etcd client only does
for requests that provably never reached a server), and re-opens the same port when it answers again.
Runs until SIGTERM. `start_relay(lab, targets, ports_file)` starts it as a process of a lab (role
`relay`, in the root namespace) and returns its ports once it listens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tortie.kernel.netns import NetnsWorker

if TYPE_CHECKING:
    from tortie.lab.lab import Lab

CHECK_INTERVAL = 0.3


@dataclass
class Route:
    netns: str
    upstream_port: int
    worker: NetnsWorker
    port: int = 0
    listener: socket.socket | None = None

    def connect(self, timeout: float = 1.0) -> socket.socket:
        return self.worker.call(socket.create_connection, ("127.0.0.1", self.upstream_port), timeout)

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.listener = sock

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _serve(client: socket.socket, route: Route) -> None:
    try:
        upstream = route.connect()
    except OSError:
        with contextlib.suppress(OSError):  # RST: the client sees a reset, not a silent hang
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
        return
    upstream.settimeout(None)
    client.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _upstream_alive(route: Route) -> bool:
    try:
        route.connect(0.5).close()
    except OSError:
        return False
    return True


def run(routes: Sequence[Route], ports_file: str) -> None:
    for route in routes:
        route.open()
    tmp = f"{ports_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"ports": [r.port for r in routes], "pid": os.getpid()}, fh)
    os.replace(tmp, ports_file)
    next_check = 0.0
    with selectors.DefaultSelector() as sel:
        registered: dict[int, socket.socket] = {}
        while True:
            now = time.monotonic()
            if now >= next_check:
                next_check = now + CHECK_INTERVAL
                for i, route in enumerate(routes):
                    alive = _upstream_alive(route)
                    if not alive and route.listener is not None:
                        listener = registered.pop(i, None)  # not registered yet on the first check
                        if listener is not None:
                            sel.unregister(listener)
                        route.close()
                    elif alive and route.listener is None:
                        with contextlib.suppress(OSError):
                            route.open()
            for i, route in enumerate(routes):
                if route.listener is not None and i not in registered:
                    registered[i] = route.listener
                    sel.register(route.listener, selectors.EVENT_READ, i)
            for key, _mask in sel.select(0.1):
                route = routes[int(key.data)]
                if route.listener is None:
                    continue
                with contextlib.suppress(BlockingIOError, OSError):
                    client, _addr = route.listener.accept()
                    threading.Thread(target=_serve, args=(client, route), daemon=True).start()


def start_relay(lab: Lab, targets: Sequence[str], ports_file: Path, *, timeout: float = 30.0) -> list[int]:
    """Start the relay for `targets` (NETNS:PORT) as the lab's `relay` process; its ports, in order."""
    from tortie.lab.errors import LabError

    lab.records.record_file(ports_file)
    argv = [sys.executable, "-m", "tortie.lab.relay", "--ports-file", str(ports_file), *targets]
    lab.processes.start(None, argv, role="relay")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return [int(p) for p in json.loads(ports_file.read_text())["ports"]]
        except (OSError, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise LabError("the relay did not start (see its log under the lab's logs/)") from None
            time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tortie.lab.relay", description=__doc__.split("\n")[0])
    parser.add_argument("--ports-file", required=True)
    parser.add_argument("targets", nargs="+", metavar="NETNS:PORT")
    args = parser.parse_args(argv)
    routes = []
    for target in args.targets:
        netns, _, port = target.rpartition(":")
        if not netns or not port.isdigit():
            parser.error(f"bad target {target!r}: expected NETNS:PORT")
        routes.append(Route(netns, int(port), NetnsWorker(netns, name="lab-relay")))
    run(routes, args.ports_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
