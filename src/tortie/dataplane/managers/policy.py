"""Policy manager: policy messages -> tortie's nftables table, in atomic batches of deltas.

Inputs: the messages of `tortie.dataplane.messages.policy` (recorded in a `PolicyState`), the
`ConfigUpdate` (interface prefixes, failsafe ports, workload-to-host allowances, endpoint-to-host
action, log prefix), `resync()`. Output, through an `NftDriver`: one transaction per apply.

How it stays incremental: every message marks its *owner* dirty (an IP set, a policy, a profile,
an endpoint, or "hosts" = host endpoints + pools + the static chains). `apply()` re-renders only
dirty owners with `nft.ruleset.render_owner` (the very function the full render merges, so the
incremental table cannot drift from `render_ruleset` of the same state), merges the difference
from what each owner contributed before into the desired `Ruleset`, and `batch.build_batch` turns
the names that changed (and the verdict-map keys: an endpoint's own interfaces, so that its cost
does not grow with the endpoints beside it) into commands against the kernel state it knows
(`KernelTable`, read back on the first apply and every resync, then kept up to date after each
accepted batch).

Fail closed and no windows:
* a workload interface without programmed policy has no verdict-map entry: its traffic is dropped
  by the dispatch chain;
* each apply is one kernel transaction, so a policy that is replaced or removed never leaves a
  moment where its old and new states mix;
* a chain or set that something still refers to is never deleted: it stays (as an empty
  placeholder) until the last reference goes (the calc's flush order makes this rare).

Drift repair: `resync()` (the loop's periodic refresh) reads the table back and repairs it, unless the
namespace's nftables generation is still the one our last batch (or read-back) left: each of our
batches notes the generation before and after, and only "exactly one transaction, ours" keeps
the table known. A busy host (other nftables users) thus still gets its periodic read-back; a quiet
one does not pay ~1.5 s of listing and parsing 20,000 rules every refresh.

Drift on the event (`on_kernel_changes`, from the loop's kernel watch): a notification that names
our table with a generation that is not one of our own batches' (`nft_table.OwnTransactions`), or
lost notifications, schedule a full read-back at the next apply, which then writes back whatever
is missing, in one transaction: a deleted rule, set element or chain, or the whole table
(`nft delete table`). Our own batches come back as notifications too and cost nothing.

Fail closed while the table is gone: the manager also owns the small guard table
`inet tortie-guard` (`nft/guard.py`), written after the policy table in the same apply and
repaired the same way, in the policy table's own transactions; it drops new workload connections
that the policy table did not see.

Adoption: the first apply reads the table back; chains whose rule digests match are left alone,
set and map elements are diffed, objects of ours that are no longer wanted are deleted. A restart
with unchanged datastore content sends an empty batch: established flows never notice.
A rejected batch raises (the loop retries with backoff) and schedules a full read-back first.

Host endpoints known by expectedIPs only are placed on the host interface carrying one of those
addresses (`addresses`, a `HostAddressDriver`, asked when such an endpoint changes, on link events
and on each refresh).

Construction: `PolicyManager(driver, config=None, table="tortie", addresses=None)`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tortie.common.errors import DataplaneError
from tortie.common.ipfamily import FAMILIES, Family
from tortie.dataplane.drivers.host_addresses import HostAddressDriver
from tortie.dataplane.drivers.kernel_watch import KernelChanges
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.nftables import NftDriver
from tortie.dataplane.managers.nft_table import NftTable, OwnTransactions
from tortie.dataplane.messages import POLICY_MESSAGE_TYPES, ConfigUpdate, Message, WorkloadEndpointId
from tortie.dataplane.nft import batch
from tortie.dataplane.nft.config import RenderConfig, render_config
from tortie.dataplane.nft.guard import GUARD_TABLE, render_guard
from tortie.dataplane.nft.host_endpoints import needs_interface_addresses
from tortie.dataplane.nft.ir import Chain, Pieces, SetDef, referenced
from tortie.dataplane.nft.names import TABLE
from tortie.dataplane.nft.parse import KernelTable, parse_table
from tortie.dataplane.nft.ruleset import HOSTS, Owner, PolicyState, empty_ruleset, render_owner
from tortie.dataplane.nft.sets import member_families, placeholder_set

log = logging.getLogger(__name__)


class PolicyManager:
    """See the module docstring."""

    name = "policy"
    handles = frozenset({ConfigUpdate, *POLICY_MESSAGE_TYPES, LinkEvent, KernelChanges})

    def __init__(
        self,
        driver: NftDriver,
        config: RenderConfig | None = None,
        *,
        table: str = TABLE,
        addresses: HostAddressDriver | None = None,
    ) -> None:
        self._driver = driver
        self._addresses = addresses
        self._table = table
        self._base_config = config or RenderConfig()
        self.state = PolicyState(self._base_config)
        self.desired = empty_ruleset()
        self._owned: dict[Owner, Pieces] = {}
        self._chain_provider: dict[str, Owner] = {}  # chain -> the owner whose chain it is
        self._entry_provider: dict[tuple[str, str], Owner] = {}  # (map, key) -> likewise
        self._chain_refs: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._chain_referrers: dict[str, set[str]] = {}
        self._set_referrers: dict[str, set[str]] = {}
        self._placeholder_chains: set[str] = set()
        self._placeholder_sets: set[str] = set()
        self._pending_refs: set[str] = set()
        self._dropped_sets: set[str] = set()
        self._actual: KernelTable | None = None
        self._table_exists = False
        self._dirty_owners: set[Owner] = {HOSTS}
        self._dirty_chains: set[str] = set()
        self._dirty_sets: set[str] = set()
        self._dirty_maps: set[str] = set(self.desired.maps)  # compared whole
        self._dirty_entries: dict[str, set[str]] = {}  # map -> keys whose verdicts may have changed
        self._full_resync = True
        self._generation: int | None = None  # the nftables generation our KernelTable is known to match
        self._own = OwnTransactions()
        self._guard = NftTable(driver, GUARD_TABLE)
        self._verify = False
        self._set_families: dict[str, frozenset[Family]] = {}  # per IP set id: its members' families
        self._families: frozenset[Family] = frozenset()  # families in which sets are rendered
        self.batches = 0
        self.last_batch_size = 0

    # -- recording (no I/O) ---------------------------------------------------------------------------
    def on_update(self, msg: Message) -> None:
        if isinstance(msg, ConfigUpdate):
            cfg = render_config(msg.values, self._base_config)
            if cfg != self.state.config:
                self.state.config = cfg
                self._dirty_owners |= self._all_owners()
            return
        owner = self.state.record(msg)
        if owner is not None:
            self._dirty_owners.add(owner)

    def on_link_event(self, event: LinkEvent) -> None:
        """Dispatch is by name, so a new interface is covered the moment it appears (by its
        endpoint's entry, or by the unknown-workload drop). Only host endpoints known by
        expectedIPs alone are re-placed: an interface came, went or changed state."""
        if needs_interface_addresses(self.state.host_endpoints):
            self._dirty_owners.add(HOSTS)

    def on_kernel_changes(self, changes: KernelChanges) -> None:
        """Someone else's transaction on our table (or lost notifications): read it back and repair
        at the next apply; the guard table likewise."""
        if not self._full_resync and self._own.touched_by_others(changes, self._table):
            log.info("nft drift: table changed by someone else; reading it back table=%s lost=%s",
                     self._table, changes.nft_lost)
            self._full_resync = True
        if self._own.touched_by_others(changes, GUARD_TABLE):
            log.info("nft drift: table changed by someone else; reading it back table=%s", GUARD_TABLE)
            self._guard.resync()

    def resync(self) -> None:
        """Periodic drift check: read the table back, unless the kernel's nftables generation shows
        no transaction since our own last one (then the table is as we left it); and re-place host
        endpoints known by expectedIPs (addresses may have moved without a link event)."""
        self._verify = True
        if needs_interface_addresses(self.state.host_endpoints):
            self._dirty_owners.add(HOSTS)

    def _refresh_addresses(self) -> None:
        if self._addresses is None:
            return
        try:
            self.state.interface_addresses = self._addresses.interface_addresses()
        except DataplaneError as exc:
            log.warning("host interface addresses unavailable; host endpoints by expectedIPs keep their "
                        "interfaces reason=%s", exc)

    @property
    def needs_apply(self) -> bool:
        return self._full_resync or self._verify or self._guard.needs_apply or bool(
            self._dirty_owners or self._dirty_chains or self._dirty_sets or self._dirty_maps
            or self._dirty_entries
        )

    def _all_owners(self) -> set[Owner]:
        return set(self.state.owners()) | set(self._owned)

    # -- rendering one owner --------------------------------------------------------------------------
    def _render(self, owner: Owner) -> Pieces:
        """`render_owner`, the full render's own definition, after what it needs from the host."""
        if owner == HOSTS and needs_interface_addresses(self.state.host_endpoints):
            self._refresh_addresses()
        pieces = render_owner(self.state, owner, self._families)
        key = owner[1]
        ep = self.state.endpoints.get(key) if isinstance(key, WorkloadEndpointId) else None
        if ep is not None and not pieces:
            log.warning(
                "endpoint interface lacks the configured prefix; its traffic is not policed "
                "endpoint=%s iface=%s",
                ep.id,
                ep.interface_name,
            )
        return pieces

    # -- merging into the desired ruleset ---------------------------------------------------------------
    def _install(self, owner: Owner, new: Pieces) -> None:
        """Replace what `owner` contributed by `new`. A chain or map entry another owner took over
        in the meantime (an interface name that passed from one endpoint to another in one batch)
        is theirs: leaving it does not remove it."""
        old = self._owned.get(owner, Pieces())
        for name in old.chains.keys() - new.chains.keys():
            if self._chain_provider.get(name) == owner:
                del self._chain_provider[name]
                self._drop_chain(name)
        for name, chain in new.chains.items():
            self._chain_provider[name] = owner
            if name in self._placeholder_chains or self.desired.chains.get(name) != chain:
                self._put_chain(chain)
        for name in old.sets.keys() - new.sets.keys():
            self._drop_set(name)
        for name, (definition, elements) in new.sets.items():
            if old.sets.get(name) != (definition, elements) or name not in self.desired.sets:
                self._put_set(name, definition, elements)
        for map_name, iface in old.entries.keys() - new.entries.keys():
            if self._entry_provider.get((map_name, iface)) == owner:
                del self._entry_provider[(map_name, iface)]
                self.desired.map_elements[map_name].pop(iface, None)
                self._dirty_entries.setdefault(map_name, set()).add(iface)
        for (map_name, iface), verdict in new.entries.items():
            self._entry_provider[(map_name, iface)] = owner
            if self.desired.map_elements[map_name].get(iface) != verdict:
                self.desired.map_elements[map_name][iface] = verdict
                self._dirty_entries.setdefault(map_name, set()).add(iface)
        if new:
            self._owned[owner] = new
        else:
            self._owned.pop(owner, None)

    def _put_chain(self, chain: Chain) -> None:
        self._placeholder_chains.discard(chain.name)
        self.desired.chains[chain.name] = chain
        self._dirty_chains.add(chain.name)
        self._pending_refs.add(chain.name)

    def _drop_chain(self, name: str) -> None:
        self._placeholder_chains.discard(name)
        self.desired.chains.pop(name, None)
        self._dirty_chains.add(name)
        self._pending_refs.add(name)

    def _put_set(self, name: str, definition: SetDef, elements: frozenset[str]) -> None:
        self._placeholder_sets.discard(name)
        self.desired.sets[name] = definition
        self.desired.elements[name] = elements
        self._dirty_sets.add(name)

    def _drop_set(self, name: str) -> None:
        self._placeholder_sets.discard(name)
        self.desired.sets.pop(name, None)
        self.desired.elements.pop(name, None)
        self._dirty_sets.add(name)
        self._dropped_sets.add(name)

    def _resolve_references(self) -> None:
        """After all owners are installed: keep every referenced chain and set in existence (empty
        placeholders for what nobody renders), and drop placeholders nobody references any more."""
        for name in sorted(self._pending_refs):
            chain = self.desired.chains.get(name)
            self._set_refs(name, referenced([chain]) if chain is not None else (set(), set()))
        for name in sorted(self._pending_refs):
            if name not in self.desired.chains and self._chain_referrers.get(name):
                log.warning("nft: chain removed while still referenced; keeping it empty chain=%s", name)
                self._put_placeholder_chain(name)
        for name in sorted(self._dropped_sets):
            if name not in self.desired.sets and self._set_referrers.get(name):
                log.warning("nft: set removed while still referenced; keeping it empty set=%s", name)
                self._put_placeholder_set(name)
        self._pending_refs.clear()
        self._dropped_sets.clear()

    def _put_placeholder_chain(self, name: str) -> None:
        self.desired.chains[name] = Chain(name)
        self._placeholder_chains.add(name)
        self._dirty_chains.add(name)
        self._set_refs(name, (set(), set()))

    def _put_placeholder_set(self, name: str) -> None:
        self._put_set(name, placeholder_set(name), frozenset())
        self._placeholder_sets.add(name)

    def _set_refs(self, chain: str, refs: tuple[set[str], set[str]]) -> None:
        new_chains, new_sets = frozenset(refs[0]), frozenset(refs[1])
        old_chains, old_sets = self._chain_refs.get(chain, (frozenset(), frozenset()))
        if (old_chains, old_sets) == (new_chains, new_sets):
            return
        if new_chains or new_sets:
            self._chain_refs[chain] = (new_chains, new_sets)
        else:
            self._chain_refs.pop(chain, None)
        for target in new_chains - old_chains:
            self._chain_referrers.setdefault(target, set()).add(chain)
            if target not in self.desired.chains:
                log.warning("nft: chain referenced before it was sent; creating it empty chain=%s", target)
                self._put_placeholder_chain(target)
        for target in new_sets - old_sets:
            self._set_referrers.setdefault(target, set()).add(chain)
            if target not in self.desired.sets:
                log.warning("nft: set referenced before it was sent; creating it empty set=%s", target)
                self._put_placeholder_set(target)
        for target in old_chains - new_chains:
            referrers = self._chain_referrers.get(target, set())
            referrers.discard(chain)
            if not referrers:
                self._chain_referrers.pop(target, None)
                if target in self._placeholder_chains:
                    self._placeholder_chains.discard(target)
                    self.desired.chains.pop(target, None)
                    self._dirty_chains.add(target)
        for target in old_sets - new_sets:
            referrers = self._set_referrers.get(target, set())
            referrers.discard(chain)
            if not referrers:
                self._set_referrers.pop(target, None)
                if target in self._placeholder_sets:
                    self._placeholder_sets.discard(target)
                    self.desired.sets.pop(target, None)
                    self.desired.elements.pop(target, None)
                    self._dirty_sets.add(target)

    # -- applying -------------------------------------------------------------------------------------
    def _read_back(self) -> None:
        self._generation = self._driver.generation()  # before the listing: a later change re-reads
        self._guard.resync()  # written in our transactions: known exactly as long as our table is
        objects = self._driver.list_table(self._table)
        self._actual = parse_table(objects) if objects is not None else None
        actual = self._actual or KernelTable()
        self._dirty_chains |= set(self.desired.chains) | set(actual.chains)
        self._dirty_sets |= set(self.desired.sets) | set(actual.sets)
        self._dirty_maps |= set(self.desired.maps) | set(actual.maps)
        self._full_resync = False
        log.info(
            "nft table read back table=%s exists=%s chains=%d sets=%d",
            self._table,
            objects is not None,
            len(actual.chains),
            len(actual.sets),
        )

    def _update_families(self) -> None:
        """Track the families of the dirty IP sets; when the set of families with members changes
        (`sets.set_families`: the first IPv6 member cluster-wide, the last one gone), every IP set,
        policy and profile is re-rendered for it, in this same batch."""
        for kind, key in self._dirty_owners:
            if kind != "ipset":
                continue
            update = self.state.ipsets.get(str(key))
            families = member_families(update) if update is not None else frozenset()
            if families:
                self._set_families[str(key)] = families
            else:
                self._set_families.pop(str(key), None)
        found: set[Family] = set()
        for families in self._set_families.values():
            found |= families
            if len(found) == len(FAMILIES):
                break
        if frozenset(found) != self._families:
            now, were = ([str(f) for f in FAMILIES if f in fams] for fams in (found, self._families))
            log.info("nft: IP sets exist for families %s (were %s)", now, were)
            self._families = frozenset(found)
            self._dirty_owners |= {o for o in self._all_owners() if o[0] in ("ipset", "policy", "profile")}

    def apply(self) -> None:
        self._update_families()
        for owner in sorted(self._dirty_owners, key=repr):
            self._install(owner, self._render(owner))
        self._dirty_owners.clear()
        self._resolve_references()
        if self._verify and not self._full_resync:
            current = self._driver.generation()
            if current is None or current != self._generation:
                self._full_resync = True
            else:
                log.debug("nft table unchanged since our last batch; no read-back generation=%d", current)
        self._verify = False
        if self._full_resync:
            self._read_back()
        chains, sets, maps = set(self._dirty_chains), set(self._dirty_sets), set(self._dirty_maps)
        entries = {name: set(keys) for name, keys in self._dirty_entries.items()}
        commands = batch.build_batch(self._table, self.desired, self._actual, chains, sets, maps, entries)
        # The guard table goes in the same transaction: never a guard without the policy table that
        # sets its mark, and one generation step per apply (the table stays "known", below).
        self._guard.set_desired(render_guard(self.state.config))
        guard = self._guard.commands() if self._guard.needs_apply else []
        if commands or guard:
            before = self._driver.generation()
            try:
                self._driver.run(commands + guard)
            except DataplaneError:
                self._full_resync = True  # start the retry from what the kernel really holds
                self._guard.failed()
                raise
            after = self._driver.generation()
            self._own.note(before, after)
            # our view matches the kernel only if ours was the one transaction since the last check
            known = before is not None and before == self._generation and after == before + 1
            self._generation = after if known else None
            self.batches += 1
            self.last_batch_size = len(commands)
            log.debug(
                "nft batch applied commands=%d chains=%d sets=%d maps=%d",
                len(commands),
                len(chains),
                len(sets),
                len(maps),
            )
        if self._actual is None:
            self._actual = KernelTable()
        batch.commit(self.desired, self._actual, chains, sets, maps, entries)
        self._dirty_chains -= chains
        self._dirty_sets -= sets
        self._dirty_maps -= maps
        self._guard.committed()
        for name, keys in entries.items():
            left = self._dirty_entries.get(name, set()) - keys
            if left:
                self._dirty_entries[name] = left
            else:
                self._dirty_entries.pop(name, None)

    def stats(self) -> Mapping[str, int]:
        return {
            "policy_endpoints": len(self.state.endpoints),
            "policy_active_policies": len(self.state.policies),
            "nft_chains": len(self.desired.chains),
            "nft_sets": len(self.desired.sets),
            "nft_set_elements": sum(len(e) for e in self.desired.elements.values()),
        }
