"""Fixtures for integration tests that need real services.

* ``sqlite_url``: a fresh sqlite datastore file of the test; ``etcd_url``: a fresh one-member etcd of
  the test (mark the test ``@pytest.mark.etcd``). For tests run on both backends.
* ``etcd_single``: one real etcd member on free loopback ports, shared by the tests of one pytest
  session (with xdist: one per worker). Tests using it must be marked ``@pytest.mark.etcd``; without
  the etcd binary the fixture skips. Tests must keep to their own key prefix (e.g. a uuid).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.testing.etcd_cluster import EtcdCluster


@pytest.fixture(scope="session")
def etcd_single() -> Iterator[EtcdCluster]:
    if shutil.which("etcd") is None:
        pytest.skip("needs the etcd binary (apt-get install etcd-server)")
    with EtcdCluster(members=1) as cluster:
        yield cluster


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'datastore.db'}"


@pytest.fixture
def etcd_url() -> Iterator[str]:
    if shutil.which("etcd") is None:
        pytest.skip("needs the etcd binary (apt-get install etcd-server)")
    with EtcdCluster(members=1) as cluster:
        yield cluster.url
