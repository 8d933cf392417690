"""The etcd v3 `Datastore`, spoken over etcd's HTTP/JSON gateway (`/v3/...`, etcd >= 3.4).

Inputs: client endpoints (`http(s)://host:port` or `host:port`), optional TLS material (CA, client
cert/key) and etcd username/password. Outputs: the `tortie.datastore.api.Datastore` contract with
values stored as JSON text and keys as UTF-8 bytes (the gateway base64-encodes both).

Transport: one `etcd3gw.Etcd3Client` per endpoint supplies the configured `requests` session (TLS)
and the URL layout; requests are posted through that session directly so that the failover logic
below can tell *why* a request failed.

Failover: the client sticks to one endpoint and moves round-robin to the next on a connection
failure or an "unavailable" answer (e.g. the member lost its leader). Reads and lease keep-alives
retry on any endpoint until `timeout` has passed with every endpoint tried. A write is retried on
another endpoint only when the request provably never reached a server (connection refused, connect
timeout, TLS handshake failure, "no leader"); if it may have been applied (connection dropped after
sending, timeout waiting for the answer) it raises `DatastoreUnavailable` saying the outcome is
unknown — the caller re-reads (a create then may find AlreadyExists with its own value). When every
endpoint fails the call raises `DatastoreUnavailable`.

Writes: every write is one etcd txn (also the single-key ones, via `commit`): create compares
`create_revision == 0`, update/delete compare `create_revision > 0` and, with CAS, `mod_revision ==
R`; the failure branch reads the keys back so the error names the offending key. All ops of a txn
share one revision, as the contract says.

Watches (`_etcd_watch.py`): a thread per watch posts `/v3/watch` (a stream of JSON lines) with
`start_revision = last delivered + 1` and `prev_kv`; with `watch_grpc=True` the same stream is a gRPC
Watch call to the members, and with `watch_endpoints` (host:port of `etcd grpc-proxy` instances) it goes
to those, which coalesce the watches of many clients into one (`_etcd_grpc.py`). A connection loss or
stream error re-opens the watch on the next endpoint from the last delivered revision, so nothing is
lost or repeated (etcd never splits one revision across two watch responses). A cancel carrying
`compact_revision` becomes RESYNC. A stream idle for `idle_reconnect` seconds is re-opened (cheap;
bounds how long a silently dead member can hold a watch). If no endpoint accepts the watch for `timeout`
seconds, `get` raises `DatastoreUnavailable`.

Leases: etcd leases; TTLs are whole seconds (rounded up, and etcd raises very short TTLs to its
minimum, about 2 s). Auth: with a username, a token from `/v3/auth/authenticate` is sent in the
`Authorization` header and renewed when etcd says it is invalid.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from etcd3gw.client import Etcd3Client

from tortie.common.errors import DatastoreError, DatastoreUnavailable, LeaseExpired, UserError
from tortie.datastore._codec import (
    CheckedOp,
    check_ops,
    decode_value,
    lease_gone,
    stored_kv,
    violation,
)
from tortie.datastore._etcd_watch import (
    GRPC_UNAUTHENTICATED,
    EtcdWatch,
    GatewayWatchTransport,
    WatchTransport,
    b64,
    error_of,
    int_field,
    unb64,
)
from tortie.datastore._single_writes import SingleKeyWrites
from tortie.datastore.api import KV, TxnOp, Watch

log = logging.getLogger(__name__)

_LIST_PAGE = 1000
_REVISION_PROBE_KEY = "/calico/"
_GRPC_NOT_FOUND = 5
_GRPC_OUT_OF_RANGE = 11
_GRPC_UNAVAILABLE = 14
_GRPC_RESOURCE_EXHAUSTED = 8
_GRPC_DEADLINE_EXCEEDED = 4
_GRPC_PERMISSION_DENIED = 7


def _range_end(prefix: bytes) -> bytes:
    """etcd's prefix range end: increment the last byte below 0xff; b"\\0" means "to the end"."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\0"
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def _kv_from(d: dict[str, Any]) -> KV:
    return stored_kv(
        unb64(d["key"]).decode("utf-8", "replace"),
        unb64(d.get("value", "")),
        int_field(d, "mod_revision"),
        int_field(d, "create_revision"),
        int_field(d, "lease") or None,
    )


