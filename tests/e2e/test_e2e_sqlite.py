"""End-to-end scenarios on a lab with the embedded SQLite datastore (see e2e_scenarios.py)."""

from __future__ import annotations

import pytest
from e2e_scenarios import Scenarios

pytestmark = [pytest.mark.root, pytest.mark.slow]


class TestOnSqlite(Scenarios):
    datastore = "sqlite"
