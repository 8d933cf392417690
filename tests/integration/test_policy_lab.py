"""Security policy end to end: real `tortie agent run` processes, real nftables, real traffic.

Two lab hosts with a sqlite datastore and one agent each (policy enabled, the default). Every
scenario runs once per IP family (the `bed` fixture is parametrised): on an IPv4 fabric with IPv4
workloads, and on an IPv6-only fabric with IPv6 workloads (`PLANS`), where ICMP is ICMPv6 and echo
request/reply are types 128/129. Workloads (IPv4 / IPv6):

    h1: wa 10.71.1.2 / fd00:71:1::2 (ns prod, role=client)      wb .3 (ns dev)
    h2: wc 10.71.2.2 / fd00:71:2::2 (ns prod, app=web, named ports http=TCP 8080, dns=UDP 53)   wd .3 (ns dev)

Every workload runs a probe server (TCP 80, 8080; UDP 53, 5353; answers with the peer address) and
lists profile `out` (egress allowed, no ingress). Each scenario writes its resources, then probes
TCP/UDP/ICMP from wa and wb (and from the host h2 for host endpoints) until the observed allow/deny
table equals the expected one exactly (agents apply asynchronously), and removes its resources.
Scenarios: default deny, allow by selector, namespaces, ports and named ports, ICMP types,
notICMP and ipVersion, nets/notNets, network sets, tiers with Pass, order precedence, Log, profiles fallback,
anti-spoofing, NAT outgoing, host endpoint with failsafe SSH, host endpoint found by expectedIPs,
neighbour discovery under default deny.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tortie.common.ipfamily import V4, V6, Family
from tortie.datastore.api import Datastore
from tortie.datastore.url import open_datastore
from tortie.ipam import keys as ipam_keys
from tortie.lab import Lab, host_interface_name
from tortie.lab.fabric import fabric_subnets
from tortie.lab.workloads import WORKLOAD_GATEWAYS
from tortie.testing.netns import unique_name
from tortie.testing.policy_world import gnp, key_of, network_set, pool, profile, tier, wep

pytestmark = [pytest.mark.root, pytest.mark.slow]

TORTIE = str(Path(sys.executable).parent / "tortie")
PYTHON = sys.executable


@dataclass(frozen=True)
class Plan:
    """The addresses of one family's run."""

    fam: Family
    blocks: dict[str, str]
    ips: dict[str, str]
    spoofed: str  # inside h1's block, so h2 routes the replies back
    pool: str
    outside: str  # a network-set member no workload holds
    foreign: str  # an expectedIP no host holds
    icmp: str  # the rule protocol of the family's ICMP
    echo: int
    echo_reply: int

    def cidr(self, name: str) -> str:
        return self.fam.host_cidr(self.ips[name])


PLANS = {
    V4: Plan(
        V4,
        {"h1": "10.71.1.0/26", "h2": "10.71.2.0/26"},
        {"wa": "10.71.1.2", "wb": "10.71.1.3", "wc": "10.71.2.2", "wd": "10.71.2.3"},
        "10.71.1.50",
        "10.71.0.0/16",
        "192.0.2.0/24",
        "198.51.100.7",
        "ICMP",
        8,
        0,
    ),
    V6: Plan(
        V6,
        {"h1": "fd00:71:1::/122", "h2": "fd00:71:2::/122"},
        {"wa": "fd00:71:1::2", "wb": "fd00:71:1::3", "wc": "fd00:71:2::2", "wd": "fd00:71:2::3"},
        "fd00:71:1::32",
        "fd00:71::/32",
        "2001:db8::/64",
        "2001:db8:100::7",
        "ICMPv6",
        128,
        129,
    ),
}
PLACEMENT = {
    "wa": ("h1", "prod", {"role": "client"}),
    "wb": ("h1", "dev", {}),
    "wc": ("h2", "prod", {"app": "web"}),
    "wd": ("h2", "dev", {}),
}
WC_PORTS = [{"name": "http", "protocol": "TCP", "port": 8080}, {"name": "dns", "protocol": "UDP", "port": 53}]
OUT = profile("out", egress=[{"action": "Allow"}])
# what every scenario probes: from wa and wb to wc
TO_WC = [("tcp", 80), ("tcp", 8080), ("udp", 53), ("udp", 5353), ("icmp", None)]


