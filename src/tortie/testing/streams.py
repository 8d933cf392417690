"""Loss-detecting traffic for restart tests: a TCP sequence stream between two namespaces.

    python -c TCP_SEQUENCE_SERVER                  (in the destination) prints "listening", then
        reads newline-separated integers on port 7070 and exits 1 at the first gap ("gap: expected N
        got M"), else prints "received N" when the sender closes
    python -c TCP_SEQUENCE_CLIENT DST_IP [SECONDS]  (in the source) sends 0, 1, 2, ... every 10 ms
        for SECONDS, or until SIGINT without it, then prints "sent N"

The server listens on a dual-stack socket, so DST_IP may be of either family.
`received N` equal to `sent N` proves that the connection carried every segment through whatever
happened meanwhile (an agent or BIRD restart). Only ever run inside namespaces a test created.
"""

from __future__ import annotations

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
sock = socket.create_connection((sys.argv[1], {TCP_SEQUENCE_PORT}), timeout=10); n = 0
while not stop and time.monotonic() < end:
    sock.sendall(f"{{n}}\\n".encode()); n += 1; time.sleep(0.01)
sock.shutdown(socket.SHUT_WR); sock.recv(1); print(f"sent {{n}}", flush=True)
"""
