"""The flow-log statements of the policy table (pure): which rule decided, sent to NFLOG.

With `RenderConfig.flow_log_groups = (inbound, outbound)` set, every rule that decides or passes a
packet copies it to an NFLOG group, with a prefix that names the rule:

* Allow and Pass rules of policies and profiles: `log group G snaplen 128 prefix P` in the rule
  itself. Only packets that start a connection reach policy (established and related packets are
  accepted by conntrack first), so this is one message per connection attempt, never per packet
  of an allowed flow;
* Deny rules, a tier's end (default action Deny) and an endpoint's default deny: a rule before the
  drop with the same matches, `limit rate R/second` and the log, so a flood of denied packets
  costs at most R messages per second per rule; the drop itself never depends on the log.

Groups: `inbound` for the policy of traffic to an endpoint (ingress), `outbound` for traffic from
it (egress); Calico uses 1 and 2. The log never holds or changes a packet: with nobody bound to
the group the kernel drops the copy.

Prefixes: `tf:` and 16 hex digits of a digest of what the rule is (`hit_key`), the same for every
nft rule one policy rule renders to. The renderer only knows the policy (not its tier, which
`EndpointPolicyUpdate` gives), so the flow logger rebuilds prefix -> rule from the same messages
with the same functions (`tortie.flows.catalog`):

    policy / profile rule   rule_prefix(owner, inbound, origin, action)   owner: str(PolicyId), Profile(x)
    end of a tier           end_of_tier_prefix(tier, last policy, inbound)
    endpoint default deny   default_deny_prefix(inbound)
"""

from __future__ import annotations

import hashlib

from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.ir import Limit, Log, Stmt

PREFIX_HEAD = "tf:"
SNAPLEN = 128  # IPv4/IPv6 and transport headers, with room for options
_BURST = 20


def _prefix(*parts: str) -> str:
    return PREFIX_HEAD + hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


def _direction(inbound: bool) -> str:
    return "ingress" if inbound else "egress"


def rule_prefix(owner: str, inbound: bool, origin: str, action: str) -> str:
    """A policy's or profile's rule (`owner` "GlobalNetworkPolicy(x)" / "NetworkPolicy(ns/x)" /
    "Profile(x)"; `origin` "ingress[2]"; `action` Allow, Deny or Pass)."""
    return _prefix("rule", owner, _direction(inbound), origin, action)


def end_of_tier_prefix(tier: str, last_policy: str, inbound: bool) -> str:
    """The drop at the end of `tier` after its policies (the last being `last_policy`) fell through."""
    return _prefix("end-of-tier", tier, last_policy, _direction(inbound))


def default_deny_prefix(inbound: bool) -> str:
    """The drop at the end of an endpoint's chain: no policy or profile allowed the packet."""
    return _prefix("default-deny", _direction(inbound))


def enabled(cfg: RenderConfig) -> bool:
    return cfg.flow_log_groups is not None


def log(cfg: RenderConfig, inbound: bool, prefix: str) -> Log:
    assert cfg.flow_log_groups is not None
    group = cfg.flow_log_groups[0 if inbound else 1]
    return Log(prefix, group=group, snaplen=SNAPLEN)


def limited_log(cfg: RenderConfig, inbound: bool, prefix: str) -> list[Stmt]:
    """The rate-limited log of a drop (statements to append to the drop's matches)."""
    return [Limit(cfg.flow_log_deny_rate, _BURST), log(cfg, inbound, prefix)]
