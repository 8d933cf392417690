"""`tortie lab restart|kill|partition|heal` and `up --etcd-tls`: the grammar, what a fault reports, the
lab's etcd certificates (no root: the faults and the secure lab themselves run in tests/faults)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tortie.cli.main import build_parser
from tortie.common.errors import UserError
from tortie.lab.etcd_security import TlsFiles, make_tls_files
from tortie.lab.faults import FaultResult
from tortie.lab.spec import LabSpec


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


def test_etcd_tls_needs_etcd() -> None:
    args = build_parser().parse_args(["lab", "up", "--datastore", "etcd", "--etcd-tls"])
    assert args.etcd_tls and args.lab_datastore == "etcd"
    LabSpec(datastore="etcd", etcd_tls=True).check()
    with pytest.raises(UserError, match="--etcd-tls: needs --datastore etcd"):
        LabSpec(etcd_tls=True).check()


def test_server_certificate_names_every_member_address(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path, ["127.0.0.1", "172.31.0.2", "fd00:172:31::2"])
    argv = ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(files.server_cert)]
    names = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert all(f"IP Address:{ip}" in names for ip in ("127.0.0.1", "172.31.0.2", "FD00:172:31:0:0:0:0:2"))
    assert oct(files.client_key.stat().st_mode & 0o777) == "0o600"
    assert files == TlsFiles.in_dir(tmp_path)
