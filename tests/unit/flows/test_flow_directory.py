"""The flow logs' endpoint directory: a dual-stack endpoint is found by each of its addresses in
canonical text, however the datastore spelled them; wider networks count by their first address and
junk is skipped, as before the fast paths."""

from __future__ import annotations

from typing import Any

from tortie.flows.directory import EndpointDirectory
from tortie.model.kinds import kind_info


def wep(name: str, nets: list[Any], node: str = "h2") -> tuple[str, dict[str, Any]]:
    key = kind_info("WorkloadEndpoint").key(name, "prod")
    value = {"metadata": {"name": name, "namespace": "prod", "labels": {"app": name}},
             "spec": {"node": node, "workload": name, "ipNetworks": nets}}
    return key, value


def test_dual_stack_endpoints_are_found_by_either_canonical_address() -> None:
    directory = EndpointDirectory()
    directory.on_update(*wep("db", ["10.0.0.2/32", "FD00:0:0::0002/128"]))
    odd = ["10.1.0.0/24", "fd00:1::/64", "::ffff:1.2.3.4/128", "junk", 7, "10.0.0.9/33"]
    directory.on_update(*wep("odd", odd))
    for ip in ("10.0.0.2", "fd00::2"):
        found = directory.peer(ip)
        assert (found.kind, found.name, found.namespace, found.ip) == ("workload", "db", "prod", ip)
    for ip in ("10.1.0.0", "fd00:1::", "::ffff:102:304"):
        assert directory.peer(ip).name == "odd", ip
    assert directory.peer("10.0.0.9").kind == "net"
    directory.on_update(kind_info("WorkloadEndpoint").key("db", "prod"), None)
    assert directory.peer("fd00::2").kind == "net"
