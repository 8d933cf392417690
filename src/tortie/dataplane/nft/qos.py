"""The QoS table (pure): WorkloadEndpoint packet-rate and connection limits in `inet tortie-qos`.

Input: per workload interface its `QosLimits` (only the packet rate, packet burst and max
connections matter here; bandwidth is tc's, docs/design/qos.md). Output: a `Ruleset`, empty when no
endpoint has such a limit (the manager then deletes the table).

    qos-forward (filter forward, priority filter - 10)   oifname vmap @qos-to   (to a workload: its ingress)
                                                         iifname vmap @qos-from (from a workload: egress)
    qos-input   (filter input,   priority filter - 10)   iifname vmap @qos-from (workload -> host)
    qos-in-<if> / qos-out-<if>   limit rate over <rate>/second burst <burst> packets drop
                                 ct state established,related return
                                 ct count over <max> jump qos-reject
    qos-reject                   meta l4proto tcp reject with tcp reset; reject

As Felix renders them in the endpoint's chains (felix/rules endpoints.go): the packet rate counts
every packet of the direction, before connection tracking decides anything; the connection limit
counts the endpoint's tracked connections in that direction (a `ct count` expression keeps its own
list, one per rule: one per endpoint and direction), and a new connection over the limit is refused
with a TCP reset (other protocols: ICMP port unreachable), where Felix's connlimit rejects with a
reset too. Host -> workload traffic is not limited, as Felix's output chain does not police it.

Why a table of its own: a drop in any base chain is final, so the limits compose with the policy
table without touching it; they run first (priority -10), so a packet over the rate costs no policy
evaluation. A packet the limits let through goes on to the policy table, which decides as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from tortie.dataplane.messages import QosLimits
from tortie.dataplane.nft.ir import (
    BaseHook,
    Chain,
    Ct,
    CtCountOver,
    MapDef,
    Match,
    Meta,
    RateOver,
    Reject,
    Rule,
    Ruleset,
    Verdict,
    VMap,
    rule,
)

TABLE = "tortie-qos"
TO_MAP, FROM_MAP = "qos-to", "qos-from"
REJECT_CHAIN = "qos-reject"
PRIORITY = -10
TCP = 6


def _direction_chain(name: str, rate: int, burst: int, max_connections: int) -> Chain:
    rules: list[Rule] = []
    if rate:
        rules.append(rule(RateOver(rate, burst), Verdict("drop"), label="over the packet rate"))
    if max_connections:
        rules.append(rule(Match(Ct("state"), "in", ("established", "related")), Verdict("return"),
                          label="tracked"))
        rules.append(rule(CtCountOver(max_connections), Verdict("jump", REJECT_CHAIN),
                          label="over the connection limit"))
    return Chain(name, tuple(rules))


def render_qos(limits: Mapping[str, QosLimits]) -> Ruleset:
    """The table for the workload interfaces in `limits` (interface name -> the endpoint's limits)."""
    out = Ruleset()
    to_map: dict[str, Verdict] = {}
    from_map: dict[str, Verdict] = {}
    for iface in sorted(limits):
        q = limits[iface]
        if q.ingress_packet_rate or q.ingress_max_connections:
            chain = _direction_chain(f"qos-in-{iface}", q.ingress_packet_rate, q.ingress_packet_burst,
                                     q.ingress_max_connections)
            out.chains[chain.name] = chain
            to_map[iface] = Verdict("jump", chain.name)
        if q.egress_packet_rate or q.egress_max_connections:
            chain = _direction_chain(f"qos-out-{iface}", q.egress_packet_rate, q.egress_packet_burst,
                                     q.egress_max_connections)
            out.chains[chain.name] = chain
            from_map[iface] = Verdict("jump", chain.name)
    if not (to_map or from_map):
        return out
    to_rule = rule(VMap(Meta("oifname"), TO_MAP), label="to workloads")
    from_rule = rule(VMap(Meta("iifname"), FROM_MAP), label="from workloads")
    out.chains["qos-forward"] = Chain("qos-forward", (to_rule, from_rule),
                                      BaseHook("filter", "forward", PRIORITY))
    out.chains["qos-input"] = Chain("qos-input", (from_rule,), BaseHook("filter", "input", PRIORITY))
    out.chains[REJECT_CHAIN] = Chain(REJECT_CHAIN, (
        rule(Match(Meta("l4proto"), "==", TCP), Reject(tcp_reset=True), label="tcp"),
        rule(Reject(), label="other"),
    ))
    out.maps = {TO_MAP: MapDef(TO_MAP), FROM_MAP: MapDef(FROM_MAP)}
    out.map_elements = {TO_MAP: to_map, FROM_MAP: from_map}
    return out
