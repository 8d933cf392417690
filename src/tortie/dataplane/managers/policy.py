"""Policy manager: policy messages -> tortie's nftables table, in atomic batches of deltas.

Inputs: the messages of `tortie.dataplane.messages.policy` (recorded in a `PolicyState`), the
`ConfigUpdate` (interface prefixes, failsafe ports, workload-to-host allowances, endpoint-to-host
action, log prefix), `resync()`. Output, through an `NftDriver`: one transaction per apply.

How it stays incremental: every message marks its *owner* dirty (an IP set, a policy, a profile,
an endpoint, or "hosts" = host endpoints + pools + the static chains). `apply()` re-renders only
dirty owners (pure functions of `tortie.dataplane.nft.render`), merges their chains, sets and
verdict-map entries into the desired `Ruleset`, and `batch.build_batch` turns the names that
changed into commands against the kernel state it knows (`KernelTable`, read back on the first
apply and every resync, then kept up to date after each accepted batch).

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

import ipaddress
import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace

from tortie.common.errors import DataplaneError
from tortie.dataplane.drivers.host_addresses import HostAddressDriver
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.nftables import NftDriver
from tortie.dataplane.messages import POLICY_MESSAGE_TYPES, ConfigUpdate, Message
from tortie.dataplane.messages.policy import (
    EndpointPolicyRemove,
    EndpointPolicyUpdate,
    HostEndpointPolicyRemove,
    HostEndpointPolicyUpdate,
    IPSetRemove,
    IPSetUpdate,
    PolicyRemove,
    PolicyUpdate,
    PoolRemove,
    PoolUpdate,
    ProfileRemove,
    ProfileUpdate,
)
from tortie.dataplane.nft import batch
from tortie.dataplane.nft.ir import Chain, MapDef, SetDef, Verdict
from tortie.dataplane.nft.parse import KernelTable, parse_table
from tortie.dataplane.nft.render import (
    ALL_INTERFACES,
    DISPATCH_MAPS,
    TABLE,
    FailsafePort,
    PolicyState,
    RenderConfig,
    Ruleset,
    choose_host_endpoints,
    endpoint_chains,
    host_endpoint_chains,
    ipset_defs,
    member_families,
    needs_interface_addresses,
    owns_interface,
    policy_chains,
    pool_defs,
    profile_chains,
    referenced,
    static_chains,
)

log = logging.getLogger(__name__)

Owner = tuple[str, Hashable]
HOSTS: Owner = ("hosts", "")
_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}


@dataclass
class _Pieces:
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, tuple[SetDef, frozenset[str]]] = field(default_factory=dict)
    entries: dict[tuple[str, str], Verdict] = field(default_factory=dict)


def parse_failsafe(text: str) -> FailsafePort:
    """`tcp:22`, `udp:68`, `22` (TCP) or `tcp:10.0.0.0/8:22` (restricted to a peer network)."""
    parts = text.strip().split(":")
    proto = "tcp"
    net: str | None = None
    if len(parts) == 1:
        port = parts[0]
    elif len(parts) == 2:
        proto, port = parts
    else:
        proto, net, port = parts[0], ":".join(parts[1:-1]), parts[-1]
        net = str(ipaddress.ip_network(net, strict=False))
    if proto.lower() not in _PROTOCOLS:
        raise ValueError(f"{text!r}: protocol must be tcp, udp or sctp")
    return FailsafePort(_PROTOCOLS[proto.lower()], int(port), net)


def render_config(values: Mapping[str, object], base: RenderConfig) -> RenderConfig:
    """The rendering parameters found in the agent's configuration values (others keep `base`)."""
    cfg = base
    prefixes = values.get("interface_prefix")
    if isinstance(prefixes, list | tuple) and prefixes:
        cfg = replace(cfg, interface_prefixes=tuple(str(p) for p in prefixes))
    for key in ("failsafe_inbound_host_ports", "failsafe_outbound_host_ports", "workload_to_host_allow"):
        raw = values.get(key)
        if isinstance(raw, list | tuple):
            try:
                ports = tuple(parse_failsafe(str(p)) for p in raw)
            except ValueError as exc:
                log.warning("invalid port list ignored param=%s reason=%s", key, exc)
                continue
            if key == "failsafe_inbound_host_ports":
                cfg = replace(cfg, failsafe_inbound=ports)
            elif key == "failsafe_outbound_host_ports":
                cfg = replace(cfg, failsafe_outbound=ports)
            else:
                cfg = replace(cfg, workload_to_host_allow=ports)
    action = values.get("default_endpoint_to_host_action")
    if action == "Drop" or action == "Accept" or action == "Return":
        cfg = replace(cfg, endpoint_to_host_action=action)
    prefix = values.get("log_prefix")
    if isinstance(prefix, str) and prefix:
        cfg = replace(cfg, log_prefix=prefix)
    return cfg


