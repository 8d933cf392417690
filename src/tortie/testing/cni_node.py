"""A host's node for CNI tests and benchmarks: `tortie node run` (agent + CNI service, no BGP) inside a
lab host namespace, with everything it writes under one directory.

    with CniNode(lab, "h1", "sqlite:///..../ds.db", workdir, service=True) as node:
        conf.update(node.netconf())       # service_socket, endpoint_status_dir (and the policy wait)
        ... run the installed `tortie` launcher in the host namespace ...
    node.kill()                           # SIGKILL the node service (its agent follows: PDEATHSIG)
    node.start()                          # a fresh one, as systemd would restart it

`service=False` runs the same node with its CNI service off (`--cni-socket ''`): the launchers then
serve every call in-process, and the agent is still there to wait for. The node is stopped by its own
pid (SIGTERM, then SIGKILL); its agent's health server listens on the host namespace's own loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tortie.lab.lab import Lab


class CniNode:
    def __init__(
        self, lab: Lab, host: str, datastore_url: str, workdir: Path, *, service: bool = True
    ) -> None:
        self.lab = lab
        self.host = host
        self.datastore_url = datastore_url
        self.run_dir = workdir / f"node-{host}"
        self.service = service
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        return str(self.run_dir / "cni.sock")

    @property
    def status_dir(self) -> str:
        return str(self.run_dir / "endpoint-status")

    def netconf(self) -> dict[str, Any]:
        """The network configuration fields that point a CNI call at this node."""
        return {"service_socket": self.socket, "endpoint_status_dir": self.status_dir}

    def start(self, timeout: float = 60.0) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            *("ip", "netns", "exec", self.lab.netns(self.host), sys.executable, "-m", "tortie.cli.main"),
            *("node", "run", "--hostname", self.host, "--datastore", self.datastore_url, "--no-bgp"),
            *("--ip", "none", "--run-dir", str(self.run_dir), "--nodename-file", ""),
            *("--cni-socket", self.socket if self.service else ""),
        ]
        env = {k: v for k, v in os.environ.items() if k != "TORTIE_DATASTORE"}
        env["TORTIE_ENDPOINT_STATUS_PATH_PREFIX"] = str(self.run_dir)
        log = open(self.run_dir / "node.log", "ab")  # noqa: SIM115 - the child keeps it
        with log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        self.wait_ready(timeout)

    def status(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.run_dir / "node.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.host} exited {self.proc.returncode}: {self.log_tail()}")
            status = self.status()
            if status is not None and status.get("pid") == self.proc.pid and status.get("ready"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"node {self.host} not ready after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.run_dir / "node.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the node service, as a crash would (its agent gets SIGTERM through PDEATHSIG)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> CniNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
