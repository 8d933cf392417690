"""Flow logs: what they cost the dataplane, how many new flows one node logs, agent memory (root).

A two-host lab (h1: w1 10.73.1.2, h2: w2 10.73.2.2, static routes, allow-all profile), a sqlite
datastore and the real `tortie agent run` on both hosts, restarted between variants:

1. dataplane, same run: iperf3 w1 -> w2 and a 10 ms ping stream, with flow logs ON (log statements
   in the table, conntrack accounting, the flow logger) and OFF (`flow_logs_enabled=false`,
   `nf_conntrack_acct=0`), alternated (off, on, off, on, ...: 2 pairs with --quick, else 3) and the
   best run of each kept. CPU per GB
   is the machine's busy CPU time (/proc/stat) over the run divided by the bytes sent: the machine
   is shared, so it carries the other work too; the load average is printed beside it.
   Targets: >= 95 % of the throughput, <= 10 % more CPU per GB.
2. new flows per second one node logs: from w1, new UDP flows to w2 (a fresh socket, so a fresh
   source port and conntrack entry, per flow) paced at each offered rate for a few seconds; the
   flow records of h1 (reporter src) must count them (`connections.started`). Target: >= 5,000
   new flows/s logged with no loss.
3. the agent's memory (VmRSS of h1's agent) idle and with 100,000 live flows in h1's conntrack
   (UDP, the namespace's UDP timeout raised to 300 s for the test).

    .venv/bin/python bench/flows.py [--quick] [--json]

`--json` prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tortie.datastore.url import open_datastore  # noqa: E402
from tortie.flows.store import read_records  # noqa: E402
from tortie.lab.processes import flows_dir  # noqa: E402
from tortie.testing.policy_world import ALLOW_ALL, key_of, wep  # noqa: E402

W1, W2 = "10.73.1.2", "10.73.2.2"
FLUSH = 2.0
# New UDP flows at a paced rate: each from its own source port (bound explicitly: the kernel's random
# ephemeral ports repeat, and a repeated tuple is the same conntrack entry), to `port`, then the next
# destination port once every source port was used.
GENERATOR = """
import socket, sys, time
dst, port, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
sent, start = 0, time.monotonic()
end = start + seconds
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = int((now - start) * rate)
    while sent < due:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", 1024 + sent % 64000))
        s.sendto(b"x", (dst, port + sent // 64000))
        s.close()
        sent += 1
    time.sleep(0.001)
print(sent, time.monotonic() - start)
"""


def busy_jiffies() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, quick: bool) -> None:
        from tortie.lab import Lab, host_interface_name
        from tortie.testing.netns import unique_name

        self.quick = quick
        self.workdir = Path(tempfile.mkdtemp(prefix="flows-bench-"))
        self.lab = Lab.create(unique_name("fb"), self.workdir / "lab", hosts=2)
        self.db = self.workdir / "ds.db"
        self.agents: dict[str, int] = {}
        lab = self.lab
        lab.add_static_route("h1", "10.73.2.0/24", lab.host_ip("h2"))
        lab.add_static_route("h2", "10.73.1.0/24", lab.host_ip("h1"))
        lab.add_workload("w1", "h1", W1, plumb_host_side=True)
        lab.add_workload("w2", "h2", W2, plumb_host_side=True)
        ds = open_datastore(f"sqlite://{self.db}")
        try:
            for obj in (
                ALLOW_ALL,
                wep("w1", f"{W1}/32", node="h1", profiles=["allow-all"],
                    iface=host_interface_name(lab.state.interface_prefix, lab.name, "w1")),
                wep("w2", f"{W2}/32", node="h2", profiles=["allow-all"],
                    iface=host_interface_name(lab.state.interface_prefix, lab.name, "w2")),
            ):
                ds.put(key_of(obj), obj)
        finally:
            ds.close()
        lab.exec("w1", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"])
        self.iperf = lab.start_process("w2", ["iperf3", "-s"])

    def agents_up(self, flow_logs: bool) -> None:
        for pid in self.agents.values():
            self.lab.stop_process(pid, timeout=10)
        tortie = str(Path(sys.executable).parent / "tortie")
        for host in ("h1", "h2"):
            if not flow_logs:
                self.lab.exec(host, ["sysctl", "-qw", "net.netfilter.nf_conntrack_acct=0"])
            env = {**os.environ, "TORTIE_REPORTING_INTERVAL": "0", "TORTIE_LOG_SEVERITY_SCREEN": "Warning",
                   "TORTIE_FLOW_LOGS_ENABLED": str(flow_logs).lower(),
                   "TORTIE_FLOW_LOGS_FLUSH_INTERVAL": str(FLUSH),
                   "TORTIE_FLOW_LOGS_MAX_BYTES": str(256 << 20)}
            argv = [tortie, "agent", "run", "--hostname", host, "--datastore", f"sqlite://{self.db}"]
            self.agents[host] = self.lab.start_process(host, argv, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tables = [self.lab.exec(h, ["nft", "list", "table", "inet", "tortie"], check=False).stdout
                      for h in ("h1", "h2")]
            programmed = all("tw-" in t and ("prefix \"tf:" in t) == flow_logs for t in tables)
            if programmed and self.lab.ping("w1", W2, attempts=3):
                time.sleep(FLUSH)  # the flow logger is bound by now
                return
            time.sleep(0.3)
        raise RuntimeError("agents did not program the hosts in 60 s")

    # -- 1. dataplane -----------------------------------------------------------------------------------
    def iperf_run(self, seconds: int) -> tuple[float, float]:
        before = busy_jiffies()
        argv = ["iperf3", "-c", W2, "-t", str(seconds), "-J"]
        out = self.lab.exec("w1", argv, timeout=seconds + 30).stdout
        cpu = (busy_jiffies() - before) / os.sysconf("SC_CLK_TCK")
        end = json.loads(out)["end"]
        gbits = float(end["sum_received"]["bits_per_second"]) / 1e9
        gbytes = float(end["sum_sent"]["bytes"]) / 1e9
        return gbits, cpu / gbytes

    def rtt_ms(self) -> float:
        out = self.lab.exec("w1", ["ping", "-c", "100", "-i", "0.01", "-q", W2], timeout=30).stdout
        stats = [line for line in out.splitlines() if "rtt" in line or "round-trip" in line]
        return float(stats[0].split("=")[1].split("/")[1]) if stats else float("nan")

    def dataplane(self) -> dict[str, float]:
        seconds = 2 if self.quick else 4
        best: dict[str, tuple[float, float, float]] = {}
        for variant in ("off", "on") * (2 if self.quick else 3):
            self.agents_up(variant == "on")
            gbits, cpu_gb = self.iperf_run(seconds)
            rtt = self.rtt_ms()
            print(f"  flow logs {variant:3}: {gbits:6.2f} Gbit/s  {cpu_gb:6.2f} CPU s/GB  "
                  f"rtt {rtt:.3f} ms  (load {os.getloadavg()[0]:.1f})", flush=True)
            if variant not in best or gbits > best[variant][0]:
                best[variant] = (gbits, cpu_gb, rtt)
        on, off = best["on"], best["off"]
        return {"throughput_on_gbps": on[0], "throughput_off_gbps": off[0],
                "throughput_ratio": on[0] / off[0], "cpu_s_per_gb_on": on[1], "cpu_s_per_gb_off": off[1],
                "cpu_ratio": on[1] / off[1],
                "rtt_on_ms": on[2], "rtt_off_ms": off[2]}

    # -- 2. new flows per second -----------------------------------------------------------------------
    def generate(self, rate: float, seconds: float, port: int) -> tuple[int, float]:
        out = self.lab.exec("w1", [sys.executable, "-c", GENERATOR, W2, str(port), str(rate), str(seconds)],
                            timeout=seconds + 60).stdout.split()
        return int(out[0]), float(out[1])

    def logged(self, port: int, since: float) -> int:
        directory = flows_dir(self.lab.workdir, "h1")
        return sum(r.started for r in read_records(directory)
                   if r.port is not None and port <= r.port < port + 4 and r.reporter == "src"
                   and r.protocol == "udp" and r.end >= since)

    def flow_rates(self) -> list[dict[str, float]]:
        self.agents_up(True)
        rates = [5000.0] if self.quick else [2000.0, 5000.0, 8000.0]
        out = []
        for i, rate in enumerate(rates):
            port = 20000 + 10 * i
            since = time.time()
            agent_cpu = self._cpu(self.agents["h1"])
            sent, took = self.generate(rate, 4.0, port)
            deadline = time.monotonic() + 6 * FLUSH + 10
            count = 0
            while time.monotonic() < deadline:
                count = self.logged(port, since)
                if count >= sent:
                    break
                time.sleep(FLUSH / 2)
            cpu = self._cpu(self.agents["h1"]) - agent_cpu
            row = {"offered_per_s": sent / took, "logged_per_s": count / took, "logged": count,
                   "sent": sent, "agent_cpu_s": cpu}
            print(f"  offered {sent / took:7.0f} new flows/s: logged {count}/{sent} "
                  f"({100 * count / max(sent, 1):.1f} %) = {count / took:7.0f}/s; agent CPU {cpu:.1f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
            out.append(row)
        return out

    @staticmethod
    def _cpu(pid: int) -> float:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    # -- 3. memory at 100k live flows ---------------------------------------------------------------------
    def memory(self) -> dict[str, float]:
        flows = 20_000 if self.quick else 100_000
        for host in ("h1", "h2"):
            self.lab.exec(host, ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=300"])
        self.agents_up(True)
        idle = rss_mb(self.agents["h1"])
        sent, _ = self.generate(10_000.0, flows / 10_000.0, 30000)
        time.sleep(3 * FLUSH)
        counted = self.lab.exec("h1", ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]).stdout
        count = int(counted.split()[0])
        loaded = rss_mb(self.agents["h1"])
        print(f"  agent RSS idle {idle:.0f} MB; with {count} live conntrack entries ({sent} new flows sent) "
              f"{loaded:.0f} MB (+{loaded - idle:.0f} MB)", flush=True)
        flush = ("from tortie.kernel.conntrack import conntrack_socket, flush_table\n"
                 "flush_table(conntrack_socket())")
        for host in ("h1", "h2"):
            self.lab.exec(host, [sys.executable, "-c", flush], check=False)
        return {"rss_idle_mb": idle, "rss_loaded_mb": loaded, "live_flows": count}

    def close(self) -> None:
        self.lab.down()
        shutil.rmtree(self.workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer rates, 20k flows")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/flows.py needs root (network namespaces, nftables)", file=sys.stderr)
        return 2
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    bench = Bench(args.quick)
    result: dict[str, Any] = {}
    try:
        print("1. dataplane, flow logs off vs on (same run; best run of each):")
        result["dataplane"] = d = bench.dataplane()
        print(f"   throughput retained {100 * d['throughput_ratio']:.1f} % (target >= 95 %); "
              f"CPU per GB {100 * (d['cpu_ratio'] - 1):+.1f} % (target <= +10 %); "
              f"rtt {d['rtt_off_ms']:.3f} -> {d['rtt_on_ms']:.3f} ms")
        print("2. new flows per second logged by one node (h1):")
        result["flow_rates"] = rates = bench.flow_rates()
        full = [r["logged_per_s"] for r in rates if r["logged"] >= r["sent"]]
        result["max_lossless_logged_per_s"] = max(full) if full else 0.0
        print(f"   highest rate logged without loss: {result['max_lossless_logged_per_s']:.0f}/s "
              "(target >= 5,000/s)")
        print("3. agent memory:")
        result["memory"] = bench.memory()
    finally:
        bench.close()
    result["load_avg"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
