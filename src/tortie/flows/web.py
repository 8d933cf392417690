"""The web view: a page of live flows, nodes, workloads and policies, and its JSON API (Starlette).

    GET /                 the page (static/index.html: plain HTML, CSS and JavaScript, no build step)
    GET /api/flows        {"flows": [record, ...], "skipped": {...}}, newest first; query filters as
                          `tortie flows`: action, policy, namespace, endpoint, since, staged, limit
    GET /api/nodes        {"nodes": [{"name", "ipv4Address", "ipv6Address", "asNumber", "bgp": [...]}]}
    GET /api/workloads    {"workloads": [...]}
    GET /api/policies     {"policies": [{"kind", "namespace", "name", "tier", "order", "selector",
                          "stagedAction", "hits": {"allow": n, "deny": n, "pass": n}}]}
    GET /api/trace        `tortie policy trace -o json` for src=IP, dst=IP, protocol, port

Errors are JSON `{"error": "..."}` with 400 (a bad filter), 503 (the datastore is unreachable), 500.

Exposure (`check_listen`): loopback by default. Another address needs `allow_remote` and a token:
every request must then carry `Authorization: Bearer <token>` or the `tortie-ui` cookie, which
opening `/?token=<token>` once sets (HttpOnly, SameSite=Strict); tokens are compared in constant
time. Requests whose Host header names another host are refused on a loopback listener (a web page
elsewhere cannot reach the API through DNS rebinding). The server is uvicorn on a socket bound
before it starts (`serve` returns the port, 0 picks a free one).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tortie.common.errors import DatastoreError, UserError
from tortie.flows.ui_sources import UiSources

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "static" / "index.html"
COOKIE = "tortie-ui"
_LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(host: str, allow_remote: bool, token: str | None) -> None:
    """UserError unless the listen address is loopback, or remote access is asked for with a token."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise UserError(f"--listen {host}: the web view listens on loopback only unless --allow-remote is "
                        "given (it shows your network's flows and policies)")
    if not token or len(token) < 16:
        raise UserError("--allow-remote needs a token of at least 16 characters (--token-file FILE or "
                        "$TORTIE_UI_TOKEN): every request must present it")


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` or `PORT` (loopback)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--listen {text!r}: give HOST:PORT (e.g. 127.0.0.1:8080)")
    return host, int(port)


class _Guard:
    """Host-header check (loopback listeners) and token check (remote listeners)."""

    def __init__(self, app: ASGIApp, token: str | None, loopback: bool) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.loopback:
            host = (request.headers.get("host") or "").rpartition(":")[0] or request.headers.get("host", "")
            if not is_loopback(host):
                await JSONResponse({"error": "this view answers on loopback names only"}, 403)(scope, receive,
                                                                                               send)
                return
        if self.token is not None:
            offered = request.query_params.get("token")
            if offered is not None and request.url.path == "/" and self._ok(offered):
                response: Response = RedirectResponse("/", 303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
                await response(scope, receive, send)
                return
            bearer = request.headers.get("authorization", "")
            cookie = request.cookies.get(COOKIE, "")
            presented = bearer[7:] if bearer.lower().startswith("bearer ") else cookie
            if not self._ok(presented):
                await JSONResponse({"error": "a token is required (Authorization: Bearer, or open /?token=)"},
                                   401)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _ok(self, presented: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(presented.encode(), self.token.encode())


def _api(produce: Callable[[Request], dict[str, Any]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            return JSONResponse(await run_in_threadpool(produce, request))
        except UserError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        except DatastoreError as exc:
            return JSONResponse({"error": f"datastore: {exc}"}, 503)
        except Exception as exc:  # the page shows it; the server goes on
            log.exception("web view request failed path=%s", request.url.path)
            return JSONResponse({"error": f"internal error: {exc}"}, 500)

    return endpoint


def make_app(sources: UiSources, *, token: str | None = None, loopback: bool = True) -> ASGIApp:
    async def page(_request: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html")

    routes = [
        Route("/", page),
        Route("/api/flows", _api(lambda r: sources.flows(dict(r.query_params)))),
        Route("/api/nodes", _api(lambda r: sources.nodes())),
        Route("/api/workloads", _api(lambda r: sources.workloads())),
        Route("/api/policies", _api(lambda r: sources.policies())),
        Route("/api/trace", _api(lambda r: sources.trace(dict(r.query_params)))),
    ]
    return _Guard(Starlette(routes=routes), token, loopback)


class WebServer:
    """uvicorn serving `app` on a socket bound now (see the module docstring)."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.sock.listen(128)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def run(self) -> None:
        """Serve until `stop()` (blocks)."""
        self.server.run(sockets=[self.sock])

    def start(self) -> WebServer:
        self._thread = threading.Thread(target=self.run, name="tortie-ui", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
