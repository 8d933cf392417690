"""The nftables conformance suite against the in-memory fake (the real kernel: tests/integration)."""

from __future__ import annotations

import pytest

from tortie.testing.nft_conformance import NftDriverConformance
from tortie.testing.nft_fake import FakeNftables


class TestFakeNftables(NftDriverConformance):
    @pytest.fixture
    def nft(self) -> FakeNftables:
        return FakeNftables()
