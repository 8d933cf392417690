"""The node's CNI service and the launcher that talks to it (no root: fakes behind the service, a unix
socket in a temporary directory, the installed launcher run as a runtime runs it).

Covered: the wire format (round trips, garbage refused), the launcher's settings, calls through the
service giving what the in-process path gives, the fallback when no service answers (logged), a
service that answers garbage, hangs or dies mid-call, an ADD whose caller is gone being undone, the
service surviving arbitrary bytes (Hypothesis), and the launcher's import diet.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tortie.cni import service_wire as wire
from tortie.cni.install import install
from tortie.cni.launcher import DEFAULT_SOCKET, DEFAULT_TIMEOUT
from tortie.cni.launcher import settings as launcher_settings
from tortie.cni.plumbing import PlumbedInterface, VethSpec
from tortie.cni.service import CniService, ServiceConfig, WarmState
from tortie.datastore.api import Datastore
from tortie.datastore.memory import MemoryDatastore
from tortie.ipam import Ipam
from tortie.model.kinds import kind_info
from tortie.testing.fake_plumber import FakePlumber


# ------------------------------------------------------------------------------------------------ wire
@given(
    plugin=st.sampled_from(["tortie", "tortie-ipam"]),
    env=st.dictionaries(
        st.text(st.characters(blacklist_characters="=\0", blacklist_categories=("Cs",)), min_size=1),
        st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))),
    ),
    stdin=st.binary(),
)
def test_requests_round_trip(plugin: str, env: dict[str, str], stdin: bytes) -> None:
    frame = wire.encode_request(plugin, env, stdin)
    length = wire.payload_length(frame[: wire.HEADER], wire.REQUEST_MAGIC, wire.MAX_REQUEST)
    assert wire.decode_request(frame[wire.HEADER :]) == (plugin, env, stdin)
    assert length == len(frame) - wire.HEADER


@given(code=st.integers(0, 255), stdout=st.binary())
def test_replies_round_trip(code: int, stdout: bytes) -> None:
    frame = wire.encode_reply(code, stdout)
    assert wire.payload_length(frame[: wire.HEADER], wire.REPLY_MAGIC, wire.MAX_REPLY) == len(frame) - 9
    assert wire.decode_reply(frame[wire.HEADER :]) == (code, stdout)


@pytest.mark.parametrize(
    "header",
    [b"HTTP/1.1 ", b"TCNR\x01\xff\xff\xff\xff", b"TCNQ\x02\x00\x00\x00\x01", b"TCNR"],
)
def test_foreign_or_oversized_frames_are_refused(header: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.payload_length(header, wire.REPLY_MAGIC, wire.MAX_REPLY)


@pytest.mark.parametrize("payload", [b"", b"\0\0", b"tortie", b"tortie\0NOEQUALS\0\0", b"tortie\0A=1\0"])
def test_malformed_request_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_request(payload)


@pytest.mark.parametrize("payload", [b"", b"x\n{}", b"12345\n", b"\n"])
def test_replies_without_an_exit_code_are_refused(payload: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_reply(payload)


def test_launcher_settings_come_from_the_configuration_or_default() -> None:
    assert launcher_settings(b'{"cniVersion": "1.0.0"}') == (DEFAULT_SOCKET, DEFAULT_TIMEOUT)
    conf = b'  {"service_socket": "/x/s.sock", "service_timeout_seconds": 2.5, "a": [1, {"b": null}]}'
    assert launcher_settings(conf) == ("/x/s.sock", 2.5)
    assert launcher_settings(b'{"service_socket": ""}') == ("", DEFAULT_TIMEOUT)
    for broken in (b'{"service_socket": ', b"\xff\xfe", b'["service_socket"]', b'{"service_socket": 3}'):
        assert launcher_settings(broken) == (DEFAULT_SOCKET, DEFAULT_TIMEOUT)
    assert launcher_settings(b'{"service_timeout_seconds": -1}') == (DEFAULT_SOCKET, DEFAULT_TIMEOUT)


# ------------------------------------------------------------------------------------------------ service
NODE = "node1"


class FakeWarmState(WarmState):
    """The service's warm state over one in-memory datastore and a FakePlumber."""

    def __init__(self, ds: MemoryDatastore, plumber: FakePlumber) -> None:
        super().__init__()
        self.ds = ds
        self.fake = plumber

    def store(self, url: str | None, env: Mapping[str, str]) -> Datastore:
        return self.ds

    def plumber(self) -> FakePlumber:
        return self.fake


