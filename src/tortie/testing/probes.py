"""Traffic probes for real-kernel policy tests: a tiny server and a concurrent prober.

    python -m tortie.testing.probes serve --tcp 80,8080 --udp 53      (runs until killed)
    python -m tortie.testing.probes probe '[["tcp", "10.0.0.2", 80], ["icmp", "10.0.0.2"],
                                            ["udp", "10.0.0.2", 53, "10.0.0.99"]]'

The server answers every TCP connection and UDP datagram with the peer's address (so a test can
see NAT), then closes. `probe` runs all probes at once (threads) and prints a JSON list with, per
probe, the peer address the server saw (TCP/UDP), "ok" (ICMP echo answered) or null (no answer
within the timeout: dropped). An optional fourth item binds the source address (anti-spoofing
tests). Only ever used inside namespaces a test created.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TIMEOUT = 1.0


def _serve_tcp(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(64)
    while True:
        conn, peer = sock.accept()
        try:
            conn.sendall(f"{peer[0]}\n".encode())
        except OSError:
            pass
        finally:
            conn.close()


def _serve_udp(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    while True:
        _data, peer = sock.recvfrom(2048)
        with contextlib.suppress(OSError):
            sock.sendto(f"{peer[0]}\n".encode(), peer)


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
        with socket.socket(socket.AF_INET, kind) as sock:
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