def wait_for(predicate: Any, what: str, timeout: float = 20.0, logs: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{logs()}" if logs else ""))


@dataclass
class Bed:
    lab: Lab
    ds: Datastore
    url: str
    plan: Plan
    agents: dict[str, int] = field(default_factory=dict)

    def ip(self, name: str) -> str:
        """A workload's address, or a host's fabric address, in the run's family."""
        return self.plan.ips[name] if name in self.plan.ips else self.lab.host_ip(name, self.plan.fam)

    def wep(self, name: str, **extra: Any) -> dict[str, Any]:
        host, ns, labels = PLACEMENT[name]
        kwargs: dict[str, Any] = {
            "node": host,
            "namespace": ns,
            "labels": labels,
            "profiles": ["out"],
            "iface": host_interface_name(self.lab.state.interface_prefix, self.lab.name, name),
        }
        if name == "wc":
            kwargs["ports"] = WC_PORTS
        kwargs.update(extra)
        return wep(name, self.plan.cidr(name), **kwargs)

    def put(self, *objs: Mapping[str, Any]) -> None:
        for obj in objs:
            self.ds.put(key_of(obj), dict(obj))

    def delete(self, *objs: Mapping[str, Any]) -> None:
        for obj in objs:
            if self.ds.get(key_of(obj)) is not None:
                self.ds.delete(key_of(obj))

    def start_agent(self, host: str) -> None:
        env = {**os.environ, "TORTIE_REPORTING_INTERVAL": "0", "TORTIE_LOG_SEVERITY_SCREEN": "Info"}
        self.agents[host] = self.lab.start_process(
            host, [TORTIE, "agent", "run", "--hostname", host, "--datastore", self.url], env=env
        )

    def logs(self) -> str:
        out = []
        for record in self.lab.state.processes:
            if record.log and Path(record.log).exists() and "agent" in record.argv:
                out.append(f"\n--- {record.argv[-3:]} ---\n" + Path(record.log).read_text()[-3000:])
        return "".join(out)

    def probe(self, ns: str, items: Sequence[Sequence[Any]]) -> list[str | None]:
        proc = self.lab.exec(
            ns, [PYTHON, "-m", "tortie.testing.probes", "probe", json.dumps(list(items))], timeout=30
        )
        result: list[str | None] = json.loads(proc.stdout)
        return result

    def table(self, probes: Mapping[str, Sequence[Sequence[Any]]]) -> dict[tuple[Any, ...], str | None]:
        with ThreadPoolExecutor(max_workers=len(probes)) as pool_:
            answers = dict(zip(probes, pool_.map(lambda ns: self.probe(ns, probes[ns]), probes), strict=True))
        return {
            (ns, *item): answer
            for ns, items in probes.items()
            for item, answer in zip(items, answers[ns], strict=True)
        }

    def expect(self, expected: Mapping[tuple[Any, ...], bool], timeout: float = 20.0) -> None:
        """Probe until every (source, proto, dst, port[, src]) answers iff expected (or time out)."""
        probes: dict[str, list[tuple[Any, ...]]] = {}
        for key in expected:
            probes.setdefault(key[0], []).append(key[1:])
        deadline = time.monotonic() + timeout
        while True:
            seen = {k: v is not None for k, v in self.table(probes).items()}
            if seen == dict(expected):
                return
            if time.monotonic() > deadline:
                wrong = {k: seen[k] for k in expected if seen[k] != expected[k]}
                raise AssertionError(
                    f"probe table differs (observed, for keys that differ): {wrong}{self.logs()}"
                )
            time.sleep(0.2)


def to_wc(
    bed: Bed, allowed: Mapping[str, set[tuple[str, int | None]] | bool]
) -> dict[tuple[Any, ...], bool]:
    """Expected table for wa/wb -> wc: per source either a bool for all of TO_WC, or the set allowed."""
    out: dict[tuple[Any, ...], bool] = {}
    for src, spec in allowed.items():
        for proto, port in TO_WC:
            ok = spec if isinstance(spec, bool) else (proto, port) in spec
            out[(src, proto, bed.ip("wc"), port)] = ok
    return out


@pytest.fixture(scope="module", params=[V4, V6], ids=["ipv4", "ipv6"])
def bed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    plan = PLANS[request.param]
    workdir = tmp_path_factory.mktemp("policy-lab")
    lab = Lab.create(unique_name("pl"), workdir / "lab", hosts=2, subnets=fabric_subnets([plan.fam]))
    url = f"sqlite://{workdir / 'datastore.db'}"
    ds = open_datastore(url)
    try:
        b = Bed(lab, ds, url, plan)
        lab.add_static_route("h1", plan.blocks["h2"], b.ip("h2"))
        lab.add_static_route("h2", plan.blocks["h1"], b.ip("h1"))
        for host, block in plan.blocks.items():
            net = ipaddress.ip_network(block)
            ds.put(
                ipam_keys.block_key(net),
                {
                    "cidr": block,
                    "affinity": f"host:{host}",
                    "allocations": [],
                    "unallocated": [],
                    "attributes": [],
                },
            )
            ds.put(ipam_keys.affinity_key(host, net), {"state": "confirmed"})
        b.put(OUT)
        for name, (host, _ns, _labels) in PLACEMENT.items():
            lab.add_workload(name, host, b.ip(name))
            b.put(b.wep(name))
            lab.start_process(
                name, [PYTHON, "-m", "tortie.testing.probes", "serve", "--tcp", "80,8080", "--udp", "53,5353"]
            )
        lab.start_process("h2", [PYTHON, "-m", "tortie.testing.probes", "serve", "--tcp", "22,80,7000"])
        for host in ("h1", "h2"):
            b.start_agent(host)
        b.put(gnp("all-in", selector="all()", ingress=[{"action": "Allow"}]))
        b.expect({("wa", "icmp", b.ip("wc"), None): True, ("wb", "icmp", b.ip("wd"), None): True}, timeout=30)
        b.delete(gnp("all-in"))
        yield b
    finally:
        lab.down()
        ds.close()


def test_default_deny_and_allow_by_selector(bed: Bed) -> None:
    bed.expect({**to_wc(bed, {"wa": False, "wb": False}), ("wa", "tcp", bed.ip("wb"), 80): False})
    policy = gnp(
        "web-in",
        selector="app == 'web'",
        ingress=[{"action": "Allow", "source": {"selector": "role == 'client'"}}],
    )
    bed.put(policy)
    bed.expect(to_wc(bed, {"wa": True, "wb": False}))
    bed.delete(policy)


def test_namespaces(bed: Bed) -> None:
    policy = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": "same-ns", "namespace": "prod"},
        "spec": {"selector": "all()", "ingress": [{"action": "Allow", "source": {"selector": "all()"}}]},
    }
    bed.put(policy)
    bed.expect({**to_wc(bed, {"wa": True, "wb": False}), ("wa", "tcp", bed.ip("wd"), 80): False})
    bed.delete(policy)


