"""The installed `tortie` / `tortie-ipam` executables, run as a runtime runs them (env + stdin, subprocess).

No root needed: these are the calls that must fail (or answer) before touching the kernel — VERSION,
bad environment, bad stdin, unknown version, missing namespace, datastore unreachable, STATUS — plus
the start-up contract (docs/design/cni.md, "Start-up cost"): the launchers skip `site` and the cyclic
GC yet still find tortie when the installation moved, and an ADD or DEL imports only what it uses (no
YAML, rich, pyroute2 or CLI; of the model, ADD only the IPPool and WorkloadEndpoint specs, DEL none).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tortie
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
        "service_socket": str(tmp_path / "no-service.sock"),  # never a node's service of this machine
        "policy_setup_timeout_seconds": 0,  # no agent
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
    text = launcher_text("/opt/my python/bin/python", "tortie-ipam")
    assert text.startswith("#!/bin/sh\n")
    assert "exec '/opt/my python/bin/python' -I -m tortie.cni.main tortie-ipam" in text
    plain = launcher_text("/usr/bin/python3", "tortie")
    assert plain.startswith("#!/usr/bin/python3 -I\n") and "gc.disable()" in plain and "site" not in plain
    assert "from tortie.cni.launcher import launch\ncode = launch('tortie')\n" in plain
    fast = launcher_text("/usr/bin/python3", "tortie", ["/src", "/site"])
    assert fast.startswith("#!/usr/bin/python3 -IS\n") and "sys.path += ['/src', '/site']" in fast
    assert "gc.disable()" in fast and "site.main()" in fast and "gc.freeze()" in fast
    compile(fast, "launcher", "exec")
    compile(plain, "launcher", "exec")


def test_installed_launcher_runs_without_site_and_gc(bindir: Path, tmp_path: Path) -> None:
    """The launcher's interpreter runs isolated, without `site`, with the cyclic GC off, imports the
    tortie this interpreter imports, freezes every object before shutdown and passes main's exit code."""
    text = (bindir / "tortie").read_text()
    assert text.startswith(f"#!{sys.executable} -IS\n")
    assert "\ncode = launch('tortie')\n" in text and text.endswith("\nsys.exit(code)\n")
    report = (
        "print(sys.flags.no_site, sys.flags.isolated, gc.isenabled(), 'site' in sys.modules,"
        " sys.modules['tortie'].__file__, gc.get_freeze_count() > 0)"
    )
    probe = tmp_path / "probe"
    probed = text.replace("code = launch('tortie')", "code = 3")
    probe.write_text(probed.replace("sys.exit(code)", f"{report}\nsys.exit(code)"))
    probe.chmod(0o755)
    proc = subprocess.run(
        [str(probe)], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.split() == ["1", "1", "False", "False", tortie.__file__, "True"]


def test_launcher_with_stale_paths_still_finds_tortie(bindir: Path, tmp_path: Path) -> None:
    """Launchers record import paths at install time; when they no longer hold tortie (the installation
    moved), the launcher falls back to `site` instead of failing every CNI call."""
    text = (bindir / "tortie").read_text()
    lines = [line for line in text.splitlines() if line.startswith("sys.path += ")]
    assert len(lines) == 1
    stale = tmp_path / "tortie"
    stale.write_text(text.replace(lines[0], f"sys.path += [{str(tmp_path / 'gone')!r}]"))
    stale.chmod(0o755)
    code, out = invoke(stale, {"CNI_COMMAND": "VERSION"}, {"cniVersion": "0.4.0"})
    assert code == 0 and out["cniVersion"] == "0.4.0"


def test_plugin_modules_run_with_python_m() -> None:
    """The /bin/sh launcher's form: `python -I -m tortie.cni.main tortie` (and tortie-ipam); a name that
    is not a plugin is a usage error."""
    for plugin in ("tortie", "tortie-ipam"):
        proc = subprocess.run(
            [sys.executable, "-I", "-m", "tortie.cni.main", plugin],
            input=b'{"cniVersion": "1.0.0"}',
            env={"CNI_COMMAND": "VERSION"},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["cniVersion"] == "1.0.0"
    usage = [sys.executable, "-I", "-m", "tortie.cni.main", "tortie-nope"]
    wrong = subprocess.run(usage, capture_output=True, timeout=60, check=False)
    assert wrong.returncode == 2 and b"usage" in wrong.stderr


# What an ADD must not load: heavy dependencies, the CLI, and the model's kinds an ADD never validates
# (each spec module costs milliseconds of every call; see docs/design/cni.md, "Start-up cost").
_NEVER_ON_ADD = (
    "rich",
    "pyroute2",
    "requests",
    "etcd3gw",
    "yaml",
    "tortie.cli",
    "tortie.model.codec",
    "tortie.model.specs_felix",
    "tortie.model.specs_bgp",
    "tortie.model.specs_policy",
    "tortie.model.rules",
    "tortie.selector",
)
# ... and what a DEL, which validates nothing, does not load either.
_NEVER_ON_DEL = (
    *_NEVER_ON_ADD,
    "tortie.model.resource",
    "tortie.model.specs_ipam",
    "tortie.model.specs_endpoint",
)


def _loaded(modules: list[str], banned: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == b or m.startswith(b + ".") for b in banned)]


def test_hot_path_imports_stay_light() -> None:
    """Importing the plugins' modules loads no heavy dependency and nothing of the model beyond the kind
    names (IPAM and the endpoint code load the model when they validate)."""
    script = (
        "import sys, json\n"
        "import tortie.cni.main, tortie.cni.runner, tortie.cni.workload, tortie.cni.netlink_plumber\n"
        "import tortie.cni.ipam_verbs, tortie.ipam, tortie.datastore.url, tortie.datastore.sqlite\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout)
    assert "tortie.ipam.pools" in modules and "tortie.kernel.rtnl" in modules
    assert not _loaded(modules, _NEVER_ON_DEL), _loaded(modules, _NEVER_ON_DEL)


_RUN_VERB = """
import json, sys
from tortie.testing.fake_plumber import FakePlumber
from tortie.cni.runner import run
from tortie.cni.workload import Deps, TortiePlugin

verb, netns, conf = sys.argv[1], sys.argv[2], sys.argv[3]
plugin = TortiePlugin(Deps(plumber_factory=lambda: FakePlumber(namespaces={netns}), env={}))
env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": "c1", "CNI_NETNS": netns, "CNI_IFNAME": "eth0"}
out = run(env, conf.encode(), plugin.handlers(), configure_logs=False)
print(json.dumps({"code": out.exit_code, "stdout": out.stdout, "modules": sorted(sys.modules)}))
"""


def test_add_and_del_load_only_the_model_they_use(tmp_path: Path) -> None:
    """A steady-state ADD (the network's Profile exists, the pool has no nodeSelector) validates an
    IPPool and a WorkloadEndpoint, so only their spec modules load; a DEL validates nothing."""
    netns = tmp_path / "netns"
    netns.write_text("")
    ds = SqliteDatastore(tmp_path / "ds.db")
    ds.put(
        kind_info("IPPool").key("p"),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "p"},
            "spec": {"cidr": "10.52.0.0/24"},
        },
    )
    ds.put(
        kind_info("Profile").key("net"),
        {"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": "net"}, "spec": {}},
    )
    ds.close()
    netconf = conf(tmp_path, cniVersion="1.0.0", ipam={"type": "tortie-ipam"})

    def call(verb: str, config: dict[str, Any]) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _RUN_VERB, verb, str(netns), json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        answer: dict[str, Any] = json.loads(proc.stdout)
        assert answer["code"] == 0, answer["stdout"]
        return answer

    add = call("ADD", netconf)
    result = json.loads(add["stdout"])
    assert result["ips"][0]["address"].startswith("10.52.0.")
    assert "tortie.model.specs_ipam" in add["modules"] and "tortie.model.specs_endpoint" in add["modules"]
    assert not _loaded(add["modules"], _NEVER_ON_ADD), _loaded(add["modules"], _NEVER_ON_ADD)
    ds = SqliteDatastore(tmp_path / "ds.db")
    try:
        assert len(ds.list(kind_info("WorkloadEndpoint").list_prefix())[0]) == 1
        done = call("DEL", {**netconf, "prevResult": result})
        assert not _loaded(done["modules"], _NEVER_ON_DEL), _loaded(done["modules"], _NEVER_ON_DEL)
        assert ds.list(kind_info("WorkloadEndpoint").list_prefix())[0] == []
    finally:
        ds.close()


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
