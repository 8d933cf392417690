"""Traffic probes for real-kernel policy tests: a tiny server and a concurrent prober.

    python -m tortie.testing.probes serve --tcp 80,8080 --udp 53      (runs until killed)
    python -m tortie.testing.probes probe '[["tcp", "10.0.0.2", 80], ["icmp", "10.0.0.2"],
                                            ["udp", "10.0.0.2", 53, "10.0.0.99"]]'

The server answers every TCP connection and UDP datagram with the peer's address (so a test can
see NAT), then closes. `probe` runs all probes at once (threads) and prints a JSON list with, per
probe, the peer address the server saw (TCP/UDP), "ok" (ICMP echo answered) or null (no answer
within the timeout: dropped). An optional fourth item binds the source address (anti-spoofing
tests). Both families: the server listens on a dual-stack socket and reports an IPv4 peer in its
plain form (not `::ffff:a.b.c.d`); a probe's socket takes the destination's family. Only ever used
inside namespaces a test created.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tortie.common.ipfamily import family_of

TIMEOUT = 1.0


def _listener(kind: int, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    return sock


def _peer(address: str) -> str:
    """An IPv4 peer of a dual-stack socket arrives mapped (::ffff:a.b.c.d, RFC 4291 2.5.5.2)."""
    mapped = ipaddress.IPv6Address(address.split("%")[0]).ipv4_mapped
    return str(mapped) if mapped is not None else address


def _serve_tcp(port: int) -> None:
    sock = _listener(socket.SOCK_STREAM, port)
    sock.listen(64)
    while True:
        conn, peer = sock.accept()
        try:
            conn.sendall(f"{_peer(peer[0])}\n".encode())
        except OSError:
            pass
        finally:
            conn.close()


def _serve_udp(port: int) -> None:
    sock = _listener(socket.SOCK_DGRAM, port)
    while True:
        _data, peer = sock.recvfrom(2048)
        with contextlib.suppress(OSError):
            sock.sendto(f"{_peer(peer[0])}\n".encode(), peer)


def serve(tcp: list[int], udp: list[int]) -> None:
    threads = [threading.Thread(target=_serve_tcp, args=(p,), daemon=True) for p in tcp]
    threads += [threading.Thread(target=_serve_udp, args=(p,), daemon=True) for p in udp]
    for t in threads:
        t.start()
    print("serving", flush=True)
    threading.Event().wait()


def _probe(item: list[Any]) -> str | None:
    proto, dst = item[0], item[1]
    port = int(item[2]) if len(item) > 2 and item[2] is not None else 0
    src = item[3] if len(item) > 3 else None
    try:
        if proto == "icmp":
            argv = ["ping", "-n", "-q", "-c", "1", "-W", str(int(TIMEOUT)), dst]
            if src:
                argv[1:1] = ["-I", src]
            done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT + 2)
            return "ok" if done.returncode == 0 else None
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(family_of(dst).af, kind) as sock:
            sock.settimeout(TIMEOUT)
            if src:
                sock.bind((src, 0))
            if proto == "tcp":
                sock.connect((dst, port))
                data = sock.recv(256)
            else:
                sock.sendto(b"probe", (dst, port))
                data, _ = sock.recvfrom(256)
            return data.decode().strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def probe(items: list[list[Any]]) -> list[str | None]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(_probe, items))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probes")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--tcp", default="")
    s.add_argument("--udp", default="")
    p = sub.add_parser("probe")
    p.add_argument("items")
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve([int(x) for x in args.tcp.split(",") if x], [int(x) for x in args.udp.split(",") if x])
        return 0
    print(json.dumps(probe(json.loads(args.items))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
