"""The closed contract between `tortie.calc` (pure) and `tortie.dataplane` (kernel programming).

Calc emits these frozen records through a sink; the dataplane loop routes each one to the managers
that declare its type. They come in Update/Remove pairs keyed by an id; an Update replaces everything
previously said for that id. `InSync` is sent once, after the initial snapshot's messages: nothing may
touch the kernel before it (the dataplane then adopts existing state and removes only what is its own
and unwanted).

One module per area, all re-exported here:

    endpoints.py   WorkloadEndpointId, WorkloadEndpointUpdate/Remove (interface, address routes, ipNATs, QoS)
    routes.py      HostBlockUpdate/Remove (IPAM blocks affine to this host)
    encap.py       VtepUpdate/Remove, RemoteBlockRouteUpdate/Remove, EncapUpdate (VXLAN, MTU)
    control.py     ConfigUpdate, InSync (the agent itself)
    policy.py      IP sets, policies, profiles, endpoint and host-endpoint policy, pools

A new message type goes into its area's module, into `Message` below, and into the `handles` of the
manager(s) that consume it: the dataplane loop routes each type only to the managers that declare it,
and refuses at construction a type that no manager takes unless it is declared unhandled.
"""

from __future__ import annotations

from typing import get_args

from tortie.dataplane.messages.control import ConfigUpdate, InSync
from tortie.dataplane.messages.encap import (
    Encap,
    EncapUpdate,
    RemoteBlockRouteRemove,
    RemoteBlockRouteUpdate,
    VtepRemove,
    VtepUpdate,
)
from tortie.dataplane.messages.endpoints import (
    IPNat,
    QosLimits,
    WorkloadEndpointId,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from tortie.dataplane.messages.policy import (
    EndpointPolicyRemove,
    EndpointPolicyUpdate,
    HostEndpointId,
    HostEndpointPolicyRemove,
    HostEndpointPolicyUpdate,
    IPSetRemove,
    IPSetUpdate,
    NamedPortMember,
    PolicyId,
    PolicyMessage,
    PolicyRemove,
    PolicyUpdate,
    PoolRemove,
    PoolUpdate,
    PortRange,
    ProfileRemove,
    ProfileUpdate,
    ResolvedRule,
    RuleAction,
    SetKind,
    TierPolicies,
)
from tortie.dataplane.messages.routes import HostBlockRemove, HostBlockUpdate

Message = (
    WorkloadEndpointUpdate
    | WorkloadEndpointRemove
    | HostBlockUpdate
    | HostBlockRemove
    | VtepUpdate
    | VtepRemove
    | RemoteBlockRouteUpdate
    | RemoteBlockRouteRemove
    | EncapUpdate
    | ConfigUpdate
    | InSync
    | PolicyMessage
)

MESSAGE_TYPES: tuple[type, ...] = get_args(Message)
"""Every member of `Message` (what the dataplane loop accepts; managers declare subsets of it)."""
POLICY_MESSAGE_TYPES: tuple[type, ...] = get_args(PolicyMessage)
ENCAP_MESSAGE_TYPES: tuple[type, ...] = (EncapUpdate, VtepUpdate, VtepRemove, RemoteBlockRouteUpdate,
                                         RemoteBlockRouteRemove)

__all__ = [
    "ENCAP_MESSAGE_TYPES",
    "MESSAGE_TYPES",
    "POLICY_MESSAGE_TYPES",
    "ConfigUpdate",
    "Encap",
    "EncapUpdate",
    "EndpointPolicyRemove",
    "EndpointPolicyUpdate",
    "HostBlockRemove",
    "HostBlockUpdate",
    "HostEndpointId",
    "HostEndpointPolicyRemove",
    "HostEndpointPolicyUpdate",
    "IPNat",
    "IPSetRemove",
    "IPSetUpdate",
    "InSync",
    "Message",
    "NamedPortMember",
    "PolicyId",
    "PolicyMessage",
    "PolicyRemove",
    "PolicyUpdate",
    "PoolRemove",
    "PoolUpdate",
    "PortRange",
    "ProfileRemove",
    "ProfileUpdate",
    "QosLimits",
    "RemoteBlockRouteRemove",
    "RemoteBlockRouteUpdate",
    "ResolvedRule",
    "RuleAction",
    "SetKind",
    "TierPolicies",
    "VtepRemove",
    "VtepUpdate",
    "WorkloadEndpointId",
    "WorkloadEndpointRemove",
    "WorkloadEndpointUpdate",
]
