"""What policy selectors match (pure): endpoints and network sets as `SelectableItem`s.

Input: a parsed WorkloadEndpoint, HostEndpoint, NetworkSet or GlobalNetworkSet. Output: its
`SelectableItem`: labels (own, then the implicit ones, which win), the profiles whose labelsToApply
it inherits (`parents`, in order), its addresses or CIDRs (canonical, IPv4 first) and its named
ports (name, protocol number, port). Both label indexes of the policy calc (local endpoints x
policy selectors, all items x IP set selectors) and the IP set members come from these items.

Implicit labels and parents follow Calico (see `policy_rules`): a namespaced object carries
`projectcalico.org/namespace` and `pcns.projectcalico.org/name` and inherits profile `kns.<ns>`; a
WorkloadEndpoint its orchestrator and service account (`projectcalico.org/serviceaccount`,
`pcsa.projectcalico.org/name`, profile `ksa.<ns>.<sa>`). Other hosts' WorkloadEndpoints are read
into the same item straight from the wire by `policy_remote` (a property test pins the two).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tortie.calc.policy_rules import (
    NAMESPACE_LABEL,
    NAMESPACE_NAME_LABEL,
    NAMESPACE_PROFILE_PREFIX,
    ORCHESTRATOR_LABEL,
    SERVICE_ACCOUNT_LABEL,
    SERVICE_ACCOUNT_NAME_LABEL,
    SERVICE_ACCOUNT_PROFILE_PREFIX,
)
from tortie.common.ipfamily import canonical_cidr, sort_key


@dataclass(frozen=True)
class SelectableItem:
    """Something rule selectors can match: labels (own + implicit), parent profiles whose
    labelsToApply it inherits, its addresses/CIDRs, and named ports (name, protocol, port)."""

    labels: Mapping[str, str]
    parents: tuple[str, ...] = ()
    nets: tuple[str, ...] = ()
    ports: tuple[tuple[str, int, int], ...] = ()


def sorted_nets(nets: Iterable[str]) -> tuple[str, ...]:
    """Canonical CIDRs, without repeats, IPv4 first, in address order."""
    parsed = {ipaddress.ip_network(n, strict=False) for n in nets}
    return tuple(str(n) for n in sorted(parsed, key=sort_key))


def cidr(text: str) -> str:
    return canonical_cidr(text, strict=False)


def workload_item(resource: Any) -> SelectableItem:
    """Labels, parents, addresses and named ports of a WorkloadEndpoint (implicit labels win)."""
    meta, spec = resource.metadata, resource.spec
    labels, parents = endpoint_identity(
        str(meta.namespace), meta.labels, spec.profiles, spec.orchestrator, spec.service_account_name
    )
    ports = tuple((p.name, p.protocol.number, p.port) for p in spec.ports if p.name)
    return SelectableItem(labels, parents, sorted_nets(spec.ip_networks), ports)


def endpoint_identity(
    ns: str, labels: Mapping[str, str], profiles: Iterable[str], orchestrator: str | None, account: str | None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """A WorkloadEndpoint's labels with Calico's implicit ones (namespace, orchestrator, service
    account: they win over the endpoint's own) and its parents (its profiles, then the namespace's and
    the service account's profiles, without repeats)."""
    out = dict(labels)
    out[NAMESPACE_LABEL] = ns
    out[NAMESPACE_NAME_LABEL] = ns
    parents = [*profiles, NAMESPACE_PROFILE_PREFIX + ns]
    if orchestrator:
        out[ORCHESTRATOR_LABEL] = orchestrator
    if account:
        out[SERVICE_ACCOUNT_LABEL] = account
        out[SERVICE_ACCOUNT_NAME_LABEL] = account
        parents.append(f"{SERVICE_ACCOUNT_PROFILE_PREFIX}{ns}.{account}")
    return out, tuple(dict.fromkeys(parents))


def host_item(resource: Any) -> SelectableItem:
    spec = resource.spec
    ports = tuple((p.name, p.protocol.number, p.port) for p in spec.ports)
    return SelectableItem(
        dict(resource.metadata.labels), tuple(spec.profiles), sorted_nets(spec.expected_ips), ports
    )


def network_set_item(resource: Any) -> SelectableItem:
    labels = dict(resource.metadata.labels)
    parents: tuple[str, ...] = ()
    ns = resource.metadata.namespace
    if ns:
        labels[NAMESPACE_LABEL] = ns
        labels[NAMESPACE_NAME_LABEL] = ns
        parents = (NAMESPACE_PROFILE_PREFIX + ns,)
    return SelectableItem(labels, parents, sorted_nets(resource.spec.nets))