class SlowPlumber(FakePlumber):
    delay: float = 0.0

    def add(self, spec: VethSpec) -> PlumbedInterface:
        time.sleep(self.delay)
        return super().add(spec)


@pytest.fixture
def netns(tmp_path: Path) -> str:
    path = tmp_path / "netns-c1"
    path.write_text("")
    return str(path)


@pytest.fixture
def ds() -> MemoryDatastore:
    store = MemoryDatastore()
    store.put(
        kind_info("IPPool").key("p"),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "p"},
            "spec": {"cidr": "10.40.0.0/24", "blockSize": 26},
        },
    )
    return store


@pytest.fixture
def plumber(netns: str) -> SlowPlumber:
    return SlowPlumber(namespaces={netns})


@pytest.fixture
def bindir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cni-bin")
    install(directory)
    return directory


@pytest.fixture
def service(tmp_path: Path, ds: MemoryDatastore, plumber: SlowPlumber) -> Iterator[CniService]:
    svc = CniService(ServiceConfig(str(tmp_path / "run" / "cni.sock"), grace=5.0), FakeWarmState(ds, plumber))
    thread = threading.Thread(target=svc.run, daemon=True)
    thread.start()
    assert svc.ready.wait(10)
    try:
        yield svc
    finally:
        svc.stop()
        thread.join(10)


def conf(socket_path: str, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "net",
        "type": "tortie",
        "nodename": NODE,
        "ipam_lock_file": "",
        "mtu": 1400,
        "service_socket": socket_path,
        "policy_setup_timeout_seconds": 0,  # no agent
    }
    base.update(over)
    return base


