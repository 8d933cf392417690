"""Kubernetes network policy enforced by real agents: the upstream cases and random policies on `tortie lab`.

One lab for the whole module (2 hosts running `tortie node run`, SQLite, IPv4) holds two layouts of
Kubernetes pods, added through the CNI plugin as kubelet would (`Datacenter.workloads.add(...,
namespace=...)`: CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME, profile `kns.<ns>`):

* Kubernetes' NetworkPolicy e2e layout: namespaces x, y, z with pods a, b, c (label `pod=<name>`,
  named ports serve-80-tcp ...), spread over both hosts;
* sig-network's policy-api conformance layout: the four houses and the staff namespace.

Every case of tortie.testing.k8s_netpol_cases (the e2e suite's cases the model expresses) and of
tortie.testing.k8s_admin_cases (the ANP/BANP conformance cases) runs state after state: one
transaction writes the state's Namespaces (with their labels), its policies and pod relabels
(endpoint updates) and deletes the previous state's policies; then the lab's reachability is probed
— every ordered pair of the layout's pods, TCP and UDP, ports 80 and 81 (the conformance layout: its
TCP 80/8080 and UDP 53/5353), all at once (`Datacenter.matrices`) — until it equals the independent
reference evaluator's (tortie.testing.k8s_reference) for the same pods and addresses, or a deadline
passes. The e2e test's own expectations and the conformance test's own probes, where they are TCP
or UDP, are checked against the lab too. Then a sample of the calc-level property test's random
policies (tests/k8s_policy_strategies.py, with random namespace and pod labels) runs the same way.

Agents apply asynchronously, so a probe may see the previous state: a state whose expected matrix
equals what the lab showed last could pass without the agents doing anything, so such a state is
preceded by a separator (no policy: all allowed, or deny-all ingress: all denied, whichever differs).
SCTP is not probed on the lab (the calc-level tests cover it). Namespaces and pods stay for the
whole module; each test leaves its policies behind for the next to replace.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from k8s_policy_strategies import Vocabulary, namespace_labels, pod_labels, policies, valid
from tortie.datastore.resources import ResourceStore
from tortie.lab.datacenter import Datacenter
from tortie.lab.spec import LabSpec
from tortie.model import Resource, parse_resource
from tortie.testing.k8s_admin_cases import admin_cases
from tortie.testing.k8s_netpol_cases import netpol_cases
from tortie.testing.k8s_netpol_steps import IDS
from tortie.testing.k8s_reference import Cluster, Connection, Pod
from tortie.testing.k8s_world import (
    E2E_NAMESPACES,
    conformance_namespaces,
    conformance_pods,
    e2e_pods,
    namespace,
    network_policy,
)
from tortie.testing.netns import unique_name

pytestmark = [pytest.mark.root, pytest.mark.slow]

E2E_CHECKS = (("tcp", 80), ("tcp", 81), ("udp", 80), ("udp", 81))
CONFORMANCE_CHECKS = (("tcp", 80), ("tcp", 8080), ("udp", 53), ("udp", 5353))
PROBE_TIMEOUT = 1.0  # a denied pair costs this once per round; an allowed one answers in milliseconds
CONVERGE = 45.0  # seconds for the agents to apply a state (generous: a loaded 2-core machine)
Matrices = dict[tuple[str, int], dict[str, dict[str, bool]]]


class Layout:
    """Pods of one layout in the lab: their lab workload names and reference `Pod`s (lab addresses)."""

    def __init__(self, pods: Sequence[Pod], namespaces: Mapping[str, Mapping[str, str]], checks: Any) -> None:
        self.pods = list(pods)
        self.namespaces = {n: dict(labels) for n, labels in namespaces.items()}
        self.checks: tuple[tuple[str, int], ...] = tuple(checks)
        self.names = [workload(p) for p in self.pods]
        self.last: Matrices | None = None  # what the lab showed last

    def expected(
        self, pods: Sequence[Pod], namespaces: Mapping[str, Mapping[str, str]], manifests: list[Any]
    ) -> Matrices:
        cluster = Cluster(list(pods), namespaces, manifests)
        out: Matrices = {}
        for protocol, port in self.checks:
            out[protocol, port] = {
                workload(a): {
                    workload(b): cluster.allowed(Connection(a, b, protocol.upper(), port))
                    for b in pods
                    if b is not a
                }
                for a in pods
            }
        return out


def workload(pod: Pod) -> str:
    """The lab workload name of a pod (unique in the lab, at most 13 characters): `x-a` for e2e pods,
    the first name and ordinal for the conformance ones (`harry-0`, `dumbledore-0`)."""
    if pod.namespace in E2E_NAMESPACES:
        return f"{pod.namespace}-{pod.name}"
    words = pod.name.split("-")
    return f"{words[1] if words[0] == 'professor' else words[0]}-{words[-1]}"


class LabCluster:
    """The module's lab: writes cluster states and waits for the agents to enforce them."""

    def __init__(self, dc: Datacenter, e2e: Layout, conformance: Layout) -> None:
        self.dc = dc
        self.ds = dc.datastore()
        self.store = ResourceStore(self.ds)
        self.e2e = e2e
        self.conformance = conformance
        self.written: dict[str, Resource] = {}  # key -> the Namespace or policy last written
        self.labels = {p.id: dict(p.labels) for p in (*e2e.pods, *conformance.pods)}

    def write(
        self,
        namespaces: Mapping[str, Mapping[str, str]],
        manifests: Sequence[Any],
        labels: Mapping[str, Mapping[str, str]],
    ) -> None:
        """One transaction: these Namespaces and policies, the previous policies gone, pods relabelled."""
        desired = [parse_resource(namespace(n, dict(ls))) for n, ls in namespaces.items()]
        desired += [parse_resource(dict(m)) for m in manifests]
        keys = {r.key for r in desired}
        writes: list[tuple[str, Resource]] = [
            ("delete", old)
            for key, old in self.written.items()
            if key not in keys and old.kind != "Namespace"
        ]
        writes += [("apply", r) for r in desired if self.written.get(r.key) != r]
        for pod_id, pod_labels_now in labels.items():
            if self.labels[pod_id] != dict(pod_labels_now):
                writes.append(("replace", self._relabelled(pod_id, pod_labels_now)))
                self.labels[pod_id] = dict(pod_labels_now)
        if writes:
            self.store.write_all(writes)
        self.written = {key: r for key, r in self.written.items() if r.kind == "Namespace"}
        self.written.update({r.key: r for r in desired})

    def _relabelled(self, pod_id: str, labels: Mapping[str, str]) -> Resource:
        ns, name = pod_id.split("/")
        record = self.dc.lab.state.workloads[workload(Pod(ns, name, ""))]
        wire = self.store.get("WorkloadEndpoint", record.endpoint, ns).to_wire()
        system = {k: v for k, v in wire["metadata"]["labels"].items() if k.startswith("projectcalico.org/")}
        wire["metadata"]["labels"] = {**system, **labels}
        wire["metadata"].pop("resourceVersion", None)
        return parse_resource(wire)

    def run(
        self,
        layout: Layout,
        manifests: Sequence[Any],
        ns_labels: Mapping[str, Mapping[str, str]] | None = None,
        pod_labels_by_id: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Matrices:
        """Apply a state of `layout` and wait until the lab's reachability is the reference's; returns it."""
        namespaces = {n: {**layout.namespaces[n], **(ns_labels or {}).get(n, {})} for n in layout.namespaces}
        labels = {p.id: dict((pod_labels_by_id or {}).get(p.id, p.labels)) for p in layout.pods}
        pods = [replace(p, labels=labels[p.id]) for p in layout.pods]
        want = layout.expected(pods, namespaces, list(manifests))
        if want == layout.last:  # indistinguishable from what the lab shows now: go elsewhere first
            self._separate(layout, want)
        self.write(namespaces, manifests, labels)
        self._converge(layout, want, what=f"{len(manifests)} policies")
        return want

    def _separate(self, layout: Layout, current: Matrices) -> None:
        all_open = all(ok for table in current.values() for row in table.values() for ok in row.values())
        separator = (
            [
                network_policy("lab-separator", n, {"podSelector": {}, "policyTypes": ["Ingress"]})
                for n in layout.namespaces
            ]
            if all_open
            else []
        )
        namespaces = {n: dict(ls) for n, ls in layout.namespaces.items()}
        labels = {p.id: dict(p.labels) for p in layout.pods}
        pods = [replace(p, labels=labels[p.id]) for p in layout.pods]
        self.write(namespaces, separator, labels)
        self._converge(layout, layout.expected(pods, namespaces, separator), what="separator")

    def _converge(self, layout: Layout, want: Matrices, what: str) -> None:
        deadline = time.monotonic() + CONVERGE
        while True:
            got = self.dc.matrices(layout.checks, PROBE_TIMEOUT, workloads=layout.names)
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        layout.last = got
        wrong = [
            f"{protocol}/{port} {src}->{dst}: expected {'allow' if ok else 'deny'}"
            for (protocol, port), table in want.items()
            for src, row in table.items()
            for dst, ok in row.items()
            if got[protocol, port][src][dst] != ok
        ]
        assert not wrong, f"{what}: the lab differs from the reference after {CONVERGE:.0f}s: {wrong}"

    def close(self) -> None:
        self.ds.close()


@pytest.fixture(scope="module")
def lab() -> Iterator[LabCluster]:
    dc = Datacenter.up(LabSpec(name=unique_name("k8s"), hosts=2, ip_family="ipv4"), timeout=90.0)
    try:
        e2e, conf = e2e_pods(dc.hosts), conformance_pods(dc.hosts)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = {
                p.id: pool.submit(
                    dc.workloads.add,
                    workload(p),
                    p.node,
                    labels=p.labels,
                    namespace=p.namespace,
                    ports=[f"{name}:{proto.lower()}:{port}" for name, proto, port in p.ports],
                    pod=p.name,
                )
                for p in (*e2e, *conf)
            }
            ips = {pod_id: future.result().ips[0] for pod_id, future in futures.items()}
        e2e_layout = Layout(
            [replace(p, ip=ips[p.id]) for p in e2e], {n: {"ns": n} for n in E2E_NAMESPACES}, E2E_CHECKS
        )
        conf_layout = Layout(
            [replace(p, ip=ips[p.id]) for p in conf], conformance_namespaces(), CONFORMANCE_CHECKS
        )
        cluster = LabCluster(dc, e2e_layout, conf_layout)
        try:
            yield cluster
        finally:
            cluster.close()
    finally:
        dc.down()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, lab: LabCluster) -> None:
    request.node.built_labs = [lab.dc]  # tests/e2e/conftest.py attaches their logs to a failure


