"""The fixed skeleton of the policy table (pure): base chains on the hooks, dispatch chains, NAT.

Input: the `RenderConfig`, the verdict maps the all-interfaces host endpoint has chains for, and
the IP pools. Output: the chains below, which refer to the verdict maps (`names.DISPATCH_MAPS`)
and to chains other owners render (endpoint and host endpoint chains are reached only through the
maps, so the skeleton never changes when endpoints come and go).

    filter-forward (hook forward)   mark "seen by policy" (for the guard table, nft/guard.py)
                                    ct established/related accept, invalid drop, untracked accept
        iifname <workload> jump from-wl-dispatch:  iifname vmap @from-wl { <if>: goto fw-<if> }; drop
        oifname <workload> jump to-wl-dispatch:    oifname vmap @to-wl   { <if>: goto tw-<if> }; drop
        other interfaces:  jump hep-fwd-in / hep-fwd-out  (host endpoints with applyOnForward policy)
    filter-input  (hook input)      mark "seen by policy" (as above)
                                    workload -> host: wl-to-host (neighbour discovery, the ports
                                    workloads always reach, egress policy, endpoint_to_host_action);
                                    others: from-hep (loopback, failsafes, vmap @hep-in)
    filter-output (hook output)     host -> workload: not policed; others: to-hep (failsafes, @hep-out)
    raw-prerouting / raw-output     doNotTrack policy of host endpoints (allow = notrack)
    mangle-prerouting               preDNAT policy of host endpoints (before DNAT)
    nat-postrouting                 masquerade from natOutgoing pools to outside all pools

Dispatch chains (one per verdict map): look the interface up in the map; an unknown workload
interface (policy not programmed yet) drops (fail closed); a host interface without endpoint
returns, or goes to the `*` endpoint's chain (loopback excepted). Host endpoint dispatch of the
normal and doNotTrack stages first returns for loopback and accepts the failsafe ports.
"""

from __future__ import annotations

from collections.abc import Iterable

from tortie.common.ipfamily import FAMILIES, family_of
from tortie.dataplane.messages.policy import PoolUpdate
from tortie.dataplane.nft.config import FailsafePort, RenderConfig
from tortie.dataplane.nft.guard import mark_seen
from tortie.dataplane.nft.ir import (
    AnonSet,
    BaseHook,
    Chain,
    Ct,
    Masquerade,
    Match,
    Meta,
    Payload,
    Rule,
    SetRef,
    Stmt,
    Verdict,
    VMap,
    rule,
)
from tortie.dataplane.nft.names import (
    ALL_INTERFACES,
    FROM_WORKLOAD_MAP,
    HEP_STAGES,
    TO_WORKLOAD_MAP,
    hep_chain,
    pool_set_name,
)
from tortie.dataplane.nft.rules import addr_field, net_value

# ICMPv6 a workload needs from its router (the host), accepted before its egress policy as Felix
# does (rules.ICMPv6Filter): MLD query/report/done (130-132), router solicitation (133), neighbour
# solicitation/advertisement (135, 136), plus the MLDv2 report (143) Linux sends instead of 131.
# Not router advertisements (134): a workload has no business announcing itself as a router.
# (The kernel leaves these untracked (nf_conntrack_proto_icmpv6 `noct_valid_new`), so the base
# chains' `ct state untracked accept` passes them everywhere, host endpoints included; this rule
# keeps workload-to-host ND open should that ever change.)
ND_TYPES = (
    "mld-listener-query",
    "mld-listener-report",
    "mld-listener-done",
    "nd-router-solicit",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "mld2-listener-report",
)
_TO_HOST = {"Drop": Verdict("drop"), "Accept": Verdict("accept"), "Return": Verdict("return")}


def _ct_rules() -> list[Rule]:
    return [
        rule(Match(Ct("state"), "in", ("established", "related")), Verdict("accept"), label="conntrack"),
        rule(Match(Ct("state"), "in", ("invalid",)), Verdict("drop"), label="conntrack invalid"),
        rule(
            Match(Ct("state"), "in", ("untracked",)),
            Verdict("accept"),
            label="untracked (doNotTrack allowed)",
        ),
    ]


def _jump(key: str, op: str, interfaces: AnonSet, target: str, label: str) -> Rule:
    return rule(Match(Meta(key), op, interfaces), Verdict("jump", target), label=label)


def _failsafe_rules(ports: tuple[FailsafePort, ...], inbound: bool, what: str = "failsafe") -> list[Rule]:
    rules = []
    for fp in ports:
        stmts: list[Stmt] = []
        if fp.net:
            side = "saddr" if inbound else "daddr"
            stmts.append(Match(addr_field(family_of(fp.net), side), "==", net_value(fp.net)))
        stmts += [
            Match(Meta("l4proto"), "==", fp.protocol),
            Match(Payload("th", "dport"), "==", fp.port),
            Verdict("accept"),
        ]
        rules.append(rule(*stmts, label=f"{what} {'in' if inbound else 'out'} {fp.protocol}:{fp.port}"))
    return rules


