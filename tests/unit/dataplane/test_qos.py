"""QoS (WorkloadEndpoint qosControls): the token-bucket arithmetic, the packet-rate / connection table's
render, what a host refuses, and the QosManager against the fake kernel, fake shaping and fake
nftables (ingress tbf, egress through an ifb device, removal, sweep of leftovers, retries, re-created
interfaces)."""

from __future__ import annotations

from typing import Any

import pytest

from tortie.dataplane.managers.manager_api import ApplyIncomplete
from tortie.dataplane.managers.qos import IFB_PREFIX, QosManager, ifb_name, token_bucket, unsupported_fields
from tortie.dataplane.messages import (
    QosLimits,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.nft.ir import rule_json
from tortie.dataplane.nft.qos import TABLE, render_qos
from tortie.kernel.tc_codec import TbfParams
from tortie.testing.kernel_fake import FakeKernel
from tortie.testing.nft_fake import FakeNftables
from tortie.testing.shaping_fake import FakeShaping

A, B = WorkloadEndpointId("ns", "a"), WorkloadEndpointId("ns", "b")
MBIT = 10**6


def wep(eid: WorkloadEndpointId, iface: str, qos: QosLimits | None) -> WorkloadEndpointUpdate:
    return WorkloadEndpointUpdate(id=eid, interface_name=iface, ipv4_nets=("10.0.0.2/32",), qos=qos)


def test_token_bucket_follows_felix_numbers() -> None:
    # 10 Mbit/s, 80 kbit burst: 1.25 MB/s, 10 kB burst, 25 ms of queue plus the burst
    assert token_bucket(10 * MBIT, 80_000, 0, 0, 1500) == TbfParams(1_250_000, 10_000, 31_250 + 10_000)
    # a peak rate: minburst at least MTU + Ethernet header; the limit bounded by the peak's queue
    tbf = token_bucket(10 * MBIT, 4 * 2**30, 20 * MBIT, 0, 1500)
    assert tbf == TbfParams(1_250_000, 4 * 2**30 // 8, 62_500 + 1514, 2_500_000, 1514)
    assert token_bucket(10 * MBIT, 80_000, 20 * MBIT, 9000, 1500).minburst == 9000
    # Calico's default burst (4 Gibit) stays within the kernel's 32-bit fields
    assert token_bucket(10**13, 4 * 2**30, 0, 0, 1500).limit == 2**32 - 1


def test_ifb_names_are_short_stable_and_ours() -> None:
    name = ifb_name("cali1234567890a")
    assert name.startswith(IFB_PREFIX) and len(name) == 15 and name == ifb_name("cali1234567890a")
    assert ifb_name("cali1234567890b") != name


def test_unsupported_fields_name_what_the_host_lacks() -> None:
    works = dict.fromkeys(("tbf", "ifb", "ingress", "u32 mirred"))
    assert unsupported_fields(works, tc=True, nft=True) == {}
    no_ifb = unsupported_fields({**works, "ifb": "Unknown device type"}, tc=True, nft=True)
    assert set(no_ifb) == {f"qosControls.egress{n}" for n in ("Bandwidth", "Burst", "Peakrate", "Minburst")}
    assert "no ifb (Unknown device type)" in no_ifb["qosControls.egressBandwidth"]
    no_tbf = unsupported_fields({**works, "tbf": "qdisc kind is unknown"}, tc=True, nft=True)
    assert "qosControls.ingressBandwidth" in no_tbf and "qosControls.egressBandwidth" in no_tbf
    no_nft = unsupported_fields(works, tc=True, nft=False)
    assert set(no_nft) == {f"qosControls.{d}{n}" for d in ("ingress", "egress")
                           for n in ("PacketRate", "PacketBurst", "MaxConnections")}
    assert len(unsupported_fields(None, tc=False, nft=True)) == 8


def exprs(ruleset: Any, chain: str) -> list[list[Any]]:
    return [rule_json(TABLE, chain, r)["rule"]["expr"] for r in ruleset.chains[chain].rules]


def test_render_packet_rate_and_connection_limits_per_direction() -> None:
    assert not render_qos({"cali1": QosLimits(ingress_bandwidth=MBIT, ingress_burst=8)}).chains
    ruleset = render_qos({
        "cali1": QosLimits(ingress_packet_rate=100, ingress_packet_burst=5, egress_max_connections=3),
        "cali2": QosLimits(egress_packet_rate=7, egress_packet_burst=9),
    })
    assert set(ruleset.chains) == {"qos-in-cali1", "qos-out-cali1", "qos-out-cali2", "qos-forward",
                                   "qos-input", "qos-reject"}
    assert ruleset.map_elements["qos-to"].keys() == {"cali1"}
    assert ruleset.map_elements["qos-from"].keys() == {"cali1", "cali2"}
    assert exprs(ruleset, "qos-in-cali1") == [[
        {"limit": {"rate": 100, "burst": 5, "per": "second", "inv": True}}, {"drop": None}]]
    out = exprs(ruleset, "qos-out-cali1")
    assert out[1] == [{"ct count": {"val": 3, "inv": True}}, {"jump": {"target": "qos-reject"}}]
    assert exprs(ruleset, "qos-out-cali2")[0][0]["limit"]["rate"] == 7
    forward = ruleset.chains["qos-forward"].base
    assert forward is not None and forward.hook == "forward" and forward.priority == -10


class Bed:
    def __init__(self, kernel: FakeKernel | None = None, nft: FakeNftables | None = None) -> None:
        self.kernel = kernel or FakeKernel()
        self.nft = nft or FakeNftables()
        self.shaping = FakeShaping(self.kernel)
        self.mgr = QosManager(self.shaping, self.nft, owns=lambda name: name.startswith("cali"))
        self.kernel.start_monitor(self.mgr.on_link_event)

    def apply(self) -> None:
        if self.mgr.needs_apply:
            self.mgr.apply()
        assert not self.mgr.needs_apply


EGRESS = QosLimits(egress_bandwidth=5 * MBIT, egress_burst=4 * 2**30)
INGRESS = QosLimits(ingress_bandwidth=10 * MBIT, ingress_burst=80_000)


def test_ingress_and_egress_bandwidth_programmed_then_removed() -> None:
    bed = Bed()
    bed.kernel.add_link("cali1", mtu=1400)
    both = QosLimits(**{**INGRESS.__dict__, **{k: v for k, v in EGRESS.__dict__.items() if v}})
    bed.mgr.on_update(wep(A, "cali1", both))
    bed.apply()
    ifb = ifb_name("cali1")
    state = bed.shaping.shaping("cali1")
    assert state is not None and state.tbf == token_bucket(10 * MBIT, 80_000, 0, 0, 1400)._replace(burst=None)
    assert state.redirect == ifb
    ifb_state = bed.shaping.shaping(ifb)
    assert ifb_state is not None and ifb_state.mtu == 1400
    assert ifb_state.tbf is not None and ifb_state.tbf.rate == 5 * MBIT // 8
    # nothing changed: nothing written
    mutations = len(bed.shaping.mutations)
    bed.mgr.resync()
    bed.apply()
    assert len(bed.shaping.mutations) == mutations
    # only egress left: the ingress tbf goes
    bed.mgr.on_update(wep(A, "cali1", EGRESS))
    bed.apply()
    state = bed.shaping.shaping("cali1")
    assert state is not None and state.tbf is None and state.redirect == ifb
    # the field removed: the redirect, then the ifb device go
    bed.mgr.on_update(wep(A, "cali1", None))
    bed.apply()
    state = bed.shaping.shaping("cali1")
    assert state is not None and not state.ingress and state.tbf is None
    assert bed.shaping.ifb_devices(IFB_PREFIX) == frozenset()
    assert bed.shaping.mutations[-2:] == ["clear ingress cali1", f"delete {ifb}"]


def test_endpoint_removed_and_rates_changed() -> None:
    bed = Bed()
    bed.kernel.add_link("cali1")
    bed.mgr.on_update(wep(A, "cali1", INGRESS))
    bed.apply()
    bed.mgr.on_update(wep(A, "cali1", QosLimits(ingress_bandwidth=20 * MBIT, ingress_burst=80_000)))
    bed.apply()
    state = bed.shaping.shaping("cali1")
    assert state is not None and state.tbf is not None and state.tbf.rate == 2_500_000
    bed.mgr.on_update(WorkloadEndpointRemove(A))
    bed.apply()
    state = bed.shaping.shaping("cali1")
    assert state is not None and state.tbf is None


def test_packet_limits_go_to_the_table_and_leave_with_the_last_endpoint() -> None:
    bed = Bed()
    bed.kernel.add_link("cali1")
    bed.mgr.on_update(wep(A, "cali1", QosLimits(ingress_packet_rate=10, ingress_packet_burst=5)))
    bed.apply()
    listed = bed.nft.list_table(TABLE) or []
    assert {o["chain"]["name"] for o in listed if "chain" in o} >= {"qos-in-cali1", "qos-forward"}
    assert bed.shaping.mutations == []  # no bandwidth: tc untouched
    bed.mgr.on_update(WorkloadEndpointRemove(A))
    bed.apply()
    assert bed.nft.list_table(TABLE) is None


def test_first_apply_sweeps_leftovers_of_a_previous_run_and_keeps_foreign_devices() -> None:
    kernel = FakeKernel()
    first = Bed(kernel)
    for name in ("cali1", "cali2", "eth0"):
        kernel.add_link(name)
    first.mgr.on_update(wep(A, "cali1", EGRESS))
    first.mgr.on_update(wep(B, "cali2", INGRESS))
    first.apply()
    first.shaping.set_tbf("eth0", TbfParams(1000, 1000, 2000))  # not ours: never touched
    kernel.stop_monitor()
    second = Bed(kernel)
    second.shaping = first.shaping  # the same "kernel" state
    second.mgr = QosManager(first.shaping, second.nft, owns=lambda name: name.startswith("cali"))
    second.mgr.on_update(wep(B, "cali2", INGRESS))  # cali1 lost its limits while no agent ran
    second.apply()
    assert first.shaping.ifb_devices(IFB_PREFIX) == frozenset()
    cali1 = first.shaping.shaping("cali1")
    assert cali1 is not None and not cali1.ingress
    assert set(first.shaping.shaped()) == {"cali2", "eth0"}


def test_failures_stay_dirty_and_are_retried() -> None:
    bed = Bed()
    bed.kernel.add_link("cali1")
    bed.kernel.add_link("cali2")
    bed.shaping.fail("set_redirect")
    bed.mgr.on_update(wep(A, "cali1", EGRESS))
    bed.mgr.on_update(wep(B, "cali2", INGRESS))
    with pytest.raises(ApplyIncomplete):
        bed.mgr.apply()
    state = bed.shaping.shaping("cali2")
    assert state is not None and state.tbf is not None  # one failure does not stop the others
    assert bed.mgr.needs_apply
    bed.apply()
    state = bed.shaping.shaping("cali1")
    assert state is not None and state.redirect == ifb_name("cali1")


def test_a_recreated_interface_is_shaped_again_and_a_drift_repaired_on_resync() -> None:
    bed = Bed()
    bed.kernel.add_link("cali1")
    bed.mgr.on_update(wep(A, "cali1", INGRESS))
    bed.apply()
    bed.kernel.remove_link("cali1")
    bed.apply()
    bed.kernel.add_link("cali1")
    assert bed.mgr.needs_apply
    bed.apply()
    state = bed.shaping.shaping("cali1")
    assert state is not None and state.tbf is not None and state.tbf.rate == 1_250_000
    bed.shaping.tamper_tbf("cali1", TbfParams(1, 1, 1))
    bed.mgr.resync()
    bed.apply()
    state = bed.shaping.shaping("cali1")
    assert state is not None and state.tbf is not None and state.tbf.rate == 1_250_000


def test_an_interface_that_is_not_ours_is_never_shaped() -> None:
    bed = Bed()
    bed.kernel.add_link("eth1")
    bed.mgr.on_update(wep(A, "eth1", INGRESS))
    bed.apply()
    assert bed.shaping.mutations == []


def test_an_ifb_device_deleted_behind_the_agent_s_back_is_made_again() -> None:
    bed = Bed()
    bed.kernel.add_link("cali1")
    bed.mgr.on_update(wep(A, "cali1", EGRESS))
    bed.apply()
    ifb = ifb_name("cali1")
    bed.kernel.remove_link(ifb)
    assert bed.mgr.needs_apply
    bed.apply()
    assert bed.shaping.ifb_devices(IFB_PREFIX) == {ifb}
    state = bed.shaping.shaping(ifb)
    assert state is not None and state.tbf is not None and state.tbf.rate == 625_000


def test_node_status_names_what_the_kernel_lacks_and_what_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tortie.kernel.tc as tc
    from tortie.cli.node_status_cmd import _kernel_lines, kernel_support

    parts: dict[str, str | None] = {"tbf": None, "ifb": "Unknown device type", "ingress": None,
                                    "u32 mirred": None}
    monkeypatch.setattr(tc, "probe_shaping", lambda: parts)
    lines = _kernel_lines(kernel_support())
    assert lines[0] == "Kernel lacks ifb: Unknown device type"
    assert "qosControls.egressBandwidth" in lines[1] and "ingressBandwidth" not in lines[1]
    monkeypatch.setattr(tc, "probe_shaping", lambda: dict.fromkeys(parts, "could not be probed: EPERM"))
    assert _kernel_lines(kernel_support()) == [
        "Kernel traffic control: not probed (could not be probed: EPERM)."]