def _e2e_cases(lab: LabCluster) -> dict[str, Any]:
    return netpol_cases({p.id: p.ip for p in lab.e2e.pods})


NETPOL_CASE_NAMES = sorted(netpol_cases({pod_id: "10.0.0.1" for pod_id in IDS}))
ADMIN_CASE_NAMES = sorted(admin_cases("10.0.0.1", ["10.0.0.0/24"]))


@pytest.mark.parametrize("case", NETPOL_CASE_NAMES)
def test_netpol_e2e_case_on_the_lab(lab: LabCluster, case: str) -> None:
    for step, state in enumerate(_e2e_cases(lab)[case]):
        got = lab.run(lab.e2e, state.policies, state.ns_labels, state.pod_labels)
        for protocol, port, expected in state.probes:  # the e2e test's own expectations
            if protocol in ("TCP", "UDP"):
                table = got[protocol.lower(), port]
                wrong = [(a, b) for (a, b), ok in expected.items() if table[_name(a)][_name(b)] != ok]
                assert not wrong, (step, protocol, port, "the e2e expectation", wrong)


def _name(pod_id: str) -> str:
    return pod_id.replace("/", "-")


@pytest.mark.parametrize("case", ADMIN_CASE_NAMES)
def test_admin_conformance_case_on_the_lab(lab: LabCluster, case: str) -> None:
    by_name = {p.name: p for p in lab.conformance.pods}
    ravenclaw = [f"{p.ip}/32" for p in lab.conformance.pods if p.name.startswith("luna-lovegood")]
    for step, state in enumerate(admin_cases(by_name["luna-lovegood-0"].ip, ravenclaw)[case]):
        got = lab.run(lab.conformance, state.policies)
        for client, server, protocol, port, allowed in state.probes:  # the conformance test's own
            if (protocol.lower(), port) in got:
                seen = got[protocol.lower(), port][workload(by_name[client])][workload(by_name[server])]
                assert seen == allowed, (step, client, server, protocol, port)


