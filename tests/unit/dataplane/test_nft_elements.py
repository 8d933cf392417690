"""The nftables driver's choice of the raw element path (`element_ops`): which batches qualify. The
encoder itself is tested in tests/unit/kernel/test_kernel_nfnetlink.py."""

from __future__ import annotations

from typing import Any

from tortie.dataplane.drivers.nftables import element_ops
from tortie.kernel.nfnetlink import SetLayout

ADDR4 = SetLayout(("ipv4_addr",), interval=True)
VMAP = SetLayout(("ifname",), verdict_map=True)


def _element(verb: str, name: str, elems: list[Any], table: str = "tortie") -> dict[str, Any]:
    return {verb: {"element": {"family": "inet", "table": table, "name": name, "elem": elems}}}


def test_only_element_batches_on_known_sets_of_one_table_go_raw() -> None:
    layouts = {("tortie", "s4-x"): ADDR4, ("tortie", "to-wl"): VMAP}
    batch = [_element("delete", "s4-x", ["10.0.0.1"]), _element("add", "to-wl", [["a", {"drop": None}]])]
    found = element_ops(batch, layouts)
    assert found is not None
    table, ops = found
    assert table == "tortie" and [(o.add, o.set_name, o.layout) for o in ops] == [
        (False, "s4-x", ADDR4),
        (True, "to-wl", VMAP),
    ]
    assert element_ops([_element("add", "s6-unknown", ["fd00::1"])], layouts) is None
    assert element_ops([_element("add", "s4-x", ["10.0.0.1"], table="other")], layouts) is None
    chain = {"add": {"chain": {"family": "inet", "table": "tortie", "name": "c"}}}
    assert element_ops([_element("add", "s4-x", ["10.0.0.1"]), chain], layouts) is None
    assert element_ops([], layouts) is None