def test_ports_and_named_ports(bed: Bed) -> None:
    policy = gnp(
        "ports",
        selector="app == 'web'",
        ingress=[
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}},
            {"action": "Allow", "destination": {"ports": ["dns"]}},
        ],
    )
    bed.put(policy)
    allowed = {("tcp", 80), ("udp", 53)}
    bed.expect(to_wc(bed, {"wa": allowed, "wb": allowed}))
    bed.delete(policy)


def test_icmp_types(bed: Bed) -> None:
    policy = gnp(
        "icmp",
        selector="app == 'web'",
        ingress=[
            {
                "action": "Allow",
                "protocol": bed.plan.icmp,
                "icmp": {"type": bed.plan.echo},
                "source": {"selector": "role == 'client'"},
            },
            {"action": "Allow", "protocol": bed.plan.icmp, "icmp": {"type": bed.plan.echo_reply}},
        ],
    )
    bed.put(policy)
    bed.expect(to_wc(bed, {"wa": {("icmp", None)}, "wb": set()}))
    bed.delete(policy)


def test_not_icmp_and_ip_version(bed: Bed) -> None:
    """`notICMP` with the run's `ipVersion`: every ICMP type but echo reply admits pings, every type
    but echo request does not; a rule of the other IP version matches none of this family's packets."""
    version = bed.plan.fam.version

    def only(*rules: dict[str, Any]) -> dict[str, Any]:
        return gnp("not-icmp", selector="app == 'web'", ingress=list(rules))

    def but(icmp_type: int) -> dict[str, Any]:
        rule = {"action": "Allow", "ipVersion": version, "protocol": bed.plan.icmp}
        return {**rule, "notICMP": {"type": icmp_type}}

    bed.put(only(but(bed.plan.echo_reply)))
    bed.expect(to_wc(bed, {"wa": {("icmp", None)}, "wb": {("icmp", None)}}))
    bed.put(only(but(bed.plan.echo)))
    bed.expect(to_wc(bed, {"wa": False, "wb": False}))
    bed.put(only({"action": "Allow", "ipVersion": 10 - version}))
    bed.expect(to_wc(bed, {"wa": False, "wb": False}))
    bed.put(only({"action": "Allow", "ipVersion": version}))  # the same rule in the run's version
    bed.expect(to_wc(bed, {"wa": True, "wb": True}))
    bed.delete(only())


