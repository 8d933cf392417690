"""What the installed `tortie` / `tortie-ipam` executables run: hand the call to the node's CNI
service, or serve it in this process when the service cannot take it.

    runtime --(env, stdin)--> launch(plugin)
        service_socket (netconf; default DEFAULT_SOCKET, "" = never) answers, owned by root?
          yes: send env + stdin (service_wire), print its stdout, exit with its code
          no (no socket, refused, not root's):  serve in-process (tortie.cni.main.serve), logging why
        the connection closed with no answer (the service died mid-call): serve in-process too; an
          ADD there replaces whatever the dead call left (see docs/reference/cni.md, "Repeated and
          reused container IDs")
        no answer within service_timeout_seconds, or an answer that is not a tortie reply:
          CNI error 11 (try again later); nothing is retried in-process, because the service may
          still be working on the call (it undoes an ADD whose caller is gone)

Start-up is the point of this module: it imports only `_socket`, `_json` (the C halves, without
`re`) and `tortie.cni.service_wire`, and parses stdin only when it names the service's settings,
so a call through the service costs an interpreter start and a few system calls. The in-process
path imports the plugin on demand.

Environment forwarded to the service: every CNI_* variable, PATH (delegated IPAM plugins run with
it) and TORTIE_DATASTORE (the default datastore when the configuration names none).
"""

from __future__ import annotations

import _socket
import os
import sys

from tortie.cni import service_wire as wire

DEFAULT_SOCKET = "/run/tortie/cni/service.sock"
DEFAULT_TIMEOUT = 30.0
FORWARDED = ("PATH", "TORTIE_DATASTORE")
_SO_PEERCRED = 17
_SETTINGS = (b'"service_socket"', b'"service_timeout_seconds"')


def settings(stdin: bytes) -> tuple[str, float]:
    """(socket path, timeout) from the network configuration; the defaults when it does not say or
    cannot be read (the service, or the in-process path, reports what is wrong with it)."""
    path, timeout = DEFAULT_SOCKET, DEFAULT_TIMEOUT
    if not any(key in stdin for key in _SETTINGS):
        return path, timeout
    try:
        import _json

        class _Decoding:
            strict = True
            object_hook = object_pairs_hook = None
            parse_float, parse_int, parse_constant = float, int, float

        text = stdin.decode()
        start = len(text) - len(text.lstrip())
        conf, _end = _json.make_scanner(_Decoding())(text, start)  # type: ignore[arg-type]
    except Exception:
        return path, timeout
    if isinstance(conf, dict):
        if isinstance(conf.get("service_socket"), str):
            path = conf["service_socket"]
        value = conf.get("service_timeout_seconds")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            timeout = float(value)
    return path, timeout


def read_stdin(limit: int) -> bytes:
    """stdin up to `limit` + 1 bytes (enough to tell that it is over the limit)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = os.read(0, min(1 << 16, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class ServiceGone(Exception):
    """The service never got the request, or went away before answering: serve it here."""


class ServiceFailed(Exception):
    """The service got the request but gave no usable answer: report CNI error 11."""


def _recv_exactly(sock: _socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 16))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def forward(path: str, timeout: float, request: bytes) -> tuple[int, bytes]:
    """Send `request` to the service at `path`; (exit code, stdout) of its reply."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise ServiceGone(f"no CNI service at {path} ({exc.strerror or exc})") from None
        cred = sock.getsockopt(_socket.SOL_SOCKET, _SO_PEERCRED, 12)
        owner = int.from_bytes(cred[4:8], sys.byteorder)
        if owner not in (0, os.geteuid()):
            raise ServiceGone(
                f"the CNI service socket {path} is served by uid {owner}, not root; not using it"
            )
        try:
            sock.sendall(request)
            sock.shutdown(_socket.SHUT_WR)
            header = _recv_exactly(sock, wire.HEADER)
        except TimeoutError:
            raise ServiceFailed(f"the CNI service at {path} did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise ServiceGone(f"the CNI service at {path} went away ({exc.strerror or exc})") from None
        if len(header) < wire.HEADER:
            if not header:
                raise ServiceGone(f"the CNI service at {path} closed the connection without answering")
            raise ServiceFailed(f"the CNI service at {path} answered {header!r}, not a tortie CNI reply")
        try:
            length = wire.payload_length(header, wire.REPLY_MAGIC, wire.MAX_REPLY)
            payload = _recv_exactly(sock, length)
            if len(payload) < length:
                raise ServiceGone(f"the CNI service at {path} went away while answering")
            return wire.decode_reply(payload)
        except TimeoutError:
            raise ServiceFailed(
                f"the CNI service at {path} did not finish its answer in {timeout:g} s"
            ) from None
        except wire.WireError as exc:
            raise ServiceFailed(
                f"the CNI service at {path} answered something that is not a tortie CNI reply ({exc}); "
                "check that the socket belongs to `tortie node run`"
            ) from None
    finally:
        sock.close()


def _failure(stdin: bytes, detail: str) -> int:
    import json

    from tortie.cni.errors import TRY_AGAIN_LATER, CniError
    from tortie.cni.netconf import LATEST_VERSION, SUPPORTED_VERSIONS

    version = LATEST_VERSION
    try:
        asked = json.loads(stdin).get("cniVersion")
        version = asked if asked in SUPPORTED_VERSIONS else version
    except Exception:
        pass
    error = CniError(TRY_AGAIN_LATER, "the node's CNI service gave no usable answer; try again later", detail)
    sys.stdout.write(json.dumps(error.to_wire(version)) + "\n")
    sys.stderr.write(f"tortie CNI: {detail}\n")
    return 1


def launch(plugin: str) -> int:
    """Serve one CNI call of `plugin` (see the module docstring); returns the exit code."""
    env = os.environ
    stdin = read_stdin(wire.MAX_REQUEST)
    path, timeout = settings(stdin)
    reason = ""
    if path and len(stdin) < wire.MAX_REQUEST:
        forwarded = {k: v for k, v in env.items() if k.startswith("CNI_") or k in FORWARDED}
        try:
            code, stdout = forward(path, timeout, wire.encode_request(plugin, forwarded, stdin))
        except ServiceGone as exc:
            reason = f"{exc}; serving this call in-process"
        except ServiceFailed as exc:
            return _failure(stdin, str(exc))
        else:
            out = sys.stdout.buffer
            out.write(stdout)
            out.flush()
            return code
    from tortie.cni.main import serve

    return serve(plugin, env, stdin, notice=reason)
