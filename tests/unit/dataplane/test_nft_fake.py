"""The nftables conformance suite against the in-memory fake (the real kernel: tests/integration)."""

from __future__ import annotations

import pytest

from tortie.dataplane.drivers.nft_fake import FakeNftables
from tortie.testing.nft_conformance import NftDriverConformance


class TestFakeNftables(NftDriverConformance):
    @pytest.fixture
    def nft(self) -> FakeNftables:
        return FakeNftables()
