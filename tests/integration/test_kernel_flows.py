"""Conntrack events and dumps, and NFLOG, against the real kernel in a throwaway namespace.

A namespace with loopback up, `nf_conntrack_acct=1` and an nft table that logs the first packet of
each new connection to group 7 (prefix "allow-x") and drops TCP to port 9 after logging it to
group 8 ("deny-y"). TCP and UDP exchanges on 127.0.0.1 / ::1, an ICMP echo, then: the NFLOG
listener saw the first packets with their prefixes and tuples; the conntrack dump holds the
connections with counters that match what was sent; the event socket saw NEW and DESTROY events.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tortie.kernel.conntrack import ConntrackEvents, CtFlow, conntrack_socket, dump_flows, flush_table
from tortie.kernel.netns import entered
from tortie.kernel.nflog import LogPacket, NflogListener
from tortie.kernel.sysctl import write_sysctl
from tortie.testing.netns import throwaway_netns

pytestmark = pytest.mark.root

RULES = """
table inet t {
  chain out {
    type filter hook output priority 0; policy accept;
    ct state new tcp dport 9 limit rate 100/second log group 8 snaplen 128 prefix "deny-y"
    ct state new tcp dport 9 counter drop
    ct state new log group 7 snaplen 128 prefix "allow-x"
  }
}
"""


@pytest.fixture
def ns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, nftables)")
    with throwaway_netns("kfl") as name:
        subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=RULES, text=True, check=True)
        yield name


def _tcp_exchange(family: int, host: str, payload: int) -> int:
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        got = 0
        while got < payload:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        conn.sendall(b"ok")
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client = socket.create_connection((host, port))
    client.sendall(b"x" * payload)
    assert client.recv(2) == b"ok"
    client.close()
    thread.join(5)
    server.close()
    return int(port)


def _drain(reader: NflogListener | ConntrackEvents, until: float) -> list[object]:
    out: list[object] = []
    while time.monotonic() < until:
        items, _lost = reader.read()
        out += items
        time.sleep(0.05)
    return out


def test_nflog_conntrack_events_and_dump(ns: str) -> None:
    with entered(ns):
        write_sysctl("net/netfilter/nf_conntrack_acct", "1")
        listener = NflogListener((7, 8), flush_centis=5)
        events = ConntrackEvents()
        dumper = conntrack_socket()
    try:
        with entered(ns):
            tcp4 = _tcp_exchange(socket.AF_INET, "127.0.0.1", 100_000)
            tcp6 = _tcp_exchange(socket.AF_INET6, "::1", 5_000)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.sendto(b"y" * 300, ("127.0.0.1", 5353))
            denied = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            denied.settimeout(0.3)
            with pytest.raises(OSError):
                denied.connect(("127.0.0.1", 9))
            subprocess.run(["ping", "-c", "1", "-W", "1", "127.0.0.1"], capture_output=True, check=False)
        logged = [p for p in _drain(listener, time.monotonic() + 0.5) if isinstance(p, LogPacket)]
        by_prefix = {(p.prefix, p.tuple.protocol, p.tuple.dport): p for p in logged}
        first = by_prefix[("allow-x", 6, tcp4)]
        assert first.tuple.src == "127.0.0.1" and first.tuple.dst == "127.0.0.1" and first.group == 7
        assert first.length >= 40
        assert ("allow-x", 6, tcp6) in by_prefix and by_prefix[("allow-x", 6, tcp6)].tuple.src == "::1"
        assert ("allow-x", 17, 5353) in by_prefix
        assert ("deny-y", 6, 9) in by_prefix and by_prefix[("deny-y", 6, 9)].group == 8
        icmp = [p for p in logged if p.tuple.protocol == 1]
        assert icmp and icmp[0].tuple.dport == 8 * 256  # echo request, code 0

        with entered(ns):
            table = dump_flows(dumper)
        flows = {f.tuple: f for f in table}
        udp_flow = next(f for t, f in flows.items() if t.protocol == 17 and t.dport == 5353)
        assert udp_flow.packets_orig == 1 and udp_flow.bytes_orig == 300 + 28
        tcp_flow = next(f for t, f in flows.items() if t.protocol == 6 and t.dport == tcp4)
        # payload plus headers: at least what was sent, within TCP/IP overhead
        assert 100_000 < tcp_flow.bytes_orig < 110_000 and tcp_flow.bytes_reply > 0 and tcp_flow.id > 0
        assert not any(t.dport == 9 for t in flows)  # dropped: never confirmed

        seen = [e for e in _drain(events, time.monotonic() + 0.3) if isinstance(e, CtFlow)]
        news = {e.tuple for e in seen if not e.destroyed}
        assert tcp_flow.tuple in news and udp_flow.tuple in news
        with entered(ns):
            flush_table(dumper)
            assert dump_flows(dumper) == []
        gone = [e for e in _drain(events, time.monotonic() + 0.3) if isinstance(e, CtFlow)]
        final = next(e for e in gone if e.destroyed and e.tuple == tcp_flow.tuple)
        assert final.bytes_orig == tcp_flow.bytes_orig and final.id == tcp_flow.id
    finally:
        listener.close()
        events.close()
        dumper.close()
