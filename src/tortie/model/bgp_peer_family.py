"""A write-time check across objects: a BGPPeer for one node must be of a family that node speaks.

    peer_family_problems(resources, stored_node) -> ["BGPPeer NAME: spec.peerIP: ...", ...]

A BGPPeer that names one node (`spec.node`) and a `peerIP` of family F asks that node for a session
over F. If the Node (among `resources`, else the stored one `stored_node(name)` returns) has a BGP
address but none of family F — an IPv4-only node given an IPv6 peer, or the reverse — the session
could never come up: `tortie apply` refuses the whole write and names the field, instead of a node
logging that it skipped the peer. A node without any BGP address (not registered yet, or not
running BGP) and peers chosen by selector (which legitimately span nodes of either family; each
node skips what it cannot speak and reports it in `tortie node status`) are not refused.

Pure: no I/O besides the `stored_node` callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tortie.common.ipfamily import family_of
from tortie.model.resource import Resource
from tortie.model.specs_bgp import BGPPeerSpec, NodeSpec

# per IP version: Node spec.bgp's address field, and the `tortie node run` option that sets it
_ADDRESS_FIELD = {4: "ipv4Address", 6: "ipv6Address"}
_NODE_RUN_OPTION = {4: "--ip", 6: "--ip6"}


def peer_family_problems(
    resources: Sequence[Resource], stored_node: Callable[[str], Resource | None]
) -> list[str]:
    """Problems of BGPPeers among `resources` whose node cannot peer in the peerIP's family."""
    nodes = {r.metadata.name: r for r in resources if r.kind == "Node"}
    out = []
    for r in resources:
        if r.kind != "BGPPeer":
            continue
        spec = r.spec_as(BGPPeerSpec)
        peer = spec.peer_address
        if spec.node is None or peer is None:
            continue
        node = nodes.get(spec.node) or stored_node(spec.node)
        bgp = node.spec_as(NodeSpec).bgp if node is not None else None
        if bgp is None:
            continue
        fam = family_of(peer[0])
        has = {4: bgp.ipv4_address, 6: bgp.ipv6_address}
        if has[fam.version] is None:
            spoken = " and ".join(f"IPv{v}" for v, address in has.items() if address)
            out.append(
                f"BGPPeer {r.metadata.name}: spec.peerIP: {spec.peer_ip} is {fam.name} but Node {spec.node} "
                f"has no spec.bgp.{_ADDRESS_FIELD[fam.version]} (it peers over {spoken} only); give the "
                f"node an {fam.name} BGP address first (`tortie node run {_NODE_RUN_OPTION[fam.version]} "
                "...`) or peer over a family it has"
            )
    return out
