"""BIRD control-socket client and the parsing of its answers (no BIRD needed: a fake socket server
replays answers in BIRD 2.0.12's format, as recorded from a real BIRD)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.bgp.control import BirdCommandError, BirdControl, BirdNotRunning, Reply
from tortie.bgp.session import PeerType
from tortie.bgp.status import (
    decode_peer_name,
    parse_protocols,
    parse_route_prefixes,
    peer_rows,
    query_advertised,
)

# `show protocols all` as BIRD 2.0.12 sends it (trimmed), with `timeformat protocol iso long`.
PROTOCOLS_ALL = """\
2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     2026-11-26 03:56:11
1006-
1002-kernel_v4  Kernel     master4    up     2026-11-26 03:56:11
1006-  Channel ipv4
     State:          UP
     Table:          master4

1002-Mesh_172_31_0_2 BGP        ---        up     2026-11-26 03:56:12  Established
1006-  Description:    node-to-node mesh
   BGP state:          Established
     Neighbor address: 172.31.0.2
     Neighbor AS:      64512
     Local AS:         64512
   Channel ipv4
     State:          UP

1002-Node_172_31_0_11 BGP        ---        start  2026-11-26 03:57:01  Active   Socket: Connection refused
1006-  Description:    route reflector
   BGP state:          Active
     Neighbor address: 172.31.0.11
     Neighbor AS:      64512
     Local AS:         64512
     Connect delay:    0.292/0
     Last error:       Socket: Connection refused
   Channel ipv4
     State:          DOWN

1002-Global_fd00__fe_port_1179 BGP        ---        start  2026-11-26 03:57:02  Connect
1006-  Description:    global
   BGP state:          Connect
     Neighbor address: fd00::fe

1002-Node_192_0_2_1 BGP        ---        down   2026-11-26 03:57:03
1006-  BGP state:          Down
     Neighbor address: 192.0.2.1

1002-custom BGP        ---        up     2026-11-26 03:57:03  Established
1006-  BGP state:          Established

""" + "0000 \n"  # BIRD ends every answer with "0000 " (code, space)

SHOW_ROUTE = """\
1007-Table master4:
 10.65.1.0/26         blackhole [kernel_v4 03:56:11.363] * (200)
                      blackhole [tortie_blocks_v4 03:56:11.362] (200)
1007-10.65.2.7/32         unicast [kernel_v4 03:56:11.363] * (200)
 \tdev cali1
1008-\tType: inherit univ
""" + "0000 \n"  # BIRD ends every answer with "0000 " (code, space)


def replies(text: str) -> list[Reply]:
    out: list[Reply] = []
    code = 0
    for line in text.splitlines():
        if line[:4].isdigit() and line[4:5] in ("-", " "):
            code = int(line[:4])
            out.append(Reply(code, line[5:]))
        else:
            out.append(Reply(code, line[1:]))
    return out


def test_parse_protocols_and_peer_rows() -> None:
    protocols = parse_protocols(replies(PROTOCOLS_ALL))
    assert [p.name for p in protocols][:3] == ["device1", "kernel_v4", "Mesh_172_31_0_2"]
    rows = {r.name: r for r in peer_rows(protocols)}
    assert set(rows) == {"Mesh_172_31_0_2", "Node_172_31_0_11", "Global_fd00__fe_port_1179", "Node_192_0_2_1"}
    mesh = rows["Mesh_172_31_0_2"]
    assert (mesh.address, mesh.peer_type, mesh.state, mesh.since, mesh.info, mesh.established) == (
        "172.31.0.2", "node-to-node mesh", "up", "2026-11-26 03:56:12", "Established", True)
    rr = rows["Node_172_31_0_11"]
    assert (rr.peer_type, rr.established) == ("route reflector", False)
    assert rr.info == "Active  Socket: Connection refused"
    assert rows["Global_fd00__fe_port_1179"].address == "fd00::fe"
    assert rows["Global_fd00__fe_port_1179"].info == "Connect"
    down = rows["Node_192_0_2_1"]
    assert (down.peer_type, down.info) == ("node specific", "Down")  # no description: from the name


def test_decode_peer_names() -> None:
    assert decode_peer_name("Mesh_10_0_0_1") == (PeerType.MESH, "10.0.0.1")
    assert decode_peer_name("Global_fd00_31__fe_port_1179") == (PeerType.GLOBAL, "fd00:31::fe")
    assert decode_peer_name("Node_fd00__1") == (PeerType.NODE, "fd00::1")
    assert decode_peer_name("kernel_v4") is None


def test_parse_route_prefixes() -> None:
    assert parse_route_prefixes(replies(SHOW_ROUTE)) == ["10.65.1.0/26", "10.65.2.7/32"]


class FakeBird:
    """A unix-socket server answering like BIRD: greeting, then canned answers per command."""

    def __init__(self, path: str, answers: dict[str, str]) -> None:
        self.path = path
        self.answers = answers
        self.received: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rwb")
                f.write(b"0001 BIRD 2.0.12 ready.\n")
                f.flush()
                for raw in f:
                    cmd = raw.decode().strip()
                    self.received.append(cmd)
                    f.write(b"+ an asynchronous notice\n")
                    answer = self.answers.get(cmd, "9001 syntax error, unexpected CF_SYM_UNDEFINED\n")
                    f.write(answer.encode())
                    f.flush()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def fake_bird(tmp_path: Path) -> Iterator[FakeBird]:
    fake = FakeBird(str(tmp_path / "bird.ctl"), {
        "show protocols all": PROTOCOLS_ALL,
        "show protocols": "2002-Name       Proto\n"
                          "1002-kernel_v4  Kernel     master4    up     2026-11-26 03:56:11  \n0000 \n",
        "show route where tortie_local_route_v4()": SHOW_ROUTE,
        "configure": "0002-Reading configuration from /x/bird.conf\n0003 Reconfigured\n",
        'configure check "/x/bad.conf"': "8002 /x/bad.conf, line 3: syntax error\n",
    })
    yield fake
    fake.close()


def test_control_client_speaks_the_protocol(fake_bird: FakeBird) -> None:
    with BirdControl(fake_bird.path) as ctl:
        assert ctl.version == "BIRD 2.0.12"
        rows = peer_rows(parse_protocols(ctl.command("show protocols all")))
        assert len(rows) == 4
        assert query_advertised(ctl) == ["10.65.1.0/26", "10.65.2.7/32"]
        assert ctl.configure() == "Reconfigured"
        with pytest.raises(BirdCommandError, match="syntax error"):
            ctl.command('configure check "/x/bad.conf"')
        with pytest.raises(BirdCommandError):
            ctl.command("nonsense")
        with pytest.raises(ValueError):
            ctl.command("two\nlines")
    assert fake_bird.received[:2] == ["show protocols all", "show protocols"]


def test_no_bird_means_bird_not_running(tmp_path: Path) -> None:
    with pytest.raises(BirdNotRunning, match="BIRD is not running"):
        BirdControl(str(tmp_path / "missing.ctl"))
