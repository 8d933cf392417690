"""The fault suite's plumbing: labs from the e2e fixtures (faults go through the product's own CLI:
fault_helpers.py).

Labs come from `make_lab` (tests/e2e/conftest.py: unique names, torn down whatever happens,
process logs attached to a failing test's report); `module_lab` builds one lab per test file with the
same guarantees, for files whose tests run one after another on the same lab (each leaves it ready).

Long tests carry `@pytest.mark.slow`: CI runs them; `pytest tests/faults -m "not slow"` skips them
locally (docs/operations.md, "Rehearsing failures in a lab").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fault_helpers import ModuleLab

# make_lab and the hook attaching the labs' logs to a failing test's report serve this directory too
from e2e.conftest import make_lab, pytest_runtest_makereport  # noqa: F401
from tortie.lab.datacenter import Datacenter
from tortie.lab.spec import LabSpec
from tortie.testing.netns import unique_name


@pytest.fixture(scope="module")
def module_lab(request: pytest.FixtureRequest) -> Iterator[ModuleLab]:
    built: list[Datacenter] = []

    def make(**spec: Any) -> Datacenter:
        dc = Datacenter.up(LabSpec(name=unique_name("flt"), **spec), timeout=120.0)
        built.append(dc)
        return dc

    request.module.built_labs = built
    yield make
    for dc in built:
        dc.down()
