"""The guard table `inet tortie-guard` (pure): workload traffic is dropped unless the policy table saw it.

Why: policy lives in one table, `inet tortie`, and `nft delete table inet tortie` (or a script
that flushes it) removes every base chain at once. Without a guard the kernel would then forward
workload traffic unfiltered until the agent rebuilt the table (fail-open). nftables cannot refer
from one table to another, but every base chain on a hook sees the packet in priority order and
a drop anywhere is final, and the packet mark travels with the packet from chain to chain:

    hook forward / input:
      priority -1  tortie-guard  guard-*-arm    meta mark &= ~SEEN                 (nobody vouches yet)
      priority  0  tortie        filter-*       meta mark |= SEEN, then policy     (the main table)
      priority  1  tortie-guard  guard-*-check  SEEN set: clear it, accept;
                                                established/related/untracked: accept
                                                from (and, forwarded, to) a workload interface: drop

While the policy table exists every packet reaching the check carries SEEN (the policy table's
first rule sets it, before any verdict), so the guard changes nothing and costs two chains of one
and four rules. Once the policy table is gone nothing sets SEEN and new workload connections are
dropped: **fail closed** until the agent, told by the kernel's nftables notifications, rebuilds it
(docs/design/dataplane.md, "Drift on the event"). Connections already established keep flowing
(conntrack admitted them through policy, and policy itself accepts established traffic first, so
the guard denies nothing policy would have allowed and lets nothing through policy would not).
Untracked packets (IPv6 neighbour discovery, which the kernel never tracks, and doNotTrack
traffic) pass as the policy table's base chains let them. Non-workload traffic is never touched.

The mark bit (`RenderConfig.policy_mark`, 0x40000) is inside Calico's default mark mask, beside the
accept and pass bits of the evaluation. The guard is the policy manager's (written after the
policy table in the same apply, so an upgraded agent never has a guard without a policy table
that sets the bit); deleting only the guard leaves policy enforced, and it is repaired the same way.
Limit: `nft flush ruleset` removes both tables; the agent rebuilds them on that event, but until
then (well under a second) nothing is enforced.
"""

from __future__ import annotations

from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.ir import (
    AnonSet,
    BaseHook,
    BitAnd,
    Chain,
    Counter,
    Ct,
    Match,
    Meta,
    Rule,
    Ruleset,
    SetMark,
    Verdict,
    rule,
)

GUARD_TABLE = "tortie-guard"
ARM_PRIORITY = -1  # just before the policy table's filter chains (priority 0)
CHECK_PRIORITY = 1  # just after them


def mark_seen(cfg: RenderConfig) -> Rule:
    """The policy table's first rule on the forward and input hooks: "the policy table saw this"."""
    return rule(SetMark(or_bits=cfg.policy_mark), label=f"seen by policy ({GUARD_TABLE})")


def _check(cfg: RenderConfig, hook: str) -> Chain:
    bit = cfg.policy_mark
    workloads = AnonSet(tuple(f"{p}*" for p in cfg.interface_prefixes))
    rules = [
        rule(Match(BitAnd(Meta("mark"), bit), "==", bit), SetMark(and_mask=0xFFFFFFFF & ~bit),
             Verdict("accept"), label="policy table present"),
        rule(Match(Ct("state"), "in", ("established", "related", "untracked")), Verdict("accept"),
             label="admitted before (conntrack) or untracked"),
        rule(Match(Meta("iifname"), "==", workloads), Counter(), Verdict("drop"),
             label="policy table missing: from workload"),
    ]
    if hook == "forward":
        rules.append(rule(Match(Meta("oifname"), "==", workloads), Counter(), Verdict("drop"),
                          label="policy table missing: to workload"))
    return Chain(f"guard-{hook}-check", tuple(rules), BaseHook("filter", hook, CHECK_PRIORITY))


def _arm(cfg: RenderConfig, hook: str) -> Chain:
    clear = rule(SetMark(and_mask=0xFFFFFFFF & ~cfg.policy_mark), label="nobody vouches yet")
    return Chain(f"guard-{hook}-arm", (clear,), BaseHook("filter", hook, ARM_PRIORITY))


def render_guard(cfg: RenderConfig) -> Ruleset:
    """The whole guard table for this configuration (interface prefixes, mark bit)."""
    chains = [chain for hook in ("forward", "input") for chain in (_arm(cfg, hook), _check(cfg, hook))]
    return Ruleset(chains={chain.name: chain for chain in chains})
