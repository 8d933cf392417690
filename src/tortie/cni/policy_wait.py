"""Policy before traffic: ADD returns only once the agent has programmed the new endpoint.

    wait_for_endpoint(directory, namespace, name, wanted, timeout)
        wanted = endpoint_status.record(host interface, container MAC, IPv4 nets, IPv6 nets)
        returns as soon as <directory>/<namespace> <name> describes exactly that incarnation
        (tortie.dataplane.endpoint_status: the agent writes it after an apply round in which policy,
        routes and the interface all succeeded); raises CniError 11 after `timeout` seconds

The directory is watched with inotify (tortie.kernel.inotify), so the wait ends within a scheduling
delay of the agent's write; when no inotify instance is available (the per-user limit) or the
directory does not exist yet (no agent has started on this host), it polls every POLL seconds. A
watch is re-armed at least every REARM seconds, in case the directory was created meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from tortie.cni.errors import TRY_AGAIN_LATER, CniError
from tortie.common.errors import KernelError
from tortie.dataplane.endpoint_status import file_name, matches, read

log = logging.getLogger(__name__)

POLL = 0.02
REARM = 0.5


def wait_for_endpoint(
    directory: str, namespace: str, name: str, wanted: Mapping[str, Any], timeout: float
) -> float:
    """Block until the agent reports `namespace`/`name` programmed as `wanted`; returns the seconds
    waited. CniError 11 (try again later) when that takes longer than `timeout`."""
    started = time.monotonic()
    deadline = started + timeout
    target = file_name(namespace, name)
    while True:
        watch = _watch(directory)
        try:
            rearm = time.monotonic() + REARM
            while True:
                found = read(directory, target)
                if found is not None and matches(found, wanted):
                    return time.monotonic() - started
                now = time.monotonic()
                if now >= deadline:
                    raise _timed_out(directory, target, found, timeout)
                if now >= rearm:
                    break
                step = min(deadline, rearm) - now
                if watch is None:
                    time.sleep(min(POLL, step))
                else:
                    watch.wait(step)
        finally:
            if watch is not None:
                watch.close()


def _watch(directory: str) -> Any:
    from tortie.kernel.inotify import DirWatch

    try:
        return DirWatch(directory)
    except KernelError as exc:
        log.debug("polling for the endpoint status file dir=%s reason=%s", directory, exc)
        return None


def _timed_out(directory: str, target: str, found: Mapping[str, Any] | None, timeout: float) -> CniError:
    state = (
        "it reports an earlier incarnation of this endpoint"
        if found is not None
        else "no status file has appeared"
    )
    return CniError(
        TRY_AGAIN_LATER,
        "the agent has not programmed the endpoint's policy yet; try again later",
        f"waited {timeout:g} s for {directory}/{target} ({state}); is `tortie node run` running on this "
        "host, and does the agent's endpoint_status_path_prefix match endpoint_status_dir?",
    )
