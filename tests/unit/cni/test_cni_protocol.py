"""Pure parts of the CNI plugins: environment, network config, results across versions, names."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tortie.cni.endpoint import default_profiles
from tortie.cni.errors import CniError
from tortie.cni.naming import host_veth_name, identify, wep_name
from tortie.cni.netconf import (
    SUPPORTED_VERSIONS,
    Attachment,
    attachment_valid,
    load_json,
    parse_netconf,
    resolve_mtu,
    resolve_nodename,
)
from tortie.cni.request import parse_cni_args, parse_request
from tortie.cni.result import CniResult, Dns, Interface, IPConfig, RouteSpec, from_wire


def test_request_parses_cni_args_and_path() -> None:
    req = parse_request(
        {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "abc_1.x",
            "CNI_NETNS": "/proc/1/ns/net",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;EMPTY=",
            "CNI_PATH": "/a::/b",
        }
    )
    assert req.k8s_pod == ("ns", "p")
    assert req.args["EMPTY"] == "" and req.path == ("/a", "/b")


def test_del_needs_no_netns_and_status_needs_nothing() -> None:
    assert parse_request({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"}).netns == ""
    assert parse_request({"CNI_COMMAND": "STATUS"}).command == "STATUS"


def test_cni_args_errors() -> None:
    assert parse_cni_args("") == {}
    with pytest.raises(CniError) as exc:
        parse_cni_args("A=1;B")
    assert exc.value.code == 4


def test_netconf_defaults_and_fields() -> None:
    conf = parse_netconf(
        load_json(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "n",
                    "type": "tortie",
                    "mtu": 1400,
                    "nodename": "h1",
                    "ipam": {
                        "type": "tortie-ipam",
                        "assign_ipv6": True,
                        "ipv4_pools": ["p4"],
                        "ipv6_pools": ["fd00::/64"],
                    },
                    "args": {"cni": {"labels": [{"key": "tier", "value": "db"}]}},
                    "labels": {"app": "x"},
                    "cni.dev/valid-attachments": [
                        {"containerID": "a", "ifname": "eth0"},
                        {"containerID": "b"},
                    ],
                    "someRuntimeField": {"ignored": True},
                }
            ).encode()
        )
    )
    assert conf.mtu == 1400 and conf.interface_prefix == "tort" and conf.route_protocol == 77
    assert conf.ipam.pools == ("p4", "fd00::/64") and conf.ipam.assign_ipv4
    assert dict(conf.labels) == {"app": "x", "tier": "db"}
    assert conf.valid_attachments == (Attachment("a", "eth0"), Attachment("b", None))
    assert resolve_nodename(conf) == "h1"


def test_nodename_and_mtu_files(tmp_path: Path) -> None:
    node_file = tmp_path / "nodename"
    node_file.write_text("from-file\n")
    mtu_file = tmp_path / "mtu"
    mtu_file.write_text("1410\n")
    conf = parse_netconf(
        {"cniVersion": "1.0.0", "name": "n", "nodename_file": str(node_file), "mtu_file": str(mtu_file)}
    )
    assert resolve_nodename(conf) == "from-file" and resolve_mtu(conf) == 1410
    conf = parse_netconf(
        {"cniVersion": "1.0.0", "name": "n", "nodename_file": "/nonexistent", "mtu_file": "/nonexistent"}
    )
    assert resolve_nodename(conf) and resolve_mtu(conf) == 1500


def test_attachment_matching() -> None:
    valid = [Attachment("a", "eth0"), Attachment("b", None)]
    assert attachment_valid(valid, "a", "eth0") and not attachment_valid(valid, "a", "net1")
    assert attachment_valid(valid, "b", "anything") and not attachment_valid(valid, "c", None)


def test_names() -> None:
    assert wep_name("node-1", "k8s", "web-0", "eth0") == "node--1-k8s-web--0-eth0"
    assert wep_name("Node_A", "cni", "Abc_1", "eth0") == "node.a-cni-abc.1-eth0"
    name = host_veth_name("tort", "default", "x")
    assert len(name) == 15 and name.startswith("tort")
    assert host_veth_name("t", "default", "x") != name and len(host_veth_name("t", "default", "x")) == 15
    ident = identify(
        node="n",
        network="net",
        container_id="c1",
        ifname="eth0",
        k8s_pod=None,
        default_namespace="default",
        interface_prefix="tort",
    )
    assert (ident.orchestrator, ident.workload, ident.handle, ident.pod) == ("cni", "c1", "net.c1", None)


def test_a_pod_gets_calicos_kubernetes_name_and_its_namespaces_profile() -> None:
    pod = identify(
        node="node-1",
        network="k8s-pod-network",
        container_id="c1",
        ifname="eth0",
        k8s_pod=("shop", "web-7d9f-x2"),
        default_namespace="default",
        interface_prefix="tort",
    )
    assert (pod.orchestrator, pod.namespace, pod.pod) == ("k8s", "shop", "web-7d9f-x2")
    assert pod.wep_name == "node--1-k8s-web--7d9f--x2-eth0"
    assert default_profiles("k8s-pod-network", None, pod) == ("kns.shop",)
    assert default_profiles("k8s-pod-network", ["a", "b"], pod) == ("a", "b")  # configured ones win
    plain = identify(
        node="n", network="net", container_id="c1", ifname="eth0", k8s_pod=None,
        default_namespace="default", interface_prefix="tort",
    )
    assert default_profiles("net", None, plain) == ("net",)


# ---------------------------------------------------------------------------------------------- results

_v4 = st.builds(
    lambda n, p: ipaddress.ip_interface(f"{ipaddress.IPv4Address(n)}/{p}"),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
_v6 = st.builds(
    lambda n, p: ipaddress.ip_interface(f"{ipaddress.IPv6Address(n)}/{p}"),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
_names = st.text("abcdef0123456789", min_size=1, max_size=15)
_results = st.builds(
    CniResult,
    interfaces=st.lists(
        st.builds(
            Interface,
            name=_names,
            mac=st.sampled_from(["", "ee:ee:ee:ee:ee:ee"]),
            sandbox=st.sampled_from(["", "/run/netns/x"]),
            mtu=st.none() | st.integers(68, 9000),
        ),
        max_size=3,
    ).map(tuple),
    ips=st.lists(
        st.builds(
            IPConfig,
            address=_v4 | _v6,
            gateway=st.none() | _v4.map(lambda i: i.ip),
            interface=st.none() | st.integers(0, 3),
        ),
        max_size=3,
    ).map(tuple),
    routes=st.lists(
        st.builds(
            RouteSpec,
            dst=(_v4 | _v6).map(lambda i: i.network),
            gw=st.none() | _v6.map(lambda i: i.ip),
            scope=st.none() | st.sampled_from([0, 253]),
        ),
        max_size=3,
    ).map(tuple),
    dns=st.builds(
        Dns,
        nameservers=st.lists(st.just("10.0.0.10"), max_size=1).map(tuple),
        domain=st.sampled_from(["", "cluster.local"]),
    ),
)


def _expressible(result: CniResult, version: str) -> CniResult:
    if version == "1.1.0":
        return result
    return dataclasses.replace(
        result,
        interfaces=tuple(dataclasses.replace(i, mtu=None) for i in result.interfaces),
        routes=tuple(dataclasses.replace(r, scope=None) for r in result.routes),
    )


@given(_results, st.sampled_from(SUPPORTED_VERSIONS))
def test_result_round_trips_through_every_version(result: CniResult, version: str) -> None:
    wire = json.loads(json.dumps(result.to_wire(version)))
    assert wire["cniVersion"] == version
    assert from_wire(wire) == _expressible(result, version)
    if version.startswith("0."):
        assert all(
            ip["version"] == str(ipaddress.ip_interface(ip["address"]).version) for ip in wire.get("ips", [])
        )


@pytest.mark.parametrize(
    "bad",
    [
        {"ips": "x"},
        {"ips": [{"address": "nope"}]},
        {"interfaces": [{}]},
        {"dns": []},
        {"routes": [{"gw": "1.1.1.1"}]},
    ],
)
def test_bad_prev_result_is_a_decoding_error(bad: dict[str, object]) -> None:
    with pytest.raises(CniError) as exc:
        from_wire(bad)
    assert exc.value.code == 6


@pytest.mark.parametrize(
    ("ipam", "families"),
    [
        ({}, (True, False)),
        ({"assign_ipv6": "true"}, (True, True)),  # Calico's configurations spell them as strings
        ({"assign_ipv4": "false", "assign_ipv6": "true"}, (False, True)),
        ({"assign_ipv4": True, "assign_ipv6": True}, (True, True)),
    ],
)
def test_assign_flags_as_booleans_or_calico_strings(
    ipam: dict[str, object], families: tuple[bool, bool]
) -> None:
    conf = parse_netconf({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "tortie-ipam", **ipam}})
    assert (conf.ipam.assign_ipv4, conf.ipam.assign_ipv6) == families


def test_assign_flag_spelled_otherwise_is_named() -> None:
    with pytest.raises(CniError) as err:
        parse_netconf({"cniVersion": "1.0.0", "name": "n", "ipam": {"assign_ipv6": "yes"}})
    assert err.value.code == 7 and "ipam.assign_ipv6" in err.value.details
