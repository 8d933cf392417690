"""IP set calculator: the members of every IP set that active rules need, from ALL endpoints and
network sets cluster-wide -> IPSetUpdate / IPSetRemove.

Inputs (from tortie.calc.policy_calc): `add_ref(SetSpec)` / `remove_ref(set_id)` as active rules
start and stop needing a set; `update_item(item_id, SelectableItem | None)` for every
WorkloadEndpoint, HostEndpoint, NetworkSet and GlobalNetworkSet; `update_parent(profile, labels)`
for profiles' `labelsToApply`. Output: `flush()` queues, for each set whose membership changed,
the full membership on the sequencer's "ipsets" channel (coalesced per set id; an unchanged set
sends nothing).

How: one label index (`AnchoredLabelIndex`, built for many namespace-scoped selectors) over all
items holds the selectors of the needed sets (one entry per distinct selector, however many sets
use it). Its match start/stop callbacks add/subtract the
item's contribution to per-set reference counts, so a membership change costs O(contribution),
never a rescan. Contributions: an item's addresses or CIDRs ("net" sets); for a named-port set,
(address, protocol, port) for each of the item's ports with that name ("port" sets; network sets
have no ports). Counts make overlapping contributions (two items with one address) safe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping

from tortie.calc.event_sequencer import EventSequencer
from tortie.calc.policy_items import SelectableItem
from tortie.calc.policy_rules import SetSpec
from tortie.dataplane.messages.policy import IPSetRemove, IPSetUpdate, NamedPortMember
from tortie.selector.label_index import AnchoredLabelIndex

CHANNEL = "ipsets"


def ipset_remove(key: object) -> IPSetRemove:
    return IPSetRemove(str(key))


def _contribution(item: SelectableItem, named_port: str | None) -> list[object]:
    if named_port is None:
        return list(item.nets)
    out: list[object] = []
    for name, protocol, port in item.ports:
        if name == named_port:
            out.extend(
                NamedPortMember(net.split("/")[0], protocol, port)
                for net in item.nets
                if net.endswith(("/32", "/128"))
            )
    return out


class IPSetCalc:
    def __init__(self, sequencer: EventSequencer) -> None:
        self._sequencer = sequencer
        self._index = AnchoredLabelIndex(self._on_match_started, self._on_match_stopped)
        self._items: dict[Hashable, SelectableItem] = {}
        self._specs: dict[str, SetSpec] = {}
        self._refs: Counter[str] = Counter()
        self._sets_by_selector: dict[str, set[str]] = {}
        self._members: dict[str, Counter[object]] = {}
        self._dirty: set[str] = set()

    # -- demand --------------------------------------------------------------------------------------
    def add_ref(self, spec: SetSpec) -> None:
        self._refs[spec.id] += 1
        if self._refs[spec.id] > 1:
            return
        self._specs[spec.id] = spec
        self._members[spec.id] = Counter()
        self._dirty.add(spec.id)
        sel_id = spec.selector.unique_id
        users = self._sets_by_selector.setdefault(sel_id, set())
        users.add(spec.id)
        if len(users) == 1:
            self._index.update_selector(sel_id, spec.selector)  # callbacks fill the members
        else:
            for item_id in self._index.matches(sel_id):
                self._add(spec.id, self._items[item_id])

    def remove_ref(self, set_id: str) -> None:
        self._refs[set_id] -= 1
        if self._refs[set_id] > 0:
            return
        del self._refs[set_id]
        spec = self._specs.pop(set_id)
        del self._members[set_id]
        self._dirty.add(set_id)
        sel_id = spec.selector.unique_id
        users = self._sets_by_selector[sel_id]
        users.discard(set_id)
        if not users:
            del self._sets_by_selector[sel_id]
            self._index.remove_selector(sel_id)

    # -- items ---------------------------------------------------------------------------------------
    def update_item(self, item_id: Hashable, item: SelectableItem | None) -> None:
        old = self._items.get(item_id)
        if item is None:
            if old is not None:
                self._index.remove_labels(item_id)  # callbacks subtract with the old record
                del self._items[item_id]
            return
        if old is not None and (old.nets, old.ports) != (item.nets, item.ports):
            self._index.remove_labels(item_id)
            del self._items[item_id]
        self._items[item_id] = item
        self._index.update_labels(item_id, item.labels, item.parents)

    def update_parent(self, parent_id: str, labels: Mapping[str, str] | None) -> None:
        if labels is None:
            self._index.remove_parent_labels(parent_id)
        else:
            self._index.update_parent_labels(parent_id, labels)

    # -- label index callbacks -----------------------------------------------------------------------
    def _add(self, set_id: str, item: SelectableItem) -> None:
        members = self._members[set_id]
        contribution = _contribution(item, self._specs[set_id].named_port)
        if contribution:
            for member in contribution:
                members[member] += 1
            self._dirty.add(set_id)

    def _subtract(self, set_id: str, item: SelectableItem) -> None:
        members = self._members[set_id]
        contribution = _contribution(item, self._specs[set_id].named_port)
        if contribution:
            for member in contribution:
                members[member] -= 1
                if members[member] <= 0:
                    del members[member]
            self._dirty.add(set_id)

    def _on_match_started(self, sel_id: Hashable, item_id: Hashable) -> None:
        item = self._items[item_id]
        for set_id in self._sets_by_selector.get(str(sel_id), ()):
            self._add(set_id, item)

    def _on_match_stopped(self, sel_id: Hashable, item_id: Hashable) -> None:
        item = self._items[item_id]
        for set_id in self._sets_by_selector.get(str(sel_id), ()):
            self._subtract(set_id, item)

    # -- reads and output ----------------------------------------------------------------------------
    def members(self, set_id: str) -> frozenset[object]:
        return frozenset(self._members.get(set_id, ()))

    @property
    def set_count(self) -> int:
        return len(self._specs)

    def flush(self) -> None:
        for set_id in sorted(self._dirty):
            spec = self._specs.get(set_id)
            if spec is None:
                self._sequencer.queue_remove(CHANNEL, set_id)
                continue
            if spec.named_port is None:
                nets: frozenset[str] = frozenset(str(m) for m in self._members[set_id])
                self._sequencer.queue_update(CHANNEL, set_id, IPSetUpdate(set_id, "net", nets))
            else:
                ports = frozenset(m for m in self._members[set_id] if isinstance(m, NamedPortMember))
                self._sequencer.queue_update(CHANNEL, set_id, IPSetUpdate(set_id, "port", ports))
        self._dirty.clear()
