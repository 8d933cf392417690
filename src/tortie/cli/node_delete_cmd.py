"""`tortie node delete NAME [--dry-run] [-o table|json]`: remove a host and everything it owned.

The Node, its workload and host endpoints, its BGP peers, CalicoNodeStatus and per-node BGP and Felix
configuration, then its addresses, blocks and block affinities (`tortie.node.deletion`). Exit 0 when
done (also when the Node did not exist: what it left is cleaned up), 1 on a user error.
"""

from __future__ import annotations

import argparse
import json
from contextlib import closing
from typing import TYPE_CHECKING

from tortie.cli.context import open_store
from tortie.cli.node_status_cmd import node_subparsers

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers


def register(sub: SubParsers) -> None:
    p = node_subparsers(sub).add_parser(
        "delete", help="remove a host from the cluster with its endpoints, peers, config and addresses"
    )
    p.add_argument("name", help="the Node's name")
    p.add_argument("--dry-run", action="store_true", help="print what would be deleted; change nothing")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=_delete)


def _delete(args: argparse.Namespace) -> int:
    from tortie.node.deletion import delete_node

    with closing(open_store(args)) as ds:
        result = delete_node(ds, args.name, dry_run=args.dry_run)
    if args.output == "json":
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    verb = "Would delete" if args.dry_run else "Deleted"
    if not result.existed:
        print(f"Node {args.name} does not exist; cleaning up what it left.")
    for what in result.deleted:
        print(f"{verb} {what}")
    for what in result.skipped:
        print(f"Left alone: {what}")
    if result.ipam is not None:
        ipam = result.ipam
        acted = list(ipam.plan.due) if args.dry_run else ipam.done
        for c in acted:
            print(f"{'Would release' if args.dry_run else 'Released'} {c.kind.value} {c.subject}: {c.reason}")
        for c, why in ipam.skipped:
            print(f"Left alone: {c.kind.value} {c.subject} ({why})")
        for c in ipam.plan.kept:
            print(f"Kept: {c.kind.value} {c.subject}: {c.reason}")
    if args.dry_run:
        print("Blocks this leaves empty are released too; blocks other hosts still borrow from, or with "
              "addresses cooling down, stay until they are empty (then `tortie ipam gc` releases them).")
    return 0
