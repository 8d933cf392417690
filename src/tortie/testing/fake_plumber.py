"""`FakePlumber`: an in-memory `WorkloadPlumber` for unit tests (no root, no kernel).

It models what the kernel implementation guarantees and nothing more: namespaces are paths that
"exist" when listed in `namespaces`; `add` fails like the kernel would (missing namespace, interface
name taken in the namespace, host route already present via another interface) and is all-or-nothing;
`remove` is idempotent; `check` compares with what `add` recorded. `fail_on` lets a test make the next
`add` fail at a named step ("veth", "sysctl", "container", "host-route") after its earlier steps, to
prove that callers roll back correctly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tortie.cni.plumbing import HOST_MAC, Attachment, IPInterface, PlumbedInterface, VethSpec
from tortie.common.errors import DataplaneError, NetnsNotFound


@dataclass
class FakeVeth:
    spec: VethSpec
    container_mac: str
    up: bool = True


@dataclass
class FakePlumber:
    namespaces: set[str] = field(default_factory=set)
    veths: dict[str, FakeVeth] = field(default_factory=dict)  # by host ifname
    foreign_ifnames: set[tuple[str, str]] = field(default_factory=set)  # (netns, ifname) not ours
    foreign_routes: set[IPInterface] = field(default_factory=set)  # host routes via other interfaces
    fail_on: str | None = None
    calls: list[str] = field(default_factory=list)
    _mac_counter: int = 0

    def _next_mac(self) -> str:
        self._mac_counter += 1
        n = self._mac_counter
        return f"02:00:00:00:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}"

    def _fail(self, step: str) -> None:
        if self.fail_on == step:
            self.fail_on = None
            raise DataplaneError(f"injected failure at step {step}")

    def add(self, spec: VethSpec) -> PlumbedInterface:
        self.calls.append(f"add {spec.host_ifname}")
        if spec.netns not in self.namespaces:
            raise NetnsNotFound(f"network namespace {spec.netns} does not exist")
        self.veths.pop(spec.host_ifname, None)  # stale host end of a previous sandbox
        in_ns = {v.spec.ifname for v in self.veths.values() if v.spec.netns == spec.netns}
        if spec.ifname in in_ns or (spec.netns, spec.ifname) in self.foreign_ifnames:
            raise DataplaneError(f"an interface named {spec.ifname} already exists in {spec.netns}")
        self._fail("veth")
        veth = FakeVeth(spec, self._next_mac())
        self.veths[spec.host_ifname] = veth
        try:
            self._fail("sysctl")
            self._fail("container")
            for addr in spec.addresses:
                if addr in self.foreign_routes or any(
                    addr in v.spec.addresses for name, v in self.veths.items() if name != spec.host_ifname
                ):
                    raise DataplaneError(f"the host already routes {addr} via another interface")
            self._fail("host-route")
        except BaseException:
            del self.veths[spec.host_ifname]
            raise
        return PlumbedInterface(spec.host_ifname, HOST_MAC, spec.ifname, veth.container_mac, spec.mtu)

    def remove(self, host_ifname: str) -> bool:
        self.calls.append(f"remove {host_ifname}")
        return self.veths.pop(host_ifname, None) is not None

    def attachment(self, host_ifname: str, netns: str) -> Attachment:
        veth = self.veths.get(host_ifname)
        if veth is not None and veth.spec.netns not in self.namespaces:
            del self.veths[host_ifname]  # the kernel destroys a veth with its peer's namespace
            veth = None
        if veth is None:
            return "absent"
        return "here" if veth.spec.netns == netns else "elsewhere"

    def check(self, spec: VethSpec) -> list[str]:
        if spec.netns not in self.namespaces:
            return [f"network namespace {spec.netns} does not exist"]
        veth = self.veths.get(spec.host_ifname)
        if veth is None:
            return [f"host interface {spec.host_ifname} does not exist"]
        problems = []
        if veth.spec.netns != spec.netns or veth.spec.ifname != spec.ifname:
            problems.append(
                f"{spec.ifname} in {spec.netns} is not the peer of host interface {spec.host_ifname}"
            )
        if not veth.up:
            problems.append(f"host interface {spec.host_ifname} is down")
        if veth.spec.mtu != spec.mtu:
            problems.append(f"{spec.ifname} has MTU {veth.spec.mtu}, expected {spec.mtu}")
        for addr in spec.addresses:
            if addr not in veth.spec.addresses:
                problems.append(f"{spec.ifname} lacks address {addr}")
        return problems
