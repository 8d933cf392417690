"""The nftables conformance suite against the real kernel (libnftables, and the nft command), each
test in its own throwaway network namespace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tortie.dataplane.drivers.nftables import NftablesDriver
from tortie.testing.netns import throwaway_netns
from tortie.testing.nft_conformance import NftDriverConformance

pytestmark = pytest.mark.root


class TestLibNftables(NftDriverConformance):
    @pytest.fixture
    def nft(self) -> Iterator[NftablesDriver]:
        with throwaway_netns("nft") as ns:
            driver = NftablesDriver(ns)
            assert driver.backend == "libnftables"
            try:
                yield driver
            finally:
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
