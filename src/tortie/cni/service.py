"""The node's CNI service: serves the launchers' CNI calls with warm state, over a root-only unix socket.

    CniService(config).run()          an in-process component of `tortie node run` ("cni")
      bind <socket> (mode 0600; its directory created 0700 if missing; a stale file replaced, a live
        service refused), then accept until stop():
      connection -> caller's uid must be 0 or ours (SO_PEERCRED) -> worker thread (MAX_CALLS at once)
        read one request (service_wire; whole frame within REQUEST_TIMEOUT) -> per (container ID,
        ifname) lock -> tortie.cni.runner.run(env, stdin, verbs over WarmState) -> one reply
        the reply cannot be delivered (the launcher gave up or was killed) after a successful ADD
          -> the same call as DEL: nothing stays wired for a caller that never learnt of it
        a request that is not a well-formed frame -> a CNI error reply (code 6), never a crash
      WarmState: datastores by URL (kept open, dropped after a "try again" answer so the next call
        reopens), the IPAM objects over them (tortie.cni.ipam_core keeps the last), one host-side
        rtnetlink socket (NetlinkPlumber(host=...)), every module of the ADD path imported once

Same verbs, same code as the in-process plugin: only `Deps` differ (warm datastore, shared plumber,
the caller's environment). Threads, not processes: an ADD is mostly waiting (kernel, datastore, the
agent's status file), and the pieces it shares are thread-safe (Rtnl serialises exchanges, the
datastores lock, IPAM holds the host flock per call). Calls for one container are serialised, so a
DEL that follows a timed-out ADD waits for that ADD (and its undo) to finish.

`stop()` closes the socket (new calls then fall back to the launcher's in-process path), waits up
to `grace` seconds for calls in flight, and closes the stores. A call cut short by the process
dying leaves what the launcher's in-process retry of it replaces (docs/design/cni.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tortie.cni import service_wire as wire
from tortie.cni.errors import DECODING_FAILURE, INVALID_ENVIRONMENT, TRY_AGAIN_LATER, CniError
from tortie.cni.launcher import DEFAULT_SOCKET
from tortie.cni.main import PLUGINS
from tortie.cni.netconf import LATEST_VERSION
from tortie.cni.plumbing import WorkloadPlumber
from tortie.cni.runner import Handler, Outcome, run
from tortie.datastore.api import Datastore

log = logging.getLogger(__name__)

MAX_CALLS = 64
REQUEST_TIMEOUT = 5.0
REPLY_TIMEOUT = 5.0
_ACCEPT_POLL = 0.5


@dataclass(frozen=True)
class ServiceConfig:
    socket_path: str = DEFAULT_SOCKET
    max_calls: int = MAX_CALLS
    grace: float = 10.0


class WarmState:
    """What calls share: open datastores by URL and one host-side rtnetlink socket."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[str, Datastore] = {}
        self._retired: list[Datastore] = []
        self._plumber: WorkloadPlumber | None = None

    def store(self, url: str | None, env: Mapping[str, str]) -> Datastore:
        from tortie.datastore.url import default_datastore_url, open_datastore

        key = url or env.get("TORTIE_DATASTORE", "").strip() or default_datastore_url()
        with self._lock:
            ds = self._stores.get(key)
            if ds is None:
                ds = self._stores[key] = open_datastore(key)
                log.info("CNI service opened a datastore for its calls")
            return ds

    def retire(self) -> None:
        """Forget the open stores (after a "try again" answer): the next call opens afresh."""
        with self._lock:
            self._retired += self._stores.values()
            self._stores.clear()

    def plumber(self) -> WorkloadPlumber:
        with self._lock:
            if self._plumber is None:
                from tortie.cni.netlink_plumber import NetlinkPlumber
                from tortie.kernel.rtnl import Rtnl

                self._plumber = NetlinkPlumber(host=Rtnl())
            return self._plumber

    def close(self) -> None:
        with self._lock:
            stores, self._stores = [*self._stores.values(), *self._retired], {}
            self._retired = []
        for ds in stores:
            with contextlib.suppress(Exception):
                ds.close()

    def handlers(self, plugin: str, env: Mapping[str, str]) -> dict[str, Handler]:
        """The verbs of `plugin` with this state's seams and the caller's environment."""
        from tortie.cni.ipam_verbs import IpamDeps, TortieIpamPlugin
        from tortie.cni.workload import Deps, TortiePlugin

        def opener(url: str | None) -> Datastore:
            return self.store(url, env)

        if plugin == "tortie-ipam":
            return TortieIpamPlugin(IpamDeps(open_datastore=opener, keep_open=True)).handlers()
        plumber = self.plumber()
        deps = Deps(open_datastore=opener, plumber_factory=lambda: plumber, env=dict(env), keep_open=True)
        return TortiePlugin(deps).handlers()


def _error_reply(code: int, msg: str, details: str) -> bytes:
    import json

    body = json.dumps(CniError(code, msg, details).to_wire(LATEST_VERSION)) + "\n"
    return wire.encode_reply(1, body.encode())


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(REQUEST_TIMEOUT)
    header = _recv(conn, wire.HEADER)
    length = wire.payload_length(header, wire.REQUEST_MAGIC, wire.MAX_REQUEST)
    payload = _recv(conn, length)
    if len(payload) < length:
        raise wire.WireError(f"the request ended after {len(payload)} of {length} bytes")
    return payload


