"""Plain lab workloads: a namespace behind a veth, plumbed Calico-style by the lab itself (no CNI).

    <lab>-<host>   <prefix><hash>   host side of the veth, MAC ee:ee:ee:ee:ee:ee
                   (plumb_host_side: <ip>/32 dev <if> scope link, proxy_arp=1, proxy_delay=0,
                    and for IPv6 <ip6>/128 dev <if>, proxy_ndp=1, forwarding=1)
    <lab>-<name>   eth0 <ip>/32 (and <ip6>/128 nodad); 169.254.1.1 dev eth0 scope link;
                   default via 169.254.1.1 (IPv6: ::/0 via fe80::ecee:eeff:feee:eeee)

The host side (the /32 route and the interface sysctls) is left to the agent under test unless
`plumb_host_side=True` (tests of other parts). Host interface names are `<prefix>` + SHA-1 of
`<lab>/<workload>`, 15 characters (`host_interface_name` computes one before the workload exists, to
send an endpoint before its interface). Workloads made by the CNI plugin live in cni_workloads.py.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Sequence

from tortie.common.ipfamily import FAMILIES, V4, V6, Family, IPAddress, family_of
from tortie.dataplane.interfaces import MAX_IFNAME_LEN
from tortie.lab.fabric import WORKLOAD_GATEWAY_V4
from tortie.lab.iproute import ip_batch, run, write_sysctls
from tortie.lab.state import HostRecord, StateStore, WorkloadRecord

log = logging.getLogger(__name__)

HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"
WORKLOAD_GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"  # EUI-64 link-local of HOST_VETH_MAC

WORKLOAD_GATEWAYS = {V4: WORKLOAD_GATEWAY_V4, V6: WORKLOAD_GATEWAY_V6}


def host_interface_name(prefix: str, lab: str, workload: str) -> str:
    """`<prefix>` + hex hash of lab/workload, exactly 15 characters (the kernel's limit)."""
    digest = hashlib.sha1(f"{lab}/{workload}".encode()).hexdigest()
    return prefix + digest[: MAX_IFNAME_LEN - len(prefix)]


def _families(addresses: Sequence[IPAddress]) -> list[Family]:
    return [f for f in FAMILIES if any(family_of(a) == f for a in addresses)]


def _inside_lines(addresses: Sequence[IPAddress]) -> list[str]:
    """The workload namespace: eth0 up with every address (no DAD), a default route per family.
    The IPv4 gateway needs an on-link route of its own; IPv6 link-local addresses are on-link by
    definition. `ip -batch` cannot take `-6`, hence `<unspecified>/0` rather than `default`."""
    lines = ["link set lo up", "link set eth0 up"]
    for address in addresses:
        fam = family_of(address)
        lines.append(f"addr add {fam.host_cidr(address)} dev eth0" + (" nodad" if fam.dad else ""))
    for fam in _families(addresses):
        gateway = WORKLOAD_GATEWAYS[fam]
        if fam == V4:
            lines.append(f"route add {gateway} dev eth0 scope link")
        lines.append(f"route add {fam.unspecified}/0 via {gateway} dev eth0")
    return lines


class PlainWorkloads:
    """Add and remove plain workloads of one lab (see the module docstring)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def add(
        self, name: str, host: str, ips: str | Sequence[str], *, plumb_host_side: bool = False
    ) -> WorkloadRecord:
        """A workload namespace on `host` with `ips` (/32, /128 implied) behind a veth."""
        store, state = self.store, self.store.state
        store.check_member(name)
        if host not in state.hosts:
            raise ValueError(f"no host {host!r} in lab {state.name}")
        given = [ips] if isinstance(ips, str) else list(ips)
        addresses = [ipaddress.ip_address(ip.split("/")[0]) for ip in given]
        host_record = state.hosts[host]
        record = WorkloadRecord(
            name=name,
            host=host,
            netns=f"{state.name}-{name}",
            ips=[str(a) for a in addresses],
            host_ifname=host_interface_name(state.interface_prefix, state.name, name),
            plumbed_host_side=plumb_host_side,
        )
        store.record_workload(record, new=True)
        run(["ip", "netns", "add", record.netns])
        hif = record.host_ifname
        ip_batch(
            [
                f"link add {hif} type veth peer name eth0 netns {record.netns}",
                f"link set {hif} address {HOST_VETH_MAC}",
            ],
            host_record.netns,
        )
        for fam in _families(addresses):
            if fam.dad:
                write_sysctls(host_record.netns, {f"net/{fam.key}/conf/{hif}/accept_dad": "0"})
                write_sysctls(record.netns, {f"net/{fam.key}/conf/eth0/accept_dad": "0"})
        ip_batch(_inside_lines(addresses), record.netns)
        ip_batch([f"link set {hif} up"], host_record.netns)
        if plumb_host_side:
            _plumb_host_side(host_record, record, addresses)
        log.info(
            "lab workload created lab=%s workload=%s host=%s ips=%s iface=%s",
            state.name,
            name,
            host,
            ",".join(record.ips),
            hif,
        )
        return record

    def remove(self, name: str) -> None:
        """Delete the workload's namespace (its veth pair and host routes go with it)."""
        record = self.store.state.workloads[name]
        run(["ip", "netns", "del", record.netns], check=False)
        self.store.forget_workload(name)
        self.store.forget_namespace(record.netns)


def _plumb_host_side(host: HostRecord, workload: WorkloadRecord, addresses: Sequence[IPAddress]) -> None:
    """What CNI + the agent would add on the host: proxy ARP/NDP sysctls and the /32 (/128) routes."""
    hif = workload.host_ifname
    values = {f"net/ipv4/conf/{hif}/proxy_arp": "1", f"net/ipv4/neigh/{hif}/proxy_delay": "0"}
    if V6 in _families(addresses):
        values.update({f"net/ipv6/conf/{hif}/proxy_ndp": "1", f"net/ipv6/conf/{hif}/forwarding": "1"})
    write_sysctls(host.netns, values)
    lines = []
    for address in addresses:
        fam = family_of(address)
        scope = " scope link" if fam == V4 else ""
        lines.append(f"route replace {fam.host_cidr(address)} dev {hif}{scope}")
    ip_batch(lines, host.netns)
