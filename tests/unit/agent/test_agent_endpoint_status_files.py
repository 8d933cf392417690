"""Endpoint status files (what a CNI ADD waits for): written by the agent only after an apply round in
which every manager succeeded, with the very update programmed; removed when the endpoint goes; files of
an earlier run that this run did not write are swept after the first apply."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tortie.agent.health import HealthAggregator
from tortie.agent.metrics import AgentMetrics
from tortie.agent.observer import AgentObserver, EndpointStatusBridge, ReceiptTracker
from tortie.common.errors import DataplaneError
from tortie.dataplane.endpoint_status import EndpointStatusFiles, file_name, matches, record
from tortie.dataplane.loop import DataplaneLoop
from tortie.dataplane.managers.endpoints import EndpointManager
from tortie.dataplane.messages import (
    MESSAGE_TYPES,
    InSync,
    Message,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.routetable import RouteTable
from tortie.testing.kernel_fake import FakeKernel


class FlakyPolicy:
    """Stands in for the policy manager, applied first: fails while `failing` is set."""

    name = "policy"
    handles = frozenset({WorkloadEndpointUpdate})

    def __init__(self) -> None:
        self.failing = False
        self.dirty = False

    def on_update(self, msg: Message) -> None:
        self.dirty = True

    def on_link_event(self, event: object) -> None:
        pass

    def resync(self) -> None:
        pass

    @property
    def needs_apply(self) -> bool:
        return self.dirty

    def apply(self) -> None:
        if self.failing:
            raise DataplaneError("nft refused the batch")
        self.dirty = False

    def stats(self) -> dict[str, int]:
        return {}


class Rig:
    def __init__(self, prefix: Path) -> None:
        self.kernel = FakeKernel()
        self.files = EndpointStatusFiles(str(prefix))
        self.bridge = EndpointStatusBridge(None, self.files)
        table = RouteTable(self.kernel, self.kernel)
        self.policy = FlakyPolicy()
        endpoints = EndpointManager(table, self.kernel, status_callback=self.bridge.on_status)
        health = HealthAggregator()
        health.register("dataplane")
        observer = AgentObserver(
            AgentMetrics(),
            health,
            ReceiptTracker(),
            needs_apply=lambda: False,
            on_first_apply=self.bridge.sync,
            on_applied=self.bridge.flush,
        )
        unhandled = tuple(
            t for t in MESSAGE_TYPES if t not in (WorkloadEndpointUpdate, WorkloadEndpointRemove, InSync)
        )
        self.loop = DataplaneLoop(
            [self.policy, table, endpoints],
            unhandled=unhandled,
            link_driver=self.kernel,
            observer=observer,
            retry_initial=0.0,
        )
        self.loop.start_link_monitor()

    def feed(self, *msgs: Message) -> None:
        self.loop.send_many(msgs)
        self.loop.step()

    def listing(self) -> dict[str, dict[str, object]]:
        directory = self.files.directory
        return {n: json.loads(Path(directory, n).read_text()) for n in sorted(os.listdir(directory))}


def wep(name: str, mac: str, ip: str) -> WorkloadEndpointUpdate:
    return WorkloadEndpointUpdate(WorkloadEndpointId("ns", name), "tort1", ipv4_nets=(ip,), mac=mac)


def test_a_file_appears_only_after_a_fully_successful_round(tmp_path: Path) -> None:
    stale_dir = tmp_path / "endpoint-status"
    stale_dir.mkdir()
    (stale_dir / file_name("ns", "gone")).write_text("{}")
    rig = Rig(tmp_path)
    rig.kernel.add_link("tort1")
    rig.feed(InSync())
    assert rig.listing() == {}  # the earlier run's file is swept after the first apply
    rig.policy.failing = True
    rig.feed(wep("a", "02:00:00:00:00:01", "10.1.0.2/32"))
    assert rig.listing() == {}  # routes and interface are fine, policy is not: no file
    rig.policy.failing = False
    rig.loop.step()
    want = record("tort1", "02:00:00:00:00:01", ["10.1.0.2/32"], [])
    assert rig.listing() == {file_name("ns", "a"): want}
    # a new incarnation under the same name (a new container: new MAC and address) rewrites it
    rig.feed(wep("a", "02:00:00:00:00:02", "10.1.0.3/32"))
    (content,) = rig.listing().values()
    assert matches(content, record("tort1", "02:00:00:00:00:02", ["10.1.0.3/32"], []))
    assert not matches(content, want)
    rig.feed(WorkloadEndpointRemove(WorkloadEndpointId("ns", "a")))
    assert rig.listing() == {}


def test_names_keep_namespace_and_name_apart() -> None:
    assert file_name("a b", "c/d%") == "a%20b c%2Fd%25"
    assert file_name("a", "b c") != file_name("a b", "c")
