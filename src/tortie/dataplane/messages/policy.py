"""The policy half of the calc -> dataplane contract (frozen records, Update/Remove pairs).

Calc (tortie.calc.policy_calc) emits these through the same sink as the other `tortie.dataplane.messages`;
the policy manager (tortie.dataplane.managers.policy) declares and consumes them.
Flush order (event sequencer ranks): IP sets -> policies -> profiles -> pools -> endpoint policy, and
removals in reverse, so everything an endpoint's chains refer to exists before the endpoint does.

* `IPSetUpdate(id, kind, members)`: the full membership of one selector-derived set. kind "net":
  canonical CIDR strings (endpoint addresses as /32 or /128, network-set CIDRs, possibly
  overlapping); kind "port": `NamedPortMember(ip, protocol, port)` for named ports.
* `PolicyUpdate(id, inbound, outbound, ...)`: an active policy (it applies to at least one local
  endpoint) with its rules resolved: selectors replaced by IP set ids, names by numbers.
* `ProfileUpdate(id, inbound, outbound)`: a profile listed by at least one local endpoint.
* `EndpointPolicyUpdate`: one local WorkloadEndpoint's interface, addresses and the ordered tiers of
  policies that apply to it (ingress and egress lists per tier), then its profiles.
* `HostEndpointPolicyUpdate`: one local HostEndpoint with its normal, forward (applyOnForward),
  preDNAT and untracked (doNotTrack) tiers.
* `PoolUpdate`: an IP pool (for NAT outgoing: masquerade from natOutgoing pools to destinations
  outside every pool).

Invariants: every IP set id an active policy or profile mentions has been sent before (or in the same
flush as) the policy; every policy an endpoint mentions likewise. Ids are stable across restarts (IP
set ids hash canonical selector text), so a restarted agent recognises its own kernel objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tortie.dataplane.messages.endpoints import WorkloadEndpointId

RuleAction = Literal["Allow", "Deny", "Log", "Pass"]
SetKind = Literal["net", "port"]


@dataclass(frozen=True, order=True)
class PolicyId:
    """A (Global)NetworkPolicy: kind "GlobalNetworkPolicy" (namespace "") or "NetworkPolicy"."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.kind == "GlobalNetworkPolicy":
            return f"GlobalNetworkPolicy({self.name})"
        return f"NetworkPolicy({self.namespace}/{self.name})"


@dataclass(frozen=True, order=True)
class NamedPortMember:
    """One (address, IP protocol number, port) of a named-port set."""

    ip: str
    protocol: int
    port: int


@dataclass(frozen=True, order=True)
class PortRange:
    lo: int
    hi: int

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


@dataclass(frozen=True)
class ResolvedRule:
    """A rule with everything the dataplane needs and nothing it must look up.

    All given matches must hold. Set ids (`*_sets`) must all contain the address; `not_*_sets` must
    none. Ports: when `*_ports` or `*_named_port_sets` are given the packet's port must be in one of
    the ranges OR its (address, protocol, port) in one of the named-port sets; `not_*` variants must
    all fail. `origin` says where the rule came from (e.g. "ingress[2]"), for logs and traces.
    """

    action: RuleAction
    origin: str = ""
    ip_version: int | None = None
    protocol: int | None = None
    not_protocol: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    not_icmp_type: int | None = None
    not_icmp_code: int | None = None
    src_nets: tuple[str, ...] = ()
    not_src_nets: tuple[str, ...] = ()
    dst_nets: tuple[str, ...] = ()
    not_dst_nets: tuple[str, ...] = ()
    src_sets: tuple[str, ...] = ()
    not_src_sets: tuple[str, ...] = ()
    dst_sets: tuple[str, ...] = ()
    not_dst_sets: tuple[str, ...] = ()
    src_ports: tuple[PortRange, ...] = ()
    not_src_ports: tuple[PortRange, ...] = ()
    dst_ports: tuple[PortRange, ...] = ()
    not_dst_ports: tuple[PortRange, ...] = ()
    src_named_port_sets: tuple[str, ...] = ()
    not_src_named_port_sets: tuple[str, ...] = ()
    dst_named_port_sets: tuple[str, ...] = ()
    not_dst_named_port_sets: tuple[str, ...] = ()
    never_matches: bool = False
    """Set for rules that can match nothing here (e.g. Kubernetes `services` matches)."""

    def set_ids(self) -> frozenset[str]:
        return frozenset(
            self.src_sets
            + self.not_src_sets
            + self.dst_sets
            + self.not_dst_sets
            + self.src_named_port_sets
            + self.not_src_named_port_sets
            + self.dst_named_port_sets
            + self.not_dst_named_port_sets
        )


