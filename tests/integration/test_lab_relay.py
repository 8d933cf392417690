"""The lab's TCP relay (`python -m tortie.lab.relay`): root-namespace loopback -> a lab namespace.

A one-host lab; an echo server on 127.0.0.1:7000 inside the host namespace. Through the relay the root
namespace reaches it; while the server is down the relay's port refuses connections (so etcd clients
fail over at once), and it comes back on the same port when the server does.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.lab import Lab
from tortie.lab.relay import start_relay
from tortie.testing.netns import unique_name

pytestmark = pytest.mark.root

ECHO = """
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 7000)); srv.listen(8)
while True:
    conn, _ = srv.accept()
    conn.sendall(conn.recv(100)); conn.close()
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    built = Lab.create(unique_name("relay"), tmp_path / "lab", hosts=1)
    try:
        yield built
    finally:
        built.down()


def echo_through(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(b"hello")
        return sock.recv(100)


def wait(predicate: object, what: str, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_forwards_and_refuses_while_the_upstream_is_down(lab: Lab, tmp_path: Path) -> None:
    server = lab.start_process("h1", [sys.executable, "-c", ECHO])
    port = start_relay(lab, [f"{lab.netns('h1')}:7000"], tmp_path / "relay.json")[0]
    wait(lambda: not refused(port), "the relay listening")
    assert echo_through(port) == b"hello"

    lab.stop_process(server)
    wait(lambda: refused(port), "the relay port refusing while nothing listens upstream")
    lab.start_process("h1", [sys.executable, "-c", ECHO])
    wait(lambda: not refused(port), "the relay port back on the same number")
    assert echo_through(port) == b"hello"
    relay = lab.process_by_role("relay")
    assert relay is not None and lab.process_running(relay.pid)
