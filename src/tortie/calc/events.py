"""Input events of the calculation: what the agent's syncer adapter feeds into `CalcGraph`.

calc depends on nothing of the datastore layer: the agent translates the syncer's own events into
these two records.

* `KVUpdate(key, value)`: the datastore key now holds `value` (its JSON object), or is gone when
  `value` is None. Updates for one key arrive in revision order.
* `InSync()`: every key of the initial snapshot has been delivered. After a resync the adapter sends
  the new snapshot's updates (deletions included) followed by another `InSync`; the calc treats later
  InSyncs as no-ops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KVUpdate:
    key: str
    value: Mapping[str, Any] | None


@dataclass(frozen=True)
class InSync:
    pass


CalcEvent = KVUpdate | InSync
