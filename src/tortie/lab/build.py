"""`tortie lab up`: build a datacenter lab from a `LabSpec`, in this order, each step recorded first.

    1. refuse a name whose lab.json or `<name>-*` namespaces exist                    (LabExists)
    2. fabric <name>-fab + hosts <name>-h1..hK, one subnet per IP family of the spec   (Lab.create);
       vxlan: the fabric drops frames from workload addresses (Fabric.drop_sources);
       vxlan-cross-subnet: N host subnets and a router between them (Fabric.add_subnet_router)
    3. datastore: a sqlite file in <workdir>/data, or N etcd members on the fabric + relay (etcd_members)
    4. ToR appliance (<subnet>.1) when asked; the DatacenterRecord; seed manifests     (spec)
    5. the ToR's daemon(s) (routers); the CNI plugin launchers in <workdir>/cni/bin (cni.install)
    6. `tortie node run` on every host (node_services), then wait until ready           (readiness)
    7. workloads w<i>-<j> through the CNI plugin, 4 at a time, round robin over hosts (cni_workloads),
       then wait until every host routes them                                         (readiness)

Workloads come after the node services, as on a real node: each ADD is served by its host's CNI
service (`<run_root>/<host>/cni.sock`) and returns once that host's agent has programmed the
endpoint's policy and routes (its status file under `<run_root>/<host>/endpoint-status`); each
takes its MTU from the file its host's agent writes (`<run_root>/<host>/mtu`: the uplink MTU minus
the VXLAN overhead when the pools encapsulate). A failure anywhere tears the partial lab down and
re-raises.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from pathlib import Path

from tortie.lab.cni_workloads import CniWorkloads
from tortie.lab.errors import LabExists
from tortie.lab.iproute import list_namespaces
from tortie.lab.lab import Lab
from tortie.lab.node_services import NodeServices
from tortie.lab.readiness import wait_ready
from tortie.lab.spec import LabSpec, seed_manifests
from tortie.lab.state import DatacenterRecord, load_state

TOR_NAME = "tor"
TOR_INDEX = 1
ROUTER_NAME = "rtr"
ROUTER_INDEX = 254

Progress = Callable[[str], None]


def build(spec: LabSpec, workdir: Path, *, progress: Progress | None = None, timeout: float = 120.0) -> Lab:
    """Build the lab `spec` describes in `workdir`; returns it ready (see the module docstring)."""
    spec.check()
    started = time.monotonic()

    def say(message: str) -> None:
        if progress is not None:
            progress(f"[{time.monotonic() - started:5.1f}s] {message}")

    if load_state(workdir) is not None:
        raise LabExists(
            f"lab {spec.name!r} already exists ({workdir}); remove it with "
            f"`tortie lab down --name {spec.name}` or pick another --name"
        )
    taken = [ns for ns in list_namespaces() if ns.startswith(f"{spec.name}-")]
    if taken:
        raise LabExists(
            f"network namespaces named {spec.name}-* already exist ({', '.join(taken[:5])}); "
            "pick another --name"
        )
    lab = Lab.create(spec.name, workdir, hosts=spec.hosts, subnets=spec.subnets, segments=spec.segments)
    try:
        _build_on(lab, spec, say, timeout)
    except BaseException:
        lab.down()
        raise
    return lab


def _warn_neighbour_capacity(spec: LabSpec, say: Progress) -> None:
    """Say so when the BGP sessions need more neighbour entries than the kernel's shared table holds."""
    needed = spec.bgp_neighbour_entries()
    for fam in spec.families:
        path = f"/proc/sys/net/ipv{fam.version}/neigh/default/gc_thresh3"
        try:
            limit = int(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if needed > limit:
            say(f"warning: the BGP sessions need ~{needed} IPv{fam.version} neighbour entries, the kernel "
                f"holds at most {limit} for all namespaces together ({path}): sessions may stay in Connect "
                "(sendmsg: No buffer space available); use --route-reflectors or raise the limit")


def _build_on(lab: Lab, spec: LabSpec, say: Progress, timeout: float) -> None:
    from tortie.cni.install import install

    records, workdir = lab.records, lab.workdir
    records.record_file(workdir / ".lock")
    hosts = list(lab.state.hosts)
    say(
        f"fabric {lab.state.fabric_netns} ({', '.join(lab.state.subnets)}) and {len(hosts)} hosts: "
        f"{' '.join(hosts)}"
    )
    _warn_neighbour_capacity(spec, say)
    pools = [cidr for _name, cidr, _size in spec.pools()]
    if spec.encapsulation == "vxlan":
        lab.fabric.drop_sources(pools)
        say(f"fabric drops packets from workload addresses ({', '.join(pools)}): VXLAN only")
    elif spec.encapsulation == "vxlan-cross-subnet":
        router = lab.fabric.add_subnet_router(ROUTER_NAME, ROUTER_INDEX)
        say(f"{spec.segments} host subnets joined by router {ROUTER_NAME} ({', '.join(router.addresses)}), "
            "which routes host addresses only")
    run_root = records.record_tree(workdir / "run")
    cni_root = records.record_tree(workdir / "cni")
    if spec.datastore == "etcd":
        from tortie.lab.etcd_members import start_cluster

        endpoints = start_cluster(lab, spec.etcd_members, tls=spec.etcd_tls)
        inner, client, ports = endpoints.inner_url, endpoints.client_url, endpoints.relay_ports
        secure = ", TLS with client certificates, user tortie" if spec.etcd_tls else ""
        say(
            f"etcd: {spec.etcd_members} members on the fabric ({inner.split('://')[1].split('?')[0]}"
            f"{secure}), relay for this namespace: {client}"
        )
    else:
        data = records.record_tree(workdir / "data")
        inner = client = f"sqlite://{data / 'datastore.db'}"
        ports = []
        say(f"datastore: {inner}")
    tor_ips: list[str] = []
    if spec.tor != "none":
        tor = lab.fabric.add_appliance(TOR_NAME, TOR_INDEX, "router", kind=spec.tor, asn=spec.tor_as)
        tor_ips = [str(ipaddress.ip_interface(a).ip) for a in tor.addresses]
    record = DatacenterRecord(
        datastore_kind=spec.datastore,
        datastore_url=inner,
        client_url=client,
        pools=pools,
        host_as=spec.host_as,
        tor=spec.tor,
        tor_as=spec.tor_as,
        route_reflectors=hosts[: spec.route_reflectors],
        cni_bin=str(cni_root / "bin"),
        run_root=str(run_root),
        etcd_ports=ports,
        encapsulation=spec.encapsulation,
        bgp=spec.bgp,
    )
    lab.state.datacenter = record
    records.save()
    _seed(client, spec, hosts, tor_ips)
    if tor_ips:
        from tortie.lab.routers import start_router

        start_router(lab, lab.state.appliances[TOR_NAME], spec.host_as)
        say(f"ToR {TOR_NAME} ({spec.tor}, AS {spec.tor_as}) at {', '.join(tor_ips)}")
    install(cni_root / "bin")
    nodes = NodeServices(lab, record)
    for host in hosts:
        nodes.start(host)
    say(f"tortie node run started on {len(hosts)} hosts")
    wait_ready(nodes, timeout=timeout, progress=say)
    names = [  # round robin over hosts: each host's IPAM calls are serialised by its lock file
        (f"w{i}-{j}", host) for j in range(1, spec.workloads_per_host + 1) for i, host in enumerate(hosts, 1)
    ]
    if names:
        CniWorkloads.for_lab(lab).add_many(names, progress=say)
        wait_ready(nodes, timeout=timeout, progress=say)
    say(f"lab {spec.name} is ready")


def _seed(client_url: str, spec: LabSpec, hosts: list[str], tor_ips: list[str]) -> None:
    from tortie.datastore.resources import ResourceStore
    from tortie.datastore.url import open_datastore
    from tortie.model import parse_resource

    ds = open_datastore(client_url)
    try:
        store = ResourceStore(ds)
        store.apply_all([parse_resource(m, source="lab") for m in seed_manifests(spec, hosts, tor_ips)])
    finally:
        ds.close()
