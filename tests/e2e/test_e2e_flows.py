"""Flow logs end to end on a two-host lab: real agents, NFLOG, conntrack, iperf3 and a real browser.

    h1: client-1 (prod, role=client)       h2: web-2 (prod, app=web)   db-2 (prod, app=db)

FelixConfiguration `default` sets `flowLogsFlushInterval: 2s`. Then, in one lab:

1. deny: NetworkPolicy prod/db-guard denies TCP 5432 into db-2; a probe from client-1 is denied and
   within one flush interval (plus the kernel's NFLOG batching) h2 has a deny record naming the rule
   (`tortie lab flows --action deny --policy db-guard`);
2. bytes: iperf3 client-1 -> web-2 for 2 s; the allowed records of that port (both reporters) carry
   the bytes iperf3 says it sent, within 5% (conntrack counts IP bytes, headers included);
3. staged: StagedNetworkPolicy prod/web-lockdown would allow only TCP 80 into web-2. Probes to web-2
   on 80 and 8080 both still succeed; exactly the flows into web-2 other than TCP 80 are
   pending-deny (`--staged`: 8080, and iperf3's connections while conntrack still holds them);
4. staged Kubernetes: the lab's workloads are Kubernetes pods (namespace prod); a
   StagedKubernetesNetworkPolicy prod/client-out would let client-1 send only to app=web. Probes from
   client-1 to db-2 and web-2 still succeed; on client-1's side (reporter src) the flow to db-2 is
   pending-deny at the end of the staged policy and the flow to web-2 pending-allow by its rule;
5. the web view, in Debian's chromium driven by selenium (headless): the page lists the denied
   flow, clicking it shows the deciding policy and the policy trace (DROP); /api/* answer JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tortie.lab.datacenter import Datacenter
from tortie.testing.policy_world import key_of

pytestmark = [pytest.mark.root, pytest.mark.slow]
TORTIE = str(Path(sys.executable).parent / "tortie")
FLUSH = 2.0
API = "projectcalico.org/v3"
LOCKDOWN = "default|StagedNetworkPolicy(prod/web-lockdown)"
K8S_PROBES = {("db-2", 6379), ("web-2", 80)}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def lab_flows(dc: Datacenter, *args: str) -> list[dict[str, Any]]:
    proc = subprocess.run([TORTIE, "lab", "flows", "--name", dc.name, "-o", "json", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def put(dc: Datacenter, *objs: dict[str, Any]) -> None:
    ds = dc.datastore()
    try:
        for obj in objs:
            ds.put(key_of(obj), obj)
    finally:
        ds.close()


def policy(kind: str, name: str, spec: dict[str, Any], namespace: str = "prod") -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


def test_flow_records_staged_verdicts_and_the_web_view(make_lab: Callable[..., Datacenter]) -> None:
    dc = make_lab(hosts=2)
    dc.workloads.add("client-1", "h1", labels={"role": "client"}, namespace="prod")
    web = dc.workloads.add("web-2", "h2", labels={"app": "web"}, namespace="prod")
    db = dc.workloads.add("db-2", "h2", labels={"app": "db"}, namespace="prod")
    put(dc, {"apiVersion": API, "kind": "FelixConfiguration", "metadata": {"name": "default"},
             "spec": {"flowLogsFlushInterval": f"{FLUSH:.0f}s"}})
    dc.wait_ready(timeout=60)
    wait_for(lambda: dc.probe("client-1", "db-2", "tcp", port=5432, timeout=1.0), "client-1 -> db-2 allowed")

    # 1. a denied probe becomes a deny record naming the policy within one flush interval
    put(dc, policy("NetworkPolicy", "db-guard", {
        "selector": "app == 'db'",
        "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [5432]}},
                    {"action": "Allow"}],
    }))
    wait_for(lambda: not dc.probe("client-1", "db-2", "tcp", port=5432, timeout=0.5), "db-guard enforced")
    probed = time.time()
    assert not dc.probe("client-1", "db-2", "tcp", port=5432, timeout=0.5)

    def denied() -> list[dict[str, Any]]:
        return [r for r in lab_flows(dc, "--action", "deny", "--policy", "db-guard")
                if r["end"] >= probed and r["destination"]["name"] == "db-2"]

    records = wait_for(denied, "a deny record", timeout=FLUSH + 10, step=0.1)
    record = records[0]
    assert time.time() - probed <= 2 * FLUSH + 1.5, "the record came later than one flush interval"
    assert record["end"] - probed <= FLUSH + 1.0
    where = (record["host"], record["reporter"], record["protocol"], record["port"])
    assert where == ("h2", "dst", "tcp", 5432)
    assert record["source"]["name"] == "client-1" and record["source"]["namespace"] == "prod"
    assert record["source"]["labels"]["role"] == "client"
    assert record["policies"] == ["default|NetworkPolicy(prod/db-guard)|ingress[0]|deny"]
    assert record["packets"]["src_to_dst"] >= 1

    # 2. iperf3: the allowed flow's bytes match what iperf3 sent (+-5%)
    server = dc.lab.start_process("web-2", ["iperf3", "-s", "-p", "5201"])
    try:
        # wait for the listening socket (a probe would be taken for a client by iperf3's server)
        wait_for(lambda: ":5201 " in dc.lab.exec("web-2", ["ss", "-ltnH"]).stdout, "iperf3 listening")
        started = time.time()
        argv = ["iperf3", "-c", web.ips[0], "-p", "5201", "-t", "2", "-J"]
        result = json.loads(dc.lab.exec("client-1", argv, timeout=60, check=False).stdout)
        assert "error" not in result, result["error"]
        sent, received = result["end"]["sum_sent"]["bytes"], result["end"]["sum_received"]["bytes"]
    finally:
        dc.lab.stop_process(server)

    def counted(reporter: str) -> int:
        return sum(r["bytes"]["src_to_dst"] for r in lab_flows(dc, "--endpoint", "prod/web-2")
                   if r["port"] == 5201 and r["reporter"] == reporter and r["end"] >= started
                   and r["action"] == "allow")

    for reporter in ("src", "dst"):
        wait_for(lambda rep=reporter: counted(rep) >= 0.95 * sent,
                 f"{reporter} records with iperf3's {sent} bytes", timeout=4 * FLUSH + 20)
        time.sleep(FLUSH + 0.5)  # one more interval: the connections' last bytes
        total = counted(reporter)
        # conntrack counts IP bytes (headers too); iperf3 counts what its client wrote
        assert abs(total - sent) <= 0.05 * sent, (reporter, sent, received, total)

    # 3. staged: web-lockdown would allow only TCP 80; 8080 flows are pending-deny while they flow
    put(dc, {"apiVersion": API, "kind": "StagedNetworkPolicy",
             "metadata": {"name": "web-lockdown", "namespace": "prod"},
             "spec": {"selector": "app == 'web'",
                      "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]}})
    time.sleep(FLUSH)  # the agents' next flush builds the pending view
    staged_from = time.time()
    for _ in range(3):
        assert dc.probe("client-1", "web-2", "tcp", port=80, timeout=1.0)
        assert dc.probe("client-1", "web-2", "tcp", port=8080, timeout=1.0), "staged: never enforced"

    def to_web() -> list[dict[str, Any]]:
        return [r for r in lab_flows(dc, "--endpoint", "prod/web-2", "--since", f"{staged_from:.3f}")
                if r["reporter"] == "dst" and r["port"] in (80, 8080)]

    wait_for(lambda: {r["port"] for r in to_web()} == {80, 8080}, "records of both ports",
             timeout=3 * FLUSH + 10)
    for r in to_web():
        assert r["action"] == "allow"
        if r["port"] == 8080:
            assert r["pending_action"] == "deny"
            assert r["pending_policies"] == [f"{LOCKDOWN}|end-of-tier|deny"]
        else:
            assert r["pending_action"] == "allow"
            assert r["pending_policies"] == [f"{LOCKDOWN}|ingress[0]|allow"]
    # every flow into web-2 but TCP 80 would change (8080, and iperf3's 5201 connections still in
    # conntrack); nothing else. A connection allowed before db-guard (the first probe, ending when
    # conntrack forgets it) is listed too, but its pending verdict is db-guard's, not the staged one's.
    staged = lab_flows(dc, "--staged", "--since", f"{staged_from:.3f}")
    by_lockdown = [r for r in staged if any(p.startswith(LOCKDOWN) for p in r["pending_policies"])]
    changed = {(r["destination"]["name"], r["port"]) for r in by_lockdown}
    assert ("web-2", 8080) in changed and changed <= {("web-2", 8080), ("web-2", 5201)}, changed
    for r in staged:
        if r not in by_lockdown:
            assert r["destination"]["name"] == "db-2" and r["pending_action"] == "deny", r
            assert r["pending_policies"] == ["default|NetworkPolicy(prod/db-guard)|ingress[0]|deny"], r
    assert all(r["pending_action"] == "deny" and r["action"] == "allow" for r in staged)

    # 4. a staged Kubernetes NetworkPolicy: client-1 would send only to app=web
    put(dc, {"apiVersion": API, "kind": "StagedKubernetesNetworkPolicy",
             "metadata": {"name": "client-out", "namespace": "prod"},
             "spec": {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                      "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}})
    time.sleep(FLUSH)
    k8s_from = time.time()
    for _ in range(3):
        assert dc.probe("client-1", "db-2", "tcp", port=6379, timeout=1.0), "staged: never enforced"
        assert dc.probe("client-1", "web-2", "tcp", port=80, timeout=1.0)

    def from_client() -> dict[str, dict[str, Any]] | None:
        got = {r["destination"]["name"]: r
               for r in lab_flows(dc, "--endpoint", "prod/client-1", "--since", f"{k8s_from:.3f}")
               if r["reporter"] == "src" and (r["destination"]["name"], r["port"]) in K8S_PROBES}
        return got if set(got) == {"db-2", "web-2"} else None

    found = wait_for(from_client, "client-1's records of both probes", timeout=3 * FLUSH + 10)
    client_out = "default|StagedKubernetesNetworkPolicy(prod/client-out)"
    assert found["db-2"]["action"] == "allow" and found["db-2"]["pending_action"] == "deny"
    assert found["db-2"]["pending_policies"] == [f"{client_out}|end-of-tier|deny"]
    assert found["web-2"]["action"] == "allow" and found["web-2"]["pending_action"] == "allow"
    assert found["web-2"]["pending_policies"] == [f"{client_out}|egress[0]|allow"]

    # 5. the web view in a real browser
    browser_check(dc, db.ips[0])


def browser_check(dc: Datacenter, db_ip: str) -> None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup.sh installs them)")
    from urllib.request import urlopen

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tortie.flows.ui_sources import lab_sources
    from tortie.flows.web import WebServer, make_app

    server = WebServer(make_app(lab_sources(dc.name)), "127.0.0.1", 0).start()
    profile = tempfile.mkdtemp(prefix="tortie-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    browser = None
    try:
        for path in ("api/flows?action=deny", "api/nodes", "api/policies", "api/workloads"):
            with urlopen(server.url + path, timeout=30) as response:
                body = json.loads(response.read())
            if path.startswith("api/flows"):
                flow = body["flows"][0]
                assert {"source", "destination", "protocol", "port", "action", "policies"} <= set(flow)
            if path == "api/nodes":
                assert {n["name"] for n in body["nodes"]} == {"h1", "h2"}
                assert all(n["bgp"] and all(s["established"] for s in n["bgp"]) for n in body["nodes"]), body
            if path == "api/policies":
                hits = {p["name"]: p["hits"] for p in body["policies"]}
                assert hits["db-guard"].get("deny", 0) >= 1
                assert hits["client-out"].get("deny", 0) >= 1  # the staged Kubernetes policy's pending hits
        browser = webdriver.Chrome(service=Service(driver_path), options=options)
        browser.get(server.url)
        wait = WebDriverWait(browser, 30)
        denied = wait.until(ec.presence_of_element_located(
            (By.XPATH, f"//table[@id='flows']//tr[contains(@class,'deny')][td[contains(., '{db_ip}')]]")))
        denied.click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail"), "NetworkPolicy(prod/db-guard)"))
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#detail pre.trace"), "verdict: DROP"))
        assert "ingress[0]" in browser.find_element(By.ID, "detail").text
        wait.until(ec.text_to_be_present_in_element((By.ID, "nodes"), "Established"))
    finally:
        if browser is not None:
            browser.quit()
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)
