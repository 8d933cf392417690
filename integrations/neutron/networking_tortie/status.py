"""Agent status keys -> Neutron port status and agent liveness (run on the elected master only).

Input: the keys the tortie agent writes (`tortie.agent.status`, reference §3.13):

    /calico/felix/v2/<region>/host/<host>/status                        leased liveness report
    /calico/felix/v2/<region>/host/<host>/workload/openstack/<device>/endpoint/<port>
                                                                        {"status": "up" | "down"}

Output, through two callbacks: `on_port_status(port_id, host, "ACTIVE" | "DOWN")` for OpenStack
endpoints (a deleted status key means DOWN), and `on_agent_alive(host, first_update)` for each
liveness report. `StatusWatcher` lists the prefix, reports everything, then watches from the list
revision; after a RESYNC or an outage it lists again (reporting all again is harmless: Neutron's
update is idempotent). Parsing is pure (`parse_status_key`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from tortie.common.errors import DatastoreError
from tortie.datastore.api import Datastore, EventType, JSONObject

from networking_tortie import naming

log = logging.getLogger(__name__)

ROOT = "/calico/felix/v2/"
ACTIVE = "ACTIVE"
DOWN = "DOWN"


def hosts_prefix(region: str = "") -> str:
    return f"{ROOT}{naming.region_segment(region)}/host/"


@dataclass(frozen=True)
class EndpointStatusKey:
    host: str
    orchestrator: str
    workload: str
    endpoint: str


@dataclass(frozen=True)
class AgentStatusKey:
    host: str


def parse_status_key(key: str, region: str = "") -> EndpointStatusKey | AgentStatusKey | None:
    prefix = hosts_prefix(region)
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix):].split("/")
    if len(parts) == 2 and parts[1] == "status":
        return AgentStatusKey(unquote(parts[0]))
    if len(parts) == 6 and parts[1] == "workload" and parts[4] == "endpoint":
        return EndpointStatusKey(unquote(parts[0]), unquote(parts[2]), unquote(parts[3]), unquote(parts[5]))
    return None


def neutron_status(value: JSONObject | None) -> str:
    """The Neutron port status for an endpoint status value (None = key deleted)."""
    if value is not None and value.get("status") == "up":
        return ACTIVE
    return DOWN


class StatusWatcher:
    def __init__(
        self,
        ds: Datastore,
        region: str,
        on_port_status: Callable[[str, str, str], None],
        on_agent_alive: Callable[[str, bool], None] | None = None,
        *,
        retry_delay: float = 1.0,
    ) -> None:
        self._ds = ds
        self._region = region
        self._on_port = on_port_status
        self._on_agent = on_agent_alive or (lambda _host, _first: None)
        self._retry = retry_delay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _handle(self, key: str, value: JSONObject | None) -> None:
        parsed = parse_status_key(key, self._region)
        try:
            if isinstance(parsed, EndpointStatusKey) and parsed.orchestrator == naming.ORCHESTRATOR:
                self._on_port(parsed.endpoint, parsed.host, neutron_status(value))
            elif isinstance(parsed, AgentStatusKey) and value is not None:
                self._on_agent(parsed.host, bool(value.get("first_update")))
        except Exception:  # one bad report must not stop the others
            log.exception("status flow-back failed key=%s", key)

    def run_once(self) -> int:
        """List and report everything now; returns the list revision."""
        kvs, rev = self._ds.list(hosts_prefix(self._region))
        for kv in kvs:
            self._handle(kv.key, kv.value)
        return rev

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rev = self.run_once()
                watch = self._ds.watch(hosts_prefix(self._region), after_revision=rev)
                try:
                    while not self._stop.is_set():
                        event = watch.get(timeout=0.5)
                        if event is None:
                            continue
                        if event.type is EventType.RESYNC:
                            break
                        self._handle(event.key, event.value if event.type is EventType.PUT else None)
                finally:
                    watch.close()
            except DatastoreError as exc:
                log.warning("status watch failed; relisting error=%s", exc)
                self._stop.wait(self._retry)

    def start(self) -> StatusWatcher:
        self._thread = threading.Thread(target=self._run, name="tortie-status-flowback", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
