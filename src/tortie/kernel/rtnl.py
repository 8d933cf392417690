"""`Rtnl`: the rtnetlink requests tortie makes, over one NETLINK_ROUTE socket.

    Rtnl()  -- opened in the network namespace of the calling thread (see `netns`), kept for life;
               NetnsRtnl(netns, name) opens one inside a named namespace for a long-lived user
      links:       links(), get_link(name), ifindex(name), add_veth(...), add_vxlan(...), set_link(...),
                   delete_link(index)
      namespaces:  nsid_of(netns_fd): a namespace's id here (matches a veth's Link.link_netnsid)
      addresses:   addrs(index=None, family=AF_UNSPEC), add_addr(...), delete_addr(...)
      routes:      routes(family, table, protocol), add_route(dst, ...), delete_route(dst, ...)
      neighbours:  neighbours(family, index), set_neighbour(...), delete_neighbour(...)
      FDB:         fdb(index), append_fdb(index, mac, dst), delete_fdb(index, mac, dst)

Every change is acknowledged (it returns once the kernel applied it). Errors are
`tortie.common.errors.NetlinkError` with the kernel's errno and text; "not there" answers of lookups
and deletes are results instead (`get_link` -> None, `delete_*` -> False). Route dumps are filtered by
table and protocol in the kernel (strict checking, as `ip route show table T proto P`) and again here.
`ifindex(name)` raises `LinkNotFound` when there is none.
Codecs and records: `rtnl_codec`. Framing and the exchange: `netlink`.
"""

from __future__ import annotations

import errno as _errno
import threading

from tortie.common.errors import KernelError, LinkNotFound, NetlinkError
from tortie.common.ipfamily import IPAddress, IPInterface, IPNetwork, family_of
from tortie.kernel import rtnl_codec as codec
from tortie.kernel.netlink import (
    NETLINK_ROUTE,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NetlinkSocket,
)
from tortie.kernel.netns import NetnsWorker
from tortie.kernel.rtnl_codec import (
    AF_BRIDGE,
    AF_UNSPEC,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTN_UNICAST,
    RTPROT_BOOT,
    Address,
    Link,
    Neighbour,
    Route,
)

_GONE = (_errno.ENODEV, _errno.ENOENT, _errno.ESRCH, _errno.EADDRNOTAVAIL)


