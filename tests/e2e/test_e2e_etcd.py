"""End-to-end scenarios on a lab with a 3-member etcd cluster on its fabric; each scenario SIGKILLs one
member midway (see e2e_scenarios.py)."""

from __future__ import annotations

import pytest
from e2e_scenarios import Scenarios

pytestmark = [pytest.mark.root, pytest.mark.etcd, pytest.mark.slow]


class TestOnEtcd(Scenarios):
    datastore = "etcd"
