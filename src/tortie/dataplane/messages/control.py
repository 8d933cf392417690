"""Messages about the agent itself rather than one resource: its configuration and the in-sync mark."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigUpdate:
    """The agent's effective configuration (name -> typed value), sent before the first InSync
    and whenever it changes."""

    values: Mapping[str, object]


@dataclass(frozen=True)
class InSync:
    """The initial datastore snapshot has been fully delivered."""
