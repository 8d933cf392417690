"""Fixtures for end-to-end tests on `tortie lab` datacenters (root; real BIRD, agents, CNI, etcd).

`make_lab(**spec)` builds a lab with a unique name (tests run in parallel under xdist) and tears it
down when the test ends, whatever happened; on failure the tail of every process log is attached
to the test report, so a red CI run says what the nodes saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tortie.lab.datacenter import Datacenter
from tortie.lab.spec import LabSpec
from tortie.testing.netns import unique_name

MakeLab = Callable[..., Datacenter]


def lab_logs(dc: Datacenter, tail: int = 3000) -> str:
    out = []
    for record in dc.lab.state.processes:
        if record.log and Path(record.log).exists():
            out.append(
                f"\n--- {record.role or record.argv[0]} (pid {record.pid}) ---\n"
                + Path(record.log).read_text(errors="replace")[-tail:]
            )
    return "".join(out)


@pytest.fixture
def make_lab(request: pytest.FixtureRequest) -> Iterator[MakeLab]:
    built: list[Datacenter] = []
    request.node.built_labs = built  # for the report hook below

    def make(**spec: Any) -> Datacenter:
        dc = Datacenter.up(LabSpec(name=unique_name("e2e"), **spec), timeout=90.0)
        built.append(dc)
        return dc

    yield make
    for dc in built:
        dc.down()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:  # labs of the test, and of its module (tests/faults)
        labs = [*getattr(item, "built_labs", []), *getattr(getattr(item, "module", None), "built_labs", [])]
        for dc in labs:
            report.sections.append((f"lab {dc.name} logs", lab_logs(dc)))
