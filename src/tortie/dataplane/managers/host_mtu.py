"""The host's MTU decision (`tortie.dataplane.mtu`), published for workloads.

Input: `EncapUpdate` (the families that encapsulate, this host's underlay addresses, the calc's
problems), link events (an uplink that appears, goes or changes), `resync()`; the host's interfaces
are read through the VXLAN driver's `host_interfaces()`. Output:

* `decision`: the `MtuDecision` of the last apply, which the VXLAN manager (applied after this one)
  takes its device MTUs and uplinks from;
* `mtu_file` (when given): the workload MTU as a decimal number, what the CNI plugin reads when its
  network configuration has no `mtu` and the DHCP service reads (format:
  `tortie.common.mtu_file`; Calico writes /var/lib/calico/mtu the same way; DHCP advertises the
  smaller of it and the Neutron network's MTU); and `<mtu_file>.json` beside
  it: the decision with its reasons, the calc's encapsulation problems, which `tortie node status`
  shows.

Files are replaced atomically and only when their content changes (a full resync re-reads them, so a
file removed or edited by hand is written again). Nothing is written before InSync.

Construction: `HostMtuManager(driver, settings, mtu_file=None)`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping

from tortie.common.errors import DataplaneError
from tortie.common.files import write_atomically
from tortie.common.mtu_file import mtu_file_text
from tortie.dataplane.drivers.links import LinkEvent
from tortie.dataplane.drivers.vxlan import VxlanDriver
from tortie.dataplane.managers.manager_api import ApplyIncomplete
from tortie.dataplane.messages import EncapUpdate, Message
from tortie.dataplane.mtu import MtuDecision, MtuSettings, decide

log = logging.getLogger(__name__)


def status_path(mtu_file: str) -> str:
    """Where the explanation of the MTU in `mtu_file` is written."""
    return mtu_file + ".json"


def read_status(mtu_file: str) -> dict[str, object] | None:
    """The agent's MTU explanation beside `mtu_file`, or None when there is none."""
    try:
        with open(status_path(mtu_file), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class HostMtuManager:
    """See the module docstring."""

    name = "host_mtu"
    handles = frozenset({EncapUpdate, LinkEvent})

    def __init__(self, driver: VxlanDriver, settings: MtuSettings, *, mtu_file: str | None = None) -> None:
        self._driver = driver
        self._settings = settings
        self._mtu_file = mtu_file
        self._encap = EncapUpdate()
        self._dirty = True
        self._written: dict[str, str] = {}  # path -> content as last written or read
        self._reread = True
        self.decision: MtuDecision | None = None
        self.version = 0

    def on_update(self, msg: Message) -> None:
        if isinstance(msg, EncapUpdate) and msg != self._encap:
            self._encap = msg
            self._dirty = True

    def on_link_event(self, event: LinkEvent) -> None:
        if not event.link.name.startswith(self._settings.ignore):
            self._dirty = True

    def resync(self) -> None:
        self._dirty = True
        self._reread = True

    @property
    def needs_apply(self) -> bool:
        return self._dirty

    @property
    def encap(self) -> EncapUpdate:
        return self._encap

    def apply(self) -> None:
        interfaces = self._driver.host_interfaces()  # a failure raises; stays dirty
        decision = decide(interfaces, self._encap.host_addresses, self._encap.vxlan, self._settings)
        if decision != self.decision:
            log.info("mtu decided mtu=%d reason=%r problems=%s", decision.workload_mtu, decision.reason,
                     list(decision.problems))
            self.decision = decision
            self.version += 1
        failures: list[str] = []
        if self._mtu_file is not None:
            doc = {**decision.to_json(), "problems": [*decision.problems, *self._encap.problems]}
            explained = json.dumps(doc, indent=2, sort_keys=True) + "\n"
            for path, text in ((self._mtu_file, mtu_file_text(decision.workload_mtu)),
                               (status_path(self._mtu_file), explained)):
                try:
                    self._write(path, text)
                except (OSError, DataplaneError) as exc:
                    failures.append(f"write {path}: {exc}")
        self._reread = False
        if failures:
            raise ApplyIncomplete(self.name, failures)
        self._dirty = False

    def _write(self, path: str, text: str) -> None:
        if self._reread:
            try:
                with open(path, encoding="utf-8") as fh:
                    self._written[path] = fh.read()
            except OSError:
                self._written.pop(path, None)
        if self._written.get(path) == text:
            return
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        write_atomically(path, text)
        self._written[path] = text

    def stats(self) -> Mapping[str, int]:
        return {"workload_mtu": self.decision.workload_mtu if self.decision is not None else 0}
