"""One BIRD process, started and stopped so that its peers keep this host's routes across a restart.

    start()            bird -f -R -c bird.conf -s bird.ctl -P bird.pid   (the BGP daemon's child)
                       umask 077 (the control socket it creates is root only), own session,
                       PR_SET_PDEATHSIG(SIGKILL): if the service dies, BIRD dies the way a crash does
    stop(graceful)     planned stop: `graceful restart` on the control socket (BIRD closes its BGP
                       sessions without a NOTIFICATION and leaves its kernel routes), SIGKILL after
                       the grace period (the same thing to a peer)
    stop(withdraw)     SIGTERM: BIRD sends Cease to every peer, which withdraw this host's routes
    replace_leftover() a BIRD of an earlier service instance still answering on our control socket
                       (its supervisor was SIGKILLed before PDEATHSIG existed, or `bird` was started
                       by hand) is stopped gracefully before ours starts: never two BIRDs on one host

Why it is hitless (RFC 4724, BIRD 2's `graceful restart`, measured in tests/faults): every session has
graceful restart on (render.py), so a peer that sees our TCP session end without a NOTIFICATION keeps
our routes, marked stale, for our restart time (120 s unless BGPPeer maxRestartTime / BGPConfiguration
nodeMeshMaxRestartTime say otherwise). The new BIRD starts in graceful restart recovery (`-R`): it
announces the restart with forwarding state preserved, so peers keep forwarding on the stale routes
until it has sent them everything again (End-of-RIB), and its kernel protocol (`graceful restart`,
`persist`) does not touch the routes the old BIRD wrote until recovery is over, so this host keeps
forwarding too. Recovery ends when every session has converged, or after `graceful restart wait`
(render.py; short, because a peer that is down keeps it open, and meanwhile no route change reaches
this host's kernel). A crash (SIGKILL) is the same as a graceful stop to a peer; a clean SIGTERM is
not (Cease: peers withdraw at once), which is why the daemon never uses it for a restart.

Inputs: the command prefix (e.g. `ip netns exec NS`), the BIRD binary, the run paths. Outputs: the
process, its stdout/stderr appended to bird.log, bird.pid (written by BIRD).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tortie.bgp.control import BirdCommandError, BirdControl, BirdNotRunning
from tortie.common.process import die_with_parent

log = logging.getLogger(__name__)

BIRD_UMASK = 0o077  # BIRD creates its control socket: root only, like its configuration


def bird_command(prefix: Sequence[str], binary: str, config: str, socket: str, pidfile: str) -> list[str]:
    """BIRD in the foreground, in graceful restart recovery (see the module docstring)."""
    return [*prefix, binary, "-f", "-R", "-c", config, "-s", socket, "-P", pidfile]


def _wait_gone(pid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def _graceful_restart(socket: str) -> bool:
    """Ask the BIRD on `socket` to shut down for a graceful restart; False when it does not answer."""
    try:
        with BirdControl(socket, timeout=2.0) as ctl:
            ctl.command("graceful restart")
    except BirdNotRunning:
        return False
    except BirdCommandError as exc:
        log.warning("bird refused graceful restart socket=%s error=%s", socket, exc)
        return False
    return True


def read_pidfile(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def replace_leftover(socket: str, pidfile: str, grace: float) -> int | None:
    """Stop a BIRD that still answers on `socket` (see the module docstring); returns its pid when
    there was one. Its kernel routes stay for the new BIRD (started with -R) to take over."""
    pid = read_pidfile(pidfile)
    if not _graceful_restart(socket):
        return None
    log.warning("a BIRD from an earlier run still answered on its control socket; stopped it with a "
                "graceful restart socket=%s pid=%s", socket, pid)
    if pid is not None and not _wait_gone(pid, time.monotonic() + grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, time.monotonic() + 2.0)
    return pid


class BirdProcess:
    """One BIRD child in the foreground (`bird -f`), its output appended to a log file."""

    def __init__(self, command: Sequence[str], log_path: str, socket: str) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.socket = socket
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True, umask=BIRD_UMASK, preexec_fn=die_with_parent(signal.SIGKILL))
        self.started_at = time.monotonic()
        log.info("bird started pid=%d command=%s", self.proc.pid, " ".join(self.command))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def poll(self) -> int | None:
        """Exit code if BIRD has exited, else None (also None when never started)."""
        return self.proc.poll() if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float, *, graceful: bool = True) -> None:
        """Planned stop: graceful restart (peers keep our routes), or withdraw (SIGTERM: Cease)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            started = time.monotonic()
            if graceful and _graceful_restart(self.socket):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
                if proc.poll() is None:  # a kill is a graceful stop too, to the peers
                    log.warning("bird did not finish its graceful restart shutdown; killing pid=%d", proc.pid)
                    proc.kill()
            elif graceful:
                proc.kill()  # no control socket: SIGKILL, never SIGTERM (which would send Cease)
            else:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    log.warning("bird ignored SIGTERM; killing pid=%d", proc.pid)
                    proc.kill()
            proc.wait()
            log.info("bird stopped pid=%d mode=%s seconds=%.2f", proc.pid,
                     "graceful-restart" if graceful else "withdraw", time.monotonic() - started)
        self.close_log()

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
