"""The flow store (rotation, size cap, torn lines, follow), the filters and `tortie flows`."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from tortie.cli.main import main
from tortie.common.errors import UserError
from tortie.flows.query import FlowFilter, parse_since
from tortie.flows.records import Counts, FlowRecord, Peer
from tortie.flows.store import CURRENT, FlowStore, ReadReport, StoreError, follow, read_records, store_size

WEB = Peer("workload", "web", "prod", {"app": "web"})
DB = Peer("workload", "db", "prod", {"app": "db"})
OUT = Peer("net", ip="2001:db8::1")


def record(i: int, *, action: str = "allow", end: float = 1000.0, src: Peer = WEB, dst: Peer = DB,
           pending: str | None = None) -> FlowRecord:
    rule = f"default|NetworkPolicy(prod/db-{action})|ingress[0]|{action}"
    return FlowRecord(end - 15, end, "h1", "dst", src, dst, "tcp", 5432 + i, action, (rule,),
                      pending or action, (rule,), Counts(i, i), Counts(100 * i, 50 * i), 1, 0, 1)


def test_rotation_keeps_the_store_under_its_cap(tmp_path: Path) -> None:
    store = FlowStore(tmp_path, max_bytes=64 * 1024, files=4)
    for batch in range(200):
        store.write([record(i, end=1000.0 + batch) for i in range(5)])
    assert store_size(tmp_path) <= 64 * 1024 + 5 * 600
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["flows.1.jsonl", "flows.2.jsonl", "flows.3.jsonl", CURRENT]
    ends = [r.end for r in read_records(tmp_path)]
    assert ends == sorted(ends) and ends[-1] == 1199.0  # oldest file first, newest records kept


def test_torn_and_foreign_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    store = FlowStore(tmp_path)
    store.write([record(1), record(2)])
    with open(tmp_path / CURRENT, "a") as fh:
        fh.write('{"v": 1, "start": 1, "end"\n{"v": 7}\nnot json\n')
    store.write([record(3)])
    report = ReadReport()
    assert [r.port for r in read_records(tmp_path, report)] == [5433, 5434, 5435]
    assert report.skipped == {str(tmp_path / CURRENT): 3}


def test_unwritable_store_raises_store_error(tmp_path: Path) -> None:
    target = tmp_path / "blocked"
    target.write_text("a file where the directory should be")
    with pytest.raises(StoreError, match="cannot write flow records"):
        FlowStore(target / "flows").write([record(1)])


def test_follow_sees_new_records_across_rotation(tmp_path: Path) -> None:
    store = FlowStore(tmp_path, max_bytes=32 * 1024, files=2)
    store.write([record(0)])
    seen: list[FlowRecord] = []
    stop = threading.Event()

    def reader() -> None:
        for r in follow(tmp_path, poll=0.02, stop=stop.is_set):
            seen.append(r)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.1)
    for i in range(1, 80):
        store.write([record(i)])
        time.sleep(0.002)
    deadline = time.monotonic() + 5
    while len(seen) < 79 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    assert [r.port for r in seen] == [5432 + i for i in range(1, 80)]


def test_filters() -> None:
    deny = record(1, action="deny", dst=OUT)
    staged = record(2, pending="deny")
    old = record(3, end=10.0)
    assert FlowFilter(action="deny").matches(deny) and not FlowFilter(action="deny").matches(staged)
    assert FlowFilter(policy="db-deny").matches(deny) and FlowFilter(policy="prod/db-allow").matches(staged)
    assert FlowFilter(policy="NetworkPolicy(prod/db-deny)").matches(deny)
    assert not FlowFilter(policy="db").matches(deny)
    k8s = dataclasses.replace(deny, policies=(
        "kube-admin|GlobalNetworkPolicy(kanp.adminnetworkpolicy.ops)|ingress[0]|pass",
        "default|NetworkPolicy(shop/knp.default.web-to-db)|end-of-tier|deny",
    ))
    for name in ("web-to-db", "shop/web-to-db", "knp.default.web-to-db", "ops",
                 "kanp.adminnetworkpolicy.ops"):
        assert FlowFilter(policy=name).matches(k8s), name
    for name in ("other/web-to-db", "default.web-to-db", "shop/ops"):
        assert not FlowFilter(policy=name).matches(k8s), name
    assert FlowFilter(endpoint="prod/web").matches(deny) and FlowFilter(endpoint="2001:db8::1").matches(deny)
    assert not FlowFilter(endpoint="db").matches(deny)
    assert FlowFilter(staged=True).matches(staged) and not FlowFilter(staged=True).matches(deny)
    assert not FlowFilter(since=100.0).matches(old) and FlowFilter(namespace="prod").matches(old)
    assert parse_since("1h30m", 10_000.0) == 10_000.0 - 5400 and parse_since("90s", 100.0) == 10.0
    with pytest.raises(UserError, match="give a duration"):
        parse_since("yesterday", 0.0)
    with pytest.raises(UserError, match="use allow or deny"):
        FlowFilter(action="drop")
    with pytest.raises(UserError, match="unknown filter 'colour'"):
        FlowFilter.from_params({"colour": "red"}, 0.0)


def test_tortie_flows_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    FlowStore(tmp_path).write([record(1), record(2, action="deny", dst=OUT), record(3, pending="deny")])
    with open(tmp_path / CURRENT, "a") as fh:
        fh.write("torn{\n")
    assert main(["flows", "--dir", str(tmp_path), "--action", "deny"]) == 0
    out = capsys.readouterr()
    assert out.out.count("\n") == 1 and "prod/web -> 2001:db8::1 tcp/5434 DENY" in out.out
    assert "skipped 1 unreadable line" in out.err
    assert main(["flows", "--dir", str(tmp_path), "--staged", "-o", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and '"pending_action":"deny"' in lines[0]
    assert main(["flows", "--dir", str(tmp_path / "nope")]) == 1
    assert "no flow store at" in capsys.readouterr().err
    assert main(["flows", "--dir", str(tmp_path), "--since", "soon"]) == 1
    assert "--since 'soon'" in capsys.readouterr().err