def _recv(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(min(size - len(data), 1 << 16))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _caller_uid(conn: socket.socket) -> int:
    cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", cred)[1])


class CniService:
    """See the module docstring. `run()` blocks until `stop()`; returns 0 (or 1 if it cannot bind)."""

    def __init__(self, config: ServiceConfig | None = None, state: WarmState | None = None) -> None:
        self.config = config or ServiceConfig()
        self.state = state or WarmState()
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(self.config.max_calls)
        self._workers: set[threading.Thread] = set()
        self._workers_lock = threading.Lock()
        self._container_locks: dict[tuple[str, str], tuple[threading.Lock, int]] = {}
        self._locks_lock = threading.Lock()
        self.calls = 0

    # -- lifecycle ------------------------------------------------------------------------------------
    def _bind(self) -> socket.socket:
        path = self.config.socket_path
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(1.0)
                probe.connect(path)
            except OSError:
                os.unlink(path)  # a stale socket of a service that is gone
            else:
                raise OSError(f"another CNI service already serves {path}")
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window in which others may connect
        try:
            listener.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        listener.listen(128)
        listener.settimeout(_ACCEPT_POLL)
        return listener

    def run(self) -> int:
        try:
            listener = self._bind()
        except OSError as exc:
            log.error("CNI service cannot listen path=%s error=%s", self.config.socket_path, exc)
            return 1
        self.state.plumber()  # the imports and the host socket, before the first call needs them
        log.info("CNI service listening path=%s", self.config.socket_path)
        self.ready.set()
        try:
            while not self._stop.is_set():
                try:
                    conn, _addr = listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    if self._stop.is_set():
                        break
                    log.warning("CNI service accept failed error=%s", exc)
                    continue
                self._start_worker(conn)
        finally:
            self.ready.clear()
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self.config.socket_path)
            self._join_workers(self.config.grace)
            self.state.close()
            log.info("CNI service stopped path=%s calls=%d", self.config.socket_path, self.calls)
        return 0

    def stop(self) -> None:
        self._stop.set()

    def _start_worker(self, conn: socket.socket) -> None:
        self._slots.acquire()
        thread = threading.Thread(target=self._serve, args=(conn,), name="cni-call", daemon=True)
        with self._workers_lock:
            self._workers.add(thread)
        thread.start()

    def _join_workers(self, grace: float) -> None:
        with self._workers_lock:
            workers = list(self._workers)
        for thread in workers:
            thread.join(grace)

    # -- one call -------------------------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._serve_connection(conn)
        except Exception:  # a bug here must not take the service down with it
            log.exception("CNI service call crashed")
        finally:
            with self._workers_lock:
                self._workers.discard(threading.current_thread())
            self._slots.release()

    def _serve_connection(self, conn: socket.socket) -> None:
        uid = _caller_uid(conn)
        if uid not in (0, os.geteuid()):
            log.warning("CNI service refused a caller uid=%d (root only)", uid)
            return
        try:
            plugin, env, stdin = wire.decode_request(_read_request(conn))
        except (wire.WireError, OSError) as exc:
            log.warning("CNI service got a malformed request error=%s", exc)
            self._reply(
                conn, _error_reply(DECODING_FAILURE, "malformed request from the CNI launcher", str(exc))
            )
            return
        if plugin not in PLUGINS:
            self._reply(
                conn,
                _error_reply(INVALID_ENVIRONMENT, "unknown plugin", f"{plugin!r} is not one of {PLUGINS}"),
            )
            return
        self.calls += 1
        with self._container_lock(env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", "")):
            outcome = self._call(plugin, env, stdin)
            delivered = self._reply(conn, wire.encode_reply(outcome.exit_code, _stdout(outcome)))
            if not delivered and outcome.exit_code == 0 and env.get("CNI_COMMAND") == "ADD":
                log.warning(
                    "CNI ADD answered to a caller that is gone; undoing it container=%s",
                    env.get("CNI_CONTAINERID"),
                )
                self._call(plugin, {**env, "CNI_COMMAND": "DEL"}, stdin)

    def _call(self, plugin: str, env: Mapping[str, str], stdin: bytes) -> Outcome:
        outcome = run(env, stdin, self.state.handlers(plugin, env), configure_logs=False)
        if outcome.error_code == TRY_AGAIN_LATER:
            self.state.retire()
        return outcome

    @staticmethod
    def _reply(conn: socket.socket, data: bytes) -> bool:
        try:
            conn.settimeout(REPLY_TIMEOUT)
            conn.sendall(data)
        except OSError as exc:
            log.warning("CNI service could not deliver a reply error=%s", exc)
            return False
        return True

    @contextlib.contextmanager
    def _container_lock(self, container_id: str, ifname: str) -> Iterator[None]:
        key = (container_id, ifname)
        with self._locks_lock:
            lock, users = self._container_locks.get(key, (threading.Lock(), 0))
            self._container_locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._locks_lock:
                lock, users = self._container_locks[key]
                if users == 1:
                    del self._container_locks[key]
                else:
                    self._container_locks[key] = (lock, users - 1)


def _stdout(outcome: Outcome) -> bytes:
    return (outcome.stdout + "\n").encode() if outcome.stdout else b""