@dataclass(frozen=True)
class IPSetUpdate:
    id: str
    kind: SetKind
    members: frozenset[str] | frozenset[NamedPortMember]


@dataclass(frozen=True)
class IPSetRemove:
    id: str


@dataclass(frozen=True)
class PolicyUpdate:
    id: PolicyId
    inbound: tuple[ResolvedRule, ...] = ()
    outbound: tuple[ResolvedRule, ...] = ()
    untracked: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False

    def set_ids(self) -> frozenset[str]:
        return frozenset().union(*(r.set_ids() for r in self.inbound + self.outbound))


@dataclass(frozen=True)
class PolicyRemove:
    id: PolicyId


@dataclass(frozen=True)
class ProfileUpdate:
    id: str
    inbound: tuple[ResolvedRule, ...] = ()
    outbound: tuple[ResolvedRule, ...] = ()

    def set_ids(self) -> frozenset[str]:
        return frozenset().union(*(r.set_ids() for r in self.inbound + self.outbound))


@dataclass(frozen=True)
class ProfileRemove:
    id: str


@dataclass(frozen=True)
class TierPolicies:
    """One tier as it applies to one endpoint: policies in evaluation order per direction. A
    direction whose tuple is empty skips the tier entirely (no default action)."""

    name: str
    default_action: Literal["Deny", "Pass"] = "Deny"
    ingress: tuple[PolicyId, ...] = ()
    egress: tuple[PolicyId, ...] = ()


@dataclass(frozen=True)
class EndpointPolicyUpdate:
    """A WorkloadEndpoint on this host: what its interface's chains need."""

    id: WorkloadEndpointId
    interface_name: str
    ipv4_nets: tuple[str, ...] = ()
    ipv6_nets: tuple[str, ...] = ()
    allowed_source_prefixes: tuple[str, ...] = ()
    tiers: tuple[TierPolicies, ...] = ()
    profile_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndpointPolicyRemove:
    id: WorkloadEndpointId


@dataclass(frozen=True, order=True)
class HostEndpointId:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class HostEndpointPolicyUpdate:
    """A HostEndpoint on this host. `interface_name` "*" means every host interface (workload
    interfaces and loopback excepted); None means the endpoint has no interface name (only its
    expectedIPs, which feed selectors)."""

    id: HostEndpointId
    interface_name: str | None
    expected_ips: tuple[str, ...] = ()
    tiers: tuple[TierPolicies, ...] = ()
    forward_tiers: tuple[TierPolicies, ...] = ()
    pre_dnat_tiers: tuple[TierPolicies, ...] = ()
    untracked_tiers: tuple[TierPolicies, ...] = ()
    profile_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostEndpointPolicyRemove:
    id: HostEndpointId


@dataclass(frozen=True)
class PoolUpdate:
    name: str
    cidr: str
    nat_outgoing: bool = False


@dataclass(frozen=True)
class PoolRemove:
    name: str


PolicyMessage = (
    IPSetUpdate
    | IPSetRemove
    | PolicyUpdate
    | PolicyRemove
    | ProfileUpdate
    | ProfileRemove
    | EndpointPolicyUpdate
    | EndpointPolicyRemove
    | HostEndpointPolicyUpdate
    | HostEndpointPolicyRemove
    | PoolUpdate
    | PoolRemove
)