class Rtnl:
    """One NETLINK_ROUTE socket in the namespace that was current when it was created."""

    def __init__(self) -> None:
        self.sock = NetlinkSocket(NETLINK_ROUTE, strict=True)

    @property
    def strict(self) -> bool:
        """Whether the kernel filters dumps (NETLINK_GET_STRICT_CHK, Linux >= 4.20)."""
        return self.sock.strict

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _delete(self, kind: int, body: bytes, what: str) -> bool:
        return self.sock.delete(kind, body, what, _GONE)

    # -- links --------------------------------------------------------------------------------------
    def links(self) -> list[Link]:
        messages = self.sock.dump(codec.RTM_GETLINK, codec.link_query(), "list links")
        return [codec.decode_link(body) for kind, body in messages if kind == codec.RTM_NEWLINK]

    def get_link(self, name: str) -> Link | None:
        """The interface called `name`, or None when there is none."""
        try:
            messages = self.sock.request(codec.RTM_GETLINK, 0, codec.link_query(name), f"get link {name}")
        except NetlinkError as exc:
            if exc.errno in (_errno.ENODEV, _errno.ENOENT):
                return None
            raise
        for kind, body in messages:
            if kind == codec.RTM_NEWLINK:
                return codec.decode_link(body)
        return None

    def ifindex(self, name: str) -> int:
        """The index of the interface called `name` (`LinkNotFound` when there is none)."""
        link = self.get_link(name)
        if link is None:
            raise LinkNotFound(f"interface {name} does not exist", _errno.ENODEV)
        return link.ifindex

    def add_veth(
        self,
        name: str,
        peer_name: str,
        *,
        peer_netns_fd: int | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        peer_mac: str | None = None,
    ) -> None:
        """Create a veth pair `name` <-> `peer_name`; the peer is created directly in the namespace
        open as `peer_netns_fd` (so its name only has to be free there). Both ends start down."""
        info = codec.veth_linkinfo(peer_name, peer_netns_fd=peer_netns_fd, mtu=mtu, peer_mac=peer_mac)
        body = codec.link_request(name=name, mtu=mtu, mac=mac, linkinfo=info)
        self.sock.request(
            codec.RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create veth {name}/{peer_name}"
        )

    def add_vxlan(
        self,
        name: str,
        vni: int,
        *,
        port: int = 4789,
        local: IPAddress | None = None,
        link: int | None = None,
        learning: bool = False,
        mtu: int | None = None,
        mac: str | None = None,
    ) -> None:
        """Create a VXLAN device (down; remote VTEPs come from FDB entries, learning off by default)."""
        info = codec.vxlan_linkinfo(vni, port=port, local=local, link=link, learning=learning)
        body = codec.link_request(name=name, mtu=mtu, mac=mac, linkinfo=info)
        self.sock.request(codec.RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create vxlan {name}")

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        mac: str | None = None,
        mtu: int | None = None,
        name: str | None = None,
    ) -> None:
        body = codec.link_request(index, name=name, up=up, mtu=mtu, mac=mac)
        self.sock.request(codec.RTM_NEWLINK, 0, body, f"set link {index}")

    def delete_link(self, index: int) -> bool:
        """Delete an interface; False if it was already gone."""
        return self._delete(codec.RTM_DELLINK, codec.link_request(index), f"delete link {index}")

    # -- namespaces ---------------------------------------------------------------------------------
    def nsid_of(self, netns_fd: int) -> int | None:
        """The id this namespace knows the namespace open as `netns_fd` by (None: none assigned, so no
        link of this namespace has its peer there)."""
        messages = self.sock.request(codec.RTM_GETNSID, 0, codec.nsid_query(netns_fd), "get namespace id")
        for kind, body in messages:
            if kind == codec.RTM_NEWNSID:
                return codec.decode_nsid(body)
        return None

    # -- addresses ----------------------------------------------------------------------------------
    def addrs(self, index: int | None = None, family: int = AF_UNSPEC) -> list[Address]:
        body = codec.addr_dump_request(family, index or 0)
        found = []
        for kind, payload in self.sock.dump(codec.RTM_GETADDR, body, "list addresses"):
            addr = codec.decode_addr(payload) if kind == codec.RTM_NEWADDR else None
            if addr is not None and (index is None or addr.ifindex == index):
                found.append(addr)
        return found

    def add_addr(self, index: int, iface: IPInterface, *, nodad: bool = False) -> None:
        body = codec.addr_request(index, iface, flags=codec.IFA_F_NODAD if nodad else 0)
        self.sock.request(
            codec.RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add address {iface} to link {index}"
        )

    def delete_addr(self, index: int, iface: IPInterface) -> bool:
        body = codec.addr_request(index, iface)
        return self._delete(codec.RTM_DELADDR, body, f"delete address {iface} from link {index}")

    # -- routes -------------------------------------------------------------------------------------
    def routes(self, family: int, table: int = RT_TABLE_MAIN, protocol: int = 0) -> list[Route]:
        """Routes of `family` in `table` (of `protocol` unless 0); a table that does not exist is empty."""
        body = codec.route_dump_request(family, table, protocol)
        try:
            messages = self.sock.dump(codec.RTM_GETROUTE, body, f"list routes (table {table})")
        except NetlinkError as exc:
            if exc.errno == _errno.ENOENT:  # strict dump of a table that does not exist (yet)
                return []
            raise
        out = []
        for kind, payload in messages:
            if kind == codec.RTM_NEWROUTE:
                route = codec.decode_route(payload)
                if route.family == family and route.table == table and protocol in (0, route.protocol):
                    out.append(route)
        return out

    def add_route(
        self,
        dst: IPNetwork,
        *,
        oif: int | None = None,
        gateway: IPAddress | None = None,
        scope: int = RT_SCOPE_UNIVERSE,
        protocol: int = RTPROT_BOOT,
        table: int = RT_TABLE_MAIN,
        type: int = RTN_UNICAST,
        priority: int | None = None,
        onlink: bool = False,
        replace: bool = False,
    ) -> None:
        """Create a route (EEXIST if the key is taken), or with `replace` create or replace it.
        `onlink`: the gateway counts as reachable through `oif` without a route to it (VXLAN next hops)."""
        body = codec.route_request(
            dst,
            table=table,
            protocol=protocol,
            scope=scope,
            type=type,
            oif=oif,
            gateway=gateway,
            priority=priority,
            onlink=onlink,
        )
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self.sock.request(codec.RTM_NEWROUTE, flags, body, f"{'replace' if replace else 'add'} route {dst}")

    def delete_route(
        self,
        dst: IPNetwork,
        *,
        oif: int | None = None,
        scope: int = RT_SCOPE_UNIVERSE,
        protocol: int = 0,
        table: int = RT_TABLE_MAIN,
        type: int = RTN_UNICAST,
    ) -> bool:
        """Delete a route; False if there was none. The kernel matches on what is given: IPv4 on scope
        (RT_SCOPE_NOWHERE = any, as `ip route del`), both families on protocol unless 0 and on oif."""
        body = codec.route_request(dst, table=table, protocol=protocol, scope=scope, type=type, oif=oif)
        return self._delete(codec.RTM_DELROUTE, body, f"delete route {dst}")

    # -- neighbours (ARP / NDP) ---------------------------------------------------------------------
    def neighbours(self, family: int, index: int | None = None) -> list[Neighbour]:
        body = codec.neigh_dump_request(family, index)
        messages = self.sock.dump(codec.RTM_GETNEIGH, body, "list neighbours")
        found = [codec.decode_neighbour(p) for kind, p in messages if kind == codec.RTM_NEWNEIGH]
        return [n for n in found if n.family == family and (index is None or n.ifindex == index)]

    def set_neighbour(self, index: int, dst: IPAddress, mac: str) -> None:
        """A permanent neighbour entry (`ip neigh replace DST lladdr MAC dev X nud permanent`)."""
        body = codec.neigh_request(family_of(dst).af, index, dst=dst, mac=mac, state=NUD_PERMANENT)
        self.sock.request(
            codec.RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, body, f"set neighbour {dst} on link {index}"
        )

    def delete_neighbour(self, index: int, dst: IPAddress) -> bool:
        body = codec.neigh_request(family_of(dst).af, index, dst=dst, state=0)
        return self._delete(codec.RTM_DELNEIGH, body, f"delete neighbour {dst} on link {index}")

    # -- FDB entries (of a VXLAN device) ------------------------------------------------------------
    def fdb(self, index: int | None = None) -> list[Neighbour]:
        return self.neighbours(AF_BRIDGE, index)

    def append_fdb(self, index: int, mac: str, dst: IPAddress) -> None:
        """`bridge fdb append MAC dev X dst DST`: several remotes per MAC are kept (the all-zero MAC
        with one entry per remote VTEP floods to all of them); appending a remote already there changes
        nothing. The device's underlay family must match DST's (else EAFNOSUPPORT)."""
        body = codec.neigh_request(
            AF_BRIDGE, index, dst=dst, mac=mac, state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF, type=0
        )
        flags = NLM_F_CREATE | NLM_F_APPEND
        self.sock.request(codec.RTM_NEWNEIGH, flags, body, f"append fdb {mac} dst {dst} on link {index}")

    def delete_fdb(self, index: int, mac: str, dst: IPAddress) -> bool:
        """Delete one remote of a MAC's entry. False when the MAC has no entry at all (the kernel
        reports success for a remote that is not in an existing entry)."""
        body = codec.neigh_request(AF_BRIDGE, index, dst=dst, mac=mac, state=0, flags=NTF_SELF, type=0)
        return self._delete(codec.RTM_DELNEIGH, body, f"delete fdb {mac} dst {dst} on link {index}")


class NetnsRtnl:
    """An `Rtnl` inside a network namespace (None: the process's own) for a long-lived user such as a
    driver: `get()` has the `NetnsWorker` open it there on first use, and requests then run on the
    caller's thread (the socket keeps its namespace). `worker` runs anything else that must be opened
    inside (e.g. a subscribed socket). After `close()`, `get()` raises `KernelError`."""

    def __init__(self, netns: str | None, name: str) -> None:
        self.worker = NetnsWorker(netns, name=name)
        self._name = name
        self._rtnl: Rtnl | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def netns(self) -> str | None:
        return self.worker.netns

    def get(self) -> Rtnl:
        rtnl = self._rtnl
        if rtnl is not None:
            return rtnl
        with self._lock:
            if self._closed:
                raise KernelError(f"{self._name} for netns {self.netns or 'self'} is closed")
            if self._rtnl is None:
                self._rtnl = self.worker.call(Rtnl)
            return self._rtnl

    def close(self) -> None:
        with self._lock:
            self._closed = True
            rtnl, self._rtnl = self._rtnl, None
        if rtnl is not None:
            rtnl.close()
        self.worker.close()

