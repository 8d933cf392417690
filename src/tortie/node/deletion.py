"""`tortie node delete NAME`: remove a host from the cluster with everything it owned.

    delete_node(ds, name, dry_run=False) -> NodeDeletion

What a node owns, deleted in this order (each a compare-and-swap on the revision read, so a concurrent
change of one object makes only that one fail, reported as skipped):

    1. the Node itself                       (first: nothing allocates for it or programs it any more)
    2. WorkloadEndpoints and HostEndpoints   spec.node == NAME
       BGPPeers                              spec.node == NAME (peerings configured for this node only)
       CalicoNodeStatus                      spec.node == NAME
       BGPConfiguration, FelixConfiguration  node.NAME (the per-node overrides)
    3. IPAM, through the garbage collector restricted to this host (`IpamCollector(deleting=NAME)`,
       no grace: the host is gone): its addresses (workloads, tunnel addresses; also those borrowed
       from other hosts' blocks) are released, guarded by handle and sequence number, the cool-down
       applying; then its empty blocks and its affinities.

A block of the host that still holds other hosts' addresses (they borrowed from it), or addresses
cooling down, stays; `ipam check` reports it and the periodic GC releases it once it is empty.
Stop the host's node service first: a running one keeps writing its status and tunnel addresses.
With `dry_run` nothing is written and the report says what would go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tortie.common.errors import Conflict, NotFound
from tortie.datastore.api import KV, Datastore
from tortie.model.kinds import kind_info
from tortie.node.ipam_gc import GcReport, IpamCollector

# Kinds whose objects name the node they belong to in spec.node.
NODE_SCOPED_KINDS = ("WorkloadEndpoint", "HostEndpoint", "BGPPeer", "CalicoNodeStatus")
# Kinds with a per-node object named node.<NAME>.
PER_NODE_CONFIG_KINDS = ("BGPConfiguration", "FelixConfiguration")


@dataclass
class NodeDeletion:
    node: str
    existed: bool
    dry_run: bool
    deleted: list[str] = field(default_factory=list)  # "<Kind> <name>"
    skipped: list[str] = field(default_factory=list)
    ipam: GcReport | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "existed": self.existed,
            "dryRun": self.dry_run,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "ipam": None if self.ipam is None else self.ipam.as_dict(),
        }


def owned_objects(ds: Datastore, name: str) -> list[tuple[str, KV]]:
    """(description, stored object) of everything but IPAM that `name` owns, Node first."""
    out: list[tuple[str, KV]] = []
    node = ds.get(kind_info("Node").key(name))
    if node is not None:
        out.append((f"Node {name}", node))
    for kind in NODE_SCOPED_KINDS:
        info = kind_info(kind)
        kvs, _ = ds.list(info.list_prefix())
        for kv in kvs:
            spec: Mapping[str, Any] = kv.value.get("spec") or {}
            if spec.get("node") == name:
                out.append((f"{kind} {kv.key[len(info.list_prefix()):]}", kv))
    for kind in PER_NODE_CONFIG_KINDS:
        found = ds.get(kind_info(kind).key(f"node.{name}"))
        if found is not None:
            out.append((f"{kind} node.{name}", found))
    return out


def delete_node(ds: Datastore, name: str, *, dry_run: bool = False) -> NodeDeletion:
    objects = owned_objects(ds, name)
    result = NodeDeletion(name, any(what.startswith("Node ") for what, _ in objects), dry_run)
    for what, kv in objects:
        if dry_run:
            result.deleted.append(what)
            continue
        try:
            ds.delete(kv.key, expected_revision=kv.mod_revision)
            result.deleted.append(what)
        except (Conflict, NotFound):
            result.skipped.append(f"{what} (changed or deleted meanwhile)")
    result.ipam = IpamCollector(ds, None, None, grace=0.0, deleting=name).run_once(dry_run=dry_run)
    return result
