"""`tortie ipam show|check|release|configure` through `tortie.cli.main.main`, on a temporary sqlite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tortie.cli.main import main
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam import Ipam
from tortie.model.kinds import kind_info


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "ds.db"
    ds = SqliteDatastore(path)
    try:
        ds.put(
            kind_info("IPPool").key("p"),
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": "p"},
                "spec": {"cidr": "10.0.0.0/24", "blockSize": 28},
            },
        )
        for n in ("n1", "n2"):
            ds.put(
                kind_info("Node").key(n),
                {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": n}, "spec": {}},
            )
        ipam = Ipam(ds)
        a = ipam.auto_assign(1, 0, "net.a", "n1", {"namespace": "ns", "pod": "a"}).v4[0]
        ds.put(
            kind_info("WorkloadEndpoint").key("a", "ns"),
            {
                "kind": "WorkloadEndpoint",
                "metadata": {"name": "a", "namespace": "ns"},
                "spec": {"node": "n1", "pod": "a", "ipNetworks": [f"{a.ip}/32"]},
            },
        )
    finally:
        ds.close()
    return f"sqlite://{path}"


def run(db: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(["--datastore", db, "ipam", *argv])
    return rc, capsys.readouterr().out


def as_json(out: str) -> Any:
    return json.loads(out)


def test_show_and_owner_of_an_ip(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(db, capsys, "show", "--show-blocks", "--show-configuration", "-o", "json")
    data = as_json(out)
    assert rc == 0
    assert data["pools"][0]["inUse"] == 1 and data["pools"][0]["total"] == 256
    assert data["blocks"][0]["affinity"] == "host:n1"
    assert data["configuration"]["effectiveMaxBlocksPerHost"] == 20
    ip = "10." + data["blocks"][0]["cidr"].split("/")[0].split(".", 1)[1]
    rc, out = run(db, capsys, "show", "--ip", ip, "-o", "json")
    owner = as_json(out)
    assert (owner["allocated"], owner["handle"], owner["usedBy"]) == (
        True,
        "net.a",
        ["WorkloadEndpoint ns/a"],
    )
    rc, out = run(db, capsys, "show", "--ip", ip)
    assert rc == 0 and f"IP {ip} is in use" in out and "net.a" in out
    rc, out = run(db, capsys, "show", "--show-blocks")
    assert rc == 0 and "10.0.0.0/24" in out and "host:n1" in out


def test_check_release_and_configure(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, capsys, "check")[0] == 0
    ds = SqliteDatastore(db.removeprefix("sqlite://"))
    try:
        leaked = Ipam(ds).auto_assign(1, 0, "net.leak", "n2").v4[0].ip
    finally:
        ds.close()
    rc, out = run(db, capsys, "check", "-o", "json")
    assert rc == 1
    assert [(p["kind"], p["subject"]) for p in as_json(out)["problems"]] == [("leaked-address", str(leaked))]
    rc, out = run(db, capsys, "check")
    assert rc == 1 and "leaked-address" in out
    rc, out = run(db, capsys, "release", "--ip", str(leaked))
    assert rc == 0 and f"Released IP {leaked}" in out
    rc, out = run(db, capsys, "release", "--ip", str(leaked))
    assert rc == 0 and "was not assigned" in out
    assert run(db, capsys, "check")[0] == 0
    rc, out = run(db, capsys, "release", "--handle", "net.a")
    assert rc == 0 and "Released 1 address" in out
    rc, out = run(db, capsys, "release", "--handle", "net.a")
    assert rc == 0 and "holds no addresses" in out
    rc, out = run(db, capsys, "configure", "--strictaffinity=true", "--max-blocks-per-host", "4")
    assert rc == 0 and "strictAffinity=True" in out
    rc, out = run(db, capsys, "show", "--show-configuration", "-o", "json")
    assert as_json(out)["configuration"]["maxBlocksPerHost"] == 4
    assert run(db, capsys, "configure")[0] == 1
    # Calico has no rule tying a per-host cap to strict affinity (its validator checks only >= 0).
    assert run(db, capsys, "configure", "--strictaffinity=false")[0] == 0
    assert run(db, capsys, "configure", "--strictaffinity=false", "--autoallocateblocks=false")[0] == 1
    rc, out = run(db, capsys, "release", "--orphan-blocks")
    assert rc == 0 and "Released 0" in out


def test_both_families(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An IPv6 pool beside the IPv4 one: show lists both pools and their blocks, check finds a leaked
    IPv6 address, release frees it."""
    ds = SqliteDatastore(db.removeprefix("sqlite://"))
    try:
        ds.put(kind_info("IPPool").key("p6"), {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                                               "metadata": {"name": "p6"}, "spec": {"cidr": "fd00:7::/120"}})
        dual = Ipam(ds).auto_assign(1, 1, "net.dual", "n2")
        leaked = Ipam(ds).auto_assign(0, 1, "net.leak6", "n2").v6[0].ip
    finally:
        ds.close()
    rc, out = run(db, capsys, "show", "--show-blocks", "-o", "json")
    data = as_json(out)
    assert [(p["name"], p["inUse"], p["total"]) for p in data["pools"]] == [("p", 2, 256), ("p6", 2, 256)]
    assert {b["cidr"] for b in data["blocks"]} >= {str(dual.v6[0].network), str(dual.v4[0].network)}
    rc, out = run(db, capsys, "check", "-o", "json")
    problems = [(p["kind"], p["subject"]) for p in as_json(out)["problems"]]
    assert rc == 1 and ("leaked-address", str(leaked)) in problems
    rc, out = run(db, capsys, "release", "--ip", str(leaked))
    assert rc == 0 and f"Released IP {leaked}" in out


