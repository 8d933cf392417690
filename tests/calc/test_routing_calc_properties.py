"""Property test: for random datastore state sequences the routing calc's dataplane equals a naive
oracle computed from each state alone, in every reordering of calc_harness."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tortie.calc.calc_graph import CalcGraph
from tortie.dataplane import messages as m
from tortie.ipam import keys as ipam_keys
from tortie.model.kinds import kind_info
from tortie.testing.calc_harness import DataplaneState, Sink, Step, check_sequence, expect

HOST = "h1"
HOSTS = (HOST, "h2")
NAMES = ("a", "b", "c")
IPS = ("10.1.0.1/32", "10.1.0.2/32", "fd00::1/128")
BLOCKS = ("10.1.0.0/26", "10.1.0.64/26")
STATES = ("confirmed", "pending")


def make_graph(sink: Sink) -> CalcGraph:
    return CalcGraph(HOST, sink)


wep_values = st.fixed_dictionaries({
    "node": st.sampled_from(HOSTS),
    "ips": st.lists(st.sampled_from(IPS), max_size=2, unique=True),
    "iface": st.sampled_from(("tortx", "torty")),
})
datastore_states = st.fixed_dictionaries({
    "weps": st.dictionaries(st.sampled_from(NAMES), wep_values, max_size=3),
    "blocks": st.dictionaries(st.sampled_from(BLOCKS), st.sampled_from(HOSTS), max_size=2),
    "affinities": st.dictionaries(st.tuples(st.sampled_from(HOSTS), st.sampled_from(BLOCKS)),
                                  st.sampled_from(STATES), max_size=3),
})


def to_datastore(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, w in s["weps"].items():
        out[kind_info("WorkloadEndpoint").key(name, "ns")] = {
            "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"node": w["node"], "ipNetworks": w["ips"], "interfaceName": w["iface"]}}
    for cidr, host in s["blocks"].items():
        out[ipam_keys.block_key(ipaddress.ip_network(cidr))] = {"cidr": cidr, "affinity": f"host:{host}"}
    for (host, cidr), state in s["affinities"].items():
        out[ipam_keys.affinity_key(host, ipaddress.ip_network(cidr))] = {"state": state}
    return out


def oracle(s: dict[str, Any]) -> DataplaneState:
    """What the dataplane should hold, computed directly from one state."""
    endpoints = [
        m.WorkloadEndpointUpdate(
            id=m.WorkloadEndpointId("ns", name), interface_name=w["iface"],
            ipv4_nets=tuple(sorted((i for i in w["ips"] if ":" not in i), key=ipaddress.ip_network)),
            ipv6_nets=tuple(i for i in w["ips"] if ":" in i))
        for name, w in s["weps"].items() if w["node"] == HOST
    ]
    blocks = [c for c, h in s["blocks"].items()
              if h == HOST and s["affinities"].get((HOST, c)) == "confirmed"]
    return expect(endpoints, blocks)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(datastore_states, min_size=1, max_size=4))
def test_calc_matches_the_oracle_in_every_order(states: list[dict[str, Any]]) -> None:
    check_sequence(make_graph, [Step(to_datastore(s), oracle(s)) for s in states])
