"""Endpoint status files: the agent tells the CNI plugin that a workload's routes and policy are in
the kernel (Felix's `endpointStatusPathPrefix` files, Calico's `policy_setup_timeout_seconds` wait).

    <dir> = <endpoint_status_path_prefix>/endpoint-status          (default /var/run/tortie/endpoint-status)
    <dir>/<namespace> <name>     one file per local WorkloadEndpoint that is programmed:
                                 {"ifaceName", "mac", "ipv4Nets", "ipv6Nets"} of the update programmed
                                 (Calico's WorkloadEndpointStatus fields), written atomically

Contract (the CNI side is `tortie.cni.policy_wait`):

* A file exists, with the endpoint's current interface, MAC and addresses, only after an apply round
  in which every dataplane manager succeeded (policy first, then routes, then the endpoint's
  interface) reported the endpoint up with that very update; it is removed when the endpoint goes
  down or away. A CNI ADD knows the incarnation it created by its MAC (new with every veth), so a
  file left by an earlier container of the same name never satisfies it.
* Writers queue (`on_status`, loop thread) and `flush()` after a successful round; `sync()` after
  the first one removes every file this run did not write (left by a previous run, for endpoints
  that are gone or not programmed yet).
* Names: namespace and name with '%', '/' and ' ' percent-encoded, joined by one space.

Stdlib only and cheap to import: the CNI plugin loads `file_name` and `matches` on every ADD.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

STATUS_DIR = "endpoint-status"
DEFAULT_PREFIX = "/var/run/tortie"


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("/", "%2F").replace(" ", "%20")


def file_name(namespace: str, name: str) -> str:
    """The status file of WorkloadEndpoint `namespace`/`name`."""
    return f"{_escape(namespace)} {_escape(name)}"


def status_dir(prefix: str) -> str:
    return os.path.join(prefix, STATUS_DIR)


def record(
    interface: str, mac: str | None, ipv4_nets: Sequence[str], ipv6_nets: Sequence[str]
) -> dict[str, Any]:
    return {
        "ifaceName": interface,
        "mac": (mac or "").lower(),
        "ipv4Nets": sorted(ipv4_nets),
        "ipv6Nets": sorted(ipv6_nets),
    }


def matches(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a status file's content describes the incarnation `wanted` (see `record`)."""
    return bool(
        found.get("ifaceName") == wanted["ifaceName"]
        and str(found.get("mac") or "").lower() == wanted["mac"]
        and sorted(found.get("ipv4Nets") or []) == wanted["ipv4Nets"]
        and sorted(found.get("ipv6Nets") or []) == wanted["ipv6Nets"]
    )


def read(directory: str, name: str) -> dict[str, Any] | None:
    """The content of one status file, None when it is missing or unreadable."""
    try:
        with open(os.path.join(directory, name), "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class EndpointStatusFiles:
    """The writer (see the module docstring). `on_status` and `flush` run on the dataplane loop thread."""

    def __init__(self, prefix: str) -> None:
        self.directory = status_dir(prefix)
        self._pending: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._written: dict[tuple[str, str], dict[str, Any]] = {}
        self._ready = False

    def on_status(self, namespace: str, name: str, content: dict[str, Any] | None) -> None:
        """Endpoint `namespace`/`name` is up with `content` (see `record`), or not (None)."""
        self._pending[(namespace, name)] = content

    def flush(self) -> None:
        """Write what changed (after an apply round in which everything succeeded)."""
        if not self._pending:
            return
        if not self._ready:
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
            self._ready = True
        pending, self._pending = self._pending, {}
        for key, content in pending.items():
            try:
                self._apply(key, content)
            except OSError as exc:  # a full or read-only disk: the CNI wait times out and retries
                log.warning("endpoint status file not written endpoint=%s/%s error=%s", *key, exc)
                self._pending.setdefault(key, content)

    def _apply(self, key: tuple[str, str], content: dict[str, Any] | None) -> None:
        path = os.path.join(self.directory, file_name(*key))
        if content is None:
            if self._written.pop(key, None) is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            return
        if self._written.get(key) == content:
            return
        tmp = os.path.join(self.directory, f".{file_name(*key)}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(content))
        os.replace(tmp, path)
        self._written[key] = content

    def sync(self) -> None:
        """Remove the files this run has not written (left by an earlier run of the agent)."""
        wanted = {file_name(*key) for key in self._written}
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        for entry in names:
            if entry not in wanted and not entry.startswith("."):
                try:
                    os.unlink(os.path.join(self.directory, entry))
                except OSError:
                    continue
                log.info("stale endpoint status file removed file=%s", entry)
