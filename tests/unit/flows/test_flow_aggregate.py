"""FlowAggregator: kernel observations -> records per interval (pure, with plain resolvers)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tortie.flows.aggregate import UNCONFIRMED_FLUSHES, FlowAggregator
from tortie.flows.catalog import RuleHit
from tortie.flows.records import FlowRecord, Peer, decode
from tortie.kernel.conntrack import CtFlow, FlowTuple
from tortie.kernel.nflog import LogPacket

HITS = {
    "tf:egress-allow": RuleHit("-", "Profile(open)", "egress[0]", "allow", False),
    "tf:pass": RuleHit("sec", "GlobalNetworkPolicy(gate)", "ingress[0]", "pass", True),
    "tf:ingress-allow": RuleHit("default", "NetworkPolicy(prod/db)", "ingress[0]", "allow", True),
    "tf:ingress-deny": RuleHit("default", "NetworkPolicy(prod/db)", "end-of-tier", "deny", True),
}
PEERS = {
    "10.0.0.1": Peer("workload", "web", "prod", {"app": "web"}),
    "fd00::2": Peer("workload", "db", "prod", {"app": "db"}),
    "10.0.0.2": Peer("workload", "db", "prod", {"app": "db"}),
}


def resolve(prefixes: Iterable[str]) -> Mapping[str, RuleHit]:
    return {p: HITS[p] for p in prefixes if p in HITS}


def peer(ip: str) -> Peer:
    return PEERS.get(ip, Peer("net", ip=ip))


def aggregator(local: frozenset[str] = frozenset({"10.0.0.1", "10.0.0.2"}), pending=None) -> FlowAggregator:  # type: ignore[no-untyped-def]
    return FlowAggregator("h1", resolve, peer, lambda: local, pending)


T1 = FlowTuple(6, "10.0.0.1", "10.0.0.2", 40001, 5432)
T2 = FlowTuple(6, "10.0.0.1", "10.0.0.2", 40002, 5432)


def log(t: FlowTuple, prefix: str, length: int = 60) -> LogPacket:
    return LogPacket(1, prefix, t, length)


def by_reporter(records: list[FlowRecord]) -> dict[str, FlowRecord]:
    return {r.reporter: r for r in records}


def test_allowed_connections_aggregate_with_conntrack_deltas_per_interval() -> None:
    agg = aggregator()
    for t in (T1, T2):
        agg.on_log(log(t, "tf:egress-allow"))
        agg.on_log(log(t, "tf:pass"))
        agg.on_log(log(t, "tf:ingress-allow"))
    agg.on_table([CtFlow(1, T1, 10, 1000, 8, 500), CtFlow(2, T2, 4, 400, 2, 100)])
    first = by_reporter(agg.flush(0, 15))
    src, dst = first["src"], first["dst"]
    assert src.policies == ("-|Profile(open)|egress[0]|allow",)
    assert dst.policies == ("sec|GlobalNetworkPolicy(gate)|ingress[0]|pass",
                            "default|NetworkPolicy(prod/db)|ingress[0]|allow")
    for r in (src, dst):
        assert (r.action, r.protocol, r.port) == ("allow", "tcp", 5432)
        assert (r.packets.src_to_dst, r.bytes.src_to_dst, r.bytes.dst_to_src) == (14, 1400, 600)
        assert (r.started, r.completed, r.live) == (2, 0, 2)
        assert (r.pending_action, r.pending_policies) == (r.action, r.policies)
        assert decode(r.encode()) == r
    # next interval: only growth is reported; T2 ended (DESTROY) with its final counters
    agg.on_destroyed(CtFlow(2, T2, 6, 600, 3, 150, destroyed=True))
    agg.on_table([CtFlow(1, T1, 10, 1000, 8, 500)])
    second = by_reporter(agg.flush(15, 30))
    assert (second["src"].bytes.src_to_dst, second["src"].completed, second["src"].live) == (200, 1, 0)
    assert len(agg) == 1
    assert agg.flush(30, 45) == []  # T1 idle: nothing to report


def test_denied_connection_names_the_deny_and_counts_logged_packets() -> None:
    agg = aggregator()
    for _ in range(3):  # SYN retransmits: allowed by the source's egress, denied at the destination
        agg.on_log(log(T1, "tf:egress-allow"))
        agg.on_log(log(T1, "tf:ingress-deny", 60))
    records = by_reporter(agg.flush(0, 15))
    assert records["dst"].action == "deny"
    assert records["dst"].policies == ("default|NetworkPolicy(prod/db)|end-of-tier|deny",)
    assert (records["dst"].packets.src_to_dst, records["dst"].bytes.src_to_dst) == (3, 180)
    assert records["src"].action == "allow"  # its own side allowed it
    assert len(agg) == 0


def test_unconfirmed_allowed_connections_wait_then_report_without_traffic() -> None:
    agg = aggregator()
    agg.on_log(log(T1, "tf:egress-allow"))
    for _ in range(UNCONFIRMED_FLUSHES - 1):
        assert agg.flush(0, 15) == []
    [record] = agg.flush(15, 30)
    assert record.action == "allow" and record.packets.src_to_dst == 0 and len(agg) == 0


def test_local_connections_without_logs_and_foreign_ones() -> None:
    agg = aggregator()
    v6 = FlowTuple(17, "fd00::9", "fd00::2", 5000, 53)
    agg.on_table([
        CtFlow(7, FlowTuple(6, "192.0.2.1", "10.0.0.2", 1, 80), 1, 60, 1, 60),  # to a local endpoint
        CtFlow(8, FlowTuple(6, "192.0.2.1", "192.0.2.2", 1, 179), 1, 60, 1, 60),  # the host's own BGP
        CtFlow(9, v6, 1, 100, 0, 0),
    ])
    assert agg.flush(0, 15) == []  # seen in the table before any log message: one flush late
    records = agg.flush(15, 30)
    assert [(r.reporter, r.destination.label, r.policies) for r in records] == [("dst", "prod/db", ())]
    agg6 = aggregator(frozenset({"fd00::2"}))
    agg6.on_table([CtFlow(9, v6, 1, 100, 0, 0)])
    agg6.flush(0, 15)
    [r6] = agg6.flush(15, 30)
    assert (r6.protocol, r6.port, r6.source.to_json()) == ("udp", 53, {"kind": "net", "ip": "fd00::9"})


def test_pending_verdicts_split_records() -> None:
    def pending(ip: str, inbound: bool, t: FlowTuple) -> tuple[str, tuple[str, ...]] | None:
        if inbound and t.sport == 40002:
            return "deny", ("default|StagedNetworkPolicy(prod/x)|ingress[0]|deny",)
        return None

    agg = aggregator(pending=pending)
    for t in (T1, T2):
        agg.on_log(log(t, "tf:ingress-allow"))
    agg.on_table([CtFlow(1, T1, 1, 100, 1, 100), CtFlow(2, T2, 1, 100, 1, 100)])
    dst = [r for r in agg.flush(0, 15) if r.reporter == "dst"]
    assert sorted((r.pending_action, r.started) for r in dst) == [("allow", 1), ("deny", 1)]
