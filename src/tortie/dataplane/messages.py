"""The closed contract between `tortie.calc` (pure) and `tortie.dataplane` (kernel programming).

Calc emits these frozen records through a sink; the dataplane loop feeds them to its managers. They
come in Update/Remove pairs keyed by an id; an Update replaces everything previously said for that
id. `InSync` is sent once, after the initial snapshot's messages: nothing may touch the kernel
before it (the dataplane then adopts existing state and removes only what is its own and unwanted).

Issue 4 (policy) adds its own message types here; managers ignore types they do not handle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tortie.dataplane.policy_messages import PolicyMessage  # the policy half (issue 5)


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


@dataclass(frozen=True)
class HostBlockUpdate:
    """An IPAM block confirmed-affine to this host: the dataplane installs a blackhole route for it
    (workload /32s inside it are more specific and win)."""

    cidr: str


@dataclass(frozen=True)
class HostBlockRemove:
    cidr: str


@dataclass(frozen=True)
class ConfigUpdate:
    """The agent's effective configuration (name -> typed value), sent before the first InSync
    and whenever it changes."""

    values: Mapping[str, object]


@dataclass(frozen=True)
class InSync:
    """The initial datastore snapshot has been fully delivered."""


Message = (
    WorkloadEndpointUpdate
    | WorkloadEndpointRemove
    | HostBlockUpdate
    | HostBlockRemove
    | ConfigUpdate
    | InSync
    | PolicyMessage
)