class PolicyManager:
    """See the module docstring."""

    name = "policy"
    handles = frozenset({ConfigUpdate, *POLICY_MESSAGE_TYPES, LinkEvent})

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
        self.desired = Ruleset()
        for map_name in DISPATCH_MAPS:
            self.desired.maps[map_name] = MapDef(map_name)
            self.desired.map_elements[map_name] = {}
        self._owned: dict[Owner, _Pieces] = {}
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
        self._dirty_maps: set[str] = set(DISPATCH_MAPS)
        self._full_resync = True
        self._generation: int | None = None  # the nftables generation our KernelTable is known to match
        self._verify = False
        self._set_families: dict[str, frozenset[int]] = {}  # per IP set id: its members' families
        self._families: frozenset[int] = frozenset()  # families in which sets are rendered
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
        if not self.state.record(msg):
            return
        if isinstance(msg, IPSetUpdate | IPSetRemove):
            self._dirty_owners.add(("ipset", msg.id))
        elif isinstance(msg, PolicyUpdate | PolicyRemove):
            self._dirty_owners.add(("policy", msg.id))
        elif isinstance(msg, ProfileUpdate | ProfileRemove):
            self._dirty_owners.add(("profile", msg.id))
        elif isinstance(msg, EndpointPolicyUpdate | EndpointPolicyRemove):
            self._dirty_owners.add(("endpoint", msg.id))
        elif isinstance(msg, HostEndpointPolicyUpdate | HostEndpointPolicyRemove | PoolUpdate | PoolRemove):
            self._dirty_owners.add(HOSTS)

    def on_link_event(self, event: LinkEvent) -> None:
        """Dispatch is by name, so a new interface is covered the moment it appears (by its
        endpoint's entry, or by the unknown-workload drop). Only host endpoints known by
        expectedIPs alone are re-placed: an interface came, went or changed state."""
        if needs_interface_addresses(self.state.host_endpoints):
            self._dirty_owners.add(HOSTS)

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
        return self._full_resync or self._verify or bool(
            self._dirty_owners or self._dirty_chains or self._dirty_sets or self._dirty_maps
        )

    def _all_owners(self) -> set[Owner]:
        owners: set[Owner] = {HOSTS}
        owners |= {("ipset", i) for i in self.state.ipsets}
        owners |= {("policy", p) for p in self.state.policies}
        owners |= {("profile", p) for p in self.state.profiles}
        owners |= {("endpoint", e) for e in self.state.endpoints}
        return owners | set(self._owned)

    # -- rendering one owner --------------------------------------------------------------------------
    def _render(self, owner: Owner) -> _Pieces:
        kind, key = owner
        cfg = self.state.config
        out = _Pieces()
        if kind == "ipset":
            update = self.state.ipsets.get(str(key))
            if update is not None:
                out.sets = ipset_defs(update, self._families)
        elif kind == "policy":
            policy = self.state.policies.get(key)  # type: ignore[call-overload]
            if policy is not None:
                out.chains = {c.name: c for c in policy_chains(policy, cfg, self._families)}
        elif kind == "profile":
            profile = self.state.profiles.get(str(key))
            if profile is not None:
                out.chains = {c.name: c for c in profile_chains(profile, cfg, self._families)}
        elif kind == "endpoint":
            ep = self.state.endpoints.get(key)  # type: ignore[call-overload]
            if ep is not None:
                if owns_interface(cfg, ep.interface_name):
                    to_wl, from_wl = endpoint_chains(ep, cfg)
                    out.chains = {to_wl.name: to_wl, from_wl.name: from_wl}
                    out.entries = {
                        ("to-wl", ep.interface_name): Verdict("goto", to_wl.name),
                        ("from-wl", ep.interface_name): Verdict("goto", from_wl.name),
                    }
                else:
                    log.warning(
                        "endpoint interface lacks the configured prefix; its traffic is not policed "
                        "endpoint=%s iface=%s",
                        ep.id,
                        ep.interface_name,
                    )
        else:
            if needs_interface_addresses(self.state.host_endpoints):
                self._refresh_addresses()
            heps = choose_host_endpoints(
                self.state.host_endpoints, self.state.interface_addresses, cfg.interface_prefixes
            )
            wildcard_maps: set[str] = set()
            for iface, hep in heps.items():
                for map_name, chain in host_endpoint_chains(hep, cfg, iface).items():
                    out.chains[chain.name] = chain
                    if iface == ALL_INTERFACES:
                        wildcard_maps.add(map_name)
                    else:
                        out.entries[(map_name, iface)] = Verdict("goto", chain.name)
            for chain in static_chains(
                cfg, heps.get(ALL_INTERFACES), frozenset(wildcard_maps), self.state.pools.values()
            ):
                out.chains[chain.name] = chain
            out.sets = pool_defs(self.state.pools.values())
        return out

    # -- merging into the desired ruleset ---------------------------------------------------------------
    def _install(self, owner: Owner, new: _Pieces) -> None:
        old = self._owned.get(owner, _Pieces())
        for name in old.chains.keys() - new.chains.keys():
            self._drop_chain(name)
        for name, chain in new.chains.items():
            if (
                old.chains.get(name) != chain
                or name in self._placeholder_chains
                or name not in self.desired.chains
            ):
                self._put_chain(chain)
        for name in old.sets.keys() - new.sets.keys():
            self._drop_set(name)
        for name, (definition, elements) in new.sets.items():
            if old.sets.get(name) != (definition, elements) or name not in self.desired.sets:
                self._put_set(name, definition, elements)
        for map_name, iface in old.entries.keys() - new.entries.keys():
            if self.desired.map_elements[map_name].get(iface) == old.entries[(map_name, iface)]:
                del self.desired.map_elements[map_name][iface]
                self._dirty_maps.add(map_name)
        for (map_name, iface), verdict in new.entries.items():
            if self.desired.map_elements[map_name].get(iface) != verdict:
                self.desired.map_elements[map_name][iface] = verdict
                self._dirty_maps.add(map_name)
        if new.chains or new.sets or new.entries:
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
        family = 6 if name[1:2] == "6" else 4
        addr_type = "ipv4_addr" if family == 4 else "ipv6_addr"
        definition = (
            SetDef(name, (addr_type, "inet_proto", "inet_service"))
            if name.startswith("n")
            else SetDef(name, addr_type, interval=True)
        )
        self._put_set(name, definition, frozenset())
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
        (`render.set_families`: the first IPv6 member cluster-wide, the last one gone), every IP set,
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
        found: set[int] = set()
        for families in self._set_families.values():
            found |= families
            if len(found) == 2:
                break
        if frozenset(found) != self._families:
            log.info("nft: IP sets exist for families %s (were %s)", sorted(found), sorted(self._families))
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
        commands = batch.build_batch(self._table, self.desired, self._actual, chains, sets, maps)
        if commands:
            before = self._driver.generation()
            try:
                self._driver.run(commands)
            except DataplaneError:
                self._full_resync = True  # start the retry from what the kernel really holds
                raise
            after = self._driver.generation()
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
        batch.commit(self.desired, self._actual, chains, sets, maps)
        self._dirty_chains -= chains
        self._dirty_sets -= sets
        self._dirty_maps -= maps

    def stats(self) -> Mapping[str, int]:
        return {
            "policy_endpoints": len(self.state.endpoints),
            "policy_active_policies": len(self.state.policies),
            "nft_chains": len(self.desired.chains),
            "nft_sets": len(self.desired.sets),
            "nft_set_elements": sum(len(e) for e in self.desired.elements.values()),
        }
