"""Spec of CalicoNodeStatus (reference §1, "CalicoNodeStatus"): a request for one node's status.

The object names a node, the classes of information wanted (Agent: the BGP daemon; BGP: the
sessions; Routes: the routes BIRD knows) and how often to refresh them (`updatePeriodSeconds`,
0-86400; 0 = never refresh; tortie's default when omitted is Calico's 10). The node the object names
fills `status` (`tortie.node.status_report`); the model does not validate `status`, which only the
node writes.
"""

from dataclasses import dataclass
from typing import Annotated

from tortie.model.fields import NAME
from tortie.model.schema import Enum, Int, ListOf, Struct, Wire

CLASSES = ("Agent", "BGP", "Routes")
DEFAULT_UPDATE_PERIOD = 10


@dataclass(frozen=True, kw_only=True)
class CalicoNodeStatusSpec:
    node: Annotated[str | None, Wire(NAME)] = None
    classes: Annotated[tuple[str, ...], Wire(ListOf(Enum(*CLASSES), unique=True))] = ()
    update_period_seconds: Annotated[int | None, Wire(Int(0, 86400))] = None

    @property
    def effective_update_period_seconds(self) -> int:
        if self.update_period_seconds is None:
            return DEFAULT_UPDATE_PERIOD
        return self.update_period_seconds


CALICO_NODE_STATUS_SPEC = Struct(CalicoNodeStatusSpec)
