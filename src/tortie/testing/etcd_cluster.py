"""A real etcd cluster on loopback, for tests and benchmarks.

`EtcdCluster(members=3)` is a context manager that starts `members` etcd processes (Debian etcd-server
3.4) on free 127.0.0.1 ports, each with its own `--data-dir` under a private temp dir, and waits until
every member reports healthy. It exposes:

* `url` — `etcd://127.0.0.1:p1,127.0.0.1:p2,...` (or `etcds://...?cacert=..&cert=..&key=..` with TLS),
  ready for `tortie.datastore.url.open_datastore`;
* `client_endpoints` — `["http://127.0.0.1:p1", ...]`;
* `kill(i)` (SIGKILL member i), `restart(i)` (start it again on the same ports and data dir),
  `stop()` (followers first, then the leader: SIGTERM, then SIGKILL after a short grace period),
  `leader_index()` and `wait_healthy()`.

Invariants: processes are tracked by pid and always stopped on exit (also when the test failed, and
at interpreter exit as a last resort); the temp dir is removed on exit unless the caller passed
`data_dir`, in which case only the member dirs we created there are removed. Ports are found by
binding port 0 (a small race with other programs is possible; startup retries once on new ports).

With `tls=True` it generates a throwaway CA, a server certificate for 127.0.0.1 and a client
certificate with `openssl`, and starts etcd with `--client-cert-auth` (HTTPS + client certificates).

With `auth=True` it then enables etcd authentication: a `root` user (password `root_password`) and a
user `tortie` whose role `tortie` may read and write the prefixes `/calico/` and `/tortie/` only
(tortie.lab.etcd_security, shared with the lab's `--etcd-tls`); the tortie user's
password is written to `password_file` (mode 0600) and `url` names `username=tortie&password_file=..`,
so `open_datastore(cluster.url)` authenticates as the product would. `add_user(name, password,
prefix, permission)` creates more users (e.g. a read-only one). `tls=True, auth=True` is the secure
setup the lab's `--etcd-tls` mode and the fault suite can start.

`GrpcProxy(cluster)` runs `etcd grpc-proxy` in front of a (plain-HTTP) cluster, for watch fan-out
tests and bench/fanout.py.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tortie.lab.etcd_security import (
    TlsFiles,
    add_user,
    client_context,
    enable_auth,
    make_tls_files,
    post_json,
    write_secret,
)

log = logging.getLogger(__name__)

_ETCD_BIN = "etcd"
_STOP_GRACE_S = 2.0
_HEALTH_TIMEOUT_S = 30.0
_LIVE_PIDS: set[int] = set()


def _kill_leftovers() -> None:
    """Last-resort cleanup at interpreter exit for members a caller forgot to stop."""
    for pid in list(_LIVE_PIDS):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


atexit.register(_kill_leftovers)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 and ask the kernel)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1 that were free a moment ago. All sockets stay bound until
    every port is chosen: asking one at a time can return the same port twice."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class _Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None


class EtcdCluster:
    """Real etcd members on loopback; see the module docstring."""

    def __init__(
        self, members: int = 1, data_dir: Path | None = None, *, tls: bool = False, auth: bool = False
    ) -> None:
        if members < 1:
            raise ValueError("an etcd cluster needs at least one member")
        self._n = members
        self._own_tmp = data_dir is None
        self._base = Path(tempfile.mkdtemp(prefix="tortie-etcd-")) if data_dir is None else data_dir
        self._base.mkdir(parents=True, exist_ok=True)
        self._token = f"tortie-{os.getpid()}-{time.monotonic_ns()}"
        try:
            self.tls: TlsFiles | None = make_tls_files(self._base / "tls") if tls else None
        except (OSError, subprocess.CalledProcessError):
            self._remove_files()
            raise
        self._members: list[_Member] = []
        self._started = False
        self.auth = auth
        self.root_password = secrets.token_hex(12)
        self.password_file: Path | None = None
        self._root_token: str | None = None

    # ----- lifecycle -----

    def __enter__(self) -> EtcdCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start every member and wait until all are healthy.

        Ports are chosen free, but another program may take one before etcd binds it; then (a member
        exits during start-up, or the cluster never becomes healthy) it retries on fresh ports."""
        attempts = 4
        for attempt in range(attempts):
            ports = free_ports(2 * self._n)
            self._members = [
                _Member(
                    name=f"m{i}",
                    client_port=ports[2 * i],
                    peer_port=ports[2 * i + 1],
                    data_dir=self._base / f"m{i}.etcd",
                    log_path=self._base / f"m{i}.log",
                )
                for i in range(self._n)
            ]
            try:
                for i in range(self._n):
                    self._spawn(i)
                self.wait_healthy()
                if self.auth:
                    self._enable_auth()
                self._started = True
                return
            except (TimeoutError, RuntimeError) as exc:
                if attempt == attempts - 1:
                    raise
                log.warning("etcd cluster did not start (%s); retrying on new ports", str(exc)[:200])
                self._kill_all()
                for m in self._members:
                    shutil.rmtree(m.data_dir, ignore_errors=True)

    def close(self) -> None:
        """Stop every member and remove what we created on disk."""
        try:
            self.stop()
        finally:
            self._remove_files()

    def _remove_files(self) -> None:
        if self._own_tmp:
            shutil.rmtree(self._base, ignore_errors=True)
            return
        shutil.rmtree(self._base / "tls", ignore_errors=True)
        for m in getattr(self, "_members", []):
            shutil.rmtree(m.data_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                m.log_path.unlink()

    def stop(self) -> None:
        """Stop all members: followers first, then the leader; SIGTERM, SIGKILL after a grace period."""
        leader = self.leader_index() if self._alive_indices() else None
        order = [i for i in self._alive_indices() if i != leader]
        if leader is not None and leader in self._alive_indices():
            order.append(leader)
        for i in order:
            self._terminate(i)
        self._kill_all()

    # ----- addresses -----

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def client_endpoints(self) -> list[str]:
        return [f"{self.scheme}://127.0.0.1:{m.client_port}" for m in self._members]

    @property
    def url(self) -> str:
        """The datastore URL naming every member (see tortie.datastore.url)."""
        hosts = ",".join(f"127.0.0.1:{m.client_port}" for m in self._members)
        options = []
        if self.tls is not None:
            options += self.tls.url_options()
        if self.password_file is not None:
            options += ["username=tortie", f"password_file={self.password_file}"]
        query = "?" + "&".join(options) if options else ""
        return f"{'etcds' if self.tls else 'etcd'}://{hosts}{query}"

    # ----- authentication -----

    def _admin_post(self, path: str, body: dict[str, object]) -> dict[str, object] | None:
        for i in self._alive_indices():
            reply = self._post_json(i, path, body)
            if reply is not None:
                return reply
        return None

    def _enable_auth(self) -> None:
        password = secrets.token_hex(16)
        self._root_token = enable_auth(self._admin_post, self.root_password, password)
        self.password_file = write_secret(self._base / "etcd-password", password)

    def add_user(self, name: str, password: str, *, prefix: str, permission: str = "READWRITE") -> None:
        """A user with a role of the same name allowed `permission` (READ, WRITE, READWRITE) on `prefix`."""
        add_user(self._admin_post, name, password, prefix=prefix, permission=permission)

    def pid(self, i: int) -> int | None:
        proc = self._members[i].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # ----- member control -----

    def kill(self, i: int) -> None:
        """SIGKILL member i and reap it."""
        proc = self._members[i].proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        _LIVE_PIDS.discard(proc.pid)
        self._members[i].proc = None

    def restart(self, i: int) -> None:
        """Start member i again (same ports and data dir) and wait until the cluster is healthy."""
        if self._members[i].proc is not None:
            self.kill(i)
        self._spawn(i)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = _HEALTH_TIMEOUT_S) -> None:
        """Block until every running member answers /health with health=true."""
        deadline = time.monotonic() + timeout
        pending = set(self._alive_indices())
        while pending:
            for i in sorted(pending):
                proc = self._members[i].proc
                if proc is None or proc.poll() is not None:
                    raise RuntimeError(f"etcd member {i} exited during startup; log: {self._log_tail(i)}")
                if self._healthy(i):
                    pending.discard(i)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd members {sorted(pending)} not healthy after {timeout}s")
            time.sleep(0.05)

    def leader_index(self) -> int | None:
        """Index of the current leader according to the live members, or None if unknown."""
        statuses = {i: self._post_json(i, "/v3/maintenance/status", {}) for i in self._alive_indices()}
        ids: dict[str, int] = {}
        leader: str | None = None
        for i, st in statuses.items():
            if st is None:
                continue
            header = st.get("header")
            if isinstance(header, dict):
                ids[str(header.get("member_id", ""))] = i
            if st.get("leader") is not None:
                leader = str(st.get("leader"))
        return ids.get(leader) if leader is not None else None

    # ----- internals -----

    def _alive_indices(self) -> list[int]:
        return [i for i, m in enumerate(self._members) if m.proc is not None and m.proc.poll() is None]

    def _spawn(self, i: int) -> None:
        m = self._members[i]
        scheme = self.scheme
        cluster = ",".join(f"{x.name}=http://127.0.0.1:{x.peer_port}" for x in self._members)
        args = [
            _ETCD_BIN,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", f"{scheme}://127.0.0.1:{m.client_port}",
            "--advertise-client-urls", f"{scheme}://127.0.0.1:{m.client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
            "--initial-cluster", cluster,
            "--initial-cluster-token", self._token,
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-level", "warn",
        ]
        if self.tls is not None:
            args += [
                "--cert-file", str(self.tls.server_cert),
                "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca_cert),
                "--client-cert-auth",
            ]
        with open(m.log_path, "ab") as logf:
            m.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
            )
        _LIVE_PIDS.add(m.proc.pid)

    def _terminate(self, i: int) -> None:
        proc = self._members[i].proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _LIVE_PIDS.discard(proc.pid)
        self._members[i].proc = None

    def _kill_all(self) -> None:
        for i in range(len(self._members)):
            self.kill(i)

    def _ssl_context(self) -> ssl.SSLContext | None:
        return None if self.tls is None else client_context(self.tls)

    def _healthy(self, i: int) -> bool:
        url = f"{self.client_endpoints[i]}/health"
        try:
            with urllib.request.urlopen(url, timeout=1.0, context=self._ssl_context()) as resp:
                body = json.loads(resp.read().decode())
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return str(body.get("health")) == "true"

    def _post_json(self, i: int, path: str, body: dict[str, object]) -> dict[str, object] | None:
        return post_json(self.client_endpoints[i], path, body, context=self._ssl_context(),
                         token=self._root_token)

    def _log_tail(self, i: int) -> str:
        try:
            return self._members[i].log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "<no log>"


