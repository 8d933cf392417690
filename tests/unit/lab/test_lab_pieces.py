"""The lab's pure pieces (no root): CLI grammar, workload options, the seed manifests, lab.json
compatibility, router configurations, ICMP checksums."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tortie.cli.lab_cmd import _checks
from tortie.cli.main import build_parser
from tortie.common.errors import UserError
from tortie.common.ipfamily import V4, V6
from tortie.lab.cni_workloads import NetworkConfig, parse_labels, parse_ports
from tortie.lab.errors import LabError
from tortie.lab.fabric import AddressPlan, check_subnets, fabric_subnets
from tortie.lab.probe import _checksum
from tortie.lab.routers import frr_config, gobgp_config
from tortie.lab.spec import LabSpec, seed_manifests
from tortie.lab.state import ApplianceRecord, load_state
from tortie.model import parse_resource


def test_cli_grammar_of_every_verb() -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "lab",
            "up",
            "--name",
            "x",
            "--hosts",
            "4",
            "--workloads-per-host",
            "2",
            "--datastore",
            "etcd",
            "--tor",
            "frr",
            "--route-reflectors",
            "1",
        ]
    )
    assert (
        args.lab_name,
        args.hosts,
        args.workloads_per_host,
        args.lab_datastore,
        args.tor,
        args.route_reflectors,
    ) == ("x", 4, 2, "etcd", "frr", 1)
    args = parser.parse_args(
        shlex.split(
            "lab workload add web-1 --host h1 --labels app=web --namespace shop --ports http:tcp:80 "
            "-o json --lab y"
        )
    )
    assert (
        args.workload,
        args.host,
        args.labels,
        args.namespace,
        args.ports,
        args.output,
        args.lab_name,
    ) == ("web-1", "h1", "app=web", "shop", "http:tcp:80", "json", "y")
    args = parser.parse_args(["lab", "exec", "w1", "--", "ip", "-br", "a"])
    assert args.target == "w1" and args.cmd[-3:] == ["ip", "-br", "a"]
    args = parser.parse_args(
        ["lab", "probe", "a", "10.0.0.1", "--protocol", "udp", "--port", "53", "--timeout", "0.5"]
    )
    assert (args.src, args.dst, args.protocol, args.port, args.timeout) == ("a", "10.0.0.1", "udp", 53, 0.5)
    args = parser.parse_args(["lab", "matrix", "-o", "json", "--protocol", "icmp"])
    assert args.output == "json" and args.protocol == ["icmp"] and args.lab_name
    args = parser.parse_args(["lab", "matrix", "--protocol", "tcp,udp,icmp", "--port", "80,81"])
    checks = _checks(args.protocol, args.port)
    assert checks == [("icmp", 0), ("tcp", 80), ("tcp", 81), ("udp", 80), ("udp", 81)]
    for bad in (["--protocol", "tcp,sctp"], ["--port", "80,x"], ["--port", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["lab", "matrix", *bad])
    for verb in (["env"], ["down"], ["status", "-o", "json"], ["workload", "del", "w"]):
        assert parser.parse_args(["lab", *verb]).func is not None
    with pytest.raises(SystemExit):
        parser.parse_args(["lab", "up", "--tor", "cisco"])


def test_lab_name_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORTIE_LAB", "mine")
    assert build_parser().parse_args(["lab", "status"]).lab_name == "mine"
    monkeypatch.delenv("TORTIE_LAB")
    assert build_parser().parse_args(["lab", "status"]).lab_name == "tortie"


def test_ports_and_labels() -> None:
    assert parse_ports("http:tcp:80, dns:UDP:53") == [
        {"name": "http", "protocol": "TCP", "port": 80},
        {"name": "dns", "protocol": "UDP", "port": 53},
    ]
    assert parse_ports("") == []
    for bad in ("http:tcp", "http:icmp:1", "http:tcp:0", "http:tcp:70000", "-x:tcp:1"):
        with pytest.raises(LabError, match="name:proto:port"):
            parse_ports(bad)
    assert parse_labels("app=web, tier=front,") == {"app": "web", "tier": "front"}
    assert parse_labels("empty=") == {"empty": ""}
    with pytest.raises(LabError, match="key=value"):
        parse_labels("app")


def test_network_config_per_host() -> None:
    conf = NetworkConfig("sqlite:///x/ds.db", "/x/cni").for_host("h2", "shop", {"app": "web"})
    assert conf["nodename"] == "h2" and conf["namespace"] == "shop" and conf["type"] == "tortie"
    assert conf["ipam"] == {"type": "tortie-ipam", "assign_ipv4": "true", "assign_ipv6": "false"}
    dual = NetworkConfig("u", "/d", families=(V4, V6)).for_host("h1", "default", {})
    assert dual["ipam"] == {"type": "tortie-ipam", "assign_ipv4": "true", "assign_ipv6": "true"}
    assert conf["ipam_lock_file"] == "/x/cni/h2.lock"
    assert conf["args"] == {"cni": {"labels": [{"key": "app", "value": "web"}]}}
    assert "args" not in NetworkConfig("u", "/d").for_host("h1", "default", {})
    assert conf["service_socket"] == "" and conf["policy_setup_timeout_seconds"] == 0  # no node services
    served = NetworkConfig("u", "/d", run_root="/x/run").for_host("h3", "default", {})
    assert served["service_socket"] == "/x/run/h3/cni.sock"
    assert served["endpoint_status_dir"] == "/x/run/h3/endpoint-status"
    assert "policy_setup_timeout_seconds" not in served  # the default wait
    assert "mtu" not in conf and "mtu_file" not in conf  # the plugin's own default file
    hosted = NetworkConfig("u", "/d", run_root="/x/run").for_host("h1", "default", {})
    assert hosted["mtu_file"] == "/x/run/h1/mtu" and "mtu" not in hosted
    assert NetworkConfig("u", "/d", mtu=1400).for_host("h1", "default", {})["mtu"] == 1400


def test_encapsulation_options_seed_the_pools_and_shape_the_fabric() -> None:
    assert (LabSpec().vxlan_mode, LabSpec().segments) == ("Never", 1)
    vxlan = LabSpec(encapsulation="vxlan")
    assert (vxlan.vxlan_mode, vxlan.segments) == ("Always", 1)
    cross = LabSpec(encapsulation="vxlan-cross-subnet", hosts=4, subnets_count=3)
    cross.check()
    assert (cross.vxlan_mode, cross.segments) == ("CrossSubnet", 3)
    assert LabSpec(encapsulation="vxlan-cross-subnet").segments == 2
    pools = [d["spec"] for d in seed_manifests(cross, ["h1"], []) if d["kind"] == "IPPool"]
    assert {p["vxlanMode"] for p in pools} == {"CrossSubnet"}
    with pytest.raises(UserError) as err:
        LabSpec(encapsulation="gre", subnets_count=2, bgp="ospf").check()
    text = str(err.value)
    assert "--encapsulation 'gre'" in text and "--subnets 2" in text and "--bgp 'ospf'" in text
    with pytest.raises(UserError, match=r"--subnets 5: 2\.\.3"):
        LabSpec(encapsulation="vxlan-cross-subnet", hosts=3, subnets_count=5).check()
    with pytest.raises(UserError, match="--tor with --encapsulation vxlan-cross-subnet"):
        LabSpec(encapsulation="vxlan-cross-subnet", tor="frr").check()
    with pytest.raises(UserError, match="--bgp none: no --tor"):
        LabSpec(bgp="none", tor="gobgp").check()


def test_address_plan_segments_spread_hosts_over_shifted_subnets() -> None:
    plan = AddressPlan(fabric_subnets([V4, V6]), segments=2)
    assert plan.segment_subnets(1) == ["172.31.1.0/24", "fd00:172:31:1::/64"]
    assert [plan.host_segment(i) for i in (1, 2, 3, 4)] == [0, 1, 0, 1]
    assert plan.host_addresses(2) == ["172.31.1.12/24", "fd00:172:31:1::c/64"]
    assert plan.host_addresses(3) == ["172.31.0.13/24", "fd00:172:31::d/64"]
    assert plan.appliance_addresses(254, "rtr", [], segment=1) == ["172.31.1.254/24", "fd00:172:31:1::fe/64"]
    assert plan.subnet(V6, 1) == "fd00:172:31:1::/64"


def test_spec_check_names_every_problem() -> None:
    LabSpec().check()
    with pytest.raises(UserError) as err:
        LabSpec(hosts=0, datastore="mysql", tor="cisco", route_reflectors=5).check()
    text = str(err.value)
    assert "--hosts" in text and "--datastore" in text and "--tor" in text and "--route-reflectors" in text


@pytest.mark.parametrize("rr", [0, 2])
def test_seed_manifests_are_valid_resources(rr: int) -> None:
    spec = LabSpec(hosts=3, route_reflectors=rr, tor="gobgp")
    docs = seed_manifests(spec, ["h1", "h2", "h3"], ["172.31.0.1", "fd00:172:31::1"])
    resources = [parse_resource(d) for d in docs]
    kinds = sorted(r.kind for r in resources)
    assert kinds.count("IPPool") == 2 and "BGPConfiguration" in kinds
    pools = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "IPPool"}
    assert pools["lab-pool-v6"] == {"cidr": "fd00:10:244::/56", "blockSize": 122, "nodeSelector": "all()",
                                    "vxlanMode": "Never"}
    config = next(d for d in docs if d["kind"] == "BGPConfiguration")
    assert config["spec"]["nodeToNodeMeshEnabled"] is (rr == 0)
    peers = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "BGPPeer"}
    assert peers["tor"] == {"peerIP": "172.31.0.1", "asNumber": 65000}
    assert peers["tor-ipv6"] == {"peerIP": "fd00:172:31::1", "asNumber": 65000}
    nodes = [d for d in docs if d["kind"] == "Node"]
    assert [n["metadata"]["name"] for n in nodes] == ["h1", "h2"][:rr]
    if rr:
        assert "peer-with-route-reflectors" in peers


@pytest.mark.parametrize(
    ("family", "pools", "subnets"),
    [
        ("ipv4", ["lab-pool"], ("172.31.0.0/24",)),
        ("ipv6", ["lab-pool-v6"], ("fd00:172:31::/64",)),
        ("dual", ["lab-pool", "lab-pool-v6"], ("172.31.0.0/24", "fd00:172:31::/64")),
    ],
)
def test_ip_family_chooses_fabric_and_pools(family: str, pools: list[str], subnets: tuple[str, ...]) -> None:
    spec = LabSpec(ip_family=family, tor="frr")
    spec.check()
    assert spec.subnets == subnets and [p[0] for p in spec.pools()] == pools
    args = build_parser().parse_args(["lab", "up", "--ip-family", family])
    assert args.ip_family == family


def test_address_plan_per_family() -> None:
    plan = AddressPlan(fabric_subnets([V6, V4]))
    assert plan.host_addresses(1) == ["172.31.0.11/24", "fd00:172:31::b/64"]
    assert plan.appliance_addresses(1, "tor", []) == ["172.31.0.1/24", "fd00:172:31::1/64"]
    with pytest.raises(LabError, match="already used"):
        plan.appliance_addresses(11, "x", ["fd00:172:31::b/64"])
    assert check_subnets(["fd00::/64", "10.0.0.0/24"]) == ("10.0.0.0/24", "fd00::/64")
    for bad in (["10.0.0.0/24", "10.1.0.0/24"], [], ["10.0.0.1/24"]):
        with pytest.raises(ValueError):
            check_subnets(bad)


def test_bad_ip_family_and_pools_are_named() -> None:
    with pytest.raises(UserError) as err:
        LabSpec(ip_family="ipx", pool6="10.0.0.0/16", block_size=120).check()
    text = str(err.value)
    assert "--ip-family 'ipx'" in text and "pool6: '10.0.0.0/16' is not an IPv6 CIDR" in text
    assert "pool 10.244.0.0/16: block size 120 must be 20..32" in text


def test_lab_json_without_the_newer_fields_still_loads(tmp_path: Path) -> None:
    old = {
        "version": 1,
        "name": "lab1",
        "subnet": "172.31.0.0/24",
        "interface_prefix": "tort",
        "fabric_netns": "lab1-fab",
        "namespaces": ["lab1-fab"],
        "hosts": {
            "h1": {"name": "h1", "netns": "lab1-h1", "address": "172.31.0.11/24", "fabric_port": "p-h1"}
        },
        "workloads": {
            "w1": {
                "name": "w1",
                "host": "h1",
                "netns": "lab1-w1",
                "ips": ["10.0.0.1"],
                "host_ifname": "tortx",
                "plumbed_host_side": False,
            }
        },
        "processes": [{"pid": 1, "start_time": 2, "netns": "lab1-h1", "argv": ["x"], "log": None}],
        "files": [],
    }
    (tmp_path / "lab.json").write_text(json.dumps(old))
    state = load_state(tmp_path)
    assert state is not None
    assert state.workloads["w1"].via_cni is False and state.workloads["w1"].labels == {}
    assert state.processes[0].role == "" and state.datacenter is None and state.trees == []
    assert state.subnets == ["172.31.0.0/24"] and state.hosts["h1"].addresses == ["172.31.0.11/24"]
    assert state.host_ip("h1") == "172.31.0.11" and state.families == [V4]


def test_router_configurations() -> None:
    tor = ApplianceRecord("tor", "lab-tor", ["172.31.0.1/24"], "p-tor", "router", "gobgp", 65000)
    toml = gobgp_config(tor, ["172.31.0.0/24"], 64512)
    assert 'router-id = "172.31.0.1"' in toml and "peer-as = 64512" in toml
    assert 'prefix = "172.31.0.0/24"' in toml and "as = 65000" in toml and "ipv6" not in toml
    frr = frr_config(tor, ["172.31.0.0/24"], 64512)
    assert "router bgp 65000" in frr and "bgp listen range 172.31.0.0/24 peer-group hosts" in frr
    assert "no bgp ebgp-requires-policy" in frr and "neighbor hosts remote-as 64512" in frr


def test_router_configurations_per_family() -> None:
    subnets = ["172.31.0.0/24", "fd00:172:31::/64"]
    tor = ApplianceRecord("tor", "t", ["172.31.0.1/24", "fd00:172:31::1/64"], "p", "router", "frr", 65000)
    toml = gobgp_config(tor, subnets, 64512)
    assert 'local-address-list = ["172.31.0.1", "fd00:172:31::1"]' in toml
    assert 'afi-safi-name = "ipv4-unicast"' in toml and 'afi-safi-name = "ipv6-unicast"' in toml
    assert 'prefix = "fd00:172:31::/64"' in toml
    frr = frr_config(tor, subnets, 64512)
    assert "bgp listen range fd00:172:31::/64 peer-group hosts" in frr
    assert " address-family ipv6 unicast\n  neighbor hosts activate" in frr
    only6 = ApplianceRecord("tor", "t", ["fd00:172:31::1/64"], "p", "router", "frr", 65000)
    assert "bgp router-id 0.0.0.1" in frr_config(only6, subnets[1:], 64512)
    assert "address-family ipv4" not in frr_config(only6, subnets[1:], 64512)


def test_icmp_checksum() -> None:
    # RFC 1071: the checksum of a packet including its own checksum is zero.
    packet = bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"tortie-probe"
    csum = _checksum(packet)
    full = packet[:2] + csum.to_bytes(2, "big") + packet[4:]
    assert _checksum(full) == 0
    assert _checksum(b"\x01") == _checksum(b"\x01\x00")


def test_bgp_neighbour_entries_of_a_mesh_grow_with_the_square_of_the_hosts() -> None:
    # 50 hosts in a mesh need more than the kernel's default shared table (gc_thresh3 = 1024).
    assert LabSpec(hosts=50).bgp_neighbour_entries() == 50 * 49
    assert LabSpec(hosts=50, route_reflectors=2).bgp_neighbour_entries() == 200
    assert LabSpec(hosts=3, tor="gobgp").bgp_neighbour_entries() == 6 + 6
