"""Block calculator: IPAM blocks confirmed-affine to this host -> HostBlockUpdate / HostBlockRemove.

Inputs: parsed `BlockHead`s (IPAM blocks) and `Affinity`s (host affinities) or None, per
datastore key, from the dispatcher. Output: queue calls on the sequencer's "blocks" channel keyed by
the block CIDR.

A block is this host's when both hold (reference §5.1, §3.5):
* the block object exists, is not marked deleted, and its `affinity` is `host:<hostname>`;
* this host's affinity object for the block's CIDR exists with state `confirmed` (a pending claim may
  still lose its race; a pendingDeletion block is being released).
The dataplane installs a blackhole route per such block; workload /32s inside it are more specific.
"""

from __future__ import annotations

from tortie.calc.event_sequencer import EventSequencer
from tortie.dataplane.messages import HostBlockRemove, HostBlockUpdate
from tortie.model.ipam_block import BlockHead
from tortie.model.ipam_records import Affinity

CHANNEL = "blocks"


def block_remove(key: object) -> HostBlockRemove:
    return HostBlockRemove(str(key))


class BlockCalc:
    def __init__(self, hostname: str, sequencer: EventSequencer) -> None:
        self._hostname = hostname
        self._sequencer = sequencer
        self._affine_blocks: dict[str, str] = {}  # block key -> cidr, blocks whose affinity names this host
        self._confirmed: dict[str, str] = {}  # affinity key -> cidr, this host's confirmed affinities
        self._block_count: dict[str, int] = {}  # cidr -> number of affine block keys (normally 1)
        self._confirmed_count: dict[str, int] = {}

    @property
    def host_block_count(self) -> int:
        return sum(1 for cidr in self._block_count if cidr in self._confirmed_count)

    def on_block(self, key: str, record: object | None) -> None:
        mine = isinstance(record, BlockHead) and record.host == self._hostname
        cidr = str(record.cidr) if isinstance(record, BlockHead) and mine and not record.deleted else None
        self._set(self._affine_blocks, self._block_count, key, cidr)

    def on_affinity(self, key: str, record: object | None) -> None:
        mine = isinstance(record, Affinity) and record.host == self._hostname and record.confirmed
        cidr = str(record.cidr) if isinstance(record, Affinity) and mine else None
        self._set(self._confirmed, self._confirmed_count, key, cidr)

    def _set(self, by_key: dict[str, str], counts: dict[str, int], key: str, cidr: str | None) -> None:
        old = by_key.get(key)
        if old == cidr:
            return
        if old is not None:
            del by_key[key]
            counts[old] -= 1
            if not counts[old]:
                del counts[old]
            self._refresh(old)
        if cidr is not None:
            by_key[key] = cidr
            counts[cidr] = counts.get(cidr, 0) + 1
            self._refresh(cidr)

    def _refresh(self, cidr: str) -> None:
        if cidr in self._block_count and cidr in self._confirmed_count:
            self._sequencer.queue_update(CHANNEL, cidr, HostBlockUpdate(cidr))
        else:
            self._sequencer.queue_remove(CHANNEL, cidr)
