"""Running one dnsmasq for this host and keeping it in line with a `DnsmasqConfig`.

`DnsmasqProcess.apply(config, argv)`:

    nothing to serve            -> stop dnsmasq (if running)
    command line changed        -> write files, restart (a new subnet/range needs a restart)
    not running (or it died)    -> write files, start
    hosts/opts text changed     -> write files, SIGHUP (dnsmasq re-reads --dhcp-hostsfile and
                                   --dhcp-optsfile on SIGHUP; leases are kept)
    otherwise                   -> nothing

Files are written atomically (temp file + rename) before dnsmasq is signalled. The child is
stopped by its own pid (SIGTERM, then SIGKILL after a grace period) by `stop()`, and gets SIGTERM
from the kernel if the service itself dies (PR_SET_PDEATHSIG).
Its fake (`tortie.testing.dhcp_fakes.FakeDnsmasq`) records the same decisions for unit tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
from pathlib import Path

from tortie.dhcp.dnsmasq_config import DnsmasqConfig, DnsmasqPaths

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the service dies (Linux PR_SET_PDEATHSIG), so a
    killed service never leaves an orphaned dnsmasq serving stale data."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def paths_in(state_dir: Path, *, log_file: bool = True) -> DnsmasqPaths:
    return DnsmasqPaths(
        pid_file=str(state_dir / "dnsmasq.pid"),
        lease_file=str(state_dir / "leases"),
        hosts_file=str(state_dir / "hosts"),
        opts_file=str(state_dir / "opts"),
        log_file=str(state_dir / "dnsmasq.log") if log_file else None,
    )


class DnsmasqProcess:
    def __init__(self, paths: DnsmasqPaths, *, stop_grace: float = 3.0) -> None:
        self.paths = paths
        self._proc: subprocess.Popen[bytes] | None = None
        self._argv: list[str] | None = None
        self._files: tuple[str, str] | None = None
        self._grace = stop_grace
        self.starts = 0
        self.reloads = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def alive(self) -> bool:
        return self.pid is not None

    def _write_files(self, config: DnsmasqConfig) -> bool:
        files = (config.hosts, config.opts)
        if files == self._files:
            return False
        _write_atomic(Path(self.paths.hosts_file), config.hosts)
        _write_atomic(Path(self.paths.opts_file), config.opts)
        self._files = files
        return True

    def apply(self, config: DnsmasqConfig, argv: list[str]) -> str:
        """Bring dnsmasq in line; returns what was done: stopped/started/restarted/reloaded/unchanged."""
        if not config.serves_anything:
            if self.pid is not None:
                self.stop()
                return "stopped"
            return "unchanged"
        changed_files = self._write_files(config)
        running = self.pid is not None
        if running and argv == self._argv:
            if changed_files:
                assert self._proc is not None
                self._proc.send_signal(signal.SIGHUP)
                self.reloads += 1
                log.info("dnsmasq reloaded pid=%d", self._proc.pid)
                return "reloaded"
            return "unchanged"
        action = "restarted" if running else "started"
        if running:
            self.stop()
        elif self._proc is not None:
            log.warning("dnsmasq exited rc=%s; starting it again", self._proc.returncode)
        Path(self.paths.lease_file).touch(exist_ok=True)
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        self._argv = list(argv)
        self.starts += 1
        log.info("dnsmasq %s pid=%d ranges=%d", action, self._proc.pid, len(config.ranges))
        return action

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._argv = None
        if proc is None or proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(self._grace)
                break
            except subprocess.TimeoutExpired:
                continue
        log.info("dnsmasq stopped pid=%d", proc.pid)
