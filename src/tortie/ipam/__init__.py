"""IP address management, Calico-compatible (reference §5, §1.1-1.2, §1.16).

    from tortie.ipam import Ipam
    ipam = Ipam(datastore)
    res = ipam.auto_assign(1, 0, handle="k8s-pod-network.<cid>", host="node1",
                           attrs={"namespace": "ns", "pod": "p"})
    res.v4[0]                          # IPv4Interface('10.0.0.5/26'): block-masked, like Calico
    ipam.release_by_handle("k8s-pod-network.<cid>")

Modules: `block` (pure block maths), `keys` (Calico's etcd key layout), `config` (the IPAM
configuration), `pools` (pool selection), `store` (typed datastore access), `claims` (block affinity
protocol), `allocator` (`Ipam`), `snapshot` + `audit` (`ipam check`) + `report` (`ipam show`). The
stored objects themselves (the Block value, affinities, handles and their one decoder) are
`tortie.model.ipam_block` and `tortie.model.ipam_records`. See docs/design/ipam.md.
"""

from __future__ import annotations

from tortie.ipam.allocator import Assignment, Ipam
from tortie.ipam.auto_assign import AssignResult
from tortie.ipam.config import IpamConfig
from tortie.ipam.errors import (
    AddressInUse,
    AddressNotAvailable,
    InvalidIpamRequest,
    IpamContention,
    IpamError,
    NoSuitablePool,
    PoolExhausted,
)

__all__ = [
    "AddressInUse",
    "AddressNotAvailable",
    "AssignResult",
    "Assignment",
    "InvalidIpamRequest",
    "Ipam",
    "IpamConfig",
    "IpamContention",
    "IpamError",
    "NoSuitablePool",
    "PoolExhausted",
]
