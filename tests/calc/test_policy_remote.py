"""Remote WorkloadEndpoints read straight from the wire (`calc.policy_remote`): the same item as
the full model parse for valid objects, absent for invalid fields policy reads, and the wiring
through the validation filter (remote -> local -> remote, deletes, invalid values)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tortie.calc.policy_graph import PolicyGraph
from tortie.calc.policy_items import workload_item
from tortie.calc.policy_remote import InvalidEndpoint, remote_workload_item
from tortie.dataplane.messages import Message
from tortie.dataplane.messages.policy import EndpointPolicyRemove, EndpointPolicyUpdate, IPSetUpdate
from tortie.datastore.syncer import InSync
from tortie.model import ValidationError, parse_resource
from tortie.testing.calc_harness import kv_event
from tortie.testing.policy_world import gnp, key_of, wep

LABEL = st.from_regex(r"[a-z]([a-z0-9.-]{0,8}[a-z0-9])?", fullmatch=True)
# Object names, profile names and label-key prefixes are DNS-1123 subdomains: no empty dot-parts.
NAME = st.from_regex(
    r"[a-z]([a-z0-9-]{0,4}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?){0,2}", fullmatch=True
)
LABEL_KEY = st.one_of(LABEL, st.builds(lambda p, n: f"{p}.io/{n}", NAME, LABEL))
ADDRESS = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda i: f"{i >> 24}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"),
    st.integers(0, 2**16 - 1).map(lambda i: f"fd00::{i:x}"),
)
NETWORK = st.builds(
    lambda a, suffix: a + (("/128" if ":" in a else "/32") if suffix else ""), ADDRESS, st.booleans()
)
PORT = st.fixed_dictionaries(
    {"protocol": st.sampled_from(["TCP", "UDP", "SCTP", "tcp", 6, 17]), "port": st.integers(1, 65535)},
    optional={
        "name": st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True),
        "hostPort": st.integers(1, 65535),
    },
).filter(lambda p: "name" in p or "hostPort" in p)


@st.composite
def endpoints(draw: Any) -> dict[str, Any]:
    obj = wep(
        draw(NAME),
        draw(st.lists(NETWORK, max_size=3)),
        node="elsewhere",
        namespace=draw(st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)),
        labels=draw(st.dictionaries(LABEL_KEY, st.one_of(LABEL, st.just("")), max_size=4)),
        profiles=draw(st.lists(NAME, max_size=3, unique=True)),
        ports=draw(st.lists(PORT, max_size=3)),
        service_account=draw(st.one_of(st.none(), NAME)),
    )
    if draw(st.booleans()):
        del obj["spec"]["orchestrator"]
    return obj


@settings(max_examples=300, deadline=None)
@given(endpoints())
def test_the_wire_reader_gives_what_the_full_parse_gives(obj: dict[str, Any]) -> None:
    """Same item for a valid endpoint; invalid for the reader whenever the model rejects it (the
    generator varies only fields policy reads)."""
    try:
        expected = workload_item(parse_resource(obj))
    except ValidationError:
        with pytest.raises((ValueError, TypeError)):
            remote_workload_item(key_of(obj), obj)
        return
    assert remote_workload_item(key_of(obj), obj) == expected


def _broken(path: tuple[Any, ...], value: Any) -> tuple[str, dict[str, Any]]:
    obj = wep("w", "10.0.0.1/32", node="elsewhere", labels={"app": "a"},
              ports=[{"name": "http", "protocol": "TCP", "port": 80}])
    key = key_of(obj)
    node: Any = obj
    if not path:
        return key, obj
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return key, obj


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("metadata", "labels"), {"bad key!": "a"}),
        (("metadata", "labels"), {"app": "not a value"}),
        (("metadata", "labels"), {"app": 3}),
        (("metadata", "namespace"), "Not_A_Namespace"),
        (("spec", "ipNetworks"), ["10.0.0.0/24"]),
        (("spec", "ipNetworks"), ["10.0.0.300"]),
        (("spec", "ipNetworks"), "10.0.0.1"),
        (("spec", "profiles"), ["Bad_Profile"]),
        (("spec", "orchestrator"), ""),
        (("spec", "ports"), [{"name": "http", "protocol": "TCP", "port": 0}]),
        (("spec", "ports"), [{"name": "http", "protocol": "ICMP", "port": 80}]),
        (("spec", "ports"), [{"protocol": "TCP", "port": 80}]),
        (("spec", "ports"), [{"name": "Not-IANA", "protocol": "TCP", "port": 80}]),
        (("kind",), "HostEndpoint"),
    ],
)
def test_an_invalid_field_policy_reads_makes_the_endpoint_invalid(path: tuple[Any, ...], value: Any) -> None:
    key, obj = _broken(path, value)
    assert remote_workload_item(*_broken((), None)) is not None  # the unbroken object is fine
    with pytest.raises((ValueError, TypeError)):
        remote_workload_item(key, obj)


def test_an_object_not_at_its_own_key_is_invalid() -> None:
    obj = wep("w", "10.0.0.1/32", node="elsewhere")
    with pytest.raises(InvalidEndpoint):
        remote_workload_item(key_of(wep("other", "10.0.0.1/32")), obj)


def _members(out: list[Message]) -> dict[str, frozenset[object]]:
    return {m.id: m.members for m in out if isinstance(m, IPSetUpdate)}


def test_remote_endpoints_feed_sets_through_the_validation_filter() -> None:
    out: list[Message] = []
    graph = PolicyGraph("h1", out.append)
    local = wep("l", "10.0.0.1/32", labels={"app": "db"}, iface="tortl")
    allow_web = {"action": "Allow", "source": {"selector": "role == 'web'"}}
    policy = gnp("db-in", selector="app == 'db'", ingress=[allow_web])
    remote = wep("r", "10.0.9.9/32", node="h2", labels={"role": "web"})
    for obj in (local, policy, remote):
        graph.on_event(kv_event(key_of(obj), obj))
    graph.on_event(InSync())
    graph.flush()
    ((set_id, members),) = _members(out).items()
    assert members == {"10.0.9.9/32"}

    def put(obj: dict[str, Any] | None, key: str) -> dict[str, frozenset[object]]:
        out.clear()
        graph.on_event(kv_event(key, obj))
        graph.flush()
        return _members(out)

    key = key_of(remote)
    assert put(wep("r", "10.0.9.9/32", node="h2", labels={"role": "db"}), key) == {set_id: frozenset()}
    assert put(remote, key) == {set_id: frozenset({"10.0.9.9/32"})}
    invalid = wep("r", "10.0.9.0/24", node="h2", labels={"role": "web"})
    assert put(invalid, key) == {set_id: frozenset()}  # invalid: absent
    assert put(remote, key) == {set_id: frozenset({"10.0.9.9/32"})}
    # moving to this host: parsed in full, becomes a local endpoint (its own policy messages)
    out.clear()
    graph.on_event(kv_event(key, wep("r", "10.0.9.9/32", node="h1", labels={"role": "web"}, iface="tortr")))
    graph.flush()
    assert any(isinstance(m, EndpointPolicyUpdate) and m.id.name == "r" for m in out)
    # and back to another host: its local state goes
    out.clear()
    graph.on_event(kv_event(key, remote))
    graph.flush()
    assert any(isinstance(m, EndpointPolicyRemove) and m.id.name == "r" for m in out)
    assert put(None, key) == {set_id: frozenset()}
