"""The contract between the dataplane loop and its managers.

A manager owns one class of kernel state (e.g. routes to local workloads). The loop calls, from
its single thread:

* `on_update(msg)` for every dataplane message (managers ignore types they do not handle) and
  `on_link_event(event)` for every interface change: both only record desired state and mark
  what is dirty, never touch the kernel;
* `resync()` to schedule a full read-back (first apply, periodic drift repair);
* `apply()` when `needs_apply` and the loop is in sync: read back as needed, diff, write the
  smallest change. It does everything it can; what failed stays dirty and it then raises
  `ApplyIncomplete` (a `DataplaneError`) listing the failures, so the loop retries with backoff;
* `stats()` for metrics (small name -> count mapping, e.g. routes programmed).

Invariants: a manager only ever touches kernel objects of its own class (our route protocol, our
interface prefixes); after a successful apply the kernel matches desired state for everything
it owns, as far as it knows; a full resync never removes working state it still wants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.messages import Message


class ApplyIncomplete(DataplaneError):
    """Some changes of an apply failed; they stay dirty and are retried."""

    def __init__(self, manager: str, failures: Sequence[str]) -> None:
        shown = "; ".join(failures[:5]) + (f"; ... {len(failures) - 5} more" if len(failures) > 5 else "")
        super().__init__(f"{manager}: {len(failures)} change(s) failed: {shown}")
        self.manager = manager
        self.failures = tuple(failures)


class Manager(Protocol):
    @property
    def name(self) -> str: ...

    def on_update(self, msg: Message) -> None: ...

    def on_link_event(self, event: LinkEvent) -> None: ...

    def resync(self) -> None: ...

    @property
    def needs_apply(self) -> bool: ...

    def apply(self) -> None: ...

    def stats(self) -> Mapping[str, int]: ...
