"""The seam between CNI logic and the kernel: wiring one workload interface (reference §3.4).

`WorkloadPlumber` is the Protocol; `tortie.cni.netlink_plumber.NetlinkPlumber` is the real kernel
implementation and `tortie.testing.fake_plumber.FakePlumber` the in-memory one for unit tests. What `add`
builds, Calico style (no bridge, everything routed by the host):

    container netns                              host netns
    CNI_IFNAME  10.0.0.5/32  (fd00::5/128)  <-veth->  <prefix><hash>  mac ee:ee:ee:ee:ee:ee, no address
      169.254.1.1 dev CNI_IFNAME scope link            proxy_arp=1, neigh proxy_delay=0, forwarding=1,
      default via 169.254.1.1 dev CNI_IFNAME           route_localnet=1, rp_filter=1, (v6) proxy_ndp=1,
      default via fe80::ecee:eeff:feee:eeee            forwarding=1, accept_ra=0, accept_dad=0
                                                     10.0.0.5/32 dev <host if> scope link proto <P>
                                                     fd00::5/128 dev <host if> proto <P>

169.254.1.1 is never assigned anywhere: with proxy_arp on the host end, the host answers the
container's ARP for it with its own MAC, so every packet leaving the container goes to the host and is
routed (RFC 3927 link-local address; Linux proxy ARP answers when the host has a route for the target
via another device). For IPv6 the gateway is the host end's own EUI-64 link-local address
fe80::ecee:eeff:feee:eeee, derived from the fixed MAC (RFC 4291 appendix A); DAD is off on both ends
so that address and the workload's are usable at once.

Contract of every implementation:
* `add` is all-or-nothing: if it raises, it has removed whatever it created.
* `remove` is idempotent: deleting the host end deletes its peer; a missing interface is success.
* `check` returns human-readable problems (empty list = all as expected); it never changes anything.
* `attachment(host_ifname, netns)` says where the peer of an existing host end lives, from kernel
  state alone: ABSENT (no such host interface), HERE (in `netns`), ELSEWHERE (in another namespace,
  which is alive: a veth dies with its namespace; also when `netns` itself is gone) or UNKNOWN (a
  host interface whose peer the kernel names no namespace for). ADD and DEL use it to tell a
  container ID reused for another namespace, or a newer sandbox of the same workload, from a stale
  or repeated attachment of their own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal, Protocol

HOST_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY_V4 = ipaddress.IPv4Address("169.254.1.1")
GATEWAY_V6 = ipaddress.IPv6Address("fe80::ecee:eeff:feee:eeee")

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Attachment = Literal["absent", "here", "elsewhere", "unknown"]

# Host-side sysctls per workload interface: (family directory, file, value).
HOST_SYSCTLS_V4 = (
    ("ipv4/conf", "proxy_arp", "1"),
    ("ipv4/neigh", "proxy_delay", "0"),
    ("ipv4/conf", "forwarding", "1"),
    ("ipv4/conf", "route_localnet", "1"),
    ("ipv4/conf", "rp_filter", "1"),
)
HOST_SYSCTLS_V6 = (
    ("ipv6/conf", "accept_dad", "0"),
    ("ipv6/conf", "accept_ra", "0"),
    ("ipv6/conf", "proxy_ndp", "1"),
    ("ipv6/conf", "forwarding", "1"),
)


@dataclass(frozen=True)
class VethSpec:
    """What to build for one workload interface."""

    netns: str
    ifname: str
    host_ifname: str
    mtu: int
    addresses: tuple[IPInterface, ...]  # single addresses: /32 and /128
    route_protocol: int

    @property
    def has_v4(self) -> bool:
        return any(a.version == 4 for a in self.addresses)

    @property
    def has_v6(self) -> bool:
        return any(a.version == 6 for a in self.addresses)


@dataclass(frozen=True)
class PlumbedInterface:
    host_ifname: str
    host_mac: str
    container_ifname: str
    container_mac: str
    mtu: int


class WorkloadPlumber(Protocol):
    def add(self, spec: VethSpec) -> PlumbedInterface:
        """Build the interface pair, addresses, routes and sysctls; all or nothing."""
        ...

    def remove(self, host_ifname: str) -> bool:
        """Delete the host end (and so its peer and host routes). False if it was not there."""
        ...

    def check(self, spec: VethSpec) -> list[str]:
        """Problems found comparing the kernel with `spec`; [] when everything is in place."""
        ...

    def attachment(self, host_ifname: str, netns: str) -> Attachment:
        """Where the peer of host interface `host_ifname` lives relative to `netns` (see above)."""
        ...
