"""sig-network policy-api conformance cases for AdminNetworkPolicy and BaselineAdminNetworkPolicy, at
the calc level (kubernetes-sigs/network-policy-api conformance/tests; the cases are
tortie.testing.k8s_admin_cases, shared with the lab test tests/e2e/test_k8s_lab.py).

Layout: the suite's houses (tortie.testing.k8s_world.conformance_pods). For each case and state:
the probes the conformance test makes (client, server, protocol, port, expected) hold for the
independent reference evaluator; and for every ordered pair of pods and every served protocol/port,
tortie's verdicts (the manifests -> the real calc, which translates them -> rendered nftables ->
interpreter, and
`tortie policy trace`'s evaluator on the same calc output) and the Calico-semantics test oracle on the
translated resources equal the reference's.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tortie.testing.k8s_admin_cases import Probe, admin_cases
from tortie.testing.k8s_reference import Cluster, Connection
from tortie.testing.k8s_world import (
    CONFORMANCE_PORTS,
    TortieVerdicts,
    conformance_namespaces,
    conformance_pods,
)

PODS = conformance_pods()
BY_NAME = {p.name: p for p in PODS}
NAMESPACES = conformance_namespaces()
CASES = admin_cases(BY_NAME["luna-lovegood-0"].ip, ["10.2.3.0/24"])  # the ravenclaw pods' subnet here


def _reference_probe(cluster: Cluster, probe: Probe) -> bool:
    client, server, protocol, port, _ = probe
    return cluster.allowed(Connection(BY_NAME[client], BY_NAME[server], protocol, port))


@pytest.mark.parametrize("case", sorted(CASES))
def test_conformance_case(case: str) -> None:
    for step, state in enumerate(CASES[case]):
        reference = Cluster(PODS, NAMESPACES, state.policies)
        tortie = TortieVerdicts(PODS, NAMESPACES, state.policies)
        wrong = [p for p in state.probes if _reference_probe(reference, p) != p[4]]
        assert not wrong, (step, "the reference disagrees with the conformance test", wrong)
        for protocol, port in CONFORMANCE_PORTS:
            for a in PODS:
                for b in PODS:
                    if a is b:
                        continue
                    conn = Connection(a, b, protocol, port)
                    want = reference.allowed(conn)
                    assert tortie.allowed(conn) == want, (step, a.id, b.id, protocol, port, want)
                    assert tortie.trace_allowed(conn) == want, ("trace", step, a.id, b.id, protocol, port)
                    assert tortie.oracle_allowed(conn) == want, ("oracle", step, a.id, b.id, protocol, port)


def test_probes_cover_every_action_outcome() -> None:
    probes: Sequence[Probe] = [p for states in CASES.values() for s in states for p in s.probes]
    assert {p[4] for p in probes} == {True, False}
    assert {(p[2], p[3]) for p in probes} >= {
        ("TCP", 80),
        ("TCP", 8080),
        ("UDP", 53),
        ("UDP", 5353),
        ("SCTP", 9003),
    }
