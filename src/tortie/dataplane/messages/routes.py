"""Route messages that are not a workload endpoint's own: IPAM blocks affine to this host.

`HostBlockUpdate(cidr)` / `HostBlockRemove(cidr)`, keyed by the block's canonical CIDR.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostBlockUpdate:
    """An IPAM block confirmed-affine to this host: the dataplane installs a blackhole route for it
    (workload /32s inside it are more specific and win)."""

    cidr: str


@dataclass(frozen=True)
class HostBlockRemove:
    cidr: str
