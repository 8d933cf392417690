"""Kubernetes' own NetworkPolicy e2e cases (kubernetes test/e2e/network/netpol), at the calc level.

Layout: namespaces x, y, z, pods a, b, c in each (label `pod=<name>`), every pod serving 80 and 81 over
TCP, UDP and SCTP under the names `serve-<port>-<proto>`, spread over two hosts; every test uses all
nine pods. Each case (tortie.testing.k8s_netpol_cases, shared with the lab test
tests/e2e/test_k8s_lab.py) is a sequence of cluster states (policies, namespace and pod labels) as
the e2e test steps through them; for each state:

* the reachability the e2e test expects for the probes it makes (written from its expectations,
  extended to all nine pods) equals the independent reference evaluator's
  (tortie.testing.k8s_reference), so the reference reads Kubernetes as Kubernetes' tests do;
* for every ordered pair of pods, TCP, UDP and SCTP, ports 80 and 81, tortie's verdicts — the
  manifests through the real calc (which translates them), then the rendered nftables table run by
  its interpreter, and `tortie policy trace`'s evaluator on the same calc output, on each host
  crossed — equal the reference's;
* on the probes, the Calico-semantics test oracle (tortie.testing.policy_oracle) run on the
  translated resources agrees too.

Pod-to-itself traffic is left out, as the e2e suite ignores loopback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest

from tortie.testing.k8s_netpol_cases import netpol_cases
from tortie.testing.k8s_netpol_steps import State
from tortie.testing.k8s_reference import Cluster, Connection, Pod
from tortie.testing.k8s_world import E2E_NAMESPACES, TortieVerdicts, e2e_pods

PODS = e2e_pods()
CASES = netpol_cases({p.id: p.ip for p in PODS})


def _cluster(state: State) -> tuple[list[Pod], dict[str, dict[str, str]]]:
    pods = [replace(p, labels=dict(state.pod_labels.get(p.id, p.labels))) for p in PODS]
    namespaces = {n: {"ns": n, **state.ns_labels.get(n, {})} for n in E2E_NAMESPACES}
    return pods, namespaces


def _differences(expected: Mapping[tuple[str, str], bool], got: Mapping[tuple[str, str], bool]) -> list[str]:
    return [
        f"{a}->{b}: expected {'allow' if v else 'deny'}" for (a, b), v in expected.items() if got[a, b] != v
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_e2e_case(case: str) -> None:
    for step, state in enumerate(CASES[case]):
        pods, namespaces = _cluster(state)
        reference = Cluster(pods, namespaces, state.policies)
        tortie = TortieVerdicts(pods, namespaces, state.policies)
        for protocol, port, expected in state.probes:
            got = reference.matrix(protocol, port)
            assert not _differences(expected, got), (step, protocol, port, _differences(expected, got))
            oracle = {
                (a.id, b.id): tortie.oracle_allowed(Connection(a, b, protocol, port))
                for a in pods
                for b in pods
                if a is not b
            }
            assert not _differences(got, oracle), ("oracle", step, protocol, port)
        for protocol in ("TCP", "UDP", "SCTP"):
            for port in (80, 81):
                want = reference.matrix(protocol, port)
                assert not _differences(want, tortie.matrix(protocol, port)), (step, protocol, port)
                traced = {
                    (a.id, b.id): tortie.trace_allowed(Connection(a, b, protocol, port))
                    for a in pods
                    for b in pods
                    if a is not b
                }
                assert not _differences(want, traced), ("trace", step, protocol, port)


def test_cases_cover_tcp_udp_sctp_and_both_ports() -> None:
    probes = {(p, port) for states in CASES.values() for s in states for p, port, _ in s.probes}
    assert {("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81), ("SCTP", 80), ("SCTP", 81)} <= probes