def test_nets_and_not_nets(bed: Bed) -> None:
    policy = gnp(
        "nets",
        selector="app == 'web'",
        ingress=[
            {"action": "Allow", "protocol": "TCP", "source": {"nets": [bed.plan.cidr("wa")]}},
            {"action": "Allow", "protocol": "UDP", "source": {"notNets": [bed.plan.cidr("wa")]}},
        ],
    )
    bed.put(policy)
    tcp, udp = {("tcp", 80), ("tcp", 8080)}, {("udp", 53), ("udp", 5353)}
    bed.expect(to_wc(bed, {"wa": tcp, "wb": udp}))
    bed.delete(policy)


def test_network_sets(bed: Bed) -> None:
    netset = network_set("clients", [bed.plan.cidr("wb"), bed.plan.outside], labels={"group": "clients"})
    policy = gnp(
        "from-set",
        selector="app == 'web'",
        ingress=[{"action": "Allow", "source": {"selector": "group == 'clients'"}}],
    )
    bed.put(netset, policy)
    bed.expect(to_wc(bed, {"wa": False, "wb": True}))
    bed.delete(policy, netset)


def test_tiers_with_pass(bed: Bed) -> None:
    objs = [
        tier("sec", order=10),
        gnp(
            "sec.gate",
            tier="sec",
            selector="app == 'web'",
            ingress=[{"action": "Pass", "source": {"selector": "role == 'client'"}}, {"action": "Deny"}],
        ),
        gnp("web-all", selector="app == 'web'", ingress=[{"action": "Allow"}]),
    ]
    bed.put(*objs)
    bed.expect(to_wc(bed, {"wa": True, "wb": False}))
    bed.delete(*reversed(objs))


def test_order_precedence(bed: Bed) -> None:
    objs = [
        gnp(
            "first",
            order=1,
            selector="app == 'web'",
            ingress=[{"action": "Deny", "source": {"selector": "role == 'client'"}}],
        ),
        gnp("second", order=2, selector="app == 'web'", ingress=[{"action": "Allow"}]),
    ]
    bed.put(*objs)
    bed.expect(to_wc(bed, {"wa": False, "wb": True}))
    bed.delete(*objs)


