"""`tortie lab restart|kill|partition|heal`: the grammar, and what a fault reports (no root: the faults
themselves run in tests/faults)."""

from __future__ import annotations

import pytest

from tortie.cli.main import build_parser
from tortie.lab.faults import FaultResult


def test_fault_verbs_grammar() -> None:
    parser = build_parser()
    args = parser.parse_args(["lab", "kill", "h2", "agent", "--name", "x", "--no-wait", "-o", "json"])
    assert (args.target, args.component, args.lab_name, args.wait, args.output) == (
        "h2", "agent", "x", False, "json")
    args = parser.parse_args(["lab", "kill", "e1", "etcd", "--timeout", "5"])
    assert (args.component, args.wait, args.timeout, args.output) == ("etcd", True, 5.0, "text")
    args = parser.parse_args(["lab", "restart", "h1"])
    assert args.host == "h1" and args.wait and args.timeout == 60.0
    assert parser.parse_args(["lab", "partition", "h3"]).host == "h3"
    assert parser.parse_args(["lab", "heal", "h3", "--no-wait"]).wait is False
    for bad in (["kill", "h1", "bird"], ["kill", "h1"], ["partition", "h1", "--no-wait"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["lab", *bad])


def test_a_fault_result_in_json() -> None:
    assert FaultResult("kill h2 agent", 10, 11, 1.23456).to_json() == {
        "action": "kill h2 agent", "pid": 10, "newPid": 11, "seconds": 1.235}
    assert FaultResult("partition h3").to_json() == {
        "action": "partition h3", "pid": None, "newPid": None, "seconds": None}