def _dispatch(
    name: str,
    map_name: str,
    key: str,
    wildcard: str | None,
    fallback: Verdict,
    head: list[Rule] | None = None,
) -> Chain:
    rules = list(head or [])
    rules.append(rule(VMap(Meta(key), map_name), label=f"dispatch by {key}"))
    if wildcard is not None:
        rules.append(
            rule(
                Match(Meta(key), "!=", "lo"), Verdict("goto", wildcard), label="all-interfaces host endpoint"
            )
        )
    rules.append(
        rule(fallback, label="no endpoint" if fallback.kind == "return" else "unknown workload interface")
    )
    return Chain(name, tuple(rules))


def _hook_chains(cfg: RenderConfig) -> list[Chain]:
    wl = AnonSet(tuple(f"{p}*" for p in cfg.interface_prefixes))
    return [
        Chain(
            "filter-forward",
            (
                mark_seen(cfg),
                *_ct_rules(),
                _jump("iifname", "!=", wl, "hep-fwd-in-dispatch", "from host endpoint"),
                _jump("iifname", "==", wl, "from-wl-dispatch", "from workload"),
                _jump("oifname", "==", wl, "to-wl-dispatch", "to workload"),
                _jump("oifname", "!=", wl, "hep-fwd-out-dispatch", "to host endpoint"),
            ),
            BaseHook("filter", "forward", 0),
        ),
        Chain(
            "filter-input",
            (
                mark_seen(cfg),
                *_ct_rules(),
                _jump("iifname", "==", wl, "wl-to-host", "workload to host"),
                _jump("iifname", "!=", wl, "from-hep-dispatch", "from host endpoint"),
            ),
            BaseHook("filter", "input", 0),
        ),
        Chain(
            "filter-output",
            (
                *_ct_rules(),
                rule(
                    Match(Meta("oifname"), "==", wl), Verdict("return"), label="host to workload: not policed"
                ),
                rule(Verdict("jump", "to-hep-dispatch"), label="to host endpoint"),
            ),
            BaseHook("filter", "output", 0),
        ),
        Chain(
            "wl-to-host",
            (
                rule(
                    Match(Meta("l4proto"), "==", 58),
                    Match(Payload("icmpv6", "type"), "==", AnonSet(ND_TYPES)),
                    Verdict("accept"),
                    label="IPv6 neighbour discovery",
                ),
                *_failsafe_rules(cfg.workload_to_host_allow, True, "workload to host allowed"),
                rule(Verdict("jump", "from-wl-dispatch"), label="workload egress policy"),
                rule(
                    _TO_HOST[cfg.endpoint_to_host_action],
                    label=f"endpoint to host: {cfg.endpoint_to_host_action}",
                ),
            ),
        ),
        Chain(
            "raw-prerouting",
            (_jump("iifname", "!=", wl, "hep-unt-in-dispatch", "untracked from host endpoint"),),
            BaseHook("filter", "prerouting", -300),
        ),
        Chain(
            "raw-output",
            (_jump("oifname", "!=", wl, "hep-unt-out-dispatch", "untracked to host endpoint"),),
            BaseHook("filter", "output", -300),
        ),
        Chain(
            "mangle-prerouting",
            (_jump("iifname", "!=", wl, "hep-pre-dispatch", "preDNAT from host endpoint"),),
            BaseHook("filter", "prerouting", -150),
        ),
    ]


def _dispatch_chains(cfg: RenderConfig, wildcard_maps: frozenset[str]) -> list[Chain]:
    chains = [
        _dispatch("from-wl-dispatch", FROM_WORKLOAD_MAP, "iifname", None, Verdict("drop")),
        _dispatch("to-wl-dispatch", TO_WORKLOAD_MAP, "oifname", None, Verdict("drop")),
    ]
    for stage in HEP_STAGES:
        key = "iifname" if stage.inbound else "oifname"
        head: list[Rule] = []
        if stage.stage in ("normal", "untracked"):
            head.append(rule(Match(Meta(key), "==", "lo"), Verdict("return"), label="loopback"))
            ports = cfg.failsafe_inbound if stage.inbound else cfg.failsafe_outbound
            head += _failsafe_rules(ports, stage.inbound)
        wildcard = hep_chain(stage.kind, ALL_INTERFACES) if stage.map_name in wildcard_maps else None
        chains.append(_dispatch(stage.dispatch, stage.map_name, key, wildcard, Verdict("return"), head))
    return chains


def _nat_chain(pools: Iterable[PoolUpdate]) -> Chain:
    nat: list[Rule] = []
    if any(p.nat_outgoing for p in pools):
        for fam in FAMILIES:
            nat.append(
                rule(
                    Match(addr_field(fam, "saddr"), "==", SetRef(pool_set_name("masq", fam))),
                    Match(addr_field(fam, "daddr"), "!=", SetRef(pool_set_name("all", fam))),
                    Masquerade(),
                    label=f"NAT outgoing {fam.name}",
                )
            )
    return Chain("nat-postrouting", tuple(nat), BaseHook("nat", "postrouting", 100))


def static_chains(
    cfg: RenderConfig, wildcard_maps: frozenset[str], pools: Iterable[PoolUpdate]
) -> list[Chain]:
    """Every chain of the skeleton; `wildcard_maps`: the maps the `*` host endpoint has chains for."""
    return [*_hook_chains(cfg), *_dispatch_chains(cfg, wildcard_maps), _nat_chain(pools)]