def test_log_then_allow(bed: Bed) -> None:
    policy = gnp("logged", selector="app == 'web'", ingress=[{"action": "Log"}, {"action": "Allow"}])
    bed.put(policy)
    bed.expect(to_wc(bed, {"wa": True, "wb": True}))
    chain = json.loads(
        bed.lab.exec("h2", ["nft", "-j", "list", "chain", "inet", "tortie", "pi-g.logged"]).stdout
    )
    counters = [
        e["counter"]["packets"]
        for o in chain["nftables"]
        if "rule" in o
        for e in o["rule"]["expr"]
        if "counter" in e
    ]
    logs = [
        e["log"]["prefix"] for o in chain["nftables"] if "rule" in o for e in o["rule"]["expr"] if "log" in e
    ]
    assert logs and counters and counters[0] > 0, chain
    bed.delete(policy)


def test_profiles_fallback(bed: Bed) -> None:
    objs = [
        profile("no-client", ingress=[{"action": "Deny", "source": {"selector": "role == 'client'"}}]),
        profile("in-all", ingress=[{"action": "Allow"}]),
    ]
    bed.put(*objs, bed.wep("wc", profiles=["out", "no-client", "in-all"]))
    bed.expect(to_wc(bed, {"wa": False, "wb": True}))
    bed.put(bed.wep("wc"))
    bed.delete(*objs)


def test_anti_spoofing(bed: Bed) -> None:
    lab, spoofed = bed.lab, bed.plan.spoofed
    spoofed_cidr = bed.plan.fam.host_cidr(spoofed)
    iface = lab.workload("wa").host_ifname
    nodad = ["nodad"] if bed.plan.fam.dad else []
    # deprecated (preferred_lft 0): an IPv6 source is chosen among preferred addresses (RFC 6724
    # rule 3), so only the probes that bind it use the spoofed address
    lab.exec("wa", ["ip", "addr", "add", spoofed_cidr, "dev", "eth0", "preferred_lft", "0", *nodad])
    lab.exec("h1", ["ip", "route", "replace", spoofed_cidr, "dev", iface])  # the reply path only
    policy = gnp("web-all", selector="app == 'web'", ingress=[{"action": "Allow"}])
    bed.put(policy)
    table = {("wa", "tcp", bed.ip("wc"), 80, spoofed): False, ("wa", "tcp", bed.ip("wc"), 80): True}
    bed.expect(table)
    bed.put(bed.wep("wa", allow_spoofed=[spoofed_cidr]))
    bed.expect({**table, ("wa", "tcp", bed.ip("wc"), 80, spoofed): True})
    bed.put(bed.wep("wa"))
    bed.delete(policy)


def test_nat_outgoing(bed: Bed) -> None:
    h1, h2 = bed.ip("h1"), bed.ip("h2")
    policy = gnp("web-all", selector="app == 'web'", ingress=[{"action": "Allow"}])
    nat_pool = pool("workloads", bed.plan.pool, nat_outgoing=True)
    bed.put(policy, pool("workloads", bed.plan.pool))

    def peers() -> list[str | None]:
        return bed.probe("wa", [("tcp", h2, 7000), ("tcp", bed.ip("wc"), 80)])

    wait_for(lambda: peers() == [bed.ip("wa"), bed.ip("wa")], "no NAT without natOutgoing", logs=bed.logs)
    bed.put(nat_pool)
    # to outside every pool: masqueraded to h1's address; inside the pool: untouched
    wait_for(lambda: peers() == [h1, bed.ip("wa")], "masquerade to the host address", logs=bed.logs)
    bed.delete(nat_pool, policy)


