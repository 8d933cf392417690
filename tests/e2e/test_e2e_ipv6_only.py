"""End-to-end scenarios on an IPv6-only lab (fabric, BGP sessions, pools and workloads all IPv6; the
embedded SQLite datastore; gobgpd as ToR): every scenario of e2e_scenarios.py without IPv4."""

from __future__ import annotations

import pytest
from e2e_scenarios import Scenarios

pytestmark = [pytest.mark.root, pytest.mark.slow]


class TestIpv6Only(Scenarios):
    datastore = "sqlite"
    ip_family = "ipv6"
