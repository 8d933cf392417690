"""TLS and authentication for an etcd cluster: certificates made with openssl, users and roles set up
through etcd's JSON gateway. Used by the lab (`tortie lab up --datastore etcd --etcd-tls`) and by the
loopback clusters of tests and benchmarks (tortie.testing.etcd_cluster).

    make_tls_files(dir, ips)       a throwaway CA (ca.pem), a server pair valid for `ips` (and
                                   localhost) and a client pair; keys 0600 (TlsFiles.in_dir(dir))
    client_context(tls)            an SSLContext trusting the CA and presenting the client pair
    post_json(base, path, body)    one gateway call (`https://127.0.0.1:2379` + `/v3/auth/...`);
                                   None when the member did not answer
    add_user(post, name, password, prefix)   a user and a role of the same name allowed READWRITE
                                   (or `permission`) on keys under `prefix`; grant() adds prefixes
    enable_auth(post, root_password, tortie_password)   `root` (role root) and `tortie` (READWRITE
                                   under /calico/ and /tortie/: tortie's Kubernetes kinds live under
                                   /tortie/kubernetes/), authentication on; returns root's token

The client certificate has no CommonName: with authentication on, etcd 3.4's gateway refuses a client
certificate that has one (it would be taken as the user), so clients identify by organisation only
and authenticate by username and password (`?username=tortie&password_file=...` in tortie's URL).
`post` is any callable `(path, body) -> dict | None` (e.g. trying each live member in turn).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tortie.model.kinds import KUBERNETES_ROOT

Post = Callable[[str, dict[str, object]], "dict[str, object] | None"]
DATASTORE_PREFIXES = ("/calico/", KUBERNETES_ROOT.removesuffix("kubernetes/"))
"""Where tortie keeps its data: Calico's tree, and /tortie/ (the Kubernetes kinds)."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS-enabled cluster: the CA, the server pair and a client pair."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def in_dir(cls, directory: Path) -> TlsFiles:
        """The files `make_tls_files(directory)` wrote."""
        return cls(ca_cert=directory / "ca.pem", server_cert=directory / "server.pem",
                   server_key=directory / "server.key", client_cert=directory / "client.pem",
                   client_key=directory / "client.key")

    def url_options(self) -> list[str]:
        """tortie datastore URL options presenting these files (tortie.datastore.url)."""
        return [f"cacert={self.ca_cert}", f"cert={self.client_cert}", f"key={self.client_key}"]


def make_tls_files(directory: Path, ips: Sequence[str] = ("127.0.0.1",)) -> TlsFiles:
    """Generate a CA, a server certificate valid for `ips` and localhost, and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=tortie-test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    names = ",".join([*(f"IP:{ipaddress.ip_address(ip)}" for ip in ips), "DNS:localhost"])
    ext = directory / "server.ext"
    ext.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth,clientAuth\n")
    cext = directory / "client.ext"
    cext.write_text("extendedKeyUsage=clientAuth\n")
    for name, extfile, subject in (
        ("server", ext, "/CN=tortie-test-server"), ("client", cext, "/O=tortie-test/OU=client")
    ):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", str(extfile), "-out", f"{name}.pem")
    for p in directory.glob("*.key"):
        p.chmod(0o600)
    return TlsFiles.in_dir(directory)


def client_context(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
    ctx.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    return ctx


def post_json(base: str, path: str, body: dict[str, object], *, context: ssl.SSLContext | None = None,
              token: str | None = None, timeout: float = 2.0) -> dict[str, object] | None:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token
    req = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            data = json.loads(resp.read().decode())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return data if isinstance(data, dict) else None


def _call(post: Post, path: str, body: dict[str, object]) -> dict[str, object]:
    reply = post(path, body)
    if reply is None:
        raise RuntimeError(f"etcd {path} failed (see the members' logs)")
    return reply


def grant(post: Post, role: str, prefix: str, permission: str = "READWRITE") -> None:
    """Role `role` may `permission` (READ, WRITE, READWRITE) keys under `prefix`."""
    raw = prefix.encode()
    end = raw[:-1] + bytes([raw[-1] + 1])
    perm = {"permType": permission, "key": base64.b64encode(raw).decode(),
            "range_end": base64.b64encode(end).decode()}
    _call(post, "/v3/auth/role/grant", {"name": role, "perm": perm})


def add_user(post: Post, name: str, password: str, *, prefix: str, permission: str = "READWRITE") -> None:
    """A user with a role of the same name allowed `permission` (READ, WRITE, READWRITE) on `prefix`."""
    _call(post, "/v3/auth/role/add", {"name": name})
    grant(post, name, prefix, permission)
    _call(post, "/v3/auth/user/add", {"name": name, "password": password})
    _call(post, "/v3/auth/user/grant", {"user": name, "role": name})


def write_secret(path: Path, text: str) -> Path:
    """`text` in a new file readable by its owner only (0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return path


def enable_auth(post: Post, root_password: str, tortie_password: str) -> str:
    """Users `root` and `tortie` (READWRITE under DATASTORE_PREFIXES), authentication on; root's token."""
    _call(post, "/v3/auth/user/add", {"name": "root", "password": root_password})
    _call(post, "/v3/auth/user/grant", {"user": "root", "role": "root"})
    first, *more = DATASTORE_PREFIXES
    add_user(post, "tortie", tortie_password, prefix=first)
    for prefix in more:
        grant(post, "tortie", prefix)
    _call(post, "/v3/auth/enable", {})
    reply = _call(post, "/v3/auth/authenticate", {"name": "root", "password": root_password})
    return str(reply["token"])
