"""Support table of BGPFilter: data only (rules in `tortie.model.support`).

Rules are rendered into BIRD functions by `tortie.bgp.filters` (read through `tortie.bgp.snapshot`).
Route priorities (`priority`, `setPriority`) are refused until tortie maps Calico's priority onto
BIRD's kernel metric and local preference as confd does.
"""

from __future__ import annotations

from typing import Any

from tortie.model import specs_bgp_filter as F
from tortie.model.support import FieldSupport, impl, reject

FILTERS = "bgp.filters"
PRIORITIES = ("route priorities: tortie does not map Calico's route priority onto BIRD's kernel metric "
              "and local preference")

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (F.BGPFilterSpec, "export_v4"): impl(FILTERS),
    (F.BGPFilterSpec, "import_v4"): impl(FILTERS),
    (F.BGPFilterSpec, "export_v6"): impl(FILTERS),
    (F.BGPFilterSpec, "import_v6"): impl(FILTERS),
    (F.BGPFilterCommunityMatch, "values"): impl(FILTERS),
    (F.BGPFilterOperation, "add_community"): impl(FILTERS),
    (F.BGPFilterOperation, "prepend_as_path"): impl(FILTERS),
    (F.BGPFilterOperation, "set_priority"): reject(PRIORITIES, not_yet=True),
    (F.BGPFilterAddCommunity, "value"): impl(FILTERS),
    (F.BGPFilterPrependASPath, "prefix"): impl(FILTERS),
    (F.BGPFilterSetPriority, "value"): reject(PRIORITIES, not_yet=True),
}
for _rule in (F.BGPFilterRuleV4, F.BGPFilterRuleV6):
    for _attr in ("cidr", "prefix_length", "match_operator", "source", "interface", "peer_type",
                  "communities", "as_path_prefix", "action", "operations"):
        TABLE[(_rule, _attr)] = impl(FILTERS)
    TABLE[(_rule, "priority")] = reject(PRIORITIES, not_yet=True)
for _prefix in (F.BGPFilterPrefixLengthV4, F.BGPFilterPrefixLengthV6):
    TABLE[(_prefix, "min")] = impl(FILTERS)
    TABLE[(_prefix, "max")] = impl(FILTERS)
