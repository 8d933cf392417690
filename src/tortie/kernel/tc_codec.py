"""Traffic-control (tc, rtnetlink(7) RTM_*QDISC / RTM_*TFILTER) codecs: the few shapes tortie uses.

Pure functions, no socket (`tortie.kernel.tc.Tc` sends them). What QoS needs (docs/design/qos.md):

* a `tbf` qdisc at the root of a device (Calico's bandwidth limit: rate, burst, peak rate, minburst,
  queue limit), replaced in place;
* the `ingress` qdisc of a device (handle ffff:) and on it one `u32` filter matching every packet
  whose only action is `mirred egress redirect` to another device (an `ifb`): how Calico shapes a
  workload's egress, which arrives on the host as the device's ingress, where no qdisc can queue;
* dumps of a device's qdiscs and of the filters under one parent, decoded into records.

Fixed headers and structures (kernel ABI, linux/rtnetlink.h, linux/pkt_sched.h, linux/pkt_cls.h,
linux/tc_act/tc_mirred.h):

    tcmsg          family:u8 pad:u8 pad:u16 ifindex:i32 handle:u32 parent:u32 info:u32         20 bytes
    tc_ratespec    cell_log:u8 linklayer:u8 overhead:u16 cell_align:i16 mpu:u16 rate:u32       12 bytes
    tc_tbf_qopt    rate:tc_ratespec peakrate:tc_ratespec limit:u32 buffer:u32 mtu:u32          36 bytes
    tc_u32_sel     flags:u8 offshift:u8 nkeys:u8 pad offmask:be16 off:u16 offoff:i16 hoff:i16
                   hmask:be32, then nkeys x tc_u32_key (mask:be32 val:be32 off:i32 offmask:i32)  16 + 16n
    tc_mirred      index:u32 capab:u32 action:i32 refcnt:i32 bindcnt:i32 eaction:i32 ifindex:u32 28 bytes

The tbf request gives the burst in bytes (TCA_TBF_BURST) and, with a peak rate, the minburst
(TCA_TBF_PBURST) rather than tc's precomputed rate tables: the kernel (>= 3.13) derives its timings
from them and the 64-bit rates. Rates are bytes per second; one above 2^32 - 1 travels in
TCA_TBF_RATE64 / TCA_TBF_PRATE64. The link layer is given as Ethernet, as tc does.
A dump answers the rate, peak rate and queue limit exactly and the burst as a time (buffer, in
scheduler ticks); `TbfParams` read back therefore carries `burst=None`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from tortie.kernel.netlink import attr, attr_str, attr_u32, get_str, nest, parse_attrs

RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46
AF_UNSPEC = 0

TCA_KIND, TCA_OPTIONS = 1, 2
TC_H_ROOT, TC_H_INGRESS = 0xFFFFFFFF, 0xFFFFFFF1
INGRESS_HANDLE = 0xFFFF0000  # ffff:
TBF_HANDLE = 0x00010000  # 1:
TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_PRATE64, TCA_TBF_BURST, TCA_TBF_PBURST = 1, 4, 5, 6, 7
TC_LINKLAYER_ETHERNET = 1
ETH_P_ALL = 0x0003
TCA_U32_CLASSID, TCA_U32_SEL, TCA_U32_ACT = 1, 5, 7
TC_U32_TERMINAL = 1
TCA_ACT_KIND, TCA_ACT_OPTIONS = 1, 2
TCA_MIRRED_PARMS = 2
TC_ACT_STOLEN = 4
TCA_EGRESS_REDIR = 1
REDIRECT_PRIO = 1

_TCMSG = struct.Struct("=BxHiIII")
_RATESPEC = struct.Struct("=BBHhHI")
_TBF_QOPT = struct.Struct("=12s12sIII")
_U32_SEL = struct.Struct("!BBBxHHhhI")
_U32_KEY = struct.Struct("!IIii")
_MIRRED = struct.Struct("=IIiiiiI")
_U32_MAX = 0xFFFFFFFF


class TbfParams(NamedTuple):
    """A token bucket: `rate` and `peakrate` in bytes/s (peakrate 0: none), `burst` and `minburst`
    in bytes, `limit` (bytes that may queue) in bytes. Read back from the kernel, `burst` is None."""

    rate: int
    burst: int | None
    limit: int
    peakrate: int = 0
    minburst: int = 0


class Qdisc(NamedTuple):
    ifindex: int
    kind: str
    handle: int
    parent: int
    tbf: TbfParams | None = None


class Filter(NamedTuple):
    ifindex: int
    parent: int
    kind: str
    handle: int
    prio: int
    redirect_ifindex: int | None  # the mirred egress redirect target, if the filter has one


def tcmsg(ifindex: int, *, handle: int = 0, parent: int = 0, info: int = 0) -> bytes:
    return _TCMSG.pack(AF_UNSPEC, 0, ifindex, handle, parent, info)


def _ratespec(rate: int) -> bytes:
    return _RATESPEC.pack(0, TC_LINKLAYER_ETHERNET, 0, -1, 0, min(rate, _U32_MAX))


def tbf_request(ifindex: int, params: TbfParams) -> bytes:
    """RTM_NEWQDISC body: `params` as the root qdisc of `ifindex` (with NLM_F_CREATE | NLM_F_REPLACE
    it replaces whatever root qdisc is there)."""
    if params.burst is None:
        raise ValueError("a tbf request needs the burst")
    peak = _ratespec(params.peakrate) if params.peakrate else bytes(12)
    qopt = _TBF_QOPT.pack(_ratespec(params.rate), peak, params.limit, 0, 0)
    opts = attr(TCA_TBF_PARMS, qopt) + attr_u32(TCA_TBF_BURST, params.burst)
    if params.rate > _U32_MAX:
        opts += attr(TCA_TBF_RATE64, struct.pack("=Q", params.rate))
    if params.peakrate:
        opts += attr_u32(TCA_TBF_PBURST, params.minburst)
        if params.peakrate > _U32_MAX:
            opts += attr(TCA_TBF_PRATE64, struct.pack("=Q", params.peakrate))
    head = tcmsg(ifindex, handle=TBF_HANDLE, parent=TC_H_ROOT)
    return head + attr_str(TCA_KIND, "tbf") + nest(TCA_OPTIONS, opts)


def ingress_request(ifindex: int) -> bytes:
    """RTM_NEWQDISC / RTM_DELQDISC body of the ingress qdisc of `ifindex`."""
    return tcmsg(ifindex, handle=INGRESS_HANDLE, parent=TC_H_INGRESS) + attr_str(TCA_KIND, "ingress")


def root_request(ifindex: int) -> bytes:
    """RTM_DELQDISC body of the root qdisc of `ifindex` (the device gets its default back)."""
    return tcmsg(ifindex, parent=TC_H_ROOT)


def qdisc_query(ifindex: int) -> bytes:
    return tcmsg(ifindex)


def redirect_request(ifindex: int, target_ifindex: int) -> bytes:
    """RTM_NEWTFILTER body: on the ingress qdisc of `ifindex`, a u32 filter (prio 1, every protocol)
    matching every packet (one key: mask 0) and redirecting it to the egress of `target_ifindex`."""
    sel = _U32_SEL.pack(TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + _U32_KEY.pack(0, 0, 0, 0)
    mirred = _MIRRED.pack(0, 0, TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR, target_ifindex)
    action = nest(1, attr_str(TCA_ACT_KIND, "mirred"), nest(TCA_ACT_OPTIONS, attr(TCA_MIRRED_PARMS, mirred)))
    opts = attr_u32(TCA_U32_CLASSID, 0x00010001) + attr(TCA_U32_SEL, sel) + nest(TCA_U32_ACT, action)
    info = (REDIRECT_PRIO << 16) | struct.unpack("=H", struct.pack("!H", ETH_P_ALL))[0]
    head = tcmsg(ifindex, parent=INGRESS_HANDLE, info=info)
    return head + attr_str(TCA_KIND, "u32") + nest(TCA_OPTIONS, opts)


def filter_query(ifindex: int, parent: int) -> bytes:
    return tcmsg(ifindex, parent=parent)


def filter_delete_request(ifindex: int, parent: int, prio: int) -> bytes:
    """RTM_DELTFILTER body: every filter of priority `prio` under `parent` (tc filter del ... prio P)."""
    return tcmsg(ifindex, parent=parent, info=prio << 16)


def _decode_tbf(options: bytes) -> TbfParams | None:
    attrs = parse_attrs(options)
    parms = attrs.get(TCA_TBF_PARMS)
    if parms is None or len(parms) < _TBF_QOPT.size:
        return None
    rate_raw, peak_raw, limit, _buffer, _mtu = _TBF_QOPT.unpack_from(parms)
    rate = _RATESPEC.unpack(rate_raw)[5]
    peak = _RATESPEC.unpack(peak_raw)[5]
    if TCA_TBF_RATE64 in attrs:
        rate = struct.unpack("=Q", attrs[TCA_TBF_RATE64][:8])[0]
    if TCA_TBF_PRATE64 in attrs:
        peak = struct.unpack("=Q", attrs[TCA_TBF_PRATE64][:8])[0]
    return TbfParams(rate, None, limit, peak)


def decode_qdisc(body: bytes) -> Qdisc:
    _family, _pad, ifindex, handle, parent, _info = _TCMSG.unpack_from(body)
    attrs = parse_attrs(body, _TCMSG.size)
    kind = get_str(attrs.get(TCA_KIND)) or ""
    options = attrs.get(TCA_OPTIONS)
    tbf = _decode_tbf(options) if kind == "tbf" and options is not None else None
    return Qdisc(ifindex, kind, handle, parent, tbf)


def _mirred_target(actions: bytes) -> int | None:
    for action in parse_attrs(actions).values():
        parts = parse_attrs(action)
        if get_str(parts.get(TCA_ACT_KIND)) != "mirred":
            continue
        parms = parse_attrs(parts.get(TCA_ACT_OPTIONS, b"")).get(TCA_MIRRED_PARMS)
        if parms is not None and len(parms) >= _MIRRED.size:
            return int(_MIRRED.unpack_from(parms)[6])
    return None


def decode_filter(body: bytes) -> Filter:
    _family, _pad, ifindex, handle, parent, info = _TCMSG.unpack_from(body)
    attrs = parse_attrs(body, _TCMSG.size)
    kind = get_str(attrs.get(TCA_KIND)) or ""
    target = None
    options = attrs.get(TCA_OPTIONS)
    if kind == "u32" and options is not None:
        actions = parse_attrs(options).get(TCA_U32_ACT)
        target = _mirred_target(actions) if actions is not None else None
    return Filter(ifindex, parent, kind, handle, info >> 16, target)


def ifb_linkinfo() -> bytes:
    """IFLA_LINKINFO of an ifb device (the intermediate device egress shaping redirects to)."""
    from tortie.kernel.rtnl_codec import IFLA_INFO_KIND, IFLA_LINKINFO

    return nest(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "ifb"))

