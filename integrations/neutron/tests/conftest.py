"""Fixtures for networking-tortie's tests (run in .venv-neutron; see scripts/setup-neutron.sh).

* markers `root` / `etcd` skip with a reason when unmet (as in the main suite);
* `neutron`: Neutron's real ML2 plugin in-process (one per test process; `neutron_harness`);
* `datastore_url`: a real tortie datastore, parametrised: a fresh sqlite file, and a fresh
  single-member etcd (Debian etcd-server) on free loopback ports;
* `env`: Neutron with an empty DB whose driver writes to `datastore_url`, plus `ds` (a client of the
  same datastore) and `agent_alive(host)` (the real agent's status reporter marks a host live).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from neutron_harness import NeutronHarness, start_neutron
from tortie.agent.status import StatusReporter
from tortie.datastore.api import Datastore
from tortie.datastore.url import open_datastore
from tortie.testing.etcd_cluster import EtcdCluster


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    has_etcd = shutil.which("etcd") is not None
    for item in items:
        if "root" in item.keywords and not is_root:
            item.add_marker(pytest.mark.skip(reason="needs root for network namespaces; CI runs as root"))
        if "etcd" in item.keywords and not has_etcd:
            item.add_marker(pytest.mark.skip(reason="needs the etcd binary (apt-get install etcd-server)"))


@pytest.fixture(scope="session")
def neutron() -> NeutronHarness:
    return start_neutron(datastore="memory://", election_interval=0.2, election_ttl=2.0,
                         election_check_interval=0.1, resync_interval=0.0)


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def datastore_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'tortie.db'}"
        return
    with EtcdCluster(members=1) as cluster:
        yield cluster.url


@dataclass
class Env:
    neutron: NeutronHarness
    ds: Datastore
    reporters: list[StatusReporter]

    @property
    def driver(self) -> Any:
        return self.neutron.driver

    def agent_alive(self, host: str) -> StatusReporter:
        """Run the agent's own status reporter once for `host` (a leased liveness key)."""
        reporter = StatusReporter(self.ds, host, reporting_interval=30.0, reporting_ttl=60.0)
        reporter.tick()
        self.reporters.append(reporter)
        return reporter


@pytest.fixture
def env(neutron: NeutronHarness, datastore_url: str) -> Iterator[Env]:
    driver = neutron.driver
    driver.stop_background()
    neutron.reset_db()
    driver.conf = dataclasses.replace(driver.conf, datastore=datastore_url)
    driver._ds = None  # the driver opens the new datastore on first use
    ds = open_datastore(datastore_url)
    environment = Env(neutron, ds, [])
    try:
        yield environment
    finally:
        driver.stop_background()
        old: Datastore | None = driver._ds
        driver._ds = None
        if old is not None:
            old.close()
        ds.close()


