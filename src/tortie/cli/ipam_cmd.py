"""`tortie ipam ...`: inspect and repair IP address management (calicoctl ipam, reference §5.7).

    tortie ipam show [--show-blocks] [--show-configuration] [--ip IP] [-o table|json]
    tortie ipam check [-o table|json]                  exit 1 when a problem is found
    tortie ipam release --ip IP [--ip IP ...] | --handle H | --orphan-blocks
    tortie ipam gc [--dry-run] [--node NAME | --cluster-only] [--grace-period S] [-o table|json]
    tortie ipam configure [--strictaffinity true|false] [--max-blocks-per-host N]
                          [--autoallocateblocks true|false] [--ip-cooldown-seconds N]

Handlers return the exit code; user errors are raised as `UserError`s for `tortie.cli.main` to print.
All reads go through one datastore snapshot (`tortie.ipam.snapshot`), so a report is consistent.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
from contextlib import closing
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from tortie.cli.context import open_store
from tortie.cli.verbs import verb_group
from tortie.cni.netconf import DEFAULT_IPAM_LOCK_FILE
from tortie.common.errors import UserError
from tortie.common.ipfamily import IPAddress
from tortie.ipam import Ipam
from tortie.ipam.audit import check, release_orphan_blocks
from tortie.ipam.config import IpamConfig
from tortie.ipam.report import block_usage, describe_ip, pool_usage
from tortie.ipam.snapshot import take_snapshot

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "yes", "1", "on"):
        return True
    if low in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def register(sub: SubParsers) -> None:
    verbs = verb_group(sub, "ipam", help="IP address management: show, check, release, gc, configure")

    p = verbs.add_parser("show", help="pool and block usage, or the owner of one address")
    p.add_argument("--show-blocks", action="store_true", help="also list every block with its affinity")
    p.add_argument("--show-configuration", action="store_true", help="also print the IPAM configuration")
    p.add_argument("--ip", type=_address, help="show who holds this address")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=_show)

    p = verbs.add_parser("check", help="report leaked addresses, orphan blocks and inconsistencies")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=_check)

    p = verbs.add_parser("release", help="release addresses, a handle, or empty blocks of deleted hosts")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--ip", type=_address, action="append", help="an address to release (repeatable)")
    what.add_argument("--handle", help="release every address of this handle")
    what.add_argument(
        "--orphan-blocks",
        action="store_true",
        help="release empty blocks affine to hosts that no longer exist",
    )
    p.set_defaults(func=_release)

    p = verbs.add_parser(
        "gc", help="release leaked addresses, endpoints whose interface is gone, blocks of deleted hosts"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print what would be released and why; change nothing"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--node",
        default=os.environ.get("TORTIE_HOSTNAME") or socket.gethostname(),
        help="the node this host is (its kernel is compared with its allocations; default: TORTIE_HOSTNAME, "
        "else the system host name)",
    )
    where.add_argument(
        "--cluster-only",
        action="store_true",
        help="only what needs no kernel: allocations and blocks of deleted hosts, expired cool-downs",
    )
    p.add_argument(
        "--grace-period",
        type=_non_negative,
        default=900,
        metavar="SECONDS",
        help="garbage must be this old before it is released (default: %(default)s; Calico's "
        "leakGracePeriod)",
    )
    p.add_argument("--workload-interface-prefix", action="append", metavar="PREFIX",
                   help="host interfaces of workloads (repeatable; default: tort and cali)")
    p.add_argument("--ipam-lock-file", default=DEFAULT_IPAM_LOCK_FILE, metavar="PATH",
                   help="the CNI plugin's host IPAM lock, held while releasing (default: %(default)s)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=_gc)

    p = verbs.add_parser("configure", help="change the IPAM configuration")
    p.add_argument(
        "--strictaffinity",
        type=_bool,
        metavar="true|false",
        help="forbid borrowing addresses from other hosts' blocks",
    )
    p.add_argument(
        "--max-blocks-per-host",
        type=_non_negative,
        metavar="N",
        help="blocks a host may claim (0 = Calico's default cap of 20; > 0 requires strict affinity)",
    )
    p.add_argument(
        "--autoallocateblocks",
        type=_bool,
        metavar="true|false",
        help="let hosts claim new blocks (false requires strict affinity)",
    )
    p.add_argument(
        "--ip-cooldown-seconds",
        type=_non_negative,
        metavar="N",
        help="keep a released address out of use this long (0-1200; 0 = reusable at once)",
    )
    p.set_defaults(func=_configure)


def _console() -> Console:
    return Console(soft_wrap=True)


def _pct(part: int, total: int) -> str:
    return f"{part} ({100 * part // total if total else 0}%)"


def _config_dict(cfg: IpamConfig) -> dict[str, Any]:
    return {
        "strictAffinity": cfg.strict_affinity,
        "autoAllocateBlocks": cfg.auto_allocate_blocks,
        "maxBlocksPerHost": cfg.max_blocks_per_host,
        "effectiveMaxBlocksPerHost": cfg.effective_max_blocks_per_host,
        "ipCooldownSeconds": cfg.ip_cooldown_seconds,
    }


def _show(args: argparse.Namespace) -> int:
    with closing(open_store(args)) as ds:
        snap = take_snapshot(ds)
    if args.ip is not None:
        rep = describe_ip(snap, args.ip)
        if args.output == "json":
            print(json.dumps(rep.as_dict(), indent=2))
            return 0
        state = "is in use" if rep.allocated else "is not assigned"
        if rep.released_at is not None:
            state = f"is cooling down (released at {rep.as_dict()['releasedAt']}; not assignable yet)"
        lines = [f"IP {rep.ip} {state}"]
        lines.append(f"  pool:     {rep.pool or '(none)'}")
        lines.append(f"  block:    {rep.block or '(none)'}  affinity: {rep.block_affinity or '(none)'}")
        if rep.reserved:
            lines.append("  reserved by an IPReservation")
        if rep.allocated:
            lines.append(f"  handle:   {rep.handle}")
            lines.append("  attributes:")
            lines.extend(f"    {k}: {v}" for k, v in sorted(rep.attrs.items()))
        lines.append(f"  used by:  {', '.join(rep.used_by) if rep.used_by else '(nothing)'}")
        print("\n".join(lines))
        return 0
    pools = pool_usage(snap)
    blocks = block_usage(snap) if args.show_blocks else []
    if args.output == "json":
        out: dict[str, Any] = {"pools": [p.as_dict() for p in pools]}
        if args.show_blocks:
            out["blocks"] = [b.as_dict() for b in blocks]
        if args.show_configuration:
            out["configuration"] = _config_dict(snap.config)
        print(json.dumps(out, indent=2))
        return 0
    console = _console()
    table = Table(title="IP pools")
    cooling = any(p.cooling for p in pools)  # the column only when some address cools down
    for col in ("NAME", "CIDR", "IPS TOTAL", "IPS IN USE", "RESERVED", "COOLING", "IPS FREE", "BLOCKS"):
        if col != "COOLING" or cooling:
            table.add_column(col)
    for p in pools:
        name = p.name + (" (disabled)" if p.disabled else "")
        cells = [name, str(p.cidr), str(p.total), _pct(p.in_use, p.total), str(p.reserved)]
        cells += [str(p.cooling)] if cooling else []
        table.add_row(*cells, _pct(p.free, p.total), str(p.blocks))
    console.print(table)
    if args.show_blocks:
        btable = Table(title="Blocks")
        for col in ("CIDR", "AFFINITY", "POOL", "IPS TOTAL", "IPS IN USE", "BORROWED", "IPS FREE"):
            btable.add_column(col)
        for b in blocks:
            btable.add_row(
                str(b.cidr),
                b.affinity or "(none)",
                b.pool or "(no pool)",
                str(b.total),
                _pct(b.in_use, b.total),
                str(b.borrowed),
                _pct(b.free, b.total),
            )
        console.print(btable)
    if args.show_configuration:
        ctable = Table(title="IPAM configuration")
        ctable.add_column("PROPERTY")
        ctable.add_column("VALUE")
        for k, v in _config_dict(snap.config).items():
            ctable.add_row(k, str(v).lower() if isinstance(v, bool) else str(v))
        console.print(ctable)
    return 0


def _check(args: argparse.Namespace) -> int:
    with closing(open_store(args)) as ds:
        snap = take_snapshot(ds)
    findings = check(snap)
    allocated = sum(b.in_use for b in snap.blocks.values())
    if args.output == "json":
        print(
            json.dumps(
                {
                    "revision": snap.revision,
                    "blocks": len(snap.blocks),
                    "allocated": allocated,
                    "problems": [f.as_dict() for f in findings],
                },
                indent=2,
            )
        )
    else:
        print(
            f"Checked {len(snap.blocks)} block(s), {allocated} allocation(s), {len(snap.handles)} handle(s) "
            f"at revision {snap.revision}."
        )
        if findings:
            table = Table(title=f"{len(findings)} problem(s)")
            for col in ("KIND", "SUBJECT", "DETAIL"):
                table.add_column(col)
            for f in findings:
                table.add_row(f.kind, f.subject, f.message)
            _console().print(table)
        else:
            print("No problems found.")
    return 1 if findings else 0


def _release(args: argparse.Namespace) -> int:
    with closing(open_store(args)) as ds:
        if args.orphan_blocks:
            released = release_orphan_blocks(ds)
            print(
                f"Released {len(released)} empty block(s) of deleted hosts"
                + (": " + ", ".join(str(c) for c in released) if released else ".")
            )
            return 0
        ipam = Ipam(ds)
        if args.handle is not None:
            ips = ipam.release_by_handle(args.handle)
            if ips:
                print(
                    f"Released {len(ips)} address(es) of handle {args.handle}: "
                    + ", ".join(str(i) for i in ips)
                )
            else:
                print(f"Handle {args.handle} holds no addresses; nothing to release.")
            return 0
        not_allocated = set(ipam.release_ips(args.ip))
        for ip in args.ip:
            print(
                f"IP {ip} was not assigned; nothing to release."
                if ip in not_allocated
                else f"Released IP {ip}."
            )
        return 0


def _gc(args: argparse.Namespace) -> int:
    from tortie.ipam.gc import Kind
    from tortie.node.ipam_gc import IpamCollector, foreign_kernel, read_kernel

    prefixes = tuple(args.workload_interface_prefix or ("tort", "cali"))
    node = None if args.cluster_only else args.node
    with closing(open_store(args)) as ds:
        if node is not None and (why := foreign_kernel(ds, node)) is not None:
            raise UserError(
                f"{why}: run `tortie ipam gc` on node {node} (in its network namespace), name this host's "
                "node with --node, or use --cluster-only"
            )
        collector = IpamCollector(
            ds, node, lambda: read_kernel(prefixes), float(args.grace_period), args.ipam_lock_file
        )
        report = collector.run_once(dry_run=args.dry_run)
    if args.output == "json":
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    acted = list(report.plan.due) if args.dry_run else report.done
    verb = "Would release" if args.dry_run else "Released"
    scope = "cluster-wide only" if node is None else f"node {node}"
    print(f"IPAM GC ({scope}, grace period {args.grace_period} s): {verb.lower()} {len(acted)} item(s).")
    sections = [(verb, [(c, c.reason) for c in acted])]
    sections.append(("Changed meanwhile (left alone)", [(c, why) for c, why in report.skipped]))
    sections.append(("Waiting for the grace period", [(c, c.reason) for c in report.plan.waiting]))
    sections.append(("In use (kept)", [(c, c.reason) for c in report.plan.kept]))
    for title, rows in sections:
        if not rows:
            continue
        table = Table(title=f"{title}: {len(rows)}")
        for col in ("KIND", "SUBJECT", "HANDLE", "AGE", "WHY"):
            table.add_column(col)
        for c, why in rows:
            age = "?" if c.age is None else f"{c.age:.0f}s"
            table.add_row(c.kind.value, c.subject, c.handle or "", age, why)
        _console().print(table)
    if args.dry_run and any(c.kind is Kind.ALLOCATION and c.host not in (None, node) for c in acted):
        print("Then the blocks these releases leave empty (of hosts without a Node) are released too.")
    return 0


def _configure(args: argparse.Namespace) -> int:
    if (
        args.strictaffinity is None
        and args.max_blocks_per_host is None
        and args.autoallocateblocks is None
        and args.ip_cooldown_seconds is None
    ):
        raise UserError(
            "nothing to configure: give --strictaffinity, --max-blocks-per-host, --autoallocateblocks "
            "or --ip-cooldown-seconds"
        )
    with closing(open_store(args)) as ds:
        cfg = Ipam(ds).configure(
            strict_affinity=args.strictaffinity,
            max_blocks_per_host=args.max_blocks_per_host,
            auto_allocate_blocks=args.autoallocateblocks,
            ip_cooldown_seconds=args.ip_cooldown_seconds,
        )
    print("IPAM configuration: " + ", ".join(f"{k}={v}" for k, v in _config_dict(cfg).items()))
    return 0
