"""`FakeShaping`: an in-memory `ShapingDriver` over a `FakeKernel`'s links.

Modelled (and pinned against the real kernel by `tortie.testing.shaping_conformance`):

* devices are the FakeKernel's links; an ifb device is a link the fake created (`add_ifb`: up, with
  the MTU given), so it also appears in the kernel's link list and its link events;
* a device's root tbf is replaced whole by `set_tbf` and read back with `burst=None` (the kernel
  answers the burst only as a time); a peak rate not above the rate is refused (EINVAL), as the
  kernel does;
* `set_redirect` creates the ingress qdisc if needed and leaves exactly one redirect filter;
  `clear_ingress` removes both; deleting a device (or the kernel removing it) forgets its shaping;
* operations on a missing device raise `LinkNotFound`, except the idempotent clears and deletes.

Test controls: `fail(op, times=1)` (the next calls of driver operation `op` raise a `KernelError`),
`mutations` (every successful mutating call), `missing` (qdisc kinds this "kernel" lacks: setting
one fails as the real kernel does without the module), `tamper_tbf(name, params)` (a change behind
the agent's back).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from tortie.common.errors import KernelError, LinkNotFound
from tortie.dataplane.drivers.shaping import Shaping
from tortie.kernel.tc_codec import TbfParams
from tortie.testing.kernel_fake import FakeKernel


@dataclass
class _State:
    tbf: TbfParams | None = None
    ingress: bool = False
    redirect: str | None = None


@dataclass
class FakeShaping:
    kernel: FakeKernel
    mutations: list[str] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._state: dict[tuple[str, int], _State] = {}  # (name, ifindex): a re-created device starts bare
        self._ifbs: set[str] = set()
        self._failures: dict[str, int] = {}

    def fail(self, op: str, times: int = 1) -> None:
        self._failures[op] = times

    def _check(self, op: str) -> None:
        left = self._failures.get(op, 0)
        if left:
            self._failures[op] = left - 1
            raise KernelError(f"injected failure of {op}", errno.EIO)

    def _key(self, name: str) -> tuple[str, int] | None:
        link = self.kernel.link(name)
        if link is None:
            self._ifbs.discard(name)
            return None
        return (name, link.index)

    def _need(self, name: str) -> tuple[str, int]:
        key = self._key(name)
        if key is None:
            raise LinkNotFound(f"interface {name} does not exist", errno.ENODEV)
        return key

    def shaping(self, name: str) -> Shaping | None:
        key = self._key(name)
        if key is None:
            return None
        state = self._state.get(key, _State())
        tbf = state.tbf._replace(burst=None, minburst=0) if state.tbf is not None else None
        redirect = state.redirect if state.redirect is None or self.kernel.link(state.redirect) else None
        mtu = next(i.mtu for i in self.kernel.host_interfaces() if i.name == name)
        return Shaping(key[1], mtu, tbf, state.ingress, redirect)

    def shaped(self) -> dict[str, Shaping]:
        out = {}
        for name, _index in list(self._state):
            state = self.shaping(name)
            if state is not None and (state.tbf is not None or state.ingress):
                out[name] = state
        return out

    def set_tbf(self, name: str, params: TbfParams) -> None:
        self._check("set_tbf")
        key = self._need(name)
        if "tbf" in self.missing:
            raise KernelError("set tbf: Specified qdisc kind is unknown", errno.ENOENT)
        if params.peakrate and params.peakrate <= params.rate:
            raise KernelError("set tbf: peakrate must exceed rate", errno.EINVAL)
        self._state.setdefault(key, _State()).tbf = params
        self.mutations.append(f"tbf {name} rate={params.rate}")

    def clear_tbf(self, name: str) -> None:
        self._check("clear_tbf")
        key = self._key(name)
        if key is not None and key in self._state and self._state[key].tbf is not None:
            self._state[key].tbf = None
            self.mutations.append(f"clear tbf {name}")

    def set_redirect(self, name: str, target: str) -> None:
        self._check("set_redirect")
        key = self._need(name)
        self._need(target)
        if "ingress" in self.missing:
            raise KernelError("add ingress: Specified qdisc kind is unknown", errno.ENOENT)
        state = self._state.setdefault(key, _State())
        state.ingress, state.redirect = True, target
        self.mutations.append(f"redirect {name} -> {target}")

    def clear_ingress(self, name: str) -> None:
        self._check("clear_ingress")
        key = self._key(name)
        if key is not None and key in self._state and self._state[key].ingress:
            self._state[key].ingress, self._state[key].redirect = False, None
            self.mutations.append(f"clear ingress {name}")

    def ifb_devices(self, prefix: str) -> frozenset[str]:
        return frozenset(n for n in list(self._ifbs) if self._key(n) is not None and n.startswith(prefix))

    def add_ifb(self, name: str, mtu: int) -> None:
        self._check("add_ifb")
        if "ifb" in self.missing:
            raise KernelError(f"create ifb {name}: Unknown device type", errno.EOPNOTSUPP)
        if self.kernel.link(name) is not None:
            raise KernelError(f"create ifb {name}: File exists", errno.EEXIST)
        self.kernel.add_link(name, mtu=mtu)
        self._ifbs.add(name)
        self.mutations.append(f"add ifb {name}")

    def delete_device(self, name: str) -> None:
        self._check("delete_device")
        if self.kernel.link(name) is not None:
            self.kernel.remove_link(name)
            self.mutations.append(f"delete {name}")
        self._ifbs.discard(name)

    def tamper_tbf(self, name: str, params: TbfParams | None) -> None:
        self._state.setdefault(self._need(name), _State()).tbf = params

    def close(self) -> None:
        pass