def test_bad_arguments(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--datastore", db, "ipam", "show", "--ip", "not-an-ip"])
    with pytest.raises(SystemExit):
        main(["--datastore", db, "ipam", "release"])
    capsys.readouterr()


def test_configure_is_visible_as_the_v3_resource(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tortie ipam configure` and `tortie get ipamconfig` agree (both keys written in one txn)."""
    import json as _json
    import subprocess as _sp
    import sys as _sys

    url = f"sqlite://{tmp_path}/ds.db"

    def run(*argv: str) -> _sp.CompletedProcess[str]:
        return _sp.run([_sys.executable, "-m", "tortie.cli.main", "--datastore", url, *argv],
                       capture_output=True, text=True, check=False)

    assert run("ipam", "configure", "--strictaffinity=true", "--max-blocks-per-host", "3").returncode == 0
    got = run("get", "ipamconfig", "default", "-o", "json")
    assert got.returncode == 0, got.stderr
    spec = _json.loads(got.stdout)["spec"]
    assert spec["strictAffinity"] is True and spec["maxBlocksPerHost"] == 3
    assert run("ipam", "configure", "--strictaffinity=false", "--max-blocks-per-host", "0").returncode == 0
    spec = _json.loads(run("get", "ipamconfig", "default", "-o", "json").stdout)["spec"]
    assert spec["strictAffinity"] is False


def test_gc_dry_run_then_gc_of_a_deleted_host(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    ds = SqliteDatastore(db.removeprefix("sqlite://"))
    try:
        gone = Ipam(ds).auto_assign(1, 0, "net.g", "n2", {"namespace": "ns", "pod": "g"}).v4[0].ip
        ds.delete(kind_info("Node").key("n2"))
    finally:
        ds.close()
    rc, out = run(db, capsys, "gc", "--cluster-only", "--dry-run", "--grace-period", "0")
    assert rc == 0 and "would release 1 item(s)" in out and str(gone) in out and "n2 no longer" in out
    assert "blocks these releases leave empty" in out
    rc, out = run(db, capsys, "gc", "--cluster-only", "--dry-run")  # default grace: it waits
    assert rc == 0 and "would release 1 item(s)" not in out and "Waiting for the grace period: 1" in out
    rc, out = run(db, capsys, "gc", "--cluster-only", "--grace-period", "0", "-o", "json")
    released = as_json(out)["released"]
    assert rc == 0 and [r["kind"] for r in released] == ["allocation", "block"]
    assert run(db, capsys, "check")[0] == 0


def test_node_delete_prints_what_goes(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--datastore", db, "node", "delete", "n1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Would delete Node n1" in out and "Would delete WorkloadEndpoint ns/a" in out
    assert "Would release allocation" in out
    assert main(["--datastore", db, "node", "delete", "n1"]) == 0
    out = capsys.readouterr().out
    assert "Deleted Node n1" in out and "Released block n1/" in out
    assert main(["--datastore", db, "node", "delete", "n1"]) == 0
    assert "does not exist" in capsys.readouterr().out
    assert run(db, capsys, "check")[0] == 0
