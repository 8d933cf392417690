"""Loss-detecting traffic for restart and fault tests: a TCP sequence stream between two namespaces,
and `Streams`, which runs it beside a 100 Hz ping between two workloads of a lab datacenter.

    python -c TCP_SEQUENCE_SERVER                  (in the destination) prints "listening", then
        reads newline-separated integers on port 7070 and exits 1 at the first gap ("gap: expected N
        got M"), else prints "received N" when the sender closes
    python -c TCP_SEQUENCE_CLIENT DST_IP [SECONDS]  (in the source) connects (retrying for up to 15 s
        while the path settles), sends 0, 1, 2, ... every 10 ms for SECONDS, or until SIGINT without
        it, then prints "sent N"

The server listens on a dual-stack socket, so DST_IP may be of either family.
`received N` equal to `sent N` proves that the connection carried every segment through whatever
happened meanwhile (an agent or BIRD restart). Only ever run inside namespaces a test created.

    Streams(dc, src, dst, tcp=True)   ping -i 0.01 (and the TCP sequence stream) from workload `src`
                                      to `dst`'s first address; `.stop()` -> StreamResult; `.kill()`
    StreamResult.lost                 echo requests without a reply, the last one excepted (it may
                                      still be in flight when the ping is stopped)
    StreamResult.window               the longest run of consecutive losses, in seconds (10 ms each)
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tortie.lab.datacenter import Datacenter

PING_INTERVAL = 0.01

TCP_SEQUENCE_PORT = 7070

TCP_SEQUENCE_SERVER = f"""
import socket, sys
srv = socket.socket(socket.AF_INET6); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind(("::", {TCP_SEQUENCE_PORT})); srv.listen(1); print("listening", flush=True)
conn, _ = srv.accept(); expected = 0; buf = b""
while True:
    data = conn.recv(4096)
    if not data:
        break
    buf += data
    *lines, buf = buf.split(b"\\n")
    for line in lines:
        if int(line) != expected:
            print(f"gap: expected {{expected}} got {{int(line)}}", flush=True); sys.exit(1)
        expected += 1
print(f"received {{expected}}", flush=True)
"""

TCP_SEQUENCE_CLIENT = f"""
import signal, socket, sys, time
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
end = time.monotonic() + float(sys.argv[2]) if len(sys.argv) > 2 else float("inf")
deadline = time.monotonic() + 15  # the first connection: the path may be settling (routes, NDP)
while True:
    try:
        sock = socket.create_connection((sys.argv[1], {TCP_SEQUENCE_PORT}), timeout=10); break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
n = 0
while not stop and time.monotonic() < end:
    sock.sendall(f"{{n}}\\n".encode()); n += 1; time.sleep(0.01)
sock.shutdown(socket.SHUT_WR); sock.recv(1); print(f"sent {{n}}", flush=True)
"""


@dataclass
class StreamResult:
    """What `Streams.stop` saw (tcp_sent -1 / tcp_received -2 when no TCP stream ran or it said nothing)."""

    ping_output: str
    ping_sent: int
    ping_received: int
    ping_seqs: list[int] = field(default_factory=list)
    tcp_client: str = ""
    tcp_server: str = ""
    tcp_sent: int = -1
    tcp_received: int = -2

    @property
    def missing(self) -> list[int]:
        """Sequence numbers (1-based) of echo requests that got no reply, the last one excepted."""
        got = set(self.ping_seqs)
        return [n for n in range(1, self.ping_sent) if n not in got]

    @property
    def lost(self) -> int:
        return len(self.missing)

    @property
    def window(self) -> float:
        """The longest outage: consecutive requests without reply, times the ping interval."""
        longest = run = 0
        previous = None
        for n in self.missing:
            run = run + 1 if previous is not None and n == previous + 1 else 1
            longest = max(longest, run)
            previous = n
        return longest * PING_INTERVAL

    def summary(self) -> str:
        tcp = f", TCP {self.tcp_received}/{self.tcp_sent} segments" if self.tcp_sent >= 0 else ""
        return (f"ping {self.ping_sent - 1 - self.lost}/{self.ping_sent - 1} replied at 100 Hz, "
                f"{self.lost} lost, longest outage {self.window * 1000:.0f} ms{tcp}")


class Streams:
    """A 10 ms ping stream and a 10 ms TCP sequence stream from workload `src` to `dst` of a lab."""

    def __init__(self, dc: Datacenter, src: str, dst: str, tcp: bool = True) -> None:
        lab = dc.lab
        ip = lab.workload(dst).ips[0]
        self.server: subprocess.Popen[str] | None = None
        self.client: subprocess.Popen[str] | None = None
        if tcp:
            self.server = subprocess.Popen(
                ["ip", "netns", "exec", lab.netns(dst), sys.executable, "-c", TCP_SEQUENCE_SERVER],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self.server.stdout is not None and self.server.stdout.readline().strip() == "listening"
            self.client = subprocess.Popen(
                ["ip", "netns", "exec", lab.netns(src), sys.executable, "-c", TCP_SEQUENCE_CLIENT, ip],
                stdout=subprocess.PIPE,
                text=True,
            )
        self.ping = subprocess.Popen(
            ["ip", "netns", "exec", lab.netns(src), "ping", "-n", "-i", str(PING_INTERVAL), ip],
            stdout=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> StreamResult:
        """Stop the senders (SIGINT: they print their totals) and collect what happened."""
        for proc in (self.ping, self.client):
            if proc is not None:
                proc.send_signal(signal.SIGINT)
        ping_out, _ = self.ping.communicate(timeout=20)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", ping_out)
        result = StreamResult(ping_out, *((int(m.group(1)), int(m.group(2))) if m else (0, 0)),
                              ping_seqs=[int(s) for s in re.findall(r"icmp_seq=(\d+)", ping_out)])
        if self.client is not None and self.server is not None:
            result.tcp_client, _ = self.client.communicate(timeout=20)
            if "sent" not in result.tcp_client and self.server.poll() is None:
                self.server.kill()  # the client never connected: the server would wait forever
            result.tcp_server, _ = self.server.communicate(timeout=20)
            sent = re.search(r"sent (\d+)", result.tcp_client)
            got = re.search(r"received (\d+)", result.tcp_server)
            result.tcp_sent = int(sent.group(1)) if sent else -1
            result.tcp_received = int(got.group(1)) if got else -2
        return result

    def kill(self) -> None:
        for proc in (self.ping, self.client, self.server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
