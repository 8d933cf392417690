"""Netlink framing and the request/ACK/dump/batch exchange (`tortie.kernel.netlink`), and the rtnetlink
client's answers on top of it (`tortie.kernel.rtnl`), against a scripted socket: what is sent, how
replies are matched, how errors are decoded. The kernel's agreement is tested
in tests/integration/test_kernel_rtnl.py."""

from __future__ import annotations

import errno
import ipaddress
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tortie.common.errors import KernelError, NetlinkError
from tortie.kernel import netlink as nl
from tortie.kernel import rtnl_codec as c
from tortie.kernel.rtnl import Rtnl

HDR = struct.Struct("=IHHII")
NEWTHING = 100  # any data message type


def reply(kind: int, seq: int, body: bytes, flags: int = 0) -> bytes:
    length = HDR.size + len(body)
    return HDR.pack(length, kind, flags, seq, 0) + body + b"\0" * (nl.align(length) - length)


def ack(seq: int, error: int = 0, text: str | None = None, capped: bool = True) -> bytes:
    request = HDR.pack(16 if capped else 24, NEWTHING, 5, seq, 0) + (b"" if capped else b"\1" * 8)
    body = struct.pack("=i", -error) + request
    flags = nl.NLM_F_CAPPED if capped else 0
    if text is not None:
        flags |= nl.NLM_F_ACK_TLVS
        body += nl.attr_str(nl.NLMSGERR_ATTR_MSG, text)
    return reply(nl.NLMSG_ERROR, seq, body, flags)


def done(seq: int, flags: int = 0, error: int = 0) -> bytes:
    return reply(nl.NLMSG_DONE, seq, struct.pack("=i", -error), flags | nl.NLM_F_MULTI)


# -- framing ----------------------------------------------------------------------------------------------
def test_attributes_are_padded_and_parse_back() -> None:
    data = nl.attr_str(3, "eth0") + nl.attr_u32(4, 1450) + nl.attr_be16(15, 4789) + nl.attr_u8(7, 0)
    assert len(data) % 4 == 0
    assert struct.unpack_from("=HH", data, 0) == (4 + 5, 3)
    attrs = nl.parse_attrs(data)
    assert nl.get_str(attrs[3]) == "eth0"
    assert nl.get_u32(attrs[4]) == 1450
    assert nl.get_be16(attrs[15]) == 4789 and attrs[7] == b"\0"


@given(
    st.lists(st.tuples(st.integers(1, 0x3FFF), st.binary(max_size=40)), max_size=8, unique_by=lambda t: t[0])
)
def test_any_attribute_list_round_trips(items: list[tuple[int, bytes]]) -> None:
    data = b"".join(nl.attr(kind, payload) for kind, payload in items)
    assert nl.parse_attrs(data) == dict(items)


@given(st.binary(max_size=24), st.binary(max_size=24))
def test_nests_are_flagged_and_their_content_parses_back(first: bytes, second: bytes) -> None:
    outer = nl.nest(18, nl.attr(1, first), nl.attr(2, second))
    assert struct.unpack_from("=HH", outer)[1] == 18 | nl.NLA_F_NESTED
    inner = nl.parse_attrs(outer)[18]  # the flag is masked off
    assert nl.parse_attrs(inner) == {1: first, 2: second}


def test_parsing_stops_at_a_truncated_or_malformed_tail() -> None:
    assert nl.parse_attrs(b"\x02\x00\x01\x00") == {}  # length below the header size
    assert nl.parse_attrs(b"\x01") == {}
    assert nl.parse_attrs(nl.attr_u32(1, 7) + b"\x08\x00") == {1: struct.pack("=I", 7)}
    assert nl.get_u32(b"\1\2") is None and nl.get_str(None) is None


def test_a_message_has_its_length_and_the_request_flag() -> None:
    data = nl.message(16, nl.NLM_F_ACK, 9, b"abcde")
    assert HDR.unpack_from(data) == (16 + 5, 16, nl.NLM_F_ACK | nl.NLM_F_REQUEST, 9, 0)


@pytest.mark.parametrize("capped", [True, False])
def test_extended_ack_text_is_found_after_the_echoed_request(capped: bool) -> None:
    data = ack(3, errno.ENETDOWN, "Nexthop device is not up", capped=capped)
    flags = HDR.unpack_from(data)[2]
    assert nl.error_text(data, HDR.size, len(data), flags) == "Nexthop device is not up"
    plain = ack(3, errno.ENETDOWN)
    assert nl.error_text(plain, HDR.size, len(plain), HDR.unpack_from(plain)[2]) is None


