"""`python -m tortie.lab.keeper STATE -- ARGV...`: keep one lab process running, as systemd keeps a
service with `Restart=always` (the lab's etcd members run under one each).

    start ARGV          same namespace, environment and output as the keeper; the child gets
                        PR_SET_PDEATHSIG(SIGKILL): it never outlives its keeper, and a keeper
                        SIGKILLed (a machine lost) takes its child down as a crash would
    child exits         (any code, any signal: a crash, `tortie lab kill`) -> started again after
                        RESTART_DELAY (systemd's RestartSec), counted in `restarts`
    SIGTERM / SIGINT    SIGTERM to the child, SIGKILL after STOP_GRACE, then the keeper exits 0
                        (`systemctl stop`: the lab's teardown)
    STATE               JSON, replaced atomically on every change:
                        {"keeper", "pid", "startTime", "starts", "restarts", "lastExit", "argv"}
                        `pid`/`startTime` name the running child (None between runs)

Readers (`child_pid`) trust the state file only as far as /proc confirms it: the pid must be alive
with the recorded start time (a reused pid is never taken for the child).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tortie.common.files import write_atomically
from tortie.common.process import die_with_parent
from tortie.lab.processes import proc_start_time

RESTART_DELAY = 1.0
STOP_GRACE = 5.0


def read_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def child_pid(path: str | os.PathLike[str]) -> int | None:
    """The pid of the keeper's running child, confirmed by /proc; None when it runs none."""
    state = read_state(path) or {}
    pid, started = state.get("pid"), state.get("startTime")
    if isinstance(pid, int) and proc_start_time(pid) == started:
        return pid
    return None


class Keeper:
    """See the module docstring; `run()` returns the keeper's exit code."""

    def __init__(self, state_path: str, argv: list[str]) -> None:
        self.state_path = state_path
        self.argv = argv
        self.stopping = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: dict[str, Any] = {"keeper": os.getpid(), "pid": None, "startTime": None, "starts": 0,
                                      "restarts": 0, "lastExit": None, "argv": argv}

    def _save(self) -> None:
        write_atomically(self.state_path, json.dumps(self.state) + "\n")

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent(signal.SIGKILL))
        if self.state["starts"]:
            self.state["restarts"] += 1
        self.state["starts"] += 1
        self.state.update(pid=self.proc.pid, startTime=proc_start_time(self.proc.pid))
        self._save()

    def _stop_child(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        while not self.stopping.is_set():
            try:
                self._start()
            except OSError as exc:
                print(f"keeper: cannot start {self.argv[0]}: {exc}", file=sys.stderr, flush=True)
                self.stopping.wait(RESTART_DELAY)
                continue
            assert self.proc is not None
            while not self.stopping.is_set() and self.proc.poll() is None:
                self.stopping.wait(0.1)
            if self.stopping.is_set():
                break
            self.state.update(pid=None, startTime=None, lastExit=self.proc.returncode)
            self._save()
            print(f"keeper: {self.argv[0]} exited with {self.proc.returncode}; restarting in "
                  f"{RESTART_DELAY:.0f}s", file=sys.stderr, flush=True)
            self.stopping.wait(RESTART_DELAY)
        self._stop_child()
        if self.proc is not None:
            self.state.update(pid=None, startTime=None, lastExit=self.proc.returncode)
            self._save()
        return 0


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m tortie.lab.keeper STATE -- ARGV...", file=sys.stderr)
        return 2
    return Keeper(args[0], args[2:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
