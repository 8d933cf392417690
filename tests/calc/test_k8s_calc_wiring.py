"""The calc reads the Kubernetes kinds itself (tortie.calc.kubernetes_calc).

* Incremental == from scratch, in any order (conventions #2): pods before or after their Namespace,
  a NetworkPolicy before its namespace exists, relabelled and deleted Namespaces, admin policies, and
  stored Calico objects that a translation shadows.
* What the calc sends for a datastore holding Kubernetes objects is what it sends for the same
  datastore holding their translations instead (the pure `tortie.k8s.translate`), a translation
  taking the place of a stored object at its key.
* The behaviour that follows: a pod of a namespace without a Namespace object is isolated (its
  profile `kns.<ns>` does not exist); the Namespace's creation opens it and makes the waiting
  NetworkPolicy's isolation visible; deleting it closes the namespace again.
* A Namespace relabel re-evaluates only the endpoints of that namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from test_policy_calc import expected_from_scratch  # also registers the policy message tables

from tortie.calc.policy_graph import PolicyGraph, run_snapshot
from tortie.datastore.syncer import InSync
from tortie.k8s.translate import translate
from tortie.model import parse_resource
from tortie.policy.trace import Packet
from tortie.selector.label_index.base import IndexBase
from tortie.testing import calc_harness as h
from tortie.testing.calc_harness import kv_event
from tortie.testing.k8s_world import admin_policy, baseline_policy, namespace, network_policy
from tortie.testing.policy_world import gnp, key_of, keyed, np, profile, trace_decision, wep


def pod(name: str, ns: str, ip: str, node: str = "h1", **labels: str) -> dict[str, Any]:
    return wep(
        f"{ns}-{name}",
        f"{ip}/32",
        node=node,
        namespace=ns,
        labels={"pod": name, **labels},
        profiles=[f"kns.{ns}"],
        iface=f"tort{ns}{name}",
        orchestrator="k8s",
    )


XA, XB = pod("a", "x", "10.1.0.10"), pod("b", "x", "10.1.0.11", node="h2")
YA = pod("a", "y", "10.1.1.10")
NS_X, NS_Y = namespace("x", {"team": "red"}), namespace("y", {"team": "blue"})
NS_X_RELABELLED = namespace("x", {"team": "blue"})
# x/a accepts only from namespaces labelled team=blue
ONLY_BLUE = network_policy(
    "only-blue",
    "x",
    {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}],
    },
)
ANP = admin_policy(
    "deny-red",
    10,
    {"namespaces": {}},
    ingress=[{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"team": "red"}}}]}],
)
BANP = baseline_policy(
    {"namespaces": {}},
    egress=[
        {
            "action": "Deny",
            "to": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}}],
        }
    ],
)
STORED_KNS_X = profile("kns.x", ingress=[{"action": "Deny"}], egress=[{"action": "Deny"}])
STORED_KNP = np("knp.default.only-blue", "x", selector="all()", ingress=[{"action": "Deny"}])
STORED_KANP = gnp(
    "kanp.adminnetworkpolicy.deny-red", selector="all()", tier="kube-admin", ingress=[{"action": "Deny"}]
)


def state(*objs: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return dict(keyed(objs))


def make_graph(sink: h.Sink) -> PolicyGraph:
    return PolicyGraph("h1", sink)


def steps(*states: dict[str, Mapping[str, Any]]) -> list[h.Step]:
    return [h.Step(s, expected_from_scratch(s)) for s in states]


def test_sequence_namespaces_policies_and_pods_in_any_order() -> None:
    h.check_sequence(
        make_graph,
        steps(
            state(XA, XB, YA),
            state(XA, XB, YA, ONLY_BLUE),  # the policy's namespace has no Namespace object yet
            state(XA, XB, YA, ONLY_BLUE, NS_X, NS_Y),
            state(XA, XB, YA, ONLY_BLUE, NS_X_RELABELLED, NS_Y),
            state(XA, YA, ONLY_BLUE, NS_Y, ANP, BANP),  # Namespace x deleted, x/b gone
            state(NS_X, NS_Y, ONLY_BLUE, ANP),  # Namespaces and policies before any pod
            state(XA, XB, YA, NS_X, NS_Y, ONLY_BLUE, ANP, BANP),
        ),
    )


def test_sequence_translations_shadow_stored_objects() -> None:
    h.check_sequence(
        make_graph,
        steps(
            state(XA, YA, STORED_KNS_X, STORED_KNP, STORED_KANP),
            state(XA, YA, STORED_KNS_X, STORED_KNP, STORED_KANP, NS_X, ONLY_BLUE, ANP),
            state(XA, YA, STORED_KNS_X, STORED_KNP, NS_Y, ANP),
            state(XA, YA, NS_X, NS_Y, ONLY_BLUE, ANP),
        ),
    )


def _translated(objs: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The datastore with every Kubernetes object replaced by its translation, which takes the
    place of a stored object at the same key."""
    out: dict[str, Mapping[str, Any]] = {}
    for obj in objs:
        if obj["apiVersion"] == "projectcalico.org/v3":
            out.setdefault(key_of(obj), obj)
    for obj in objs:
        if obj["apiVersion"] != "projectcalico.org/v3":
            wire = translate(parse_resource(dict(obj))).to_wire()
            out[key_of(wire)] = wire
    return list(out.values())


