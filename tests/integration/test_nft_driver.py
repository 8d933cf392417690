"""The nftables conformance suite against the real kernel (the agent's driver configuration, the
library alone, the nft command alone), each test in its own throwaway network namespace; and the
raw nfnetlink element path checked against the kernel's own set lookups with real packets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tortie.dataplane.drivers.nftables import NftablesDriver
from tortie.kernel.netns import NetnsWorker
from tortie.testing.netns import ip, throwaway_netns
from tortie.testing.nft_conformance import NftDriverConformance

pytestmark = pytest.mark.root


class TestLibNftables(NftDriverConformance):
    """The agent's configuration: element-only batches over raw nfnetlink, other batches through
    the library, listings through the `nft` command."""

    @pytest.fixture
    def nft(self) -> Iterator[NftablesDriver]:
        with throwaway_netns("nft") as ns:
            driver = NftablesDriver(ns)
            assert driver.backend == "libnftables"
            try:
                yield driver
            finally:
                driver.close()


class TestLibNftablesOnly(NftDriverConformance):
    """Everything through the library: element deltas and listings included (no raw nfnetlink,
    no `nft` process)."""

    @pytest.fixture
    def nft(self) -> Iterator[NftablesDriver]:
        with throwaway_netns("nftl") as ns:
            driver = NftablesDriver(
                ns, raw_elements=False, list_with_command=False, command_batch_bytes=1 << 40
            )
            try:
                yield driver
            finally:
                assert driver.raw_batches == 0
                driver.close()


class TestNftCommand(NftDriverConformance):
    @pytest.fixture
    def nft(self) -> Iterator[NftablesDriver]:
        with throwaway_netns("nftc") as ns:
            driver = NftablesDriver(ns, use_library=False)
            try:
                yield driver
            finally:
                driver.close()


GOLDEN = sorted(
    (__import__("pathlib").Path(__file__).resolve().parent.parent / "golden" / "nft").glob("*.json")
)


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_every_golden_batch_loads_into_the_kernel(path: object) -> None:
    import json

    with throwaway_netns("nftg") as ns:
        driver = NftablesDriver(ns)
        try:
            driver.run([json.loads(line) for line in str(path.read_text()).splitlines()])  # type: ignore[attr-defined]
            assert driver.list_table("tortie")
        finally:
            driver.close()


def _sends(worker: NetnsWorker, addr: str) -> bool:
    """Whether a UDP datagram to `addr` leaves (an output-hook drop makes sendto fail with EPERM)."""

    def send() -> bool:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(b"x", (addr, 9))
            except PermissionError:
                return False
        return True

    return worker.call(send)


def test_raw_element_batches_are_matched_by_the_kernel() -> None:
    """Elements added and deleted over raw nfnetlink are what the kernel's set lookups see, at every
    interval boundary (start, last address, one past the end) and for adjacent and open ranges."""
    with throwaway_netns("nftp") as ns:
        for args in (
            ["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
            ["link", "set", "d0", "up"],
            ["link", "set", "d1", "up"],
            ["addr", "add", "fd00:ffff::1/64", "dev", "d0", "nodad"],
            ["route", "add", "default", "dev", "d0"],
            ["-6", "route", "add", "default", "dev", "d0"],
        ):
            ip("-n", ns, *args)
        driver = NftablesDriver(ns)
        worker = NetnsWorker(ns)
        ref = {"family": "inet", "table": "t"}
        try:
            driver.run(
                [
                    {"add": {"table": {"family": "inet", "name": "t"}}},
                    {"add": {"set": {**ref, "name": "s4", "type": "ipv4_addr", "flags": ["interval"]}}},
                    {"add": {"set": {**ref, "name": "s6", "type": "ipv6_addr", "flags": ["interval"]}}},
                    {"add": {"chain": {**ref, "name": "out", "type": "filter", "hook": "output", "prio": 0,
                                       "policy": "accept"}}},
                    *(
                        {"add": {"rule": {**ref, "chain": "out", "expr": [
                            {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "daddr"}},
                                       "right": f"@{name}"}}, {"drop": None}]}}}
                        for proto, name in (("ip", "s4"), ("ip6", "s6"))
                    ),
                ]
            )

            def elements(verb: str, name: str, elems: list[object]) -> dict[str, object]:
                return {verb: {"element": {**ref, "name": name, "elem": elems}}}

            driver.run(
                [
                    elements("add", "s4", ["10.7.0.1", {"prefix": {"addr": "10.7.0.2", "len": 31}},
                                           {"range": ["10.9.0.5", "10.9.0.9"]},
                                           {"prefix": {"addr": "240.0.0.0", "len": 4}}]),
                    elements("add", "s6", [{"prefix": {"addr": "fd00:1::", "len": 64}}]),
                ]
            )
            assert driver.raw_batches == 1
            inside = ["10.7.0.1", "10.7.0.2", "10.7.0.3", "10.9.0.5", "10.9.0.9", "250.1.2.3", "fd00:1::9"]
            outside = ["10.7.0.0", "10.7.0.4", "10.9.0.4", "10.9.0.10", "239.255.255.255", "fd00:2::1"]
            assert [a for a in inside if _sends(worker, a)] == []
            assert [a for a in outside if not _sends(worker, a)] == []
            # delete one of two adjacent ranges: the other stays whole
            driver.run([elements("delete", "s4", ["10.7.0.1", {"prefix": {"addr": "240.0.0.0", "len": 4}}])])
            assert driver.raw_batches == 2
            assert [_sends(worker, a) for a in ("10.7.0.1", "10.7.0.2", "10.7.0.3", "250.1.2.3")] == [
                True, False, False, True]
        finally:
            worker.close()
            driver.close()
