"""Datastore URLs: pick and open a backend from one string.

    sqlite:///abs/path/datastore.db           the embedded default (path must be absolute)
    memory://                                 a new, empty in-process store (tests, demos)
    etcd://h1:2379,h2:2379[?options]          etcd over http; `etcds://` means https
        options: cacert=PATH  cert=PATH  key=PATH  username=NAME  password=SECRET  timeout=SECONDS

`open_datastore(url=None)` opens the URL; with None it uses `default_datastore_url()`, which is
`$TORTIE_DATASTORE` when set, else `sqlite:///var/lib/tortie/datastore.db` when running as root,
else `sqlite://$XDG_STATE_HOME/tortie/datastore.db` (XDG_STATE_HOME defaults to ~/.local/state).
A malformed URL raises `UserError` naming the URL and what was wrong. `redact_url` hides a password
for logs and messages.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from tortie.common.errors import UserError
from tortie.datastore.api import Datastore

ENV_VAR = "TORTIE_DATASTORE"
ROOT_DEFAULT_PATH = Path("/var/lib/tortie/datastore.db")
_ETCD_OPTIONS = frozenset({"cacert", "cert", "key", "username", "password", "timeout"})
_FORMS = "sqlite:///abs/path.db, memory://, etcd://host:port[,host:port...] or etcds://..."


def default_sqlite_path() -> Path:
    """Where the embedded store lives when nothing is configured."""
    if os.geteuid() == 0:
        return ROOT_DEFAULT_PATH
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "tortie" / "datastore.db"


def default_datastore_url() -> str:
    """The URL `open_datastore(None)` opens: $TORTIE_DATASTORE, else the default sqlite file."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    return f"sqlite://{default_sqlite_path()}"


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***` (for logs and error messages)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return parts._replace(query=urlencode(query, safe="/:,*")).geturl()


def open_datastore(url: str | None = None) -> Datastore:
    """Open the datastore named by `url` (see the module docstring)."""
    text = default_datastore_url() if url is None else url.strip()
    if "://" not in text:
        raise UserError(f"datastore URL {redact_url(text)!r} has no scheme; expected one of: {_FORMS}")
    scheme = text.split("://", 1)[0].lower()
    if scheme == "sqlite":
        return _open_sqlite(text)
    if scheme == "memory":
        return _open_memory(text)
    if scheme in ("etcd", "etcds"):
        return _open_etcd(text, https=scheme == "etcds")
    raise UserError(
        f"datastore URL {redact_url(text)!r}: unknown scheme {scheme!r}; expected one of: {_FORMS}"
    )


def _open_sqlite(text: str) -> Datastore:
    from tortie.datastore.sqlite import SqliteDatastore

    rest = text.split("://", 1)[1]
    if not rest.startswith("/") or rest.startswith("//"):
        raise UserError(
            f"datastore URL {text!r}: sqlite needs an absolute path, written sqlite:///abs/path.db"
        )
    if "?" in rest or "#" in rest:
        raise UserError(f"datastore URL {text!r}: sqlite URLs take no options")
    if rest.endswith("/"):
        raise UserError(f"datastore URL {text!r}: the path names a directory, not a database file")
    return SqliteDatastore(Path(rest))


def _open_memory(text: str) -> Datastore:
    from tortie.datastore.memory import MemoryDatastore

    if text.split("://", 1)[1] not in ("", "/"):
        raise UserError(f"datastore URL {text!r}: memory:// takes no host, path or options")
    return MemoryDatastore()


def _open_etcd(text: str, *, https: bool) -> Datastore:
    from tortie.datastore.etcd import EtcdDatastore, parse_endpoint

    shown = redact_url(text)
    parts = urlsplit(text)
    if parts.path not in ("", "/") or parts.fragment:
        raise UserError(f"datastore URL {shown!r}: etcd URLs have no path; list hosts as host:port,host:port")
    if not parts.netloc:
        raise UserError(f"datastore URL {shown!r}: no etcd host given (etcd://host:2379)")
    if "@" in parts.netloc:
        raise UserError(
            f"datastore URL {shown!r}: pass credentials as ?username=..&password=.., not user@host"
        )
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name not in _ETCD_OPTIONS:
            raise UserError(
                f"datastore URL {shown!r}: unknown option {name!r}; known: {', '.join(sorted(_ETCD_OPTIONS))}"
            )
        if name in options:
            raise UserError(f"datastore URL {shown!r}: option {name!r} given twice")
        options[name] = value
    scheme = "https" if https else "http"
    endpoints = []
    for host in parts.netloc.split(","):
        if not host:
            raise UserError(f"datastore URL {shown!r}: empty host in the host list")
        if "/" in host:
            raise UserError(f"datastore URL {shown!r}: hosts are host:port, without a scheme")
        s, h, p = parse_endpoint(host, scheme)
        endpoints.append(f"{s}://[{h}]:{p}" if ":" in h else f"{s}://{h}:{p}")
    timeout = 5.0
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise UserError(f"datastore URL {shown!r}: timeout must be a positive number of seconds")
    if not https and any(k in options for k in ("cacert", "cert", "key")):
        raise UserError(f"datastore URL {shown!r}: TLS options need the etcds:// scheme")
    for name in ("cacert", "cert", "key"):
        if name in options and not Path(options[name]).is_file():
            raise UserError(f"datastore URL {shown!r}: {name} file {options[name]!r} does not exist")
    return EtcdDatastore(
        endpoints,
        ca_cert=options.get("cacert"),
        cert=options.get("cert"),
        key=options.get("key"),
        username=options.get("username"),
        password=options.get("password"),
        timeout=timeout,
    )