# -- the exchange -----------------------------------------------------------------------------------------
class ScriptedSocket:
    """Stands in for the kernel's side: records what is sent, answers each send with canned datagrams."""

    def __init__(self, replies: list[list[bytes]]) -> None:
        self.sent: list[bytes] = []
        self._replies: Iterator[list[bytes]] = iter(replies)
        self._pending: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        self._pending = list(next(self._replies))
        return len(data)

    def recv_into(self, buffer: memoryview) -> int:
        if not self._pending:
            raise TimeoutError()
        datagram = self._pending.pop(0)
        buffer[: len(datagram)] = datagram
        return len(datagram)

    def close(self) -> None:
        pass


@pytest.fixture
def sock() -> Iterator[nl.NetlinkSocket]:
    real = nl.NetlinkSocket(nl.NETLINK_ROUTE)  # an unprivileged socket; its transport is replaced below
    real.close()
    yield real


def script(sock: nl.NetlinkSocket, replies: list[list[bytes]]) -> ScriptedSocket:
    scripted = ScriptedSocket(replies)
    sock._sock = scripted  # type: ignore[assignment]
    return scripted


def test_a_request_returns_the_data_before_its_ack_and_skips_stale_replies(sock: nl.NetlinkSocket) -> None:
    seq = sock._seq + 1
    sent = script(
        sock, [[reply(NEWTHING, seq - 1, b"old!") + ack(seq - 1), reply(NEWTHING, seq, b"new!") + ack(seq)]]
    )
    assert sock.request(NEWTHING, 0, b"q", "get thing") == [(NEWTHING, b"new!")]
    assert HDR.unpack_from(sent.sent[0])[2] == nl.NLM_F_REQUEST | nl.NLM_F_ACK


def test_a_dump_collects_every_part_until_done(sock: nl.NetlinkSocket) -> None:
    seq = sock._seq + 1
    sent = script(
        sock, [[reply(NEWTHING, seq, b"one!", nl.NLM_F_MULTI) + reply(NEWTHING, seq, b"two!"), done(seq)]]
    )
    assert [body for _kind, body in sock.dump(NEWTHING, b"", "list things")] == [b"one!", b"two!"]
    assert HDR.unpack_from(sent.sent[0])[2] & nl.NLM_F_DUMP == nl.NLM_F_DUMP


def test_an_interrupted_dump_is_retried(sock: nl.NetlinkSocket) -> None:
    seq = sock._seq + 1
    sent = script(
        sock,
        [
            [reply(NEWTHING, seq, b"torn", nl.NLM_F_DUMP_INTR), done(seq, nl.NLM_F_DUMP_INTR)],
            [reply(NEWTHING, seq + 1, b"good"), done(seq + 1)],
        ],
    )
    assert sock.dump(NEWTHING, b"", "list things") == [(NEWTHING, b"good")]
    assert len(sent.sent) == 2


def test_a_dump_interrupted_every_time_fails_with_eagain(sock: nl.NetlinkSocket) -> None:
    seq = sock._seq + 1
    script(sock, [[done(seq + i, nl.NLM_F_DUMP_INTR)] for i in range(5)])
    with pytest.raises(NetlinkError) as err:
        sock.dump(NEWTHING, b"", "list things")
    assert err.value.errno == errno.EAGAIN


def test_an_error_ack_raises_with_errno_and_the_kernels_text(sock: nl.NetlinkSocket) -> None:
    seq = sock._seq + 1
    script(sock, [[ack(seq, errno.ENETDOWN, "Nexthop device is not up")]])
    with pytest.raises(NetlinkError) as err:
        sock.request(NEWTHING, 0, b"", "add route 10.0.0.1/32")
    assert err.value.errno == errno.ENETDOWN
    assert err.value.reason == "Network is down (Nexthop device is not up)"
    assert str(err.value) == "add route 10.0.0.1/32: Network is down (Nexthop device is not up)"
    assert isinstance(err.value, KernelError) and not isinstance(err.value, OSError)


def test_an_error_in_done_and_a_silent_kernel_are_errors_too(sock: nl.NetlinkSocket) -> None:
    seq = sock._seq + 1
    script(sock, [[done(seq, error=errno.ENOENT)], []])
    with pytest.raises(NetlinkError) as err:
        sock.dump(NEWTHING, b"", "list routes")
    assert err.value.errno == errno.ENOENT
    with pytest.raises(NetlinkError) as silent:
        sock.request(NEWTHING, 0, b"", "get thing")
    assert silent.value.errno == errno.ETIMEDOUT


