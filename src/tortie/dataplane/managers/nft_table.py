"""One small nftables table owned whole by one manager (the floating-IP and QoS tables).

    manager --set_desired(Ruleset)--> NftTable --apply()--> NftDriver (one transaction)

The owner renders its complete table (a few chains, a few sets) whenever its desired state changes
and hands it over; `apply()` diffs it against the kernel state it knows with the policy table's
`batch.build_batch` (chains compared by rule digests, set elements one by one) and runs the result
as one transaction. An empty `Ruleset` means "no table": it is deleted.

Adoption and drift: the first apply and every `resync()` read the table back (`nft -j list table`),
so a restarted agent changes nothing when the table is already right, and a rule someone deleted or
added is repaired at the next periodic refresh. A rejected batch forces a read-back before the retry.
Unlike the policy table these tables are small, so every resync lists them (no generation check).

Drift on the event: `on_kernel_changes` reads the table back at the next apply when a transaction
that was not ours touched it (`OwnTransactions`), or when notifications were lost.

`OwnTransactions` (shared with the policy manager) tells our own nftables transactions from anyone
else's: around each batch the generation is read before and after; when it moved by exactly one,
no other transaction committed in between and the new generation is ours. Notifications carry the
low 16 bits of their transaction's generation (`tortie.kernel.nfnetlink`), so a notification is
ours when its generation is one we noted. When the generation moved by more (a concurrent commit)
we cannot tell, and the notifications count as someone else's: a read-back more, never a repair less.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.kernel_watch import KernelChanges
from tortie.dataplane.drivers.nftables import FAMILY, NftDriver
from tortie.dataplane.nft import batch
from tortie.dataplane.nft.ir import Ruleset
from tortie.dataplane.nft.parse import KernelTable, parse_table

log = logging.getLogger(__name__)


def _is_empty(ruleset: Ruleset) -> bool:
    return not (ruleset.chains or ruleset.sets or ruleset.maps)


class OwnTransactions:
    """The recent nftables generations this process committed (module docstring)."""

    def __init__(self, keep: int = 64) -> None:
        self._generations: deque[int] = deque(maxlen=keep)

    def note(self, before: int | None, after: int | None) -> None:
        if before is not None and after is not None and after == before + 1:
            self._generations.append(after & 0xFFFF)

    def foreign(self, generations: frozenset[int]) -> bool:
        """Whether any of these (16-bit) generations is not one of ours."""
        return any(gen not in self._generations for gen in generations)

    def touched_by_others(self, changes: KernelChanges, table: str) -> bool:
        """Whether `changes` say that someone else may have changed `table`."""
        return changes.nft_lost or self.foreign(changes.nft.get(table, frozenset()))


class NftTable:
    """See the module docstring."""

    def __init__(self, driver: NftDriver, table: str) -> None:
        self._driver = driver
        self.table = table
        self._desired = Ruleset()
        self._actual: KernelTable | None = None
        self._read = False  # the kernel state below is known
        self._dirty = True
        self.own = OwnTransactions()

    @property
    def needs_apply(self) -> bool:
        return self._dirty or not self._read

    @property
    def desired(self) -> Ruleset:
        return self._desired

    def set_desired(self, ruleset: Ruleset) -> None:
        if ruleset != self._desired:
            self._desired = ruleset
            self._dirty = True

    def resync(self) -> None:
        self._read = False

    def on_kernel_changes(self, changes: KernelChanges) -> bool:
        """Schedule a read-back when someone else touched the table; True when it did."""
        if self._read and self.own.touched_by_others(changes, self.table):
            log.info("nft drift: table changed by someone else; reading it back table=%s", self.table)
            self._read = False
            return True
        return False

    def commands(self) -> list[dict[str, Any]]:
        """The transaction that makes the kernel's table the desired one (reading it back first if
        needed); run it, then call `committed()` (or `failed()`). `apply()` does all three; the
        policy manager runs its guard table's commands inside its own transaction instead."""
        if not self._read:
            objects = self._driver.list_table(self.table)
            self._actual = parse_table(objects) if objects is not None else None
            self._read = True
            log.debug("nft table read back table=%s exists=%s", self.table, objects is not None)
        want, have = self._desired, self._actual
        if _is_empty(want):
            gone = {"delete": {"table": {"family": FAMILY, "name": self.table}}}
            return [gone] if have is not None else []
        known = have or KernelTable()
        chains = set(want.chains) | set(known.chains)
        sets = set(want.sets) | set(known.sets)
        maps = set(want.maps) | set(known.maps)
        return batch.build_batch(self.table, want, have, chains, sets, maps)

    def committed(self) -> None:
        """The commands of `commands()` were applied: the kernel holds the desired table."""
        want = self._desired
        if _is_empty(want):
            self._actual = None
        else:
            self._actual = self._actual or KernelTable()
            batch.commit(want, self._actual, set(want.chains) | set(self._actual.chains),
                         set(want.sets) | set(self._actual.sets), set(want.maps) | set(self._actual.maps))
        self._dirty = False

    def failed(self) -> None:
        """The commands were rejected: retry from what the kernel really holds."""
        self._read = False

    def apply(self) -> None:
        commands = self.commands()
        if commands:
            before = self._driver.generation()
            try:
                self._driver.run(commands)
            except DataplaneError:
                self.failed()
                raise
            self.own.note(before, self._driver.generation())
            log.info("nft table updated table=%s commands=%d", self.table, len(commands))
        self.committed()
