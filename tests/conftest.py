"""Suite-wide test plumbing: markers that skip with a reason when a prerequisite is missing.

* ``@pytest.mark.root``: needs root (network namespaces, nftables, kernel state). CI runs as root.
* ``@pytest.mark.etcd``: needs the etcd binary (Debian etcd-server, installed by scripts/setup.sh).
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import settings

# In CI (CI=true) property tests run derandomized: the same examples on every run, so a submission's
# result does not depend on luck; developers' runs keep exploring new random examples.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    has_etcd = shutil.which("etcd") is not None
    no_root = pytest.mark.skip(reason="needs root (network namespaces, kernel state); CI runs as root")
    no_etcd = pytest.mark.skip(reason="needs the etcd binary (apt-get install etcd-server)")
    for item in items:
        if "root" in item.keywords and not is_root:
            item.add_marker(no_root)
        if "etcd" in item.keywords and not has_etcd:
            item.add_marker(no_etcd)