@pytest.mark.parametrize("host", ["h1", "h2"])
@pytest.mark.parametrize(
    "objs",
    [
        [XA, XB, YA, NS_X, NS_Y, ONLY_BLUE, ANP, BANP],
        [XA, XB, YA, NS_Y, ONLY_BLUE],
        [XA, XB, YA, NS_X, NS_Y, ONLY_BLUE, ANP, STORED_KNS_X, STORED_KNP, STORED_KANP],
    ],
    ids=["all-kinds", "no-namespace-x", "shadowing"],
)
def test_the_calc_sends_what_the_translations_would_make_it_send(
    objs: list[Mapping[str, Any]], host: str
) -> None:
    assert run_snapshot(host, keyed(objs)) == run_snapshot(host, keyed(_translated(objs)))


def _verdict(objs: list[Mapping[str, Any]], src: Mapping[str, Any], dst: Mapping[str, Any]) -> str:
    """Allowed on every host the packet crosses (egress of src on its host, ingress of dst on its)."""
    pkt = Packet(src["spec"]["ipNetworks"][0][:-3], dst["spec"]["ipNetworks"][0][:-3], 6, 40000, 80)
    hosts = dict.fromkeys((src["spec"]["node"], dst["spec"]["node"]))
    names = src["metadata"]["name"], dst["metadata"]["name"]
    verdicts = [trace_decision(objs, host, pkt, *names) for host in hosts]
    return "accept" if all(v == "accept" for v in verdicts) else "drop"


def test_a_namespace_without_its_namespace_object_is_closed_until_it_appears() -> None:
    pods = [XA, XB, YA]
    assert _verdict([*pods, NS_Y], YA, XA) == "drop"  # no kns.x: x's pods allow nothing
    assert _verdict([*pods, NS_Y], XB, YA) == "drop"
    waiting = [*pods, NS_Y, ONLY_BLUE]
    assert _verdict(waiting, YA, XA) == "accept"  # the policy selects x's pods by namespace name
    assert _verdict(waiting, XA, YA) == "drop"  # but what it does not cover stays closed
    assert _verdict(waiting, XB, XA) == "drop"
    opened = [*pods, NS_X, NS_Y, ONLY_BLUE]
    assert _verdict(opened, YA, XA) == "accept"  # y is blue
    assert _verdict(opened, XB, XA) == "drop"  # x is red: only-blue isolates x/a now
    assert _verdict(opened, XA, XB) == "accept"  # x/b is selected by no policy
    relabelled = [*pods, NS_X_RELABELLED, NS_Y, ONLY_BLUE]
    assert _verdict(relabelled, XB, XA) == "accept"  # x is blue now
    assert _verdict([*pods, NS_Y, ONLY_BLUE], XA, XB) == "drop"  # Namespace x deleted: closed again


def test_a_namespace_relabel_reevaluates_only_that_namespaces_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relabelled: list[object] = []
    original = IndexBase._relabel

    def counting(self: IndexBase, item_id: Any, item: Any) -> Any:
        relabelled.append(item_id)
        return original(self, item_id, item)

    monkeypatch.setattr(IndexBase, "_relabel", counting)
    others = [
        pod(f"p{i}", "big", f"10.2.{i // 250}.{i % 250 + 1}", node="h1" if i % 10 else "h2")
        for i in range(300)
    ]
    graph = PolicyGraph("h1", lambda _msg: None)
    for key, value in keyed([*others, XA, XB, YA, NS_X, NS_Y, namespace("big"), ONLY_BLUE, ANP]):
        graph.on_event(kv_event(key, value))
    graph.on_event(InSync())
    graph.flush()
    relabelled.clear()
    graph.on_event(kv_event(key_of(NS_X_RELABELLED), NS_X_RELABELLED, 2))
    graph.flush()
    # x/a (local) is in both label indexes (policy selectors, IP sets), x/b (remote) in the IP set one
    assert 0 < len(relabelled) <= 3
    assert all("big" not in str(item) for item in relabelled)
