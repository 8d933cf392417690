"""An etcd member SIGKILLed with `tortie lab kill eN etcd` on a 2-host lab whose 3-member etcd runs the
secure setup (`--etcd-tls`: HTTPS with client certificates, authentication as user `tortie`): its
keeper starts it again on its data directory, `tortie lab status` follows (stopped, then running
with a new pid, healthy, one restart), the cluster keeps accepting writes meanwhile, and the hosts'
agents program what was written while it was down. Prints how long the member took to be back.
Also: without a client certificate, or without the password, the members refuse to talk.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request

import pytest
from fault_helpers import lab_cli

from e2e.conftest import MakeLab
from tortie.lab.etcd_members import healthy_at, member_pid, tls_files
from tortie.lab.etcd_security import client_context

pytestmark = [pytest.mark.root, pytest.mark.etcd, pytest.mark.slow]


def test_etcd_member_sigkill_is_restarted_by_its_keeper(make_lab: MakeLab,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    dc = make_lab(hosts=2, workloads_per_host=1, datastore="etcd", etcd_tls=True, ip_family="ipv4")
    url, port, tls = dc.record.client_url, dc.record.etcd_ports[0], tls_files(dc.lab)
    assert tls is not None and url.startswith("etcds://") and "username=tortie&password_file=" in url
    password_file = url.rsplit("password_file=", 1)[1]
    assert oct(os.stat(password_file).st_mode & 0o777) == "0o600"
    assert healthy_at(port, tls) and not healthy_at(port)  # HTTPS only
    body = json.dumps({"key": base64.b64encode(b"/calico/").decode()}).encode()
    anonymous = urllib.request.Request(f"https://127.0.0.1:{port}/v3/kv/range", data=body)
    with pytest.raises(urllib.error.HTTPError) as refused:  # a certificate is not enough: who are you?
        urllib.request.urlopen(anonymous, timeout=10, context=client_context(tls))
    assert refused.value.code == 403 and "permission denied" in refused.value.read().decode()
    before = {e["name"]: e for e in lab_cli(dc, "status")["etcd"]}
    assert all(e["running"] and e["healthy"] and e["restarts"] == 0 for e in before.values()), before
    started = time.monotonic()
    killed = lab_cli(dc, "kill", "e1", "etcd", "--no-wait")
    assert killed["pid"] == before["e1"]["pid"]
    # written while the member is down (or coming back): the other two have quorum
    dc.workloads.add("late", "h2")
    result = lab_cli(dc, "status")
    now = next(e for e in result["etcd"] if e["name"] == "e1")
    assert now["pid"] != before["e1"]["pid"]  # stopped (None) or already a new process
    deadline = time.monotonic() + 60
    while not (member_pid(dc.lab, "e1") not in (None, killed["pid"])
               and next(e for e in lab_cli(dc, "status")["etcd"] if e["name"] == "e1")["healthy"]):
        assert time.monotonic() < deadline, "etcd member e1 not back after 60 s"
        time.sleep(0.2)
    back = next(e for e in lab_cli(dc, "status")["etcd"] if e["name"] == "e1")
    with capsys.disabled():
        print(f"\n[faults] etcd member e1 SIGKILLed: restarted by its keeper and healthy within "
              f"{time.monotonic() - started:.1f} s (pid {killed['pid']} -> {back['pid']}), a workload "
              "added meanwhile")
    assert back["running"] and back["restarts"] == 1
    dc.wait_ready(timeout=60)
    deadline = time.monotonic() + 45
    while not dc.probe("w1-1", "late", "icmp", timeout=1.0):
        assert time.monotonic() < deadline, "the workload added during the member loss is not reachable"
    assert all(h["node"]["ready"] for h in lab_cli(dc, "status")["hosts"])
