"""`Tc`: the traffic-control requests tortie makes, over an `Rtnl`'s NETLINK_ROUTE socket; and
`probe_shaping()`, what of it this kernel can do.

    Tc(rtnl)
      qdiscs(ifindex)                     -> [Qdisc]   (a device's root and ingress qdiscs; 0: every device's)
      replace_tbf(ifindex, TbfParams)     the device's root qdisc becomes this tbf
      delete_root(ifindex)                the device's default root qdisc comes back (-> False: none of ours)
      add_ingress(ifindex), delete_ingress(ifindex)   (deleting the ingress qdisc deletes its filters)
      filters(ifindex, parent)            -> [Filter]
      add_redirect(ifindex, target)       u32 match-all + mirred egress redirect on the ingress qdisc
      delete_filters(ifindex, parent, prio)
      add_ifb(name, mtu)                  an ifb device (left down; the caller sets it up)

Errors are `NetlinkError` (errno and the kernel's text, e.g. "Error: Specified qdisc kind is
unknown." with ENOENT when a qdisc module is missing); deleting what is not there returns False.

`probe_shaping()` answers, for this kernel, which of the parts of Calico's bandwidth limits work:
{"tbf": None | reason, "ifb": ..., "ingress": ..., "u32 mirred": ...} (None = works). It tries each
in a throwaway network namespace of its own (a thread that `unshare(CLONE_NEWNET)`s: no name, no
mount, gone when the thread ends), so it never touches the host's devices. Codecs: `tc_codec`.
"""

from __future__ import annotations

import errno as _errno
import threading
from collections.abc import Callable

from tortie.common.errors import NetlinkError
from tortie.kernel import rtnl_codec
from tortie.kernel import tc_codec as codec
from tortie.kernel.netlink import NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE
from tortie.kernel.netns import unshare_private
from tortie.kernel.rtnl import Rtnl
from tortie.kernel.tc_codec import Filter, Qdisc, TbfParams

_GONE = (_errno.ENOENT, _errno.EINVAL, _errno.ENODEV)


class Tc:
    """Traffic control through one rtnetlink socket (see the module docstring)."""

    def __init__(self, rtnl: Rtnl) -> None:
        self._sock = rtnl.sock

    def qdiscs(self, ifindex: int) -> list[Qdisc]:
        query = codec.qdisc_query(ifindex)
        messages = self._sock.dump(codec.RTM_GETQDISC, query, f"list qdiscs of {ifindex}")
        out = [codec.decode_qdisc(body) for kind, body in messages if kind == codec.RTM_NEWQDISC]
        return [q for q in out if not ifindex or q.ifindex == ifindex]  # a dump may ignore the index

    def replace_tbf(self, ifindex: int, params: TbfParams) -> None:
        body = codec.tbf_request(ifindex, params)
        what = f"replace root tbf of {ifindex}"
        self._sock.request(codec.RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, body, what)

    def _delete(self, kind: int, body: bytes, what: str) -> bool:
        return self._sock.delete(kind, body, what, _GONE)

    def delete_root(self, ifindex: int) -> bool:
        body = codec.root_request(ifindex)
        return self._delete(codec.RTM_DELQDISC, body, f"delete root qdisc of {ifindex}")

    def add_ingress(self, ifindex: int) -> None:
        self._sock.request(codec.RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, codec.ingress_request(ifindex),
                           f"add ingress qdisc of {ifindex}")

    def delete_ingress(self, ifindex: int) -> bool:
        return self._delete(codec.RTM_DELQDISC, codec.ingress_request(ifindex),
                            f"delete ingress qdisc of {ifindex}")

    def filters(self, ifindex: int, parent: int) -> list[Filter]:
        messages = self._sock.dump(codec.RTM_GETTFILTER, codec.filter_query(ifindex, parent),
                                   f"list filters of {ifindex}")
        out = [codec.decode_filter(body) for kind, body in messages if kind == codec.RTM_NEWTFILTER]
        return [f for f in out if f.ifindex == ifindex]

    def add_redirect(self, ifindex: int, target_ifindex: int) -> None:
        self._sock.request(codec.RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL,
                           codec.redirect_request(ifindex, target_ifindex),
                           f"redirect ingress of {ifindex} to {target_ifindex}")

    def delete_filters(self, ifindex: int, parent: int, prio: int) -> bool:
        return self._delete(codec.RTM_DELTFILTER, codec.filter_delete_request(ifindex, parent, prio),
                            f"delete filters prio {prio} of {ifindex}")

    def add_ifb(self, name: str, mtu: int | None = None) -> None:
        body = rtnl_codec.link_request(name=name, mtu=mtu, linkinfo=codec.ifb_linkinfo())
        self._sock.request(rtnl_codec.RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create ifb {name}")


SHAPING_PARTS = ("tbf", "ifb", "ingress", "u32 mirred")


def _try_shaping() -> dict[str, str | None]:
    unshare_private()
    found: dict[str, str | None] = dict.fromkeys(SHAPING_PARTS, "not tried")
    with Rtnl() as rtnl:
        tc = Tc(rtnl)
        lo = rtnl.get_link("lo")
        assert lo is not None
        try:
            tc.add_ifb("tqprobe")
            found["ifb"] = None
        except NetlinkError as exc:
            found["ifb"] = str(exc)
        probe = rtnl.get_link("tqprobe") or lo
        attempts: list[tuple[str, Callable[[], None]]] = [
            ("tbf", lambda: tc.replace_tbf(probe.ifindex, TbfParams(125000, 15000, 18125))),
            ("ingress", lambda: tc.add_ingress(lo.ifindex)),
            ("u32 mirred", lambda: tc.add_redirect(lo.ifindex, probe.ifindex)),
        ]
        for part, action in attempts:
            try:
                action()
                found[part] = None
            except NetlinkError as exc:
                found[part] = str(exc)
    return found


def probe_shaping() -> dict[str, str | None]:
    """Which parts of tc shaping this kernel has (None: works; else the kernel's reason)."""
    result: dict[str, str | None] = {}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.update(_try_shaping())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="tc-probe", daemon=True)
    thread.start()
    thread.join(timeout=10.0)
    if failure:
        reason = str(failure[0])
        return dict.fromkeys(SHAPING_PARTS, f"could not be probed: {reason}")
    if not result:
        return dict.fromkeys(SHAPING_PARTS, "could not be probed: the probe did not finish")
    return result
