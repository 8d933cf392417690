"""Keep a node's components running: restart what exits, with exponential backoff.

    Supervisor.step(now)   (called by the node service's loop: at once when a component exits,
                            when a restart is due, and at least once a second)
        for each component:  running?  -> nothing
                             exited    -> record exit code, schedule a restart at now + backoff
                             due       -> start it again
    backoff: `initial` (0.5 s), doubling up to `maximum` (30 s); a run that lasted `stable` (30 s)
    or more resets it, so a crash loop slows down but a rare crash restarts at once.

`restart(name, reason)` stops a running component that is alive but not healthy (the node service
asks it for an agent whose /liveness has failed for a while) and counts it like a crash: same
backoff, same `restarts` count, exit code of the stop recorded.

A component is anything with `start()`, `poll() -> exit code | None`, `stop(grace)` and `pid`:
`ChildProcess` (a command, e.g. `tortie agent run`) and `InProcess` (a run/stop object on a thread,
e.g. the BGP daemon). `stop_all()` stops components in reverse start order. Both call their
`on_exit` (if given) from another thread when they end, so the caller of `step()` can sleep until then
instead of polling; `next_due()` says when the next restart is due.

Invariants: a component is never running twice; `stop_all()` leaves nothing running (SIGTERM, then
SIGKILL after `grace`); children get SIGTERM if the node service itself dies (PR_SET_PDEATHSIG), so a
restarted service never finds an old agent still programming the kernel. Children are started from
the thread that calls `step()`, which must live as long as the service (PDEATHSIG fires when the
*thread* that forked exits).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tortie.common.process import die_with_parent

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    def start(self) -> None: ...

    def poll(self) -> int | None:
        """The exit code once it has exited, else None."""
        ...

    def stop(self, grace: float) -> int | None: ...

    @property
    def pid(self) -> int | None: ...


class ChildProcess:
    """A command run as our child; stdout/stderr go where ours go (the journal, a lab log)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.on_exit = on_exit
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, env=self.env, preexec_fn=die_with_parent(signal.SIGTERM)
        )
        self.proc = proc
        log.info("component started name=%s pid=%d", self.name, proc.pid)
        if self.on_exit is not None:
            notify = self.on_exit

            def await_exit() -> None:  # blocks in waitpid: no CPU until the child ends
                proc.wait()
                notify()

            threading.Thread(target=await_exit, name=f"{self.name}-exit", daemon=True).start()

    def poll(self) -> int | None:
        if self.proc is None:
            return None
        return self.proc.poll()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self, grace: float) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("component ignored SIGTERM; killing name=%s pid=%d", self.name, self.proc.pid)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Runnable(Protocol):
    def run(self) -> int: ...

    def stop(self) -> None: ...


class InProcess:
    """`make()` builds a fresh runnable (e.g. a BgpDaemon) for every start; it runs on a thread.
    An exception escaping `run()` counts as exit code 70 (EX_SOFTWARE)."""

    def __init__(
        self, name: str, make: Callable[[], Runnable], on_exit: Callable[[], None] | None = None
    ) -> None:
        self.name = name
        self.make = make
        self.on_exit = on_exit
        self._runnable: Runnable | None = None
        self._thread: threading.Thread | None = None
        self._exit: int | None = None

    def start(self) -> None:
        self._exit = None
        runnable = self.make()
        self._runnable = runnable

        def body() -> None:
            code = 70
            try:
                code = runnable.run()
            except Exception:
                log.exception("component crashed name=%s", self.name)
            finally:
                self._exit = code
                if self.on_exit is not None:
                    self.on_exit()

        self._thread = threading.Thread(target=body, name=self.name, daemon=True)
        self._thread.start()
        log.info("component started name=%s (in-process)", self.name)

    def poll(self) -> int | None:
        if self._thread is None or self._thread.is_alive():
            return None
        return self._exit if self._exit is not None else 70

    @property
    def pid(self) -> int | None:
        return os.getpid() if self._thread is not None and self._thread.is_alive() else None

    def stop(self, grace: float) -> int | None:
        if self._runnable is not None:
            self._runnable.stop()
        if self._thread is not None:
            self._thread.join(grace + 10.0)
            if self._thread.is_alive():
                log.error("component did not stop name=%s", self.name)
        return self._exit


@dataclass
class ComponentState:
    component: Component
    running: bool = False
    starts: int = 0
    restarts: int = 0
    last_exit: int | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = 0.0

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "running": self.running,
            "pid": self.component.pid if self.running else None,
            "restarts": self.restarts,
            "lastExitCode": self.last_exit,
            "uptime": round(now - self.started_at, 3) if self.running else None,
            "nextStartIn": round(max(0.0, self.next_start - now), 3) if not self.running else None,
        }


class Supervisor:
    """See the module docstring. Not thread-safe: one thread calls `step` and `stop_all`."""

    def __init__(
        self,
        components: Sequence[Component],
        *,
        initial: float = 0.5,
        maximum: float = 30.0,
        stable: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.stable = stable
        self.clock = clock
        self.states = {c.name: ComponentState(c, backoff=initial) for c in components}
        self.changed = True

    def step(self) -> None:
        now = self.clock()
        for state in self.states.values():
            if state.running:
                code = state.component.poll()
                if code is None:
                    continue
                ran = now - state.started_at
                state.running = False
                state.last_exit = code
                if ran >= self.stable:
                    state.backoff = self.initial
                state.next_start = now + state.backoff
                log.warning(
                    "component exited name=%s code=%s ran=%.1fs restart_in=%.1fs",
                    state.component.name,
                    code,
                    ran,
                    state.backoff,
                )
                state.backoff = min(self.maximum, state.backoff * 2)
                self.changed = True
            if not state.running and now >= state.next_start:
                try:
                    state.component.start()
                except OSError as exc:
                    log.error("component could not start name=%s error=%s", state.component.name, exc)
                    state.next_start = now + state.backoff
                    state.backoff = min(self.maximum, state.backoff * 2)
                    continue
                state.running = True
                state.started_at = now
                if state.starts:
                    state.restarts += 1
                state.starts += 1
                self.changed = True

    def next_due(self) -> float | None:
        """Seconds until the earliest restart scheduled for a component that is not running."""
        due = [st.next_start for st in self.states.values() if not st.running]
        return max(0.0, min(due) - self.clock()) if due else None

    def restart(self, name: str, reason: str, grace: float = 5.0) -> None:
        """Stop component `name` now (SIGTERM, SIGKILL after `grace`) and let `step` start it again
        after its backoff, as if it had crashed."""
        state = self.states[name]
        if not state.running:
            return
        now = self.clock()
        code = state.component.stop(grace)
        state.running = False
        state.last_exit = code
        state.next_start = now + state.backoff
        log.warning("component restarted by its supervisor name=%s reason=%s code=%s restart_in=%.1fs",
                    name, reason, code, state.backoff)
        state.backoff = min(self.maximum, state.backoff * 2)
        self.changed = True

    def stop_all(self, grace: float = 5.0) -> None:
        for state in reversed(list(self.states.values())):
            if state.running or state.component.pid is not None:
                code = state.component.stop(grace)
                log.info("component stopped name=%s code=%s", state.component.name, code)
            state.running = False
        self.changed = True

    def status(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {name: state.to_json(now) for name, state in self.states.items()}