def launch(
    bindir: Path, command: str, netns: str, netconf: dict[str, Any], cid: str = "c1"
) -> tuple[int, Any, str]:
    environ = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(bindir),
    }
    proc = subprocess.run(
        [str(bindir / "tortie")],
        input=json.dumps(netconf).encode(),
        env=environ,
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = proc.stdout.decode().strip()
    return proc.returncode, json.loads(out) if out else None, proc.stderr.decode()


def test_calls_go_through_the_service(
    bindir: Path, service: CniService, netns: str, ds: MemoryDatastore, plumber: SlowPlumber
) -> None:
    path = service.config.socket_path
    assert os.stat(path).st_mode & 0o777 == 0o600
    code, result, stderr = launch(bindir, "ADD", netns, conf(path))
    assert code == 0, (result, stderr)
    assert service.calls == 1 and "in-process" not in stderr
    assert result["interfaces"][1]["sandbox"] == netns and len(plumber.veths) == 1
    assert [str(ip) for ip in Ipam(ds).ips_by_handle("net.c1")] == [result["ips"][0]["address"].split("/")[0]]
    code, err, _ = launch(bindir, "ADD", "/nonexistent/netns", conf(path), cid="c2")
    assert (code, err["code"]) == (1, 3)  # the service's errors are the plugin's errors
    assert launch(bindir, "DEL", netns, {**conf(path), "prevResult": result})[:2] == (0, None)
    assert plumber.veths == {} and Ipam(ds).ips_by_handle("net.c1") == []
    assert service.calls == 3


def test_without_a_service_the_call_is_served_in_process_and_says_so(
    bindir: Path, tmp_path: Path, netns: str
) -> None:
    """No service: the plugin works on its own (here it fails on the missing datastore pool, after
    logging why it did not use the service); with service_socket "" it does not even try."""
    missing = str(tmp_path / "nothing-here.sock")
    netconf = conf(missing, datastore=f"sqlite://{tmp_path}/ds.db")
    code, err, stderr = launch(bindir, "ADD", netns, netconf)
    assert code == 1 and err["code"] in (101, 100, 3), err  # the in-process plugin answered
    assert f"no CNI service at {missing}" in stderr and "serving this call in-process" in stderr
    code, err, stderr = launch(bindir, "ADD", netns, {**netconf, "service_socket": ""})
    assert code == 1 and "CNI service" not in stderr


def serve_once(path: str, behaviour: str) -> threading.Thread:
    """A fake service that accepts one call and answers garbage, hangs, or closes without answering."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def body() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(1 << 20)
            if behaviour == "garbage":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            elif behaviour == "hang":
                time.sleep(30)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("behaviour", ["garbage", "hang"])
def test_a_service_answering_garbage_or_hanging_is_a_try_again_error(
    bindir: Path, tmp_path: Path, netns: str, behaviour: str
) -> None:
    path = str(tmp_path / "fake.sock")
    thread = serve_once(path, behaviour)
    started = time.monotonic()
    code, err, stderr = launch(
        bindir, "ADD", netns, conf(path, service_timeout_seconds=0.5, cniVersion="0.4.0")
    )
    assert (code, err["code"], err["cniVersion"]) == (1, 11, "0.4.0"), err
    assert path in err["details"] and (
        "not a tortie CNI reply" in err["details"] or "0.5 s" in err["details"]
    )
    # bounded by the 0.5 s timeout, not by the 30 s hang (generous for a loaded machine)
    assert time.monotonic() - started < 15
    assert "in-process" not in stderr  # the service may still act on it: no second attempt here
    thread.join(0 if behaviour == "hang" else 5)


def test_a_service_that_dies_mid_call_hands_the_call_to_the_in_process_path(
    bindir: Path, tmp_path: Path, netns: str
) -> None:
    path = str(tmp_path / "dying.sock")
    thread = serve_once(path, "close")
    netconf = conf(path, datastore=f"sqlite://{tmp_path}/ds.db")
    code, err, stderr = launch(bindir, "ADD", netns, netconf)
    assert "closed the connection without answering" in stderr and "in-process" in stderr
    assert code == 1 and err["code"] != 11  # answered by the plugin itself (no pool in that store)
    thread.join(5)


def test_an_add_whose_caller_is_gone_is_undone(
    service: CniService, netns: str, ds: MemoryDatastore, plumber: SlowPlumber
) -> None:
    plumber.delay = 0.5
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c9", "CNI_NETNS": netns, "CNI_IFNAME": "eth0"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(service.config.socket_path)
        client.sendall(wire.encode_request("tortie", env, json.dumps(conf("")).encode()))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(c.startswith("remove") for c in plumber.calls):
        time.sleep(0.05)
    time.sleep(0.2)
    assert any(c.startswith("add") for c in plumber.calls)
    assert plumber.veths == {} and Ipam(ds).ips_by_handle("net.c9") == []
    assert ds.list(kind_info("WorkloadEndpoint").list_prefix())[0] == []


def raw_call(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(path)
        with_shutdown = True
        try:
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            with_shutdown = False
        out = b""
        while with_shutdown:
            try:
                chunk = client.recv(1 << 16)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return out


_frames = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda body: wire.REQUEST_MAGIC + len(body).to_bytes(4, "big") + body, st.binary(max_size=300)),
    st.builds(
        lambda plugin, env, stdin: wire.encode_request(plugin, env, stdin),
        st.sampled_from(["tortie", "tortie-ipam", "other", ""]),
        st.dictionaries(
            st.sampled_from(["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "X"]),
            st.one_of(
                st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC", "c1", "eth0"]),
                st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=30),
            ),
        ),
        st.one_of(
            st.binary(max_size=200),
            st.just(b'{"cniVersion": "1.0.0", "name": "n"}'),
            st.just(b'{"cniVersion": "1.1.0", "name": "n", "ipam": [], "prevResult": 3}'),
        ),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_frames)
def test_the_service_survives_any_request(service: CniService, data: bytes) -> None:
    """Whatever arrives, the caller gets a well-formed reply (or, for bytes that are not even a frame
    header, a well-formed error or nothing) and the service keeps serving."""
    reply = raw_call(service.config.socket_path, data)
    if reply:
        length = wire.payload_length(reply[: wire.HEADER], wire.REPLY_MAGIC, wire.MAX_REPLY)
        code, stdout = wire.decode_reply(reply[wire.HEADER : wire.HEADER + length])
        if code != 0:
            assert set(json.loads(stdout)) <= {"cniVersion", "code", "msg", "details"}
    version = raw_call(
        service.config.socket_path, wire.encode_request("tortie", {"CNI_COMMAND": "VERSION"}, b"")
    )
    assert wire.decode_reply(version[wire.HEADER :])[0] == 0


def test_the_launcher_path_imports_almost_nothing() -> None:
    """A call through the service loads the launcher, the wire format and C modules, nothing else of
    tortie and neither json nor re (whose import is several milliseconds of every call)."""
    script = (
        "import sys\nbefore = set(sys.modules)\nimport tortie.cni.launcher\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}\n{script}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    ours = {m for m in loaded if m.startswith("tortie")}
    assert ours == {"tortie", "tortie.cni", "tortie.cni.launcher", "tortie.cni.service_wire"}, ours
    # the rest is what `os` brings when `site` has not already loaded it
    assert loaded - ours <= {
        "_socket",
        "os",
        "os.path",
        "stat",
        "_stat",
        "posixpath",
        "genericpath",
        "_collections_abc",
        "__future__",
    }, loaded - ours
