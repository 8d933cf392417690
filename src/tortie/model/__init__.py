"""tortie.model: the projectcalico.org/v3 resources (typed records), validation and the YAML/JSON codec.

    from tortie.model import IPPoolSpec, dump_yaml, load_resources
    resources = load_resources(text, source="pool.yaml")  # ValidationError lists all problems
    pool = resources[0].spec_as(IPPoolSpec)
    pool.cidr, pool.effective_block_size
    text = dump_yaml(resources)                           # loads back to equal resources

Layout: `schema` (codec machinery), `fields` (primitive validators), `metadata`, `rules`,
`specs_*` (one module per kind family), `resource` (Resource + kind table), `codec` (text in/out),
`problems` (Problem, ValidationError), `kinds` (kind names, scopes and datastore keys).
Field-by-field reference: docs/reference/resources.md.

The names below are loaded on first use (PEP 562), so `import tortie.model.kinds` stays cheap for
processes that need only the kind table (the CNI plugins).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tortie.model.codec import dump_json, dump_yaml, load_resources
    from tortie.model.fields import Port, ProtocolValue, duration_seconds
    from tortie.model.frozen import FrozenMap
    from tortie.model.kinds import API_VERSION
    from tortie.model.metadata import Metadata
    from tortie.model.problems import Problem, ValidationError
    from tortie.model.resource import MODELS, Resource, Spec, parse_resource, validate_resource
    from tortie.model.rules import (
        EntityRule,
        HTTPMatch,
        HTTPPath,
        ICMPFields,
        Rule,
        RuleMetadata,
        ServiceAccountMatch,
        ServiceMatch,
    )
    from tortie.model.specs_bgp import (
        BGPConfigurationSpec,
        BGPPassword,
        BGPPeerSpec,
        Community,
        NodeAddress,
        NodeBGPSpec,
        NodeInterface,
        NodeSpec,
        NodeWireguardSpec,
        OrchRef,
        PrefixAdvertisement,
        SecretKeyRef,
        ServiceCIDR,
    )
    from tortie.model.specs_endpoint import (
        IPNAT,
        EndpointPort,
        HostEndpointSpec,
        QoSControls,
        WorkloadEndpointPort,
        WorkloadEndpointSpec,
    )
    from tortie.model.specs_felix import (
        FelixConfigurationSpec,
        HealthTimeoutOverride,
        ProtoPort,
        RouteTableRange,
    )
    from tortie.model.specs_ipam import (
        AllocationAttribute,
        BlockAffinitySpec,
        IPAMBlockSpec,
        IPAMConfigurationSpec,
        IPAMHandleSpec,
        IPPoolSpec,
        IPReservationSpec,
    )
    from tortie.model.specs_policy import (
        GlobalNetworkPolicySpec,
        GlobalNetworkSetSpec,
        NetworkPolicySpec,
        NetworkSetSpec,
        PolicySpec,
        ProfileSpec,
        TierSpec,
        effective_tier_order,
    )

_EXPORTS: dict[str, str] = {
    "API_VERSION": "tortie.model.kinds",
    "AllocationAttribute": "tortie.model.specs_ipam",
    "BGPConfigurationSpec": "tortie.model.specs_bgp",
    "BGPPassword": "tortie.model.specs_bgp",
    "BGPPeerSpec": "tortie.model.specs_bgp",
    "BlockAffinitySpec": "tortie.model.specs_ipam",
    "Community": "tortie.model.specs_bgp",
    "EndpointPort": "tortie.model.specs_endpoint",
    "EntityRule": "tortie.model.rules",
    "FelixConfigurationSpec": "tortie.model.specs_felix",
    "FrozenMap": "tortie.model.frozen",
    "GlobalNetworkPolicySpec": "tortie.model.specs_policy",
    "GlobalNetworkSetSpec": "tortie.model.specs_policy",
    "HTTPMatch": "tortie.model.rules",
    "HTTPPath": "tortie.model.rules",
    "HealthTimeoutOverride": "tortie.model.specs_felix",
    "HostEndpointSpec": "tortie.model.specs_endpoint",
    "ICMPFields": "tortie.model.rules",
    "IPAMBlockSpec": "tortie.model.specs_ipam",
    "IPAMConfigurationSpec": "tortie.model.specs_ipam",
    "IPAMHandleSpec": "tortie.model.specs_ipam",
    "IPNAT": "tortie.model.specs_endpoint",
    "IPPoolSpec": "tortie.model.specs_ipam",
    "IPReservationSpec": "tortie.model.specs_ipam",
    "MODELS": "tortie.model.resource",
    "Metadata": "tortie.model.metadata",
    "NetworkPolicySpec": "tortie.model.specs_policy",
    "NetworkSetSpec": "tortie.model.specs_policy",
    "NodeAddress": "tortie.model.specs_bgp",
    "NodeBGPSpec": "tortie.model.specs_bgp",
    "NodeInterface": "tortie.model.specs_bgp",
    "NodeSpec": "tortie.model.specs_bgp",
    "NodeWireguardSpec": "tortie.model.specs_bgp",
    "OrchRef": "tortie.model.specs_bgp",
    "PolicySpec": "tortie.model.specs_policy",
    "Port": "tortie.model.fields",
    "PrefixAdvertisement": "tortie.model.specs_bgp",
    "Problem": "tortie.model.problems",
    "ProfileSpec": "tortie.model.specs_policy",
    "ProtoPort": "tortie.model.specs_felix",
    "ProtocolValue": "tortie.model.fields",
    "QoSControls": "tortie.model.specs_endpoint",
    "Resource": "tortie.model.resource",
    "RouteTableRange": "tortie.model.specs_felix",
    "Rule": "tortie.model.rules",
    "RuleMetadata": "tortie.model.rules",
    "SecretKeyRef": "tortie.model.specs_bgp",
    "ServiceAccountMatch": "tortie.model.rules",
    "ServiceCIDR": "tortie.model.specs_bgp",
    "ServiceMatch": "tortie.model.rules",
    "Spec": "tortie.model.resource",
    "TierSpec": "tortie.model.specs_policy",
    "ValidationError": "tortie.model.problems",
    "WorkloadEndpointPort": "tortie.model.specs_endpoint",
    "WorkloadEndpointSpec": "tortie.model.specs_endpoint",
    "dump_json": "tortie.model.codec",
    "dump_yaml": "tortie.model.codec",
    "duration_seconds": "tortie.model.fields",
    "effective_tier_order": "tortie.model.specs_policy",
    "load_resources": "tortie.model.codec",
    "parse_resource": "tortie.model.resource",
    "validate_resource": "tortie.model.resource",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tortie.model' has no attribute {name!r}")
    __import__(module)  # not importlib.import_module: this way `python -X importtime` reports it
    value = getattr(sys.modules[module], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "API_VERSION",
    "IPNAT",
    "MODELS",
    "AllocationAttribute",
    "BGPConfigurationSpec",
    "BGPPassword",
    "BGPPeerSpec",
    "BlockAffinitySpec",
    "Community",
    "EndpointPort",
    "EntityRule",
    "FelixConfigurationSpec",
    "FrozenMap",
    "GlobalNetworkPolicySpec",
    "GlobalNetworkSetSpec",
    "HTTPMatch",
    "HTTPPath",
    "HealthTimeoutOverride",
    "HostEndpointSpec",
    "ICMPFields",
    "IPAMBlockSpec",
    "IPAMConfigurationSpec",
    "IPAMHandleSpec",
    "IPPoolSpec",
    "IPReservationSpec",
    "Metadata",
    "NetworkPolicySpec",
    "NetworkSetSpec",
    "NodeAddress",
    "NodeBGPSpec",
    "NodeInterface",
    "NodeSpec",
    "NodeWireguardSpec",
    "OrchRef",
    "PolicySpec",
    "Port",
    "PrefixAdvertisement",
    "Problem",
    "ProfileSpec",
    "ProtoPort",
    "ProtocolValue",
    "QoSControls",
    "Resource",
    "RouteTableRange",
    "Rule",
    "RuleMetadata",
    "SecretKeyRef",
    "ServiceAccountMatch",
    "ServiceCIDR",
    "ServiceMatch",
    "Spec",
    "TierSpec",
    "ValidationError",
    "WorkloadEndpointPort",
    "WorkloadEndpointSpec",
    "dump_json",
    "dump_yaml",
    "duration_seconds",
    "effective_tier_order",
    "load_resources",
    "parse_resource",
    "validate_resource",
]
