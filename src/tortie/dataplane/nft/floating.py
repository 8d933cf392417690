"""The floating-IP table (pure): WorkloadEndpoint ipNATs as 1:1 NAT rules in `inet tortie-nat`.

Input: per local endpoint its `IPNat`s (internal, external), and the IP pools. Output: a `Ruleset`
(empty when no endpoint has an ipNAT: the manager then deletes the table).

    nat-prerouting (nat prerouting, dstnat)  jump fip-dnat       traffic arriving for a floating IP
    nat-output     (nat output, dstnat)      jump fip-dnat       the host's own traffic to one
    fip-dnat        <family> daddr <external> dnat to <internal>          (Felix's cali-fip-dnat)
    nat-postrouting (nat postrouting, srcnat - 1)
                    <family> saddr <int> daddr <int> snat to <external>   hairpin (Felix's cali-fip-snat)
                    <family> saddr <int> daddr != @all-pools-N snat to <external>   own traffic leaving
    all-pools-4/6   every IP pool (interval sets), for the rule above

Semantics:
* Inbound: a packet for the external address is sent to the internal one before routing; its
  replies leave with the external address (conntrack reverses the translation). Policy sees the
  translated packet: the endpoint's ingress policy decides (preDNAT policy sees the external one).
* Hairpin: the workload reaching its own floating IP is also source-translated, so the reply comes
  back through the host (Felix).
* The workload's own connections to destinations outside every IP pool leave with its external
  address (the issue's "the workload's own traffic leaves with the external IP"; Neutron's floating
  IPs do the same; Felix does it only with its egress-SNAT option, and by default leaves them with the
  internal address). Traffic to pool addresses (other workloads) keeps the internal address, so
  their policies see who it is. With several external addresses for one internal address, the
  lowest external address is used for this; each external address is translated inbound.
* Priority: the source translation runs at srcnat - 1, before tortie's NAT-outgoing masquerade
  (srcnat, table `tortie`): the kernel uses the first NAT a chain sets up for a connection, so a
  floating IP wins over masquerading, as in Felix.
* One external address claimed by two endpoints: the first endpoint id (sorted) gets it (as the
  route table resolves their routes); the other's mapping is left out and reported by the manager.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tortie.common.ipfamily import FAMILIES, Family, family_of, sort_key
from tortie.dataplane.messages import IPNat, WorkloadEndpointId
from tortie.dataplane.nft.ir import (
    BaseHook,
    Chain,
    Match,
    Nat,
    Payload,
    Rule,
    Ruleset,
    SetDef,
    SetRef,
    Verdict,
    rule,
)
from tortie.dataplane.nft.sets import interval_elements

TABLE = "tortie-nat"
DNAT_CHAIN = "fip-dnat"
DSTNAT, SRCNAT = -100, 100


def pool_set(fam: Family) -> str:
    return f"all-pools-{fam.version}"


def resolve_nats(
    nats: Mapping[WorkloadEndpointId, tuple[IPNat, ...]],
) -> tuple[dict[str, str], list[tuple[WorkloadEndpointId, IPNat]]]:
    """external -> internal for every external address (first endpoint id wins), and the mappings
    left out because an earlier endpoint holds their external address."""
    dnat: dict[str, str] = {}
    lost: list[tuple[WorkloadEndpointId, IPNat]] = []
    for endpoint_id in sorted(nats):
        for nat in nats[endpoint_id]:
            if nat.external in dnat and dnat[nat.external] != nat.internal:
                lost.append((endpoint_id, nat))
            else:
                dnat[nat.external] = nat.internal
    return dnat, lost


def _by_address(addrs: Iterable[str]) -> list[str]:
    return sorted(addrs, key=lambda a: sort_key(family_of(a).address(a)))


def render_floating(dnat: Mapping[str, str], pools: Iterable[str]) -> Ruleset:
    """The table for `dnat` (external -> internal, from `resolve_nats`) and the pools' CIDRs."""
    out = Ruleset()
    if not dnat:
        return out
    snat: dict[str, str] = {}  # internal -> the lowest external address translated to it
    for external in _by_address(dnat):
        snat.setdefault(dnat[external], external)
    dnat_rules: list[Rule] = []
    for external in _by_address(dnat):
        fam = family_of(external)
        dnat_rules.append(rule(Match(Payload(fam.nft, "daddr"), "==", external),
                               Nat("dnat", fam.nft, dnat[external]), label=f"fip {external}"))
    post: list[Rule] = []
    families: set[Family] = set()
    for internal in _by_address(snat):
        fam = family_of(internal)
        families.add(fam)
        src, dst = Payload(fam.nft, "saddr"), Payload(fam.nft, "daddr")
        to = Nat("snat", fam.nft, snat[internal])
        post.append(rule(Match(src, "==", internal), Match(dst, "==", internal), to,
                         label=f"fip hairpin {internal}"))
        post.append(rule(Match(src, "==", internal), Match(dst, "!=", SetRef(pool_set(fam))), to,
                         label=f"fip egress {internal}"))
    jump = rule(Verdict("jump", DNAT_CHAIN), label="floating IPs")
    out.chains = {
        "nat-prerouting": Chain("nat-prerouting", (jump,), BaseHook("nat", "prerouting", DSTNAT)),
        "nat-output": Chain("nat-output", (jump,), BaseHook("nat", "output", DSTNAT)),
        DNAT_CHAIN: Chain(DNAT_CHAIN, tuple(dnat_rules)),
        "nat-postrouting": Chain("nat-postrouting", tuple(post), BaseHook("nat", "postrouting", SRCNAT - 1)),
    }
    pool_list = list(pools)
    for fam in FAMILIES:
        if fam in families:
            name = pool_set(fam)
            out.sets[name] = SetDef(name, fam.nft_addr_type, interval=True)
            out.elements[name] = interval_elements(pool_list, fam)
    return out
