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
"""

from __future__ import annotations

import logging

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.nftables import FAMILY, NftDriver
from tortie.dataplane.nft import batch
from tortie.dataplane.nft.ir import Ruleset
from tortie.dataplane.nft.parse import KernelTable, parse_table

log = logging.getLogger(__name__)


def _is_empty(ruleset: Ruleset) -> bool:
    return not (ruleset.chains or ruleset.sets or ruleset.maps)


class NftTable:
    """See the module docstring."""

    def __init__(self, driver: NftDriver, table: str) -> None:
        self._driver = driver
        self.table = table
        self._desired = Ruleset()
        self._actual: KernelTable | None = None
        self._read = False  # the kernel state below is known
        self._dirty = True

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

    def apply(self) -> None:
        if not self._read:
            objects = self._driver.list_table(self.table)
            self._actual = parse_table(objects) if objects is not None else None
            self._read = True
            log.debug("nft table read back table=%s exists=%s", self.table, objects is not None)
        want, have = self._desired, self._actual
        if _is_empty(want):
            gone = {"delete": {"table": {"family": FAMILY, "name": self.table}}}
            commands = [gone] if have is not None else []
        else:
            known = have or KernelTable()
            chains = set(want.chains) | set(known.chains)
            sets = set(want.sets) | set(known.sets)
            maps = set(want.maps) | set(known.maps)
            commands = batch.build_batch(self.table, want, have, chains, sets, maps)
        if commands:
            try:
                self._driver.run(commands)
            except DataplaneError:
                self._read = False  # retry from what the kernel really holds
                raise
            log.info("nft table updated table=%s commands=%d", self.table, len(commands))
        if _is_empty(want):
            self._actual = None
        else:
            self._actual = self._actual or KernelTable()
            batch.commit(want, self._actual, chains, sets, maps)
        self._dirty = False
