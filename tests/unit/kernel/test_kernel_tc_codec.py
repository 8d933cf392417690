"""tc codecs: each request body decodes back to what was asked (the kernel's answers have the same
shape as our requests for the parts we read: tcmsg, TCA_KIND, TCA_OPTIONS)."""

from __future__ import annotations

import pytest

from tortie.kernel import tc_codec as codec
from tortie.kernel.netlink import parse_attrs
from tortie.kernel.tc_codec import TbfParams


def test_tbf_request_round_trip_32_and_64_bit_rates() -> None:
    params = TbfParams(rate=1_250_000, burst=10_000, limit=41_250, peakrate=2_500_000, minburst=1514)
    q = codec.decode_qdisc(codec.tbf_request(7, params))
    assert (q.ifindex, q.kind, q.handle, q.parent) == (7, "tbf", codec.TBF_HANDLE, codec.TC_H_ROOT)
    assert q.tbf == params._replace(burst=None, minburst=0)
    big = TbfParams(rate=10**10, burst=10**6, limit=2**32 - 1, peakrate=2 * 10**10, minburst=9000)
    assert codec.decode_qdisc(codec.tbf_request(7, big)).tbf == big._replace(burst=None, minburst=0)
    options = parse_attrs(codec.tbf_request(7, params), 20)[codec.TCA_OPTIONS]
    assert int.from_bytes(parse_attrs(options)[codec.TCA_TBF_BURST][:4], "little") == 10_000
    with pytest.raises(ValueError):
        codec.tbf_request(7, params._replace(burst=None))


def test_ingress_and_redirect_requests() -> None:
    q = codec.decode_qdisc(codec.ingress_request(3))
    assert (q.kind, q.handle, q.parent, q.tbf) == ("ingress", codec.INGRESS_HANDLE, codec.TC_H_INGRESS, None)
    f = codec.decode_filter(codec.redirect_request(3, 9))
    assert (f.ifindex, f.parent, f.kind, f.prio, f.redirect_ifindex) == (3, codec.INGRESS_HANDLE, "u32", 1, 9)
    assert codec.decode_filter(codec.filter_delete_request(3, codec.INGRESS_HANDLE, 1)).prio == 1
