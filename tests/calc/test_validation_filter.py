"""The validation filter decides locality once: this host's WorkloadEndpoints go parsed to the local
listeners, the others' go raw to the remote listeners, and a key moving between hosts is first
withdrawn (None) from the side it leaves."""

from __future__ import annotations

from typing import Any

from tortie.calc.dispatcher import REMOTE_WORKLOAD_ENDPOINT, WORKLOAD_ENDPOINT, Dispatcher
from tortie.calc.validation_filter import ValidationFilter
from tortie.model.kinds import kind_info
from tortie.testing.calc_harness import kv_event

KEY = kind_info("WorkloadEndpoint").key("w", "default")


def wep(node: str, ip: str = "10.65.0.1/32") -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": "w", "namespace": "default"},
            "spec": {"orchestrator": "cni", "workload": "w", "endpoint": "eth0", "node": node,
                     "ipNetworks": [ip], "interfaceName": "tortw"}}


def test_each_side_hears_of_an_endpoint_only_while_it_is_there() -> None:
    heard: list[tuple[str, str]] = []

    def recorder(side: str) -> Any:
        def listener(_key: str, value: object | None) -> None:
            if value is None:
                heard.append((side, "gone"))
            elif isinstance(value, dict):
                heard.append((side, "raw " + value["spec"]["node"]))
            else:
                heard.append((side, "parsed " + value.spec.node))  # type: ignore[attr-defined]
        return listener

    dispatcher = Dispatcher()
    dispatcher.register(WORKLOAD_ENDPOINT, recorder("local"))
    dispatcher.register(REMOTE_WORKLOAD_ENDPOINT, recorder("remote"))
    vf = ValidationFilter(dispatcher, "h1")
    steps = [
        (wep("h2"), [("remote", "raw h2")]),
        (wep("h2", "10.65.0.2/32"), [("remote", "raw h2")]),
        (wep("h1"), [("remote", "gone"), ("local", "parsed h1")]),
        (wep("h1", "10.65.0.0/24"), [("local", "gone")]),  # invalid: treated as absent
        (wep("h3"), [("local", "gone"), ("remote", "raw h3")]),
        (None, [("remote", "gone")]),
        (None, []),  # nothing left to withdraw
    ]
    for revision, (value, expected) in enumerate(steps, start=1):
        heard.clear()
        vf.on_event(kv_event(KEY, value, revision))
        assert heard == expected, (revision, value)
    assert vf.invalid_count == 1