class _Compacted(Exception):
    """The revision asked for has been compacted (internal: list restarts)."""


@dataclass
class _Endpoint:
    base: str
    client: Etcd3Client

    def url(self, path: str) -> str:
        return f"{self.base}/v3/{path.lstrip('/')}"

    @property
    def session(self) -> requests.Session:
        session: requests.Session = self.client.session
        return session


class _Failure(Exception):
    """One endpoint failed; `sent` says whether the request may have reached the server."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


def _never_sent(e: requests.RequestException) -> bool:
    """True when the request provably did not reach a server (safe to retry any write)."""
    if isinstance(e, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    if isinstance(e, requests.exceptions.ConnectionError):
        reason: object = e.args[0] if e.args else None
        if isinstance(reason, urllib3.exceptions.MaxRetryError):
            reason = reason.reason
        unsent = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
        return isinstance(reason, unsent)
    return False


def parse_endpoint(text: str, default_scheme: str) -> tuple[str, str, int]:
    """`http(s)://host:port`, `host:port` or `host` -> (scheme, host, port); IPv6 hosts in brackets."""
    raw = text.strip()
    if not raw:
        raise UserError("empty etcd endpoint")
    parts = urlsplit(raw if "://" in raw else f"{default_scheme}://{raw}")
    if parts.scheme not in ("http", "https"):
        raise UserError(f"etcd endpoint {text!r}: scheme must be http or https")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise UserError(f"etcd endpoint {text!r}: {e}") from e
    if not host:
        raise UserError(f"etcd endpoint {text!r} has no host")
    if parts.path not in ("", "/"):
        raise UserError(f"etcd endpoint {text!r} must not have a path")
    return parts.scheme, host, port or 2379


class EtcdDatastore(SingleKeyWrites):
    """The etcd backend; see the module docstring."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ca_cert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        idle_reconnect: float = 30.0,
        watch_grpc: bool = False,
        watch_endpoints: Sequence[str] = (),
    ) -> None:
        if not endpoints:
            raise UserError("an etcd datastore needs at least one endpoint")
        if (cert is None) != (key is None):
            raise UserError("etcd client TLS needs both a certificate and its key")
        if (username is None) != (password is None):
            raise UserError("etcd authentication needs both a username and a password")
        default_scheme = "https" if (ca_cert or cert) else "http"
        self._endpoints: list[_Endpoint] = []
        for text in endpoints:
            scheme, host, port = parse_endpoint(text, default_scheme)
            client = Etcd3Client(
                host=host, port=port, protocol=scheme, ca_cert=ca_cert, cert_key=key, cert_cert=cert,
                timeout=timeout, api_path="/v3/",
            )
            self._endpoints.append(_Endpoint(client.base_url, client))
        # Passed on every request: requests lets $REQUESTS_CA_BUNDLE override a session-level `verify`.
        self._verify: str | bool = ca_cert if ca_cert is not None else True
        self._timeout = timeout
        self._idle_reconnect = idle_reconnect
        self._username = username
        self._password = password
        self._token: str | None = None
        self._lock = threading.Lock()
        self._current = 0
        self._watches: set[EtcdWatch] = set()
        self._closed = False
        self._tls = (ca_cert, cert, key)
        grpc_targets = [f"{h}:{p}" for _, h, p in (parse_endpoint(e, default_scheme) for e in endpoints)]
        self._watch_targets = list(watch_endpoints) or (grpc_targets if watch_grpc else [])
        self._watch_transport: WatchTransport | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint requests currently go to (diagnostics and tests)."""
        with self._lock:
            return self._endpoints[self._current].base

    @property
    def endpoints(self) -> list[str]:
        return [e.base for e in self._endpoints]

    # ----- transport -----

    def _advance(self, failed: int) -> None:
        """Move off endpoint `failed` (unless another thread already did)."""
        with self._lock:
            if self._current == failed:
                self._current = (failed + 1) % len(self._endpoints)
                log.info("etcd failover from=%s to=%s", self._endpoints[failed].base,
                         self._endpoints[self._current].base)

    def _pick(self) -> int:
        with self._lock:
            if self._closed:
                raise DatastoreError("etcd datastore is closed")
            return self._current

    def _headers(self) -> dict[str, str]:
        if self._username is None:
            return {}
        with self._lock:
            token = self._token
        if token is None:
            token = self._authenticate()
        return {"Authorization": token}

    def _authenticate(self) -> str:
        assert self._username is not None and self._password is not None
        body = {"name": self._username, "password": self._password}
        reply = self._call("auth/authenticate", body, idempotent=True, auth=False)
        token = str(reply.get("token", ""))
        if not token:
            raise DatastoreUnavailable("etcd authentication returned no token")
        with self._lock:
            self._token = token
        return token

    def _post_once(self, idx: int, path: str, body: dict[str, Any], auth: bool) -> dict[str, Any]:
        ep = self._endpoints[idx]
        # "hasleader": a member that knows it has no leader answers "no leader" at once (safe to retry
        # elsewhere) instead of letting the proposal hang until the timeout.
        headers = {"Grpc-Metadata-hasleader": "true", **(self._headers() if auth else {})}
        try:
            resp = ep.session.post(
                ep.url(path), json=body, timeout=self._timeout, headers=headers, verify=self._verify
            )
        except requests.RequestException as e:
            raise _Failure(f"{ep.base}: {e}", sent=not _never_sent(e)) from e
        if resp.status_code == 200:
            try:
                data: dict[str, Any] = resp.json()
            except ValueError as e:
                raise _Failure(f"{ep.base}: unreadable answer: {e}", sent=True) from e
            if "result" in data and isinstance(data["result"], dict):  # streamed RPCs (lease keepalive)
                result: dict[str, Any] = data["result"]
                return result
            return data
        code, message = error_of(resp)
        if code == GRPC_UNAUTHENTICATED and auth and self._username is not None:
            with self._lock:
                self._token = None
            raise _Failure(f"{ep.base}: {message}", sent=False)
        if code in (_GRPC_UNAVAILABLE, _GRPC_RESOURCE_EXHAUSTED) or resp.status_code == 503:
            unsent = "no leader" in message or code == _GRPC_RESOURCE_EXHAUSTED
            raise _Failure(f"{ep.base}: {message}", sent=not unsent)
        if code == _GRPC_DEADLINE_EXCEEDED or resp.status_code == 504:
            raise _Failure(f"{ep.base}: {message}", sent=True)
        raise _translate(code, message, path)

    def _call(
        self, path: str, body: dict[str, Any], *, idempotent: bool, auth: bool = True
    ) -> dict[str, Any]:
        """POST to the current endpoint, failing over as the module docstring describes."""
        deadline = time.monotonic() + self._timeout
        n = len(self._endpoints)
        errors: list[str] = []
        attempt = 0
        while True:
            idx = self._pick()
            try:
                return self._post_once(idx, path, body, auth)
            except _Failure as f:
                errors.append(str(f))
                self._advance(idx)
                if f.sent and not idempotent:
                    raise DatastoreUnavailable(
                        f"etcd write may or may not have been applied (the connection failed after the "
                        f"request was sent): {f}"
                    ) from f
            attempt += 1
            if attempt % n == 0:
                if time.monotonic() >= deadline:
                    raise DatastoreUnavailable(
                        f"no etcd endpoint answered within {self._timeout:g}s; last errors: "
                        + "; ".join(errors[-n:])
                    )
                time.sleep(min(0.05 * (2 ** (attempt // n - 1)), 0.5))

    # ----- reads -----

    def get(self, key: str) -> KV | None:
        reply = self._call("kv/range", {"key": b64(key)}, idempotent=True)
        kvs = reply.get("kvs") or []
        return _kv_from(kvs[0]) if kvs else None

    @staticmethod
    def _key_range(prefix: str) -> tuple[bytes, bytes]:
        """etcd's [key, range_end) for a prefix; the empty prefix is every key."""
        raw = prefix.encode()
        return (raw, _range_end(raw)) if raw else (b"\0", b"\0")

    def list(self, prefix: str) -> tuple[builtins.list[KV], int]:
        key, end = self._key_range(prefix)
        for _ in range(5):
            try:
                return self._list_pages(key, end)
            except _Compacted:
                continue  # compacted between pages: take a fresh snapshot
        raise DatastoreUnavailable(f"etcd list of {prefix!r} kept racing with compaction")

    def _list_pages(self, key: bytes, end: bytes) -> tuple[builtins.list[KV], int]:
        out: builtins.list[KV] = []
        revision: int | None = None
        start = key
        while True:
            body: dict[str, Any] = {"key": b64(start), "range_end": b64(end), "limit": _LIST_PAGE}
            if revision is not None:
                body["revision"] = revision
            reply = self._call("kv/range", body, idempotent=True)
            if revision is None:
                revision = int_field(reply.get("header", {}), "revision")
            kvs = reply.get("kvs") or []
            out.extend(_kv_from(d) for d in kvs)
            if not reply.get("more") or not kvs:
                return out, revision
            start = unb64(kvs[-1]["key"]) + b"\0"

    def current_revision(self) -> int:
        # The store revision is in every answer's header; ask about one key under tortie's root, which a
        # role limited to /calico/ may read (a range over every key would be refused to it).
        reply = self._call("kv/range", {"key": b64(_REVISION_PROBE_KEY), "count_only": True}, idempotent=True)
        return int_field(reply.get("header", {}), "revision")

    # ----- writes -----

    def commit(self, ops: Sequence[TxnOp]) -> builtins.list[KV]:
        checked = check_ops(ops)
        if not checked:
            return []
        compare: builtins.list[dict[str, Any]] = []
        success: builtins.list[dict[str, Any]] = []
        for o in checked:
            k = b64(o.key)
            if o.op == "create":
                compare.append({"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": 0})
            elif o.op in ("update", "delete"):
                compare.append({"key": k, "target": "CREATE", "result": "GREATER", "create_revision": 0})
                if o.expected_revision is not None:
                    compare.append(
                        {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": o.expected_revision}
                    )
            if o.text is None:
                success.append({"request_delete_range": {"key": k, "prev_kv": True}})
            else:
                put: dict[str, Any] = {"key": k, "value": b64(o.text), "prev_kv": True}
                if o.lease is not None:
                    put["lease"] = o.lease
                success.append({"request_put": put})
        failure = [{"request_range": {"key": b64(o.key)}} for o in checked]
        reply = self._call(
            "kv/txn", {"compare": compare, "success": success, "failure": failure}, idempotent=False
        )
        responses = reply.get("responses") or []
        if not reply.get("succeeded"):
            raise _failed_condition(checked, responses)
        revision = int_field(reply.get("header", {}), "revision")
        out: builtins.list[KV] = []
        for o, resp in zip(checked, responses, strict=True):
            if o.text is None:
                prev = (resp.get("response_delete_range", {}).get("prev_kvs") or [None])[0]
                if prev is None:
                    raise DatastoreError(f"etcd deleted {o.key!r} but did not return its previous value")
                out.append(_kv_from(prev))
            else:
                prev_kv = resp.get("response_put", {}).get("prev_kv")
                create_rev = int_field(prev_kv, "create_revision") if prev_kv else revision
                out.append(KV(o.key, decode_value(o.text), revision, create_rev, o.lease))
        return out

    def compact(self, revision: int) -> None:
        """Compact etcd's history before `revision` (watches from earlier revisions get RESYNC)."""
        revision = min(revision, self.current_revision())
        with contextlib.suppress(_Compacted):  # already compacted at or past that revision
            self._call("kv/compaction", {"revision": revision, "physical": True}, idempotent=True)

    # ----- leases -----

    def grant_lease(self, ttl: float) -> int:
        if ttl <= 0:
            raise UserError(f"lease TTL must be positive, got {ttl}")
        # A retried grant can leave an unused lease behind; it expires on its own after `ttl`.
        reply = self._call("lease/grant", {"TTL": max(1, math.ceil(ttl))}, idempotent=True)
        if reply.get("error"):
            raise DatastoreError(f"etcd refused the lease: {reply['error']}")
        return int_field(reply, "ID")

    def refresh_lease(self, lease: int) -> None:
        reply = self._call("lease/keepalive", {"ID": lease}, idempotent=True)
        if int_field(reply, "TTL") <= 0:
            raise lease_gone(lease)

    def revoke_lease(self, lease: int) -> None:
        self._call("lease/revoke", {"ID": lease}, idempotent=True)

    # ----- watches -----

    def _watch_source(self) -> WatchTransport:
        """The gateway (default), or gRPC to the members or to `watch_endpoints` (grpc-proxies)."""
        with self._lock:
            if self._watch_transport is None:
                if self._watch_targets:
                    from tortie.datastore._etcd_grpc import GrpcWatchSource

                    ca, cert, key = self._tls
                    self._watch_transport = GrpcWatchSource(
                        self._watch_targets, ca_cert=ca, cert=cert, key=key, token=self._token_for_watch,
                        drop_token=self._drop_token,
                    )
                else:
                    self._watch_transport = GatewayWatchTransport(self)
            return self._watch_transport

    def _token_for_watch(self) -> str | None:
        return self._headers().get("Authorization")

    def watch(self, prefix: str, after_revision: int) -> Watch:
        self._pick()  # raises if closed
        w = EtcdWatch(self._watch_source(), self._key_range(prefix), after_revision, self._timeout,
                      self._forget_watch)
        with self._lock:
            self._watches.add(w)
        w.start()
        return w.queue

    def _forget_watch(self, w: EtcdWatch) -> None:
        with self._lock:
            self._watches.discard(w)

    def _endpoint_name(self, idx: int) -> str:
        return self._endpoints[idx].base

    def _drop_token(self) -> None:
        with self._lock:
            self._token = None

    def _open_stream(self, idx: int, body: dict[str, Any]) -> requests.Response:
        ep = self._endpoints[idx]
        headers = {"Grpc-Metadata-hasleader": "true", **self._headers()}
        return ep.session.post(
            ep.url("watch"), json=body, stream=True, headers=headers, verify=self._verify,
            timeout=(self._timeout, self._idle_reconnect),
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watches = list(self._watches)
            self._watches.clear()
        for w in watches:
            w.queue.close()
        closer = getattr(self._watch_transport, "close", None)
        if closer is not None:
            closer()
        for ep in self._endpoints:
            with contextlib.suppress(Exception):
                ep.session.close()


def _translate(code: int, message: str, path: str) -> Exception:
    if "lease not found" in message:
        return LeaseExpired(f"etcd: {message.removeprefix('etcdserver: ')} (expired or revoked)")
    if code == _GRPC_OUT_OF_RANGE and "compacted" in message:
        return _Compacted(message)
    refused = ("authentication failed", "user name is empty", "permission denied", "auth token")
    if code in (GRPC_UNAUTHENTICATED, _GRPC_PERMISSION_DENIED) or any(r in message for r in refused):
        return DatastoreUnavailable(
            f"etcd refused access on {path} ({message}); check the username/password or client certificate"
        )
    return DatastoreError(f"etcd {path}: {message}")


def _failed_condition(checked: Sequence[CheckedOp], responses: Sequence[dict[str, Any]]) -> DatastoreError:
    """The error the first failing op would raise, from the failure branch's read-back."""
    for o, resp in zip(checked, responses, strict=False):
        kvs = resp.get("response_range", {}).get("kvs") or []
        refused = violation(o, _kv_from(kvs[0]).mod_revision if kvs else None)
        if refused is not None:
            return refused
    return DatastoreError("etcd transaction condition failed but every key looks as expected (a race)")


__all__ = ["EtcdDatastore", "parse_endpoint"]