class GrpcProxy:
    """`etcd grpc-proxy start` in front of a cluster, on a free loopback port (a context manager).

    `target` is its `host:port` (for `watch_endpoints=`), `pid` its process id. The proxy serves gRPC
    only (plus /health and /metrics over HTTP/1); it coalesces identical watches of its clients into
    one watch on the cluster. TLS and auth clusters are not supported here.
    """

    def __init__(self, cluster: EtcdCluster) -> None:
        if cluster.tls is not None:
            raise ValueError("GrpcProxy fronts plain-HTTP clusters only")
        self._cluster = cluster
        self._dir = Path(tempfile.mkdtemp(prefix="tortie-grpc-proxy-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def __enter__(self) -> GrpcProxy:
        members = ",".join(e.removeprefix("http://") for e in self._cluster.client_endpoints)
        for _ in range(4):
            self.port = free_port()
            with open(self._dir / "proxy.log", "ab") as logf:
                self.proc = subprocess.Popen(
                    [_ETCD_BIN, "grpc-proxy", "start", "--endpoints", members, "--listen-addr", self.target,
                     "--data-dir", str(self._dir / "data")],
                    stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                )
            _LIVE_PIDS.add(self.proc.pid)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://{self.target}/health", timeout=1.0) as resp:
                        if resp.status == 200:
                            return self
                except (OSError, urllib.error.URLError):
                    time.sleep(0.05)
            self._stop()
        self.close()
        raise RuntimeError(f"etcd grpc-proxy did not start; log in {self._dir}")

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            _LIVE_PIDS.discard(self.proc.pid)
            self.proc = None

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self._dir, ignore_errors=True)
