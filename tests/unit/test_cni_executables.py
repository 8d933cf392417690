"""The installed `tortie` / `tortie-ipam` executables, run as a runtime runs them (env + stdin, subprocess).

No root needed: these are the calls that must fail (or answer) before touching the kernel — VERSION,
bad environment, bad stdin, unknown version, missing namespace, datastore unreachable, STATUS — plus
the start-up contract: the hot path does not import the model, YAML, rich or pyroute2.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tortie.cni.install import install, launcher_text
from tortie.datastore.sqlite import SqliteDatastore
from tortie.model.kinds import kind_info


@pytest.fixture(scope="module")
def bindir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cni-bin")
    installed = install(directory)
    assert sorted(i.name for i in installed) == ["tortie", "tortie-ipam"]
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def invoke(exe: Path, environ: dict[str, str], stdin: Any) -> tuple[int, Any]:
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    proc = subprocess.run([str(exe)], input=data, env=environ, capture_output=True, timeout=60, check=False)
    out = proc.stdout.decode().strip()
    return proc.returncode, json.loads(out) if out else None


def conf(tmp_path: Path, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cniVersion": "1.1.0",
        "name": "net",
        "type": "tortie",
        "nodename": "h1",
        "datastore": f"sqlite://{tmp_path}/ds.db",
        "ipam_lock_file": str(tmp_path / "lock"),
    }
    base.update(over)
    return base


def add_env(**over: str) -> dict[str, str]:
    environ = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/tortie-no-such-ns",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/nonexistent",
    }
    environ.update(over)
    return environ


@pytest.mark.parametrize("name", ["tortie", "tortie-ipam"])
def test_version(bindir: Path, name: str) -> None:
    code, out = invoke(bindir / name, {"CNI_COMMAND": "VERSION"}, {"cniVersion": "1.0.0"})
    assert code == 0
    assert out == {"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


@pytest.mark.parametrize("name", ["tortie", "tortie-ipam"])
def test_error_paths_before_any_side_effect(bindir: Path, tmp_path: Path, name: str) -> None:
    exe = bindir / name
    cases: list[tuple[dict[str, str], Any, int]] = [
        ({}, conf(tmp_path), 4),
        (add_env(CNI_IFNAME=""), conf(tmp_path), 4),
        (add_env(), b"{not json", 6),
        (add_env(), conf(tmp_path, cniVersion="0.1.0"), 1),
        (add_env(), conf(tmp_path, ipam={"assign_ipv4": "yes"}), 7),
    ]
    for environ, stdin, want in cases:
        code, err = invoke(exe, environ, stdin)
        assert code == 1 and err["code"] == want, (environ, stdin, err)
        assert err["cniVersion"] in ("1.1.0", "0.1.0") or err["code"] == 1
    assert not (tmp_path / "ds.db").exists()


def test_missing_netns_is_unknown_container(bindir: Path, tmp_path: Path) -> None:
    code, err = invoke(bindir / "tortie", add_env(), conf(tmp_path))
    assert (code, err["code"]) == (1, 3)
    assert "tortie-no-such-ns" in err["details"]
    assert not (tmp_path / "ds.db").exists()


@pytest.mark.parametrize("name", ["tortie", "tortie-ipam"])
def test_unreachable_etcd(bindir: Path, tmp_path: Path, name: str) -> None:
    url = f"etcd://127.0.0.1:{free_port()}?timeout=1"
    code, err = invoke(bindir / name, add_env(CNI_COMMAND="DEL"), conf(tmp_path, datastore=url))
    assert (code, err["code"]) == (1, 11), err
    code, err = invoke(bindir / name, {"CNI_COMMAND": "STATUS"}, conf(tmp_path, datastore=url))
    assert (code, err["code"]) == (1, 50), err


@pytest.mark.parametrize("name", ["tortie", "tortie-ipam"])
def test_status_with_and_without_a_pool(bindir: Path, tmp_path: Path, name: str) -> None:
    code, err = invoke(bindir / name, {"CNI_COMMAND": "STATUS"}, conf(tmp_path))
    assert (code, err["code"]) == (1, 50)
    ds = SqliteDatastore(tmp_path / "ds.db")
    ds.put(
        kind_info("IPPool").key("p"),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "p"},
            "spec": {"cidr": "10.50.0.0/24"},
        },
    )
    ds.close()
    assert invoke(bindir / name, {"CNI_COMMAND": "STATUS"}, conf(tmp_path)) == (0, None)


def test_ipam_plugin_add_and_del_through_the_executable(bindir: Path, tmp_path: Path) -> None:
    ds = SqliteDatastore(tmp_path / "ds.db")
    ds.put(
        kind_info("IPPool").key("p"),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "p"},
            "spec": {"cidr": "10.51.0.0/24"},
        },
    )
    ds.close()
    code, result = invoke(bindir / "tortie-ipam", add_env(), conf(tmp_path, cniVersion="0.3.1"))
    assert code == 0, result
    assert result["cniVersion"] == "0.3.1" and result["ips"][0]["version"] == "4"
    assert result["ips"][0]["address"].startswith("10.51.0.") and result["ips"][0]["address"].endswith("/32")
    assert invoke(bindir / "tortie-ipam", add_env(CNI_COMMAND="DEL"), conf(tmp_path)) == (0, None)


def test_launcher_falls_back_to_sh_for_odd_interpreter_paths() -> None:
    text = launcher_text("/opt/my python/bin/python", "tortie.cni.plugin")
    assert (
        text.startswith("#!/bin/sh\n") and "exec '/opt/my python/bin/python' -I -m tortie.cni.plugin" in text
    )
    assert launcher_text("/usr/bin/python3", "m").startswith("#!/usr/bin/python3 -I\n")
    fast = launcher_text("/usr/bin/python3", "m", ["/src", "/site"])
    assert fast.startswith("#!/usr/bin/python3 -IS\n") and "sys.path += ['/src', '/site']" in fast


def test_hot_path_imports_stay_light() -> None:
    """The ADD path must not import rich, pyroute2 or the CLI (each costs tens of ms at start-up)."""
    script = (
        "import sys\n"
        "import tortie.cni.plugin, tortie.cni.runner, tortie.cni.workload, tortie.cni.netlink_plumber\n"
        "import tortie.cni.ipam_verbs, tortie.ipam, tortie.datastore.url, tortie.datastore.sqlite\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('rich', 'pyroute2', 'requests', 'etcd3gw')\n"
        "         or m.startswith('tortie.cli')]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_cli_install_writes_executable_launchers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tortie.cli.main import main

    assert main(["cni", "install", "--dir", str(tmp_path / "plugins")]) == 0
    printed = capsys.readouterr().out
    for name in ("tortie", "tortie-ipam"):
        path = tmp_path / "plugins" / name
        assert path.stat().st_mode & 0o111
        assert f"installed {name}: {path}" in printed
    code, out = invoke(tmp_path / "plugins" / "tortie", {"CNI_COMMAND": "VERSION"}, b"")
    assert code == 0 and out["cniVersion"] == "1.1.0"
