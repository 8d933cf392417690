"""Names of the objects in tortie's nftables table (pure).

Contract: a name is a function of what it stands for alone (a policy id, a profile name, an IP
set id and family, an interface), so a restarted agent finds its own objects again and two owners
never render the same name for different things. Chain names stay within nft's limits (a name
longer than 200 characters keeps a readable head and a hash of the whole).

    pi-/po-g.<name>, pi-/po-n.<ns>.<name>   a GlobalNetworkPolicy's / NetworkPolicy's in/out rules
    pri-/pro-<profile>                      a profile's in/out rules
    tw-<if> / fw-<if>                       to / from a workload interface (ingress / egress policy)
    <stage kind>-<if>                       a host endpoint's chain for one stage (`HEP_STAGES`)
    s4-/s6-<digest>, n4-/n6-<digest>        IP sets (address; address . protocol . port) per family
    all-pools-4/6, masq-pools-4/6           IP pools, NAT-outgoing pools
    from-wl, to-wl, hep-*                   verdict maps: interface name -> goto its chain

`HEP_STAGES` is the one table of the host-endpoint stages: the chain kind, verdict map, direction,
policy stage and the dispatch chain that looks the map up; the static chains and the host
endpoint chains are both derived from it.
"""

from __future__ import annotations

import hashlib
from typing import Literal, NamedTuple

from tortie.common.ipfamily import Family
from tortie.dataplane.messages.policy import PolicyId

TABLE = "tortie"
ALL_INTERFACES = "*"
WILDCARD_CHAIN_TAG = "all-host-interfaces"  # longer than any interface name (15), so it cannot collide
Stage = Literal["normal", "forward", "pre_dnat", "untracked"]
_CHAIN_NAME_MAX = 200


def _bounded(name: str) -> str:
    if len(name) <= _CHAIN_NAME_MAX:
        return name
    return name[:150] + "~" + hashlib.sha1(name.encode()).hexdigest()[:16]


def policy_chain(pid: PolicyId, inbound: bool) -> str:
    tag = f"g.{pid.name}" if pid.kind == "GlobalNetworkPolicy" else f"n.{pid.namespace}.{pid.name}"
    return _bounded(("pi-" if inbound else "po-") + tag)


def profile_chain(name: str, inbound: bool) -> str:
    return _bounded(("pri-" if inbound else "pro-") + name)


def set_name(set_id: str, fam: Family) -> str:
    """`s:<digest>` -> `s4-<digest>` (an IP set id of the calc, in one family)."""
    kind, _, digest = set_id.partition(":")
    return f"{kind}{fam.version}-{digest}"


def pool_set_name(kind: Literal["all", "masq"], fam: Family) -> str:
    """`all-pools-4` (every IP pool of the family), `masq-pools-6` (natOutgoing pools)."""
    return f"{kind}-pools-{fam.version}"


def endpoint_chain(iface: str, inbound: bool) -> str:
    return ("tw-" if inbound else "fw-") + iface


def hep_chain(kind: str, iface: str) -> str:
    """`fh-eth0`; for interfaceName "*" a fixed tag (nft parses a `*` in a jump target as a wildcard)."""
    return f"{kind}-{WILDCARD_CHAIN_TAG if iface == ALL_INTERFACES else iface}"


class HepStage(NamedTuple):
    """One place where host endpoint policy is enforced."""

    kind: str  # chain kind: the chain of the endpoint on `eth0` is `<kind>-eth0`
    map_name: str  # verdict map: interface -> goto that chain
    inbound: bool  # traffic from the interface (keyed by iifname) or to it (oifname)
    stage: Stage
    dispatch: str  # the chain that looks the map up


HEP_STAGES = (
    HepStage("fh", "hep-in", True, "normal", "from-hep-dispatch"),
    HepStage("th", "hep-out", False, "normal", "to-hep-dispatch"),
    HepStage("fhfw", "hep-fwd-in", True, "forward", "hep-fwd-in-dispatch"),
    HepStage("thfw", "hep-fwd-out", False, "forward", "hep-fwd-out-dispatch"),
    HepStage("pre", "hep-pre", True, "pre_dnat", "hep-pre-dispatch"),
    HepStage("untin", "hep-unt-in", True, "untracked", "hep-unt-in-dispatch"),
    HepStage("untout", "hep-unt-out", False, "untracked", "hep-unt-out-dispatch"),
)
TO_WORKLOAD_MAP, FROM_WORKLOAD_MAP = "to-wl", "from-wl"
DISPATCH_MAPS = (FROM_WORKLOAD_MAP, TO_WORKLOAD_MAP, *(stage.map_name for stage in HEP_STAGES))
