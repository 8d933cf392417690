"""One BGP session as the view computes it and the renderer writes it (one BIRD `protocol bgp`).

`Session` is a plain value; `PeerType` says how the session came about (its value is what
`tortie node status` prints), and `protocol_name` spells BIRD protocol names as Calico does
(`Mesh_10_0_0_2`, `Global_fd00__1_port_1179`, `Local_Workload_10_65_0_5`), which is also how the
status parser recognises them.

Invariants: frozen and hashable; `family` is the neighbour's address family.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tortie.bgp.records import DEFAULT_LISTEN_PORT
from tortie.common.ipfamily import Family, IPAddress, family_of


class PeerType(enum.Enum):
    """How a session came about; the value is what `tortie node status` prints."""

    MESH = "node-to-node mesh"
    GLOBAL = "global"
    NODE = "node specific"
    ROUTE_REFLECTOR = "route reflector"  # the remote node reflects routes to us
    RR_CLIENT = "route reflector client"  # we reflect routes to the remote node
    LOCAL_WORKLOAD = "local workload"  # a workload on this node running its own BGP speaker


# Name prefix of each peer type (`calicoctl node status` relies on Mesh_/Node_/Global_).
NAME_PREFIX = {
    PeerType.MESH: "Mesh",
    PeerType.GLOBAL: "Global",
    PeerType.NODE: "Node",
    PeerType.LOCAL_WORKLOAD: "Local_Workload",
}


def protocol_name(prefix: str, address: IPAddress, port: int | None = None) -> str:
    """`Mesh`, 10.0.0.2 -> `Mesh_10_0_0_2`; IPv6 colons become underscores too; a non-default port is
    appended as `_port_<n>`."""
    text = f"{prefix}_{str(address).replace('.', '_').replace(':', '_')}"
    if port is not None and port != DEFAULT_LISTEN_PORT:
        text += f"_port_{port}"
    return text


@dataclass(frozen=True)
class Session:
    """One BGP session this node runs (one BIRD `protocol bgp`, one address family)."""

    name: str
    peer_type: PeerType
    neighbor: IPAddress
    remote_as: int
    local_as: int
    neighbor_port: int | None = None  # None = 179
    local_address: IPAddress | None = None
    password: str | None = None
    passive: bool = False
    rr_client: bool = False
    rr_cluster_id: str | None = None
    next_hop: str | None = None  # "self" / "keep" / None (BGP default)
    restart_time: int | None = None
    keepalive_time: int | None = None
    multihop: bool = False  # eBGP only: the neighbour is not on a directly connected subnet
    origin: str = ""  # "mesh" or the BGPPeer name, for comments
    filters: tuple[str, ...] = ()  # BGPFilter names, applied in this order before the default policy
    ttl_security: int | None = None  # GTSM: the neighbour is at most this many hops away
    allow_local_as: int | None = None  # accept paths holding our own AS up to this many times
    strict_bind: bool = False  # BGPConfiguration bindMode NodeIP: listen on local_address only

    @property
    def family(self) -> Family:
        return family_of(self.neighbor)

    @property
    def ebgp(self) -> bool:
        return self.remote_as != self.local_as
