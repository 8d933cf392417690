"""rtnetlink wire format (encode/decode) and the request/reply protocol against a scripted socket."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

import pytest

from tortie.dataplane.drivers import rtnetlink as rt

HDR = struct.Struct("=IHHII")
RTMSG = struct.Struct("=BBBBBBBBI")
IFINFO = struct.Struct("=BxHiII")


def message(kind: int, seq: int, body: bytes, flags: int = 0) -> bytes:
    length = HDR.size + len(body)
    return HDR.pack(length, kind, flags, seq, 0) + body + b"\0" * ((4 - length % 4) % 4)


def ack(seq: int, error: int = 0, text: str | None = None) -> bytes:
    body = struct.pack("=i", -error) + HDR.pack(16, 0, 0, seq, 0)
    flags = 0x100  # capped
    if text is not None:
        flags |= rt.NLM_F_ACK_TLVS
        body += rt.attr(rt.NLMSGERR_ATTR_MSG, text.encode() + b"\0")
    return message(rt.NLMSG_ERROR, seq, body, flags)


def done(seq: int, flags: int = 0) -> bytes:
    return message(rt.NLMSG_DONE, seq, struct.pack("=i", 0), flags | rt.NLM_F_MULTI)


def link_body(index: int, name: str, flags: int = 1, oper: int = 6) -> bytes:
    return (IFINFO.pack(0, 1, index, flags, 0) + rt.attr(rt.IFLA_IFNAME, name.encode() + b"\0")
            + rt.attr(rt.IFLA_OPERSTATE, bytes([oper])))


def route_msg_body(dst: str, dst_len: int, table: int = 254, oif: int | None = 7) -> bytes:
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    body = RTMSG.pack(family, dst_len, 0, 0, table if table < 256 else 0, 77, 253, 1, 0)
    body += rt.u32_attr(rt.RTA_TABLE, table) + rt.attr(rt.RTA_DST, socket.inet_pton(family, dst))
    if oif is not None:
        body += rt.u32_attr(rt.RTA_OIF, oif)
    return body


def test_attributes_are_padded_and_parsed_back() -> None:
    encoded = rt.attr(rt.IFLA_IFNAME, b"ab\0") + rt.u32_attr(rt.RTA_TABLE, 1000)
    assert len(encoded) == 8 + 8
    assert rt.parse_attrs(encoded, 0, len(encoded)) == {
        rt.IFLA_IFNAME: b"ab\0",
        rt.RTA_TABLE: struct.pack("=I", 1000),
    }


def test_route_body_v4_and_big_table() -> None:
    body = rt.route_body(family=socket.AF_INET, dst="10.1.2.3/32", table=1000, protocol=77, scope=253,
                         rtype=1, oif=9)
    family, dst_len, _, _, table, protocol, scope, rtype, _ = RTMSG.unpack_from(body)
    assert (family, dst_len, table, protocol, scope, rtype) == (socket.AF_INET, 32, 0, 77, 253, 1)
    attrs = rt.parse_attrs(body, RTMSG.size, len(body))
    assert attrs[rt.RTA_DST] == bytes([10, 1, 2, 3])
    assert struct.unpack("=I", attrs[rt.RTA_TABLE])[0] == 1000
    assert struct.unpack("=I", attrs[rt.RTA_OIF])[0] == 9
    assert rt.RTA_GATEWAY not in attrs


def test_route_body_v6_blackhole_and_gateway() -> None:
    body = rt.route_body(family=socket.AF_INET6, dst="fd00:1::/122", table=254, protocol=77, scope=0, rtype=6)
    assert RTMSG.unpack_from(body)[:2] == (socket.AF_INET6, 122)
    assert rt.RTA_OIF not in rt.parse_attrs(body, RTMSG.size, len(body))
    via = rt.route_body(family=socket.AF_INET, dst="10.0.0.0/8", table=254, protocol=77, scope=0, rtype=1,
                        gateway="192.0.2.1")
    assert rt.parse_attrs(via, RTMSG.size, len(via))[rt.RTA_GATEWAY] == bytes([192, 0, 2, 1])


def test_decode_route_and_link() -> None:
    body = route_msg_body("fd00::5", 128, table=1000)
    route = rt.decode_route(body, 0, len(body))
    got = (route.family, route.dst, route.dst_len, route.table, route.protocol, route.oif, route.gateway)
    assert got == (socket.AF_INET6, "fd00::5", 128, 1000, 77, 7, None)
    assert not route.multipath
    link = rt.decode_link(link_body(3, "tortabc", oper=2), 0, len(link_body(3, "tortabc", oper=2)))
    assert link == rt.LinkRecord(index=3, name="tortabc", flags=1, oper_state="DOWN")


class ScriptedSocket:
    """Stands in for the netlink socket: records sends, replays canned datagrams (seq patched in)."""

    def __init__(self, replies: list[list[bytes]]) -> None:
        self.sent: list[bytes] = []
        self._replies: Iterator[list[bytes]] = iter(replies)
        self._pending: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        self._pending = list(next(self._replies))
        return len(data)

    def recv_into(self, buffer: memoryview) -> int:
        datagram = self._pending.pop(0)
        buffer[: len(datagram)] = datagram
        return len(datagram)

    def close(self) -> None:
        pass


@pytest.fixture
def rtnl() -> Iterator[rt.RtnlSocket]:
    sock = rt.RtnlSocket()  # an unprivileged NETLINK_ROUTE socket; replaced by the script below
    sock._sock.close()
    yield sock


def script(sock: rt.RtnlSocket, replies: list[list[bytes]]) -> ScriptedSocket:
    scripted = ScriptedSocket(replies)
    sock._sock = scripted  # type: ignore[assignment]
    return scripted


def test_dump_collects_parts_and_skips_stale_replies(rtnl: rt.RtnlSocket) -> None:
    seq = rtnl._seq + 1
    script(rtnl, [[
        message(rt.RTM_NEWLINK, seq - 1, link_body(9, "stale")) + ack(seq - 1),
        message(rt.RTM_NEWLINK, seq, link_body(1, "lo"), rt.NLM_F_MULTI)
        + message(rt.RTM_NEWLINK, seq, link_body(2, "tort1"), rt.NLM_F_MULTI),
        done(seq),
    ]])
    assert [(link.index, link.name, link.oper_state) for link in rtnl.dump_links()] == [
        (1, "lo", "UP"), (2, "tort1", "UP")]


def test_interrupted_dump_is_retried(rtnl: rt.RtnlSocket) -> None:
    seq = rtnl._seq + 1
    sent = script(rtnl, [
        [message(rt.RTM_NEWROUTE, seq, route_msg_body("10.0.0.1", 32), rt.NLM_F_MULTI | rt.NLM_F_DUMP_INTR),
         done(seq, rt.NLM_F_DUMP_INTR)],
        [message(rt.RTM_NEWROUTE, seq + 1, route_msg_body("10.0.0.2", 32), rt.NLM_F_MULTI), done(seq + 1)],
    ])
    routes = rtnl.dump_routes(socket.AF_INET, 254, 77)
    assert [route.dst for route in routes] == ["10.0.0.2"]
    assert len(sent.sent) == 2


def test_error_ack_raises_with_errno_and_kernel_message(rtnl: rt.RtnlSocket) -> None:
    seq = rtnl._seq + 1
    script(rtnl, [[ack(seq, errno.ENETDOWN, "Nexthop device is not up")]])
    with pytest.raises(OSError) as err:
        rtnl.new_route(rt.route_body(family=socket.AF_INET, dst="10.0.0.1/32", table=254, protocol=77,
                                     scope=253, rtype=1, oif=5))
    assert err.value.errno == errno.ENETDOWN
    assert "Nexthop device is not up" in str(err.value)


def test_get_link_missing_is_none_and_found_is_decoded(rtnl: rt.RtnlSocket) -> None:
    seq = rtnl._seq + 1
    found_reply = [message(rt.RTM_NEWLINK, seq + 1, link_body(4, "tortx")), ack(seq + 1)]
    script(rtnl, [[ack(seq, errno.ENODEV)], found_reply])
    assert rtnl.get_link("tortnope") is None
    found = rtnl.get_link("tortx")
    assert found is not None and found.index == 4


def test_dump_of_missing_table_is_empty(rtnl: rt.RtnlSocket) -> None:
    seq = rtnl._seq + 1
    script(rtnl, [[ack(seq, errno.ENOENT)]])
    assert rtnl.dump_routes(socket.AF_INET, 4242, 77) == []


def test_requests_carry_the_filter_and_flags(rtnl: rt.RtnlSocket) -> None:
    seq = rtnl._seq + 1
    sent = script(rtnl, [[done(seq)], [ack(seq + 1)]])
    rtnl.dump_routes(socket.AF_INET6, 1000, 77)
    length, kind, flags, msg_seq, _ = HDR.unpack_from(sent.sent[0])
    assert (kind, flags & rt.NLM_F_DUMP, msg_seq) == (rt.RTM_GETROUTE, rt.NLM_F_DUMP, seq)
    assert length == len(sent.sent[0])
    family, _, _, _, table, protocol, _, _, _ = RTMSG.unpack_from(sent.sent[0], HDR.size)
    assert (family, table, protocol) == (socket.AF_INET6, 0, 77)
    attrs = rt.parse_attrs(sent.sent[0], HDR.size + RTMSG.size, len(sent.sent[0]))
    assert struct.unpack("=I", attrs[rt.RTA_TABLE])[0] == 1000
    rtnl.del_route(rt.route_body(family=socket.AF_INET, dst="10.0.0.0/24", table=254, protocol=77, scope=255,
                                 rtype=6))
    _, kind, flags, _, _ = HDR.unpack_from(sent.sent[1])
    assert kind == rt.RTM_DELROUTE and flags & rt.NLM_F_ACK and flags & rt.NLM_F_REQUEST
