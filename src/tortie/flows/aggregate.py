"""Kernel observations -> flow records, per flush interval (pure: no I/O, no clock, no threads).

Inputs (`tortie.kernel` values, with the time the caller saw them):

    on_log(LogPacket)        NFLOG: the packet that a rule decided (prefix = the rule). For Allow
                             and Pass rules the first packet of a connection; for Deny every
                             denied packet the kernel's rate limit let through
    on_destroyed(CtFlow)     conntrack DESTROY event: the connection ended, with final counters
    on_table(list[CtFlow])   the conntrack table (dumped at each flush): live connections and
                             their counters so far

Connections are keyed by their original tuple. One is *of interest* when a flow-log rule logged
it, or one of its ends is a local endpoint (`local_ips`: it may predate the logger, or its log may
have been lost). `flush(start, end)` turns the interval's activity into `FlowRecord`s:

* per reporter: "src" from the rules of egress policy (outbound groups), "dst" from ingress; a
  local end with no logged rule reports with no policies (allowed: conntrack confirmed it), one
  flush late (the kernel batches log messages: a connection can reach the table before its log);
* action: deny when a deny rule logged the connection, else allow (a connection that was only
  logged by allow rules and that conntrack never confirmed, e.g. dropped by a later rule we do not
  own, is reported after `UNCONFIRMED_FLUSHES` flushes as allow with no traffic);
* traffic: for allowed connections the growth of conntrack's counters since the last flush (both
  directions); for denied ones the logged packets and their IP lengths;
* records aggregate connections with the same reporter, ends (endpoint, network set or address),
  protocol, destination port, action, policies and pending verdict: source ports are not kept.

Resolution at flush: prefixes -> rules (`RuleCatalog.resolve`), addresses -> ends
(`EndpointDirectory.peer`), pending verdict (`PendingPolicy.evaluate`), all through the callables
given, so this module is tested with plain functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from tortie.flows.catalog import RuleHit
from tortie.flows.records import Counts, FlowRecord, Peer, protocol_name
from tortie.kernel.conntrack import CtFlow, FlowTuple
from tortie.kernel.nflog import LogPacket

UNCONFIRMED_FLUSHES = 2
_PORTS = frozenset({6, 17, 132, 136})
Pending = Callable[[str, bool, FlowTuple], "tuple[str, tuple[str, ...]] | None"]


class _Conn:
    __slots__ = ("bo", "br", "confirmed", "ended", "id", "logged", "new", "po", "pr", "rbo", "rbr", "rpo",
                 "rpr", "unconfirmed", "waited")

    def __init__(self) -> None:
        self.logged: dict[str, list[int]] = {}  # prefix -> [packets, bytes], in the order rules fired
        self.new = True  # started in this interval
        self.confirmed = False
        self.ended = False
        self.unconfirmed = 0
        self.waited = False
        self.id = 0
        self.po = self.bo = self.pr = self.br = 0  # counters now
        self.rpo = self.rbo = self.rpr = self.rbr = 0  # counters already reported


@dataclass
class _Sum:
    packets_fwd: int = 0
    packets_rev: int = 0
    bytes_fwd: int = 0
    bytes_rev: int = 0
    started: int = 0
    completed: int = 0
    live: int = 0


_Key = tuple[str, Peer, Peer, int, "int | None", str, tuple[str, ...], str, tuple[str, ...]]


@dataclass(eq=False)
class FlowAggregator:
    host: str
    resolve: Callable[[Iterable[str]], Mapping[str, RuleHit]]
    peer: Callable[[str], Peer]
    local_ips: Callable[[], frozenset[str]]
    pending: Pending | None = None
    _conns: dict[FlowTuple, _Conn] = field(default_factory=dict, init=False)
    unknown_prefixes: int = field(default=0, init=False)  # logged prefixes no rule is known for (at flush)

    def __len__(self) -> int:
        return len(self._conns)

    # -- observations -------------------------------------------------------------------------------
    def on_log(self, packet: LogPacket) -> None:
        conn = self._conns.get(packet.tuple)
        if conn is None:
            conn = self._conns[packet.tuple] = _Conn()
        counts = conn.logged.get(packet.prefix)
        if counts is None:
            conn.logged[packet.prefix] = [1, packet.length]
        else:
            counts[0] += 1
            counts[1] += packet.length

    def on_destroyed(self, flow: CtFlow) -> None:
        conn = self._conns.get(flow.tuple)
        if conn is None:
            if not self._interesting(flow.tuple):
                return
            conn = self._conns[flow.tuple] = _Conn()
        self._count(conn, flow)
        conn.ended = True

    def on_table(self, flows: Iterable[CtFlow]) -> None:
        local = self.local_ips()
        seen: set[FlowTuple] = set()
        for flow in flows:
            conn = self._conns.get(flow.tuple)
            if conn is None:
                t = flow.tuple
                if t.src not in local and t.dst not in local:
                    continue
                conn = self._conns[t] = _Conn()
            self._count(conn, flow)
            seen.add(flow.tuple)
        for t, conn in self._conns.items():
            if conn.confirmed and not conn.ended and t not in seen:
                conn.ended = True  # gone without a DESTROY event we saw (lost in a full buffer)

    def _interesting(self, t: FlowTuple) -> bool:
        local = self.local_ips()
        return t.src in local or t.dst in local

    @staticmethod
    def _count(conn: _Conn, flow: CtFlow) -> None:
        conn.confirmed = True
        conn.id = flow.id
        conn.po, conn.bo = max(conn.po, flow.packets_orig), max(conn.bo, flow.bytes_orig)
        conn.pr, conn.br = max(conn.pr, flow.packets_reply), max(conn.br, flow.bytes_reply)

    # -- flush --------------------------------------------------------------------------------------
    def flush(self, start: float, end: float) -> list[FlowRecord]:
        """The records of the interval [start, end]; forgets connections that ended or were denied."""
        prefixes = {p for conn in self._conns.values() for p in conn.logged}
        hits = self.resolve(prefixes)
        self.unknown_prefixes = len(prefixes - set(hits))
        local = self.local_ips()
        sums: dict[_Key, _Sum] = {}
        done: list[FlowTuple] = []
        for t, conn in self._conns.items():
            logged = [(hits[p], counts) for p, counts in conn.logged.items() if p in hits]
            denied = any(h.action == "deny" for h, _ in logged)
            if not denied and not conn.confirmed:
                conn.unconfirmed += 1
                if conn.unconfirmed < UNCONFIRMED_FLUSHES:
                    continue
            elif not logged and conn.new and not conn.waited:
                conn.waited = True  # seen in the table first: its log message may still be on its way
                continue
            self._add(sums, t, conn, logged, denied, local)
            if denied or conn.ended or not conn.confirmed:
                done.append(t)
            else:
                conn.new = False
                conn.rpo, conn.rbo, conn.rpr, conn.rbr = conn.po, conn.bo, conn.pr, conn.br
        for t in done:
            del self._conns[t]
        return [self._record(start, end, key, total) for key, total in sums.items()]

    def _add(
        self,
        sums: dict[_Key, _Sum],
        t: FlowTuple,
        conn: _Conn,
        logged: list[tuple[RuleHit, list[int]]],
        denied: bool,
        local: frozenset[str],
    ) -> None:
        delta = (conn.po - conn.rpo, conn.pr - conn.rpr, conn.bo - conn.rbo, conn.br - conn.rbr)
        if not denied and not conn.new and not conn.ended and not any(delta):
            return  # an idle connection: nothing to say this interval
        for reporter, inbound, ip in (("src", False, t.src), ("dst", True, t.dst)):
            mine = [(h, c) for h, c in logged if h.inbound == inbound]
            if denied and not mine:
                continue  # this side never saw the packet (denied before it got there)
            if not mine and (ip not in local or not conn.confirmed):
                continue  # no rule of this side logged it, and conntrack does not show it passed
            deny = [c for h, c in mine if h.action == "deny"]
            action = "deny" if deny else "allow"
            policies = tuple(str(h) for h, _ in mine)
            pending = self.pending(ip, inbound, t) if self.pending is not None and ip in local else None
            pending_action, pending_policies = pending if pending is not None else (action, policies)
            port = t.dport if t.protocol in _PORTS else None
            key: _Key = (reporter, self.peer(t.src), self.peer(t.dst), t.protocol, port, action, policies,
                         pending_action, pending_policies)
            total = sums.get(key)
            if total is None:
                total = sums[key] = _Sum()
            if denied:
                # the logged packets of the deny rule (rate-limited), or of the side that allowed them
                counts = deny[0] if deny else mine[0][1]
                total.packets_fwd += counts[0]
                total.bytes_fwd += counts[1]
                total.started += 1
            else:
                total.packets_fwd += delta[0]
                total.packets_rev += delta[1]
                total.bytes_fwd += delta[2]
                total.bytes_rev += delta[3]
                total.started += int(conn.new)
                total.completed += int(conn.ended)
                total.live += int(not conn.ended)

    def _record(self, start: float, end: float, key: _Key, total: _Sum) -> FlowRecord:
        reporter, src, dst, proto, port, action, policies, pending_action, pending_policies = key
        return FlowRecord(
            start=start,
            end=end,
            host=self.host,
            reporter=reporter,
            source=src,
            destination=dst,
            protocol=protocol_name(proto),
            port=port,
            action=action,
            policies=policies,
            pending_action=pending_action,
            pending_policies=pending_policies,
            packets=Counts(total.packets_fwd, total.packets_rev),
            bytes=Counts(total.bytes_fwd, total.bytes_rev),
            started=total.started,
            completed=total.completed,
            live=total.live,
        )
