"""End-to-end scenarios on a lab with a 3-member etcd cluster on its fabric; each scenario SIGKILLs one
member midway (see e2e_scenarios.py)."""

from __future__ import annotations

import e2e_scenarios as sc
import pytest
from e2e_scenarios import MakeLab

pytestmark = [pytest.mark.root, pytest.mark.etcd, pytest.mark.slow]
DATASTORE = "etcd"


def test_cross_host_reachability_over_bgp(make_lab: MakeLab) -> None:
    sc.cross_host_reachability(make_lab, DATASTORE)


@pytest.mark.skipif(not sc.policy_enforced(), reason="the agent does not enforce policy yet (issue 5)")
def test_policy_across_hosts(make_lab: MakeLab) -> None:
    sc.policy_across_hosts(make_lab, DATASTORE)


def test_agent_restart_loses_nothing(make_lab: MakeLab) -> None:
    sc.agent_restart(make_lab, DATASTORE)


def test_bird_kill_recovers(make_lab: MakeLab) -> None:
    sc.bird_kill(make_lab, DATASTORE)


def test_host_down_withdraws_its_routes(make_lab: MakeLab) -> None:
    sc.host_down(make_lab, DATASTORE)
