"""The policy table's rendering parameters: failsafe spellings, the agent's defaults, bad values."""

from __future__ import annotations

import pytest

from tortie.agent.policy_params import (
    FAILSAFE_INBOUND_DEFAULT,
    FAILSAFE_OUTBOUND_DEFAULT,
    WORKLOAD_TO_HOST_ALLOW_DEFAULT,
)
from tortie.dataplane.nft.config import FailsafePort, RenderConfig, parse_failsafe, render_config


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("tcp:22", FailsafePort(6, 22)),
        ("udp:68", FailsafePort(17, 68)),
        ("179", FailsafePort(6, 179)),
        ("tcp:10.0.0.0/8:2379", FailsafePort(6, 2379, "10.0.0.0/8")),
        ("tcp:fd00::/64:22", FailsafePort(6, 22, "fd00::/64")),
    ],
)
def test_failsafe_spellings(text: str, port: FailsafePort) -> None:
    assert parse_failsafe(text) == port
    assert parse_failsafe(str(port)) == port  # the agent's spelling of it reads back the same


def test_the_agent_defaults_render_as_the_renderer_defaults() -> None:
    values = {
        "failsafe_inbound_host_ports": FAILSAFE_INBOUND_DEFAULT,
        "failsafe_outbound_host_ports": FAILSAFE_OUTBOUND_DEFAULT,
        "workload_to_host_allow": WORKLOAD_TO_HOST_ALLOW_DEFAULT,
    }
    empty = RenderConfig(failsafe_inbound=(), failsafe_outbound=(), workload_to_host_allow=())
    assert render_config(values, empty) == RenderConfig()


def test_a_bad_port_list_keeps_the_base_and_the_other_values_apply() -> None:
    base = RenderConfig()
    values = {
        "failsafe_inbound_host_ports": ("tcp:22", "icmp:8"),
        "failsafe_outbound_host_ports": ("udp:53",),
        "default_endpoint_to_host_action": "Accept",
        "interface_prefix": ["tap"],
    }
    cfg = render_config(values, base)
    assert cfg.failsafe_inbound == base.failsafe_inbound
    assert cfg.failsafe_outbound == (FailsafePort(17, 53),)
    assert cfg.endpoint_to_host_action == "Accept" and cfg.owns_interface("tap0")
    assert not cfg.owns_interface("tort0") and not cfg.owns_interface("")