def _lab_words(lab: LabCluster) -> Vocabulary:
    ip = {p.id: p.ip for p in lab.e2e.pods}
    return Vocabulary(
        namespaces=E2E_NAMESPACES,
        cidrs=(
            ("10.244.0.0/16", (f"{ip['x/b']}/32", f"{ip['y/c']}/32")),
            (f"{ip['y/a']}/32", ()),
            ("0.0.0.0/0", ("10.0.0.0/8",)),
            ("0.0.0.0/0", (f"{ip['z/a']}/32",)),
            ("192.168.0.0/16", ()),
        ),
        networks=("10.244.0.0/16", f"{ip['x/a']}/32", "0.0.0.0/0", "192.168.0.0/16", "fd00::/8"),
        port_names=("serve-80-tcp", "serve-81-udp", "serve-80-sctp", "missing"),
        ports=(80, 81, 85),
    )


@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each example takes seconds
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the log-attaching fixture; the lab is the module's
    ],
)
@given(data=st.data())
def test_random_policies_on_the_lab(lab: LabCluster, data: st.DataObject) -> None:
    ns_labels = {n: data.draw(namespace_labels(), label=f"namespace {n}") for n in E2E_NAMESPACES}
    labels = {p.id: {**p.labels, **data.draw(pod_labels(), label=f"pod {p.id}")} for p in lab.e2e.pods}
    manifests = data.draw(policies(list(E2E_NAMESPACES), _lab_words(lab)), label="policies")
    assume(valid(manifests))
    lab.run(lab.e2e, manifests, ns_labels, labels)
