"""The lab's keeper (`tortie.lab.keeper`): a process restarted whenever it exits, as systemd's
Restart=always does, stopped or killed with its keeper; its state file names the running child,
believed only as far as /proc confirms it. Real processes, no root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tortie.lab.keeper import child_pid, read_state
from tortie.lab.processes import proc_start_time


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_killed_child_is_started_again_and_stops_with_its_keeper(tmp_path: Path) -> None:
    state = tmp_path / "keeper.json"
    marker, ready = tmp_path / "terminated", tmp_path / "ready"
    child = "\n".join([
        "import os, signal, sys, time",
        f"signal.signal(signal.SIGTERM, lambda *_: (open({str(marker)!r}, 'a').write('x'), sys.exit(0)))",
        f"open({str(ready)!r}, 'w').write(str(os.getpid()))",
        "while True: time.sleep(0.05)",
    ])
    keeper = subprocess.Popen([sys.executable, "-m", "tortie.lab.keeper", str(state), "--",
                               sys.executable, "-c", child])
    try:
        _wait(lambda: child_pid(state) is not None, "the first child")
        first = child_pid(state)
        assert first is not None and first != keeper.pid
        os.kill(first, signal.SIGKILL)  # a crash
        _wait(lambda: child_pid(state) not in (None, first), "the child started again")
        doc = read_state(state) or {}
        assert doc["restarts"] == 1 and doc["starts"] == 2 and doc["lastExit"] == -signal.SIGKILL
        second = child_pid(state)
        assert second is not None
        _wait(lambda: ready.exists() and ready.read_text() == str(second), "the second child's handler")
        keeper.send_signal(signal.SIGTERM)  # systemctl stop
        assert keeper.wait(15) == 0
        assert proc_start_time(second) is None and marker.read_text() == "x"  # stopped cleanly, once
        assert child_pid(state) is None
    finally:
        if keeper.poll() is None:
            keeper.kill()
            keeper.wait()


def test_a_stale_state_file_names_no_child(tmp_path: Path) -> None:
    state = tmp_path / "keeper.json"
    me = os.getpid()
    state.write_text(f'{{"pid": {me}, "startTime": {proc_start_time(me)}}}')
    assert child_pid(state) == me
    state.write_text(f'{{"pid": {me}, "startTime": 1}}')  # a reused pid: another start time
    assert child_pid(state) is None
    state.write_text("not json")
    assert child_pid(state) is None


def test_a_keeper_killed_takes_its_child_down_and_nobody_restarts_it(tmp_path: Path) -> None:
    state = tmp_path / "keeper.json"
    keeper = subprocess.Popen([sys.executable, "-m", "tortie.lab.keeper", str(state), "--",
                               sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        _wait(lambda: child_pid(state) is not None, "the child")
        child = child_pid(state)
        assert child is not None
        keeper.kill()  # a machine lost: the member goes with it (PR_SET_PDEATHSIG)
        keeper.wait(15)
        _wait(lambda: proc_start_time(child) is None, "the child gone with its keeper")
        assert child_pid(state) is None
    finally:
        if keeper.poll() is None:
            keeper.kill()
            keeper.wait()
