"""`NetlinkPlumber`: the kernel implementation of `WorkloadPlumber` (see tortie.cni.plumbing).

Inputs: a `VethSpec`. Outputs: kernel state in the host namespace (the one this process runs in) and
in the container namespace named by the spec's path; `PlumbedInterface` with the MACs the kernel chose.
It speaks to the kernel through `tortie.kernel` (rtnetlink, /proc/sys, setns); a container-side netlink
socket is opened after `setns` into the container namespace, then used after returning (it stays bound
to the namespace it was opened in).

Sequence of `add` (each step is undone if a later one fails: the host veth is deleted, which takes its
peer, addresses and routes with it):

    1. delete a stale host end with the same name (a previous sandbox of this identity)
    2. create the veth; the peer is created directly inside the container namespace as CNI_IFNAME
    3. host sysctls (before link up, so IPv6 DAD is already off), host end up
    4. host /32 and /128 routes to the host end (an existing route via another interface is an error),
       before the container can send anything
    5. container: sysctls (IPv6 on, no DAD), link up, wait until both ends transmit (see
       `_wait_transmitting`), addresses, gateway routes

`attachment` compares the host end's IFLA_LINK_NETNSID with the id the host namespace gives the
requested namespace (RTM_GETNSID): equal means the peer is there.

Sockets: by default every call opens its host-side rtnetlink socket and closes it after; a
long-lived caller (the node's CNI service) passes one `host` socket, kept open and shared by its
threads (`Rtnl` serialises exchanges). Container-side sockets are always per call.

Kernel errors are `KernelError`s (a `DataplaneError`); a missing namespace `NetnsNotFound`.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import time
from collections.abc import Iterator

from tortie.cni.plumbing import (
    GATEWAY_V4,
    GATEWAY_V6,
    HOST_MAC,
    HOST_SYSCTLS_V4,
    HOST_SYSCTLS_V6,
    Attachment,
    PlumbedInterface,
    VethSpec,
)
from tortie.common.errors import DataplaneError, NetlinkError, NetnsNotFound
from tortie.common.ipfamily import V4, V6, IPInterface, IPNetwork, family_of
from tortie.kernel.netns import entered, open_netns
from tortie.kernel.rtnl import Rtnl
from tortie.kernel.rtnl_codec import RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, Link
from tortie.kernel.sysctl import read_sysctl, write_sysctl

log = logging.getLogger(__name__)

_LINK_ROUTE_V4 = V4.host_network(GATEWAY_V4)
_TRANSMIT_WAIT = 2.0
_DEFAULT_V4 = ipaddress.ip_network((V4.unspecified, 0))
_DEFAULT_V6 = ipaddress.ip_network((V6.unspecified, 0))


def _sysctl_key(directory: str, ifname: str, name: str) -> str:
    return f"net/{directory}/{ifname}/{name}"


def _wait_transmitting(host: Rtnl, host_ifname: str, cont: Rtnl, ifname: str) -> None:
    """Return once both veth ends transmit. Bringing the second end up turns the carrier on, and the
    kernel attaches the ends' (noqueue) qdiscs later, from its linkwatch work queue: until then each end
    has the "noop" qdisc, which drops everything sent -- the host's proxy ARP reply to the container's
    first request included, after which the container waits a full second before asking again. On a
    busy host that work can lag by tens of milliseconds, so the container gets its addresses and routes
    (and can send) only once both ends report a real qdisc (IFLA_QDISC), at most _TRANSMIT_WAIT later."""
    deadline = time.monotonic() + _TRANSMIT_WAIT
    while True:
        ends = (host.get_link(host_ifname), cont.get_link(ifname))
        if all(end is None or end.qdisc != "noop" for end in ends):
            return
        if time.monotonic() >= deadline:
            log.warning("veth still not transmitting after %.1fs; continuing", _TRANSMIT_WAIT)
            return
        time.sleep(0.001)


def _host_route_dst(addr: IPInterface) -> IPNetwork:
    return family_of(addr).host_network(addr.ip)


class NetlinkPlumber:
    """Kernel plumbing through rtnetlink and /proc/sys (see the module docstring)."""

    def __init__(self, host: Rtnl | None = None) -> None:
        self._shared = host

    @contextlib.contextmanager
    def _host(self) -> Iterator[Rtnl]:
        if self._shared is not None:
            yield self._shared
            return
        with Rtnl() as host:
            yield host

    def attachment(self, host_ifname: str, netns: str) -> Attachment:
        with self._host() as host:
            link = host.get_link(host_ifname)
            if link is None:
                return "absent"
            if link.link_netnsid is None:
                return "unknown"
            try:
                ns_fd = open_netns(netns)
            except NetnsNotFound:
                return "elsewhere"  # the peer's namespace is alive (the veth exists); this one is not
            try:
                return "here" if host.nsid_of(ns_fd) == link.link_netnsid else "elsewhere"
            finally:
                os.close(ns_fd)

    def add(self, spec: VethSpec) -> PlumbedInterface:
        ns_fd = open_netns(spec.netns)
        try:
            with self._host() as host:
                stale = host.get_link(spec.host_ifname)
                if stale is not None:
                    log.info("deleting stale host interface ifname=%s", spec.host_ifname)
                    host.delete_link(stale.ifindex)
                try:
                    host.add_veth(
                        spec.host_ifname, spec.ifname, peer_netns_fd=ns_fd, mtu=spec.mtu, mac=HOST_MAC
                    )
                except NetlinkError as e:
                    if e.errno == errno.EEXIST:
                        raise DataplaneError(
                            f"cannot create the veth: an interface named {spec.ifname} already exists in "
                            f"{spec.netns} (or {spec.host_ifname} on the host)"
                        ) from e
                    raise DataplaneError(f"cannot create veth {spec.host_ifname}: {e}") from e
                try:
                    return self._configure(host, ns_fd, spec)
                except BaseException:
                    link = host.get_link(spec.host_ifname)
                    if link is not None:
                        host.delete_link(link.ifindex)
                    raise
        finally:
            os.close(ns_fd)

    def _configure(self, host: Rtnl, ns_fd: int, spec: VethSpec) -> PlumbedInterface:
        link = host.get_link(spec.host_ifname)
        if link is None:
            raise DataplaneError(f"veth {spec.host_ifname} vanished right after creation")
        for directory, name, value in HOST_SYSCTLS_V4:
            write_sysctl(_sysctl_key(directory, spec.host_ifname, name), value)
        if spec.has_v6:
            for directory, name, value in HOST_SYSCTLS_V6:
                write_sysctl(_sysctl_key(directory, spec.host_ifname, name), value)
        if link.mac != HOST_MAC:  # something (udev MACAddressPolicy) overrode it: set it again
            host.set_link(link.ifindex, mac=HOST_MAC)
        host.set_link(link.ifindex, up=True)
        # The host routes come before the container can send: until the workload's /32 points at this
        # interface, its first ARP request (for 169.254.1.1) fails the reverse-path check (the block's
        # blackhole covers its source), goes unanswered, and the container's neighbour entry waits a
        # whole retransmission interval (1 s) before asking again -- past the moment ADD returns.
        for addr in spec.addresses:
            self._host_route(host, link.ifindex, addr, spec)
        with entered(ns_fd):
            cont = Rtnl()
        try:
            peer = cont.get_link(spec.ifname)
            if peer is None:
                raise DataplaneError(f"{spec.ifname} not found in {spec.netns} after creating it")
            if spec.has_v6:
                with entered(ns_fd):
                    write_sysctl(_sysctl_key("ipv6/conf", spec.ifname, "disable_ipv6"), "0")
                    write_sysctl(_sysctl_key("ipv6/conf", spec.ifname, "accept_dad"), "0")
            cont.set_link(peer.ifindex, up=True)
            _wait_transmitting(host, spec.host_ifname, cont, spec.ifname)
            for addr in spec.addresses:
                cont.add_addr(peer.ifindex, addr, nodad=family_of(addr).dad)
            if spec.has_v4:
                cont.add_route(_LINK_ROUTE_V4, oif=peer.ifindex, scope=RT_SCOPE_LINK, protocol=3)
                cont.add_route(_DEFAULT_V4, oif=peer.ifindex, gateway=GATEWAY_V4, protocol=3)
            if spec.has_v6:
                cont.add_route(_DEFAULT_V6, oif=peer.ifindex, gateway=GATEWAY_V6, protocol=3)
        finally:
            cont.close()
        return PlumbedInterface(spec.host_ifname, HOST_MAC, spec.ifname, peer.mac or "", spec.mtu)

    @staticmethod
    def _host_route(host: Rtnl, index: int, addr: IPInterface, spec: VethSpec) -> None:
        dst = _host_route_dst(addr)
        scope = RT_SCOPE_LINK if family_of(addr) is V4 else RT_SCOPE_UNIVERSE  # IPv6 routes have no scope
        try:
            host.add_route(dst, oif=index, scope=scope, protocol=spec.route_protocol)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise
            existing = [r for r in host.routes(family_of(addr).af) if r.dst == dst]
            if existing and all(r.oif == index for r in existing):
                return  # the agent got there first: same route
            others = ", ".join(str(r.oif) for r in existing)
            raise DataplaneError(
                f"the host already routes {dst} via another interface (ifindex {others}); "
                "is the address in use by another workload?"
            ) from e

    def remove(self, host_ifname: str) -> bool:
        try:
            with self._host() as host:
                link = host.get_link(host_ifname)
                if link is None:
                    return False
                return host.delete_link(link.ifindex)
        except NetlinkError as e:
            raise DataplaneError(f"cannot delete {host_ifname}: {e}") from e

    def check(self, spec: VethSpec) -> list[str]:
        problems: list[str] = []
        try:
            ns_fd = open_netns(spec.netns)
        except Exception as e:
            return [str(e)]
        try:
            with self._host() as host:
                hlink = host.get_link(spec.host_ifname)
                if hlink is None:
                    return [f"host interface {spec.host_ifname} does not exist"]
                if not hlink.up:
                    problems.append(f"host interface {spec.host_ifname} is down")
                if hlink.mac != HOST_MAC:
                    problems.append(
                        f"host interface {spec.host_ifname} has MAC {hlink.mac}, expected {HOST_MAC}"
                    )
                for directory, name, value in HOST_SYSCTLS_V4[:2]:
                    got = read_sysctl(_sysctl_key(directory, spec.host_ifname, name))
                    if got != value:
                        problems.append(f"{directory}/{spec.host_ifname}/{name} is {got}, expected {value}")
                for addr in spec.addresses:
                    dst = _host_route_dst(addr)
                    if not any(
                        r.dst == dst and r.oif == hlink.ifindex for r in host.routes(family_of(addr).af)
                    ):
                        problems.append(f"host route {dst} dev {spec.host_ifname} is missing")
                with entered(ns_fd):
                    cont = Rtnl()
                try:
                    problems += self._check_container(cont, spec, hlink)
                finally:
                    cont.close()
        except NetlinkError as e:
            problems.append(f"netlink error while checking: {e}")
        finally:
            os.close(ns_fd)
        return problems

    @staticmethod
    def _check_container(cont: Rtnl, spec: VethSpec, hlink: Link) -> list[str]:
        problems: list[str] = []
        clink = cont.get_link(spec.ifname)
        if clink is None:
            return [f"{spec.ifname} does not exist in {spec.netns}"]
        if clink.kind != "veth" or clink.peer_index != hlink.ifindex or hlink.peer_index != clink.ifindex:
            problems.append(
                f"{spec.ifname} in {spec.netns} is not the peer of host interface {spec.host_ifname}"
            )
        if not clink.up:
            problems.append(f"{spec.ifname} in {spec.netns} is down")
        if clink.mtu != spec.mtu:
            problems.append(f"{spec.ifname} has MTU {clink.mtu}, expected {spec.mtu}")
        have = {a.address for a in cont.addrs(clink.ifindex)}
        for addr in spec.addresses:
            if addr not in have:
                problems.append(f"{spec.ifname} lacks address {addr}")
        if spec.has_v4:
            routes = cont.routes(V4.af)
            if not any(
                r.dst == _LINK_ROUTE_V4 and r.oif == clink.ifindex and r.scope == RT_SCOPE_LINK
                for r in routes
            ):
                problems.append(f"route {GATEWAY_V4} dev {spec.ifname} scope link is missing")
            if not any(r.dst == _DEFAULT_V4 and r.gateway == GATEWAY_V4 for r in routes):
                problems.append(f"default route via {GATEWAY_V4} is missing")
        if spec.has_v6 and not any(
            r.dst == _DEFAULT_V6 and r.gateway == GATEWAY_V6 for r in cont.routes(V6.af)
        ):
            problems.append(f"default route via {GATEWAY_V6} is missing")
        return problems
