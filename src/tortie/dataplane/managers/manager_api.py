"""The contract between the dataplane loop and its managers.

A manager owns one class of kernel state (e.g. the interfaces of local workloads), or feeds another
that does (route sources set targets on the `RouteTable`, itself a manager). It declares its inputs
in `handles`: the message types of `tortie.dataplane.messages` it takes, plus `LinkEvent` if it wants
interface changes. The loop checks the declarations when it is built and then calls, from its single
thread:

* `on_update(msg)` only for messages of a declared type, `on_link_event(event)` only if `LinkEvent`
  is declared: both only record desired state and mark what is dirty, never touch the kernel;
* `on_kernel_changes(changes)` only if `KernelChanges` is declared (route and nftables changes
  made by anyone, `drivers.kernel_watch`): mark dirty what someone else changed, recognising and
  ignoring the manager's own writes; no I/O;
* `resync()` to schedule a full read-back (first apply, periodic drift repair);
* `apply()` when `needs_apply` and the loop is in sync, in the order the managers were given (one
  made dirty by an earlier one's apply is applied in the same round): read back as needed, diff,
  write the smallest change. It does everything it can; what failed stays dirty and it then raises
  `ApplyIncomplete` (a `DataplaneError`) listing the failures, so the loop retries with backoff;
* `stats()` for metrics (small name -> count mapping, e.g. routes programmed).

Invariants: a manager only ever touches kernel objects of its own class (our route protocol, our
interface prefixes); after a successful apply the kernel matches desired state for everything
it owns, as far as it knows; a full resync never removes working state it still wants.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

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


K = TypeVar("K", bound=str)


def apply_each(keys: Iterable[K], apply_one: Callable[[K], None], what: str) -> list[str]:
    """Call `apply_one` for every key in sorted order, going on after a `DataplaneError`; returns
    one failure line per key that failed ("<what><key>: <error>"), for `ApplyIncomplete`. Keeping
    a failed key dirty is `apply_one`'s contract (it clears the key only once done)."""
    failures: list[str] = []
    for key in sorted(keys):
        try:
            apply_one(key)
        except DataplaneError as exc:
            failures.append(f"{what}{key}: {exc}")
    return failures


class Manager(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def handles(self) -> Collection[type]:
        """The message types (and `LinkEvent`, `KernelChanges`) this manager takes."""
        ...

    def on_update(self, msg: Message) -> None: ...

    def on_link_event(self, event: LinkEvent) -> None: ...

    def resync(self) -> None: ...

    @property
    def needs_apply(self) -> bool: ...

    def apply(self) -> None: ...

    def stats(self) -> Mapping[str, int]: ...
