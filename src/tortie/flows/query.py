"""Which flow records to show: the filters of `tortie flows`, `tortie lab flows` and /api/flows.

    FlowFilter(action=, policy=, namespace=, endpoint=, since=, staged=)   .matches(record)
    parse_since("10m" | "1h30m" | "2024-05-01T10:00:00" | epoch seconds, now) -> epoch seconds
    FlowFilter.from_params(mapping, now)   the same filters from text (query parameters, options):
                                           unknown values are a `UserError` naming the filter

* action: allow | deny;
* policy: a rule of the record's policies or pending policies names it: the policy's name
  (`db-allow`), `namespace/name`, or the label (`NetworkPolicy(prod/db-allow)`); a translated
  Kubernetes policy also by the Kubernetes object's name (`web-to-db` or `shop/web-to-db` for
  `NetworkPolicy(shop/knp.default.web-to-db)`, `deny-all` for `kanp.adminnetworkpolicy.deny-all`);
* namespace: either end is in that namespace;
* endpoint: either end is that workload or host endpoint (`name` or `namespace/name`), or has that
  address (an outside address, or a network set's network containing it);
* since: records that end at or after that time;
* staged: records whose pending action differs from their action (a staged policy would change them).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tortie.common.errors import UserError
from tortie.flows.records import ACTIONS, FlowRecord, Peer
from tortie.k8s.names import ADMIN_POLICY_PREFIX, BASELINE_POLICY_PREFIX, NETWORK_POLICY_PREFIX

_KUBERNETES_PREFIXES = (NETWORK_POLICY_PREFIX, ADMIN_POLICY_PREFIX, BASELINE_POLICY_PREFIX)

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_since(text: str, now: float) -> float:
    """A duration back from `now` (`90s`, `10m`, `1h30m`, `2d`) or a time (ISO 8601, local time
    when it has no zone; or epoch seconds)."""
    value = text.strip()
    match = _DURATION.match(value)
    if value and match and any(match.groups()):
        days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return now - (days * 86400 + hours * 3600 + minutes * 60 + seconds)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise UserError(f"--since {text!r}: give a duration (90s, 10m, 1h30m, 2d), an ISO time "
                        "(2024-05-01T10:00:00) or epoch seconds") from None


def _names_policy(hit: str, wanted: str) -> bool:
    parts = hit.split("|")
    if len(parts) != 4:
        return False
    label = parts[1]
    if label == wanted:
        return True
    inner = label.partition("(")[2].rstrip(")")
    ns, _, name = inner.rpartition("/")
    if wanted in (inner, name):
        return True
    prefix = next((p for p in _KUBERNETES_PREFIXES if name.startswith(p)), None)
    if prefix is None:
        return False
    k8s_name = name[len(prefix):]
    return wanted in (k8s_name, f"{ns}/{k8s_name}" if ns else k8s_name)


def _is_endpoint(peer: Peer, wanted: str) -> bool:
    if peer.kind in ("workload", "hostendpoint") and wanted in (peer.name, f"{peer.namespace}/{peer.name}"):
        return True
    try:
        addr = ipaddress.ip_address(wanted)
    except ValueError:
        return False
    if peer.kind == "net":
        return peer.ip == str(addr)
    if peer.kind == "networkset" and peer.net:
        return addr in ipaddress.ip_network(peer.net)
    return False


@dataclass(frozen=True)
class FlowFilter:
    action: str | None = None
    policy: str | None = None
    namespace: str | None = None
    endpoint: str | None = None
    since: float | None = None
    staged: bool = False

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in ACTIONS:
            raise UserError(f"--action {self.action!r}: use allow or deny")

    @classmethod
    def from_params(cls, params: Mapping[str, str], now: float) -> FlowFilter:
        known = {"action", "policy", "namespace", "endpoint", "since", "staged"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise UserError(f"unknown filter {unknown[0]!r}: filters are {', '.join(sorted(known))}")
        staged = params.get("staged", "").lower()
        if staged not in ("", "true", "false", "1", "0"):
            raise UserError(f"staged={params['staged']!r}: use true or false")
        since = params.get("since")
        return cls(
            action=params.get("action") or None,
            policy=params.get("policy") or None,
            namespace=params.get("namespace") or None,
            endpoint=params.get("endpoint") or None,
            since=parse_since(since, now) if since else None,
            staged=staged in ("true", "1"),
        )

    def matches(self, r: FlowRecord) -> bool:
        if self.action is not None and r.action != self.action:
            return False
        if self.since is not None and r.end < self.since:
            return False
        if self.staged and r.pending_action == r.action:
            return False
        if self.namespace is not None and self.namespace not in (r.source.namespace, r.destination.namespace):
            return False
        if self.endpoint is not None and not (
            _is_endpoint(r.source, self.endpoint) or _is_endpoint(r.destination, self.endpoint)
        ):
            return False
        if self.policy is not None:
            hits = (*r.policies, *r.pending_policies)
            if not any(_names_policy(h, self.policy) for h in hits):
                return False
        return True
