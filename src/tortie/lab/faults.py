"""Fault injection in a lab datacenter (`tortie lab restart|kill|partition|heal`): one component of one
host at a time, the way it fails in production, and how long it took to come back.

    restart_node(dc, host)      the node service stopped (SIGTERM) and started again, as
                                `systemctl restart tortie-node` does: agent and BIRD with it (BIRD
                                stops for a graceful restart: the peers keep the host's routes)
    kill(dc, target, component) SIGKILL, as a crash; nothing is started by hand, the component's own
                                supervisor brings it back, as in production:
        agent   the node service's agent process (its pid in node.json)   -> the node service
        bgp     BIRD (its pid in node.json, from the BGP daemon's health)  -> the BGP daemon
        etcd    the etcd process of member `target` (e1, e2, ...)          -> its keeper (keeper.py)
    partition(dc, host) / heal(dc, host)   the host's fabric port down / up: it loses every BGP peer
                                (and an etcd datastore, which it reaches over the fabric; a sqlite
                                file stays reachable); its peers notice on their BGP hold timers,
                                while its node service, agent and BIRD keep running

Every pid is checked before it is signalled: alive and inside the target's own namespace (never a
reused pid, never a process of another lab). With `wait`, the call returns once the component is back:
a new pid and the host ready again (node, agent, BGP daemon, sessions and routes; `readiness.py`), or
for etcd the member answering /health. A `FaultResult` says what was hit and how long the recovery
took. Nothing else is changed: no record of lab.json, no process but the one signalled.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tortie.lab.datacenter import Datacenter
from tortie.lab.errors import LabError
from tortie.lab.etcd_members import member_healthy, member_pid
from tortie.lab.processes import in_namespace

COMPONENTS = ("agent", "bgp", "etcd")


@dataclass(frozen=True)
class FaultResult:
    """What a fault did: the pid hit (None for a link change), the pid that replaced it and how many
    seconds it took to be back (None without `wait`)."""

    action: str
    pid: int | None = None
    new_pid: int | None = None
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "pid": self.pid, "newPid": self.new_pid,
                "seconds": None if self.seconds is None else round(self.seconds, 3)}


def _wait(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def _host(dc: Datacenter, host: str) -> str:
    if host not in dc.lab.state.hosts:
        raise LabError(f"no host {host!r} in lab {dc.name}; hosts: {', '.join(dc.hosts)}")
    return host


def restart_node(dc: Datacenter, host: str, *, wait: bool = True, timeout: float = 60.0) -> FaultResult:
    """Stop the host's node service (SIGTERM: a planned stop) and start it again."""
    _host(dc, host)
    old = dc.nodes.pid(host)
    started = time.monotonic()
    dc.nodes.stop(host)
    new = dc.nodes.start(host)
    if wait:
        dc.wait_ready(timeout=timeout, hosts=[host])
        return FaultResult(f"restart {host}", old, new, time.monotonic() - started)
    return FaultResult(f"restart {host}", old, new)


def kill(dc: Datacenter, target: str, component: str, *, wait: bool = True,
         timeout: float = 60.0) -> FaultResult:
    """SIGKILL `component` of `target` (a host; an etcd member for `etcd`); see the module docstring."""
    if component not in COMPONENTS:
        raise LabError(f"unknown component {component!r}: expected one of {', '.join(COMPONENTS)}")
    action = f"kill {target} {component}"
    if component == "etcd":
        return _kill_member(dc, target, action, wait=wait, timeout=timeout)
    host = _host(dc, target)
    pid = dc.nodes.component_pid(host, component)
    if pid is None:
        raise LabError(f"no running {component} on {host} in lab {dc.name} (see `tortie lab status`)")
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    if not wait:
        return FaultResult(action, pid)
    _wait(lambda: dc.nodes.component_pid(host, component) not in (None, pid), f"a new {component} on {host}",
          timeout)
    dc.wait_ready(timeout=max(1.0, timeout - (time.monotonic() - started)), hosts=[host])
    return FaultResult(action, pid, dc.nodes.component_pid(host, component), time.monotonic() - started)


def _kill_member(dc: Datacenter, member: str, action: str, *, wait: bool, timeout: float) -> FaultResult:
    appliance = dc.lab.state.appliances.get(member)
    if appliance is None or appliance.role != "etcd":
        members = [n for n, a in dc.lab.state.appliances.items() if a.role == "etcd"]
        raise LabError(f"no etcd member {member!r} in lab {dc.name}"
                       + (f"; members: {', '.join(members)}" if members else " (its datastore is sqlite)"))
    pid = member_pid(dc.lab, member)
    if pid is None or not in_namespace(pid, appliance.netns):
        raise LabError(f"etcd member {member} of lab {dc.name} is not running")
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    if not wait:
        return FaultResult(action, pid)
    _wait(lambda: member_pid(dc.lab, member) not in (None, pid), f"etcd member {member} started again",
          timeout)
    _wait(lambda: member_healthy(dc.lab, member), f"etcd member {member} healthy", timeout)
    return FaultResult(action, pid, member_pid(dc.lab, member), time.monotonic() - started)


def partition(dc: Datacenter, host: str) -> FaultResult:
    """Cut `host` off the fabric (its port on the fabric bridge down)."""
    dc.lab.fabric.set_port(_host(dc, host), up=False)
    return FaultResult(f"partition {host}")


def heal(dc: Datacenter, host: str, *, wait: bool = True, timeout: float = 60.0) -> FaultResult:
    """Put `host` back on the fabric; with `wait`, until every running host is ready again (sessions
    established, routes back)."""
    dc.lab.fabric.set_port(_host(dc, host), up=True)
    if not wait:
        return FaultResult(f"heal {host}")
    started = time.monotonic()
    dc.wait_ready(timeout=timeout)
    return FaultResult(f"heal {host}", seconds=time.monotonic() - started)
