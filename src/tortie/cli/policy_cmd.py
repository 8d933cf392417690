"""`tortie policy trace`: which tier, policy and rule decide a packet, from the agent's own code.

    tortie policy trace --from prod/web-1 --to 10.0.2.7 --port 5432 --protocol tcp
    tortie policy trace --from prod/web-1 --to prod/db-1 --ip-family 6 --protocol icmp

Inputs: the datastore (every policy kind — the Kubernetes kinds too —, endpoints, network sets,
pools), the two ends (a WorkloadEndpoint as `namespace/name` or a unique `name` — a Kubernetes pod's
endpoint also by its pod name —, or an IP address) and the packet
(protocol, destination port, source port, ICMP type/code). The packet's IP family is `--ip-family`,
else that of an end given as an address, else the first family both ends have an address in (IPv4
first): an endpoint end takes its address of that family. `--protocol icmp` is the family's ICMP
(ICMPv6 over IPv6) and the ICMP type defaults to the family's echo request (8 / 128). Output: per
host the packet crosses,
the verdict of the nftables table the agent would program there and the rules that fired (tier,
policy, rule index, default actions); then the user-space evaluation of the same resolved policy
(`tortie.policy.trace`: which tier, policy and rule decide, or why a default applies), and a
warning when the two disagree (a rendering fault). Every translated object and rule is followed by
its Kubernetes origin (`[Kubernetes NetworkPolicy x/web, spec.ingress[0].from[1]]`,
tortie.k8s.explain), a default deny names the Kubernetes NetworkPolicies whose isolation it is, and
a missing `kns.<ns>` profile says that the Namespace does not exist. Exit code 0 when the packet
would be allowed, 3 when denied.

How: `tortie.policy.packet_trace` (the agent's pure policy calc, table render and nft interpreter
run on the datastore snapshot); this module parses the command line and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import closing
from typing import TYPE_CHECKING

from tortie.cli.context import open_store
from tortie.cli.policy_promote_cmd import register_promote
from tortie.cli.verbs import verb_group
from tortie.common.errors import UserError
from tortie.common.ipfamily import Family, family, family_of
from tortie.policy.packet_trace import (
    ICMP_PROTOCOLS,
    PROTOCOLS,
    End,
    load_objects,
    resolve_end,
    trace,
    valid_resources,
)
from tortie.policy.trace import Packet

if TYPE_CHECKING:
    from tortie.cli.verbs import SubParsers

EXIT_DENIED = 3


def register(sub: SubParsers) -> None:
    verbs = verb_group(sub, "policy", help="inspect network policy")
    trace = verbs.add_parser("trace", help="which tier/policy/rule decides a packet between two ends")
    trace.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="ENDPOINT|IP",
        help="source: WorkloadEndpoint (namespace/name or unique name) or IP address",
    )
    trace.add_argument("--to", dest="destination", required=True, metavar="ENDPOINT|IP")
    trace.add_argument("--protocol", default="tcp", help="tcp, udp, sctp, icmp or a number (default tcp)")
    trace.add_argument("--port", type=int, default=None, help="destination port (default 80 for tcp/udp)")
    trace.add_argument("--source-port", type=int, default=40000)
    trace.add_argument(
        "--ip-family", choices=("4", "6"), default=None, help="IPv4 or IPv6 (default: from the ends)"
    )
    trace.add_argument("--icmp-type", type=int, default=None, help="default: echo request (8, or 128)")
    trace.add_argument("--icmp-code", type=int, default=0)
    trace.add_argument("-o", "--output", choices=("text", "json"), default="text")
    trace.set_defaults(func=_trace)
    register_promote(verbs)


def _family(args: argparse.Namespace, src: End, dst: End) -> Family:
    """The packet's family: asked for, else an address end's, else the first both ends have."""
    if args.ip_family:
        return family(int(args.ip_family))
    literal = [e for e in (src, dst) if e.literal]
    if literal:
        return family_of(literal[0].ip)
    common = [f for f in src.families() if f in dst.families()]
    if not common:
        raise UserError(
            f"{src.text} ({', '.join(map(str, src.families()))}) and {dst.text} "
            f"({', '.join(map(str, dst.families()))}) have no IP family in common"
        )
    return common[0]


def _packet(args: argparse.Namespace, src: End, dst: End) -> Packet:
    proto_text = str(args.protocol).lower()
    protocol = PROTOCOLS.get(proto_text) if not proto_text.isdigit() else int(proto_text)
    if protocol is None:
        raise UserError(f"unknown protocol {args.protocol!r}: use tcp, udp, sctp, icmp or a number")
    if family_of(src.ip) != family_of(dst.ip):
        raise UserError("source and destination are of different IP versions")
    fam = family_of(src.ip)
    if proto_text == "icmp":
        protocol = fam.icmp_protocol  # the family's ICMP: ICMPv6 between IPv6 ends
    if protocol in ICMP_PROTOCOLS:
        if protocol != fam.icmp_protocol:
            raise UserError(f"{args.protocol} is not the ICMP of {fam} (use --protocol icmp)")
        icmp_type = args.icmp_type if args.icmp_type is not None else fam.echo_request
        return Packet(src.ip, dst.ip, protocol, icmp_type=icmp_type, icmp_code=args.icmp_code)
    port = args.port if args.port is not None else 80
    return Packet(src.ip, dst.ip, protocol, args.source_port, port)


def _trace(args: argparse.Namespace) -> int:
    with closing(open_store(args)) as ds:
        objects = load_objects(ds)
    weps = [r for r in valid_resources(objects) if r.kind == "WorkloadEndpoint"]
    src, dst = resolve_end(args.source, weps), resolve_end(args.destination, weps)
    if src.endpoint is None and dst.endpoint is None:
        raise UserError("neither end is a WorkloadEndpoint: nothing of tortie's polices this packet")
    fam = _family(args, src, dst)
    src, dst = src.at(fam), dst.at(fam)
    pkt = _packet(args, src, dst)
    result = trace(objects, src, dst, pkt)
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(f"packet: {result['packet']}")
        for hop in result["hops"]:
            print(f"host {hop['host']} ({hop['checks']}): {hop['verdict'].upper()}")
            for line in hop["rules"]:
                print(line)
        print(f"verdict: {result['dataplane'].upper()}")
        print("evaluated from the resolved policy: " + "; ".join(result["evaluator"]))
        if not result["agree"]:
            print(
                "WARNING: the rendered table and the resolved policy disagree; please report this",
                file=sys.stderr,
            )
    return 0 if result["dataplane"] == "accept" else EXIT_DENIED
