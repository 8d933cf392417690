"""An etcd cluster inside the lab: members in their own namespaces on the fabric, plus a relay.

    <lab>-e1 .. <lab>-eN   eth0 = <subnet>.2 .. .(N+1)   etcd (Debian etcd-server 3.4) under a keeper
                           (tortie.lab.keeper: restarted when it exits, as systemd would)
                           client :2379 on eth0 and 127.0.0.1, peers :2380 on eth0
    root namespace         `python -m tortie.lab.relay` 127.0.0.1:<free> -> each member's 127.0.0.1:2379

Hosts use `etcd://<subnet>.2:2379,...` over the fabric, like hosts of a real cluster; commands in the
root namespace use `etcd://127.0.0.1:<p1>,...` through the relay (see relay.py). Data directories and
the keepers' state files (`<name>.keeper.json`) live under `<workdir>/etcd` (removed by `down()`).
Every keeper is recorded with role `etcd/<name>`, the relay with `relay`, before anything waits on them.

`start_cluster` returns once every member answers `/health` through the relay. Two ways to lose one:
`kill_member` SIGKILLs its keeper, and with it the member (a machine lost: it stays down, the relay
closes its port); `member_pid` names the etcd process itself, which `tortie lab kill eN etcd`
SIGKILLs as a crash (its keeper starts it again on the same data directory).
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tortie.common.ipfamily import family_of
from tortie.lab.errors import LabError
from tortie.lab.etcd_security import (
    TlsFiles,
    client_context,
    enable_auth,
    make_tls_files,
    post_json,
    write_secret,
)
from tortie.lab.keeper import child_pid
from tortie.lab.lab import Lab
from tortie.lab.relay import start_relay

CLIENT_PORT = 2379
PEER_PORT = 2380
FIRST_INDEX = 2


@dataclass(frozen=True)
class EtcdEndpoints:
    inner_url: str
    client_url: str
    relay_ports: list[int]


def member_name(i: int) -> str:
    return f"e{i + 1}"


def member_role(name: str) -> str:
    return f"etcd/{name}"


def keeper_state(lab: Lab, name: str) -> Path:
    return lab.workdir / "etcd" / f"{name}.keeper.json"


def kill_member(lab: Lab, name: str) -> int:
    """Lose etcd member `name` (e1, e2, ...) for good: SIGKILL its keeper, which takes the member down
    with it; returns the keeper's pid. Its record stays (`down()` skips processes that are gone)."""
    pid = lab.processes.signal(member_role(name), signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while member_pid(lab, name) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    return pid


def member_pid(lab: Lab, name: str) -> int | None:
    """The pid of member `name`'s etcd process, None while it is not running (confirmed by /proc)."""
    record = lab.processes.by_role(member_role(name))
    if record is None or not lab.processes.alive(record):
        return None
    return child_pid(keeper_state(lab, name))


def tls_files(lab: Lab) -> TlsFiles | None:
    """The certificates of a cluster started with `tls=True`, None for a plain one."""
    found = TlsFiles.in_dir(lab.workdir / "etcd" / "tls")
    return found if found.ca_cert.exists() else None


def member_healthy(lab: Lab, name: str) -> bool:
    """Member `name` answers /health (through the relay, from the root namespace)."""
    record = lab.state.datacenter
    index = int(name[1:]) - 1
    if record is None or not 0 <= index < len(record.etcd_ports):
        return False
    return healthy_at(record.etcd_ports[index], tls_files(lab))


def start_cluster(lab: Lab, members: int = 3, timeout: float = 30.0, *, tls: bool = False) -> EtcdEndpoints:
    """Start the members and the relay; with `tls`, HTTPS with client certificates and authentication
    (user `tortie`, password in `<workdir>/etcd/etcd-password`, READWRITE under /calico/)."""
    names = [member_name(i) for i in range(members)]
    records = [lab.fabric.add_appliance(name, FIRST_INDEX + i, "etcd") for i, name in enumerate(names)]
    ips = [family_of(r.ip()).bracketed(r.ip()) for r in records]  # "[fd00::2]" on an IPv6-only fabric
    data_root = lab.records.record_tree(lab.workdir / "etcd")
    files = None
    if tls:
        every_ip = ["127.0.0.1", *(ip for r in records for ip in (a.split("/")[0] for a in r.addresses))]
        files = make_tls_files(data_root / "tls", every_ip)
    scheme = "https" if files else "http"
    secure = [] if files is None else [
        *("--cert-file", str(files.server_cert), "--key-file", str(files.server_key)),
        *("--trusted-ca-file", str(files.ca_cert), "--client-cert-auth"),
    ]
    cluster = ",".join(f"{n}=http://{ip}:{PEER_PORT}" for n, ip in zip(names, ips, strict=True))
    for name, ip in zip(names, ips, strict=True):
        lab.processes.start(
            name,
            [
                *(sys.executable, "-m", "tortie.lab.keeper", str(keeper_state(lab, name)), "--"),
                "etcd",
                "--name",
                name,
                "--data-dir",
                str(data_root / name),
                "--listen-client-urls",
                f"{scheme}://{ip}:{CLIENT_PORT},{scheme}://127.0.0.1:{CLIENT_PORT}",
                "--advertise-client-urls",
                f"{scheme}://{ip}:{CLIENT_PORT}",
                "--listen-peer-urls",
                f"http://{ip}:{PEER_PORT}",
                "--initial-advertise-peer-urls",
                f"http://{ip}:{PEER_PORT}",
                "--initial-cluster",
                cluster,
                "--initial-cluster-token",
                lab.name,
                "--initial-cluster-state",
                "new",
                "--logger",
                "zap",
                "--log-level",
                "warn",
                *secure,
            ],
            role=member_role(name),
        )
    targets = [f"{r.netns}:{CLIENT_PORT}" for r in records]
    ports = start_relay(lab, targets, lab.workdir / "relay.json", timeout=timeout)
    deadline = time.monotonic() + timeout
    pending = set(range(members))
    while pending:
        for i in sorted(pending):
            if healthy_at(ports[i], files):
                pending.discard(i)
        if not pending:
            break
        if time.monotonic() > deadline:
            raise LabError(
                f"etcd members {', '.join(names[i] for i in sorted(pending))} not healthy after "
                f"{timeout:.0f}s (logs under {lab.workdir}/logs)"
            )
        time.sleep(0.1)
    options = ""
    if files is not None:
        password = secrets.token_hex(16)
        context = client_context(files)

        def post(path: str, body: dict[str, object]) -> dict[str, object] | None:
            for port in ports:
                reply = post_json(f"https://127.0.0.1:{port}", path, body, context=context)
                if reply is not None:
                    return reply
            return None

        root_password = secrets.token_hex(16)
        enable_auth(post, root_password, password)
        write_secret(data_root / "root-password", root_password)
        password_file = write_secret(data_root / "etcd-password", password)
        options = "?" + "&".join([*files.url_options(), "username=tortie", f"password_file={password_file}"])
    prefix = "etcds://" if files else "etcd://"
    return EtcdEndpoints(
        inner_url=prefix + ",".join(f"{ip}:{CLIENT_PORT}" for ip in ips) + options,
        client_url=prefix + ",".join(f"127.0.0.1:{p}" for p in ports) + options,
        relay_ports=ports,
    )


def healthy_at(port: int, tls: TlsFiles | None = None) -> bool:
    """The member behind relay port `port` answers /health (HTTPS with `tls`'s client pair)."""
    scheme, context = ("https", client_context(tls)) if tls is not None else ("http", None)
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/health", timeout=1.0,
                                    context=context) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")
    except (OSError, ValueError):
        return False