def test_a_batch_numbers_its_messages_and_returns_at_the_acked_one(sock: nl.NetlinkSocket) -> None:
    sock._seq = 50
    first = sock._seq + 1
    parts = [
        (0x10, 0, b"bgn!"),
        (NEWTHING, 0, b"op-1"),
        (NEWTHING, nl.NLM_F_ACK, b"op-2"),
        (0x11, 0, b"end!"),
    ]
    sent = script(sock, [[ack(first - 3), ack(first + 2)]])  # a stale ack of an earlier batch first
    sock.batch(parts, 2, "element batch")
    (datagram,) = sent.sent
    offset, seen = 0, []
    while offset < len(datagram):
        length, kind, flags, seq, _pid = HDR.unpack_from(datagram, offset)
        seen.append((kind, flags, seq))
        offset += nl.align(length)
    assert seen == [
        (0x10, nl.NLM_F_REQUEST, first),
        (NEWTHING, nl.NLM_F_REQUEST, first + 1),
        (NEWTHING, nl.NLM_F_REQUEST | nl.NLM_F_ACK, first + 2),
        (0x11, nl.NLM_F_REQUEST, first + 3),
    ]
    assert sock._seq == first + 3


def test_a_batch_fails_at_the_first_error_of_any_of_its_messages(sock: nl.NetlinkSocket) -> None:
    first = sock._seq + 1
    script(sock, [[ack(first + 1, errno.ENOENT, "set s4-x does not exist"), ack(first + 2, errno.ENOENT)]])
    with pytest.raises(NetlinkError) as err:
        sock.batch(
            [(0x10, 0, b""), (NEWTHING, 0, b""), (NEWTHING, nl.NLM_F_ACK, b""), (0x11, 0, b"")], 2, "b"
        )
    assert err.value.errno == errno.ENOENT and "set s4-x does not exist" in str(err.value)


def test_a_batch_too_big_for_the_send_buffer_is_refused_before_sending(sock: nl.NetlinkSocket) -> None:
    sent = script(sock, [])
    with pytest.raises(NetlinkError) as err:
        sock.batch([(NEWTHING, nl.NLM_F_ACK, bytes(sock.send_limit))], 0, "huge batch")
    assert err.value.errno == errno.EMSGSIZE and sent.sent == []


def test_sequence_numbers_wrap_before_the_u32_limit(sock: nl.NetlinkSocket) -> None:
    sock._seq = 0x7FFFFFFE
    assert sock._reserve(1) == 0x7FFFFFFF
    assert sock._reserve(3) == 1 and sock._seq == 3


# -- the rtnetlink client over the same exchange --------------------------------------------------------
@pytest.fixture
def rtnl() -> Iterator[Rtnl]:
    client = Rtnl()
    client.sock.close()
    yield client


def route_reply(seq: int, dst: str, table: int = 254, protocol: int = 77) -> bytes:
    body = c.route_request(ipaddress.ip_network(dst), table=table, protocol=protocol, oif=3)
    return reply(c.RTM_NEWROUTE, seq, body, nl.NLM_F_MULTI)


def test_lookups_and_deletes_of_what_is_not_there_are_answers_not_errors(rtnl: Rtnl) -> None:
    seq = rtnl.sock._seq + 1
    found = c.link_request(4, name="tortx") + nl.attr(c.IFLA_OPERSTATE, bytes([6]))
    script(
        rtnl.sock,
        [
            [ack(seq, errno.ENODEV)],
            [reply(c.RTM_NEWLINK, seq + 1, found), ack(seq + 1)],
            [ack(seq + 2, errno.ESRCH)],
            [ack(seq + 3, errno.EPERM)],
        ],
    )
    assert rtnl.get_link("tortnope") is None
    link = rtnl.get_link("tortx")
    assert link is not None and (link.ifindex, link.name, link.oper_state) == (4, "tortx", "UP")
    assert rtnl.delete_route(ipaddress.ip_network("10.0.0.0/24")) is False
    with pytest.raises(NetlinkError):
        rtnl.delete_link(4)


def test_route_dumps_are_filtered_here_too_and_a_missing_table_is_empty(rtnl: Rtnl) -> None:
    seq = rtnl.sock._seq + 1
    script(
        rtnl.sock,
        [
            [route_reply(seq, "10.0.0.1/32") + route_reply(seq, "10.0.0.2/32", protocol=12), done(seq)],
            [ack(seq + 1, errno.ENOENT)],
        ],
    )
    assert [str(r.dst) for r in rtnl.routes(c.AF_INET, 254, 77)] == ["10.0.0.1/32"]  # a non-strict kernel
    assert rtnl.routes(c.AF_INET, 4242, 77) == []


def test_route_writes_create_exclusively_unless_replacing(rtnl: Rtnl) -> None:
    seq = rtnl.sock._seq + 1
    sent = script(rtnl.sock, [[ack(seq)], [ack(seq + 1)]])
    rtnl.add_route(ipaddress.ip_network("10.0.0.0/24"), oif=3)
    rtnl.add_route(ipaddress.ip_network("10.0.0.0/24"), oif=3, replace=True)
    flags = [HDR.unpack_from(data)[2] for data in sent.sent]
    create = nl.NLM_F_REQUEST | nl.NLM_F_ACK | nl.NLM_F_CREATE
    assert flags == [create | nl.NLM_F_EXCL, create | nl.NLM_F_REPLACE]
