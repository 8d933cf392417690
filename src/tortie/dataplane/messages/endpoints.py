"""Workload endpoint messages: a WorkloadEndpoint on THIS host, as the dataplane needs it to plumb its
interface and route its addresses (the policy side of an endpoint is `messages.policy`).

Update/Remove keyed by `WorkloadEndpointId`; an Update replaces everything previously said for that id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class WorkloadEndpointId:
    """Identity of a WorkloadEndpoint: its namespace and name (the datastore key's last parts)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class WorkloadEndpointUpdate:
    """A WorkloadEndpoint on THIS host, as the dataplane needs it.

    `ipv4_nets` / `ipv6_nets` are canonical "/32" / "/128" CIDR strings, sorted. `interface_name` is
    the host-side interface (matches one of the configured interface prefixes).
    """

    id: WorkloadEndpointId
    interface_name: str
    ipv4_nets: tuple[str, ...] = ()
    ipv6_nets: tuple[str, ...] = ()
    mac: str | None = None
    profile_ids: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    # Identity for endpoint status reporting (reference §1.16 status keys); not used for programming.
    orchestrator: str | None = None
    workload: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class WorkloadEndpointRemove:
    id: WorkloadEndpointId
