"""Datastore URLs: pick and open a backend from one string.

    sqlite:///abs/path/datastore.db           the embedded default (path must be absolute; the
                                              SQLAlchemy spelling sqlite:////abs/path.db is the same)
    memory://                                 a new, empty in-process store (tests, demos)
    etcd://h1:2379,h2:2379[?options]          etcd over http; `etcds://` means https
        options: cacert=PATH  cert=PATH  key=PATH  username=NAME  timeout=SECONDS
                 password_file=PATH  (or the password in $TORTIE_DATASTORE_PASSWORD, or password=SECRET)
                 watch=grpc (watches over gRPC)  watch_endpoints=H:P[;H:P..] (watches via etcd grpc-proxy)

`open_datastore(url=None)` opens the URL; with None it uses `default_datastore_url()`, which is
`$TORTIE_DATASTORE` when set, else `sqlite:///var/lib/tortie/datastore.db` when running as root,
else `sqlite://$XDG_STATE_HOME/tortie/datastore.db` (XDG_STATE_HOME defaults to ~/.local/state).
A malformed URL raises `UserError` naming the URL and what was wrong.

Credentials stay off command lines (where any local user reads them through `ps`): the etcd password
comes from `password_file=` (a file only its owner can read: mode 0600 or 0400, else refused), else
from `$TORTIE_DATASTORE_PASSWORD` (a process's environment is readable only by its owner and root),
else from `password=` in the URL (accepted, but then the URL itself is a secret). Exactly one source
may be given in the URL. `redact_url` hides a password for logs and messages, and every error
message here shows the redacted URL; `credentials_to_environment(url)` moves a `password=` out of a
URL into the environment variable, for a parent that starts another tortie process (the node
service starting the agent).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from tortie.common.errors import UserError
from tortie.datastore.api import Datastore

ENV_VAR = "TORTIE_DATASTORE"
PASSWORD_ENV_VAR = "TORTIE_DATASTORE_PASSWORD"
ROOT_DEFAULT_PATH = Path("/var/lib/tortie/datastore.db")
_ETCD_OPTIONS = frozenset(
    {"cacert", "cert", "key", "username", "password", "password_file", "timeout", "watch", "watch_endpoints"}
)
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
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:  # user:secret@host is refused, but must not be echoed either
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    if not parts.query and netloc == parts.netloc:
        return url
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return parts._replace(netloc=netloc, query=urlencode(query, safe="/:,*")).geturl()


def credentials_to_environment(url: str) -> tuple[str, dict[str, str]]:
    """(the URL without `password=`, environment variables that carry it) — for starting another
    tortie process without the secret in its argv. URLs without a password come back unchanged."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secrets = [v for k, v in pairs if k == "password"]
    if not secrets:
        return url, {}
    rest = [(k, v) for k, v in pairs if k != "password"]
    return parts._replace(query=urlencode(rest, safe="/:,")).geturl(), {PASSWORD_ENV_VAR: secrets[-1]}


def read_password_file(path: str, shown: str) -> str:
    """The password in `path` (first line, surrounding whitespace removed); the file must be readable
    by its owner only."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise UserError(
            f"datastore URL {shown!r}: cannot read password_file {path!r}: {e.strerror or e}"
        ) from e
    try:
        mode = os.fstat(fd).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UserError(
                f"datastore URL {shown!r}: password_file {path!r} has mode {stat.S_IMODE(mode):04o}; it must "
                f"be readable by its owner only (chmod 600 {path})"
            )
        with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as fh:
            lines = fh.read().splitlines()
    finally:
        os.close(fd)
    password = lines[0].strip() if lines else ""
    if not password:
        raise UserError(f"datastore URL {shown!r}: password_file {path!r} is empty")
    return password


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
    if rest.startswith("//") and not rest.startswith("///"):
        rest = rest[1:]  # sqlite:////abs/path.db, the SQLAlchemy spelling of an absolute path
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
            f"datastore URL {shown!r}: pass credentials as ?username=..&password_file=.., not user@host"
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
    password = _password(options, shown)
    if (password is None) != ("username" not in options):
        raise UserError(
            f"datastore URL {shown!r}: etcd authentication needs a username and a password "
            f"(password_file=PATH or ${PASSWORD_ENV_VAR})"
        )
    watch = options.get("watch", "gateway")
    if watch not in ("gateway", "grpc"):
        raise UserError(f"datastore URL {shown!r}: watch must be gateway or grpc")
    watch_endpoints = [e for e in options.get("watch_endpoints", "").replace(";", ",").split(",") if e]
    for e in watch_endpoints:
        parse_endpoint(e, "http")
    return EtcdDatastore(
        endpoints,
        watch_grpc=watch == "grpc",
        watch_endpoints=watch_endpoints,
        ca_cert=options.get("cacert"),
        cert=options.get("cert"),
        key=options.get("key"),
        username=options.get("username"),
        password=password,
        timeout=timeout,
    )


def _password(options: dict[str, str], shown: str) -> str | None:
    """The etcd password from the one source the URL names, else the environment (with a username)."""
    if "password" in options and "password_file" in options:
        raise UserError(f"datastore URL {shown!r}: give password_file= or password=, not both")
    if "password_file" in options:
        return read_password_file(options["password_file"], shown)
    if "password" in options:
        return options["password"]
    if "username" in options:
        return os.environ.get(PASSWORD_ENV_VAR) or None
    return None