def test_host_endpoint_with_failsafe_ssh(bed: Bed) -> None:
    h2 = bed.ip("h2")
    web = gnp("web-all", selector="app == 'web'", ingress=[{"action": "Allow"}])
    bed.put(web)
    before = {
        ("wa", "tcp", h2, 22): True,
        ("wa", "tcp", h2, 80): True,
        ("wa", "icmp", h2, None): True,
        ("wa", "tcp", bed.ip("wc"), 80): True,
    }
    bed.expect(before)
    hep = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "HostEndpoint",
        "metadata": {"name": "h2-eth0", "labels": {"role": "host"}},
        "spec": {"node": "h2", "interfaceName": "eth0", "expectedIPs": [h2]},
    }
    bed.put(hep)
    # default deny into the host except failsafe SSH; forwarded workload traffic is not affected
    bed.expect({**before, ("wa", "tcp", h2, 80): False, ("wa", "icmp", h2, None): False})
    ping_in = gnp(
        "host-ping",
        selector="role == 'host'",
        ingress=[{"action": "Allow", "protocol": bed.plan.icmp}],
        egress=[{"action": "Allow"}],
    )
    bed.put(ping_in)
    bed.expect({**before, ("wa", "tcp", h2, 80): False})
    bed.delete(ping_in, hep)
    bed.expect(before)
    bed.delete(web)


def test_host_endpoint_found_by_expected_ips(bed: Bed) -> None:
    """A HostEndpoint with expectedIPs and no interfaceName is enforced on the host interface that
    carries one of those addresses (h2's eth0 here), as Calico does."""
    h2 = bed.ip("h2")
    before = {("wa", "tcp", h2, 22): True, ("wa", "tcp", h2, 80): True, ("wa", "icmp", h2, None): True}
    bed.expect(before)
    hep = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "HostEndpoint",
        "metadata": {"name": "h2-by-address", "labels": {"role": "host"}},
        "spec": {"node": "h2", "expectedIPs": [bed.plan.foreign, h2]},
    }
    bed.put(hep)
    bed.expect({**before, ("wa", "tcp", h2, 80): False, ("wa", "icmp", h2, None): False})
    bed.delete(hep)
    bed.expect(before)


def test_neighbour_discovery_is_never_policed(bed: Bed) -> None:
    """Default deny in both directions on wa and a host endpoint on h2's eth0 (default deny, no
    policy): wa still resolves its gateway and h1 still resolves h2 (IPv6 neighbour discovery, as
    Felix lets it through; IPv4's ARP is not IP)."""
    lab, fam = bed.lab, bed.plan.fam
    h2 = bed.ip("h2")
    deny = gnp(
        "deny-client", selector="role == 'client'", ingress=[{"action": "Deny"}], egress=[{"action": "Deny"}]
    )
    hep = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "HostEndpoint",
        "metadata": {"name": "h2-eth0", "labels": {"role": "host"}},
        "spec": {"node": "h2", "interfaceName": "eth0", "expectedIPs": [h2]},
    }
    bed.put(deny, hep)
    denied = {("wa", "tcp", bed.ip("wc"), 80): False, ("wb", "tcp", h2, 80): False}
    bed.expect(denied)
    lab.exec("wa", ["ip", "neigh", "flush", "dev", "eth0"])
    lab.exec("h1", ["ip", "neigh", "flush", "dev", "eth0"])
    bed.expect(denied)  # the denied probes need wa's gateway and h2 resolved first

    def resolved(ns: str, address: str) -> bool:
        entries = json.loads(lab.exec(ns, ["ip", "-j", fam.ip_flag, "neigh", "show", "to", address]).stdout)
        return any(set(e.get("state", [])) & {"REACHABLE", "STALE", "DELAY", "PROBE"} for e in entries)

    wait_for(lambda: resolved("wa", WORKLOAD_GATEWAYS[fam]), f"wa resolving {WORKLOAD_GATEWAYS[fam]}")
    wait_for(lambda: resolved("h1", h2), f"h1 resolving {h2} behind its host endpoint")
    bed.delete(hep, deny)
