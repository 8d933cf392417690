"""Support table of CalicoNodeStatus: data only (rules in `tortie.model.support`).

The node named in `spec.node` fills the object's status (`tortie.node.status_report`).
"""

from __future__ import annotations

from typing import Any

from tortie.model import specs_node_status as S
from tortie.model.support import FieldSupport, impl

REPORT = "node.status_report"

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (S.CalicoNodeStatusSpec, "node"): impl(REPORT),
    (S.CalicoNodeStatusSpec, "classes"): impl(REPORT),
    (S.CalicoNodeStatusSpec, "update_period_seconds"): impl(REPORT),
}
